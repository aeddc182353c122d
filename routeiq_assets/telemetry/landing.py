"""The landing-folder scan shared by the sensor and ``routeiq ingest``.

A file's identity is its content hash, so a rename, a copy or two files with equal mtimes can
never make a batch be processed twice or skipped. A file is taken only once it is complete:
hidden and ``.tmp``/``.part`` names are ignored, and a file must be unchanged (size and mtime)
since the previous scan or for ``settle_seconds``. The cursor caches hashes by (size, mtime)
so unchanged files are not re-read every tick.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import tempfile
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from routeiq_assets.telemetry.raw_store import (
    DURABLE,
    batch_key,
    file_sha256,
    find_raw_file,
    land_file,
    land_files,
    landing_files,
)

log = logging.getLogger(__name__)


@dataclass
class LandingScan:
    ready: list[tuple[str, Path]] = field(default_factory=list)  # (batch key, path), new only
    waiting: list[Path] = field(default_factory=list)  # still being written
    known: list[Path] = field(default_factory=list)  # content already ingested (or planned)
    # complete but unreadable (permissions, I/O errors): tried again next scan, with the reason
    unreadable: list[tuple[Path, str]] = field(default_factory=list)
    # complete, left for the next scan: its time (max_seconds) was up
    deferred: list[Path] = field(default_factory=list)
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


def land_paths(
    paths: list[Path], raw_dir: Path, settle_seconds: float | None = None
) -> list[tuple[Path, str]]:
    """The files of these files or folders, each landed in the raw store (:func:`land_files`)
    with the SHA-256 of the bytes landed, which names its partition: ``raw_traces`` then finds
    them there and copies nothing; a file that changes after this still cannot be stored under
    another content's key.

    A file landed before and unchanged since (the raw store's :class:`SourceIndex`) is neither
    read nor copied again: `routeiq ingest` run every day on a folder that keeps growing costs
    what is new, not the whole folder (``settle_seconds``: see :class:`SourceIndex`)."""
    found = []
    for given in paths:
        given = Path(given)
        if not given.exists():
            raise FileNotFoundError(f"{given} does not exist")
        found.extend(landing_files(given) if given.is_dir() else [given])
    index = SourceIndex(Path(raw_dir), settle_seconds)
    shas = [index.known(path) for path in found]
    new = [path for path, sha in zip(found, shas, strict=True) if sha is None]
    # each file's state before it is read: remembered only if the landing did not change it
    before = [index.stat(path) for path in new]
    landed = land_files(new, raw_dir)
    for path, was, raw in zip(new, before, landed, strict=True):
        index.remember(path, was, raw.sha256)
    index.save()
    fresh = iter(raw.sha256 for raw in landed)
    return [
        (path, next(fresh) if sha is None else sha) for path, sha in zip(found, shas, strict=True)
    ]


# Where the raw store remembers the files it landed (hidden: no reader of the store lists it).
SOURCE_INDEX = ".sources.json"
SOURCE_INDEX_ENTRIES = 100_000  # the most recently landed files are kept (about 10 MB)
# A file is remembered only when it last changed (content or metadata) at least this long
# before it was read: a file changed again within the clock's granularity (a few milliseconds
# on Linux) could otherwise keep its times, git's "racy" case.
SOURCE_SETTLE_SECONDS = 2.0


class SourceIndex:
    """The content hash of each file the raw store landed, under its identity and state: its
    device and inode, size, modification and change times (st_ctime moves on every write and
    every metadata change, and no tool sets it back). A file found in the same state holds the
    same bytes, as git's index and rsync's quick check assume, and is not read again while its
    raw file is still in the store. Only a cache: a missing, unreadable or damaged index means
    files are landed again (found in the store, nothing changes) and it is rewritten."""

    def __init__(self, raw_dir: Path, settle_seconds: float | None = None) -> None:
        self.path = Path(raw_dir) / SOURCE_INDEX
        self.raw_dir = Path(raw_dir)
        self.settle_ns = int(
            (SOURCE_SETTLE_SECONDS if settle_seconds is None else settle_seconds) * 1e9
        )
        self.entries: dict[str, list] = self._load()
        self.changed = False

    def _load(self) -> dict[str, list]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("ignoring the raw store's source index %s: %s", self.path, exc)
            return {}
        entries = data.get("files") if isinstance(data, dict) else None
        if not isinstance(entries, dict):
            log.warning("ignoring the raw store's source index %s: not an index", self.path)
            return {}
        return {
            k: v
            for k, v in entries.items()
            if isinstance(v, list) and len(v) == 4 and isinstance(v[3], str)
        }

    @staticmethod
    def stat(path: Path) -> os.stat_result | None:
        try:
            return os.stat(path)
        except OSError:
            return None

    @staticmethod
    def _key(st: os.stat_result) -> str:
        return f"{st.st_dev}:{st.st_ino}"

    @staticmethod
    def _state(st: os.stat_result) -> list[int]:
        return [st.st_size, st.st_mtime_ns, st.st_ctime_ns]

    def known(self, path: Path) -> str | None:
        """The SHA-256 of this file when it is in the state it was landed in and its raw file
        is still in the store; else None."""
        st = self.stat(path)
        if st is None or not stat.S_ISREG(st.st_mode):
            return None
        entry = self.entries.get(self._key(st))
        if entry is None or entry[:3] != self._state(st):
            return None
        sha = entry[3]
        raw = find_raw_file(self.raw_dir, batch_key(sha))
        if raw is None or not raw.name.startswith(sha):
            return None
        return sha

    def remember(self, path: Path, before: os.stat_result | None, sha: str) -> None:
        """That this file, found in state ``before`` just before it was landed, holds ``sha``:
        only when it is a regular file still in that state, last changed long enough ago."""
        after = self.stat(path)
        if before is None or after is None or not stat.S_ISREG(before.st_mode):
            return
        if self._key(after) != self._key(before) or self._state(after) != self._state(before):
            return  # changed while it was landed: the copy's hash may be of neither state
        if time.time_ns() - max(before.st_mtime_ns, before.st_ctime_ns) < self.settle_ns:
            return
        key = self._key(before)
        self.entries.pop(key, None)  # to the end: the most recent are kept
        self.entries[key] = [*self._state(before), sha]
        self.changed = True

    def save(self) -> None:
        """Write the index (atomically: a reader sees the old or the new one); a failure is
        only logged, since the files are landed already."""
        if not self.changed:
            return
        entries = dict(list(self.entries.items())[-SOURCE_INDEX_ENTRIES:])
        try:
            fd, tmp = tempfile.mkstemp(dir=self.raw_dir, prefix=".sources.", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as out:
                    json.dump({"version": 1, "files": entries}, out)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except OSError as exc:
            log.warning("could not write the raw store's source index %s: %s", self.path, exc)
            return
        self.changed = False


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


def _landed_or_error(path: Path, raw_dir: Path) -> str | OSError:
    try:
        return land_file(path, raw_dir).sha256
    except OSError as exc:
        return exc


def _in_order_within(
    fn: Callable[[Path], str | OSError], paths: list[Path], threads: int, max_seconds: float | None
) -> list[str | OSError]:
    """``fn`` of the first paths, in order, on ``threads`` threads: a path is started only while
    ``max_seconds`` have not passed since the first (which always starts); the results of those
    started."""
    started = time.monotonic()
    results: list[str | OSError] = []
    with ThreadPoolExecutor(max(1, threads), thread_name_prefix="routeiq-landing") as pool:
        running: deque[Future[str | OSError]] = deque()
        taken = 0
        while taken < len(paths) or running:
            while (
                taken < len(paths)
                and len(running) < threads
                and (taken == 0 or max_seconds is None or time.monotonic() - started < max_seconds)
            ):
                running.append(pool.submit(fn, paths[taken]))
                taken += 1
            if not running:
                break
            results.append(running.popleft().result())
    return results


def scan_landing(
    landing_dir: Path,
    cursor: dict,
    known_keys: set[str],
    settle_seconds: float = 5.0,
    now: float | None = None,
    raw_dir: Path | None = None,
    max_seconds: float | None = None,
) -> LandingScan:
    """Plan which landing files become new batches; return them with the next cursor.

    A complete file whose hash the cursor does not hold is hashed, or, with ``raw_dir``, landed
    there (:func:`~routeiq_assets.telemetry.raw_store.land_file`: the hash of the copy, which
    the run then finds in the raw store instead of copying and hashing the file a second time).
    Files are taken in name order while ``max_seconds`` have not passed (at least one): the rest
    are ``deferred`` to the next scan, so a backlog of any size is taken over several sensor
    ticks, each within Dagster's sensor timeout (60 s), instead of every tick timing out on the
    whole backlog and never saving its cursor."""
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
    # what the cursor has no hash of: hashed or landed, two threads (four when each landing waits
    # for its flush to disk); a file that cannot be read must not hold back the others
    new = [c[1] for c in complete if not c[4]]
    if raw_dir is None:
        read, threads = _sha256_or_error, min(2, os.cpu_count() or 1)
    else:
        read = lambda path: _landed_or_error(path, Path(raw_dir))  # noqa: E731
        threads = (2 if DURABLE else 1) * min(2, os.cpu_count() or 1)
    found = dict(zip(new, _in_order_within(read, new, threads, max_seconds), strict=False))
    for rel, path, size, mtime_ns, cached in complete:
        if not cached and path not in found:
            files[rel] = [size, mtime_ns, None]  # complete: taken by the next scan
            scan.deferred.append(path)
            continue
        sha = cached or found[path]
        if isinstance(sha, FileNotFoundError):
            continue  # removed since it was listed
        if isinstance(sha, OSError):
            scan.unreadable.append((path, f"{type(sha).__name__}: {sha.strerror or sha}"))
            continue  # not in the cursor: read again next scan
        files[rel] = [size, mtime_ns, sha]
        scan.take(batch_key(sha), path, known_keys)
    scan.cursor = {"files": files}
    return scan
