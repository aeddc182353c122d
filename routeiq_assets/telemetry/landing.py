"""The landing-folder scan shared by the sensor and ``routeiq ingest``.

A file's identity is its content hash, so a rename, a copy or two files with equal mtimes can
never make a batch be processed twice or skipped. A file is taken only once it is complete:
hidden and ``.tmp``/``.part`` names are ignored, and a file must be unchanged (size and mtime)
since the previous scan or for ``settle_seconds``. The cursor caches hashes by (size, mtime)
so unchanged files are not re-read every tick.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from routeiq_assets.telemetry.raw_store import (
    batch_key,
    file_sha256,
    in_threads,
    land_files,
    landing_files,
)


@dataclass
class LandingScan:
    ready: list[tuple[str, Path]] = field(default_factory=list)  # (batch key, path), new only
    waiting: list[Path] = field(default_factory=list)  # still being written
    known: list[Path] = field(default_factory=list)  # content already ingested (or planned)
    # complete but unreadable (permissions, I/O errors): tried again next scan, with the reason
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    cursor: dict = field(default_factory=dict)
    planned: set[str] = field(default_factory=set)  # the keys of `ready`

    def cursor_json(self) -> str:
        return json.dumps(self.cursor, sort_keys=True)

    def take(self, key: str, path: Path, known_keys: set[str]) -> None:
        """A complete file: a new batch, unless its content is known or already planned."""
        if key in known_keys or key in self.planned:
            self.known.append(path)
        else:
            self.planned.add(key)
            self.ready.append((key, path))


def load_cursor(text: str | None) -> dict:
    try:
        cursor = json.loads(text) if text else {}
    except json.JSONDecodeError:
        cursor = {}
    return cursor if isinstance(cursor, dict) else {}


def land_paths(paths: list[Path], raw_dir: Path) -> list[tuple[Path, str]]:
    """The files of these files or folders, each landed in the raw store (:func:`land_files`)
    with the SHA-256 of the bytes landed, which names its partition: ``raw_traces`` then finds
    them there and copies nothing; a file that changes after this still cannot be stored under
    another content's key."""
    found = []
    for given in paths:
        given = Path(given)
        if not given.exists():
            raise FileNotFoundError(f"{given} does not exist")
        found.extend(landing_files(given) if given.is_dir() else [given])
    return [(path, raw.sha256) for path, raw in zip(found, land_files(found, raw_dir), strict=True)]


def plan_files(landed: list[tuple[Path, str]], known_keys: set[str]) -> LandingScan:
    """Plan explicit files or folders (``routeiq ingest``: complete by assumption) from what
    :func:`land_paths` gave for them."""
    scan = LandingScan()
    for path, sha in landed:
        scan.take(batch_key(sha), path, known_keys)
    return scan


def _sha256_or_error(path: Path) -> str | OSError:
    try:
        return file_sha256(path)
    except OSError as exc:
        return exc


def scan_landing(
    landing_dir: Path,
    cursor: dict,
    known_keys: set[str],
    settle_seconds: float = 5.0,
    now: float | None = None,
) -> LandingScan:
    """Plan which landing files become new batches; return them with the next cursor."""
    now = time.time() if now is None else now
    previous: dict[str, list] = cursor.get("files", {})
    files: dict[str, list] = {}
    scan = LandingScan()
    complete: list[tuple[str, Path, int, int, str | None]] = []
    for path in landing_files(Path(landing_dir)):
        rel = path.relative_to(landing_dir).as_posix()
        try:
            stat = path.stat()
        except FileNotFoundError:  # removed between listing and stat
            continue
        size, mtime_ns = stat.st_size, stat.st_mtime_ns
        before = previous.get(rel)
        unchanged = before is not None and before[0] == size and before[1] == mtime_ns
        settled = now - mtime_ns / 1e9 >= settle_seconds
        if not (unchanged or settled):
            files[rel] = [size, mtime_ns, None]
            scan.waiting.append(path)
            continue
        complete.append((rel, path, size, mtime_ns, before[2] if unchanged else None))
    # hashes the cursor does not hold yet, on two threads (a backlog of large files); a file
    # that cannot be read must not hold back the others
    hashed = iter(in_threads(_sha256_or_error, [c[1] for c in complete if not c[4]]))
    for rel, path, size, mtime_ns, cached in complete:
        sha = cached or next(hashed)
        if isinstance(sha, FileNotFoundError):
            continue  # removed since it was listed
        if isinstance(sha, OSError):
            scan.unreadable.append((path, f"{type(sha).__name__}: {sha.strerror or sha}"))
            continue  # not in the cursor: read again next scan
        files[rel] = [size, mtime_ns, sha]
        scan.take(batch_key(sha), path, known_keys)
    scan.cursor = {"files": files}
    return scan
