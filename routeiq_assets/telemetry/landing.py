"""The landing-folder scan shared by the sensor and ``routeiq ingest``.

A file's identity is its content hash, so a rename, a copy or two files with equal mtimes can
never make a batch be processed twice or skipped. A file is taken only once it is complete:
hidden and ``.tmp``/``.part`` names are ignored, and a file must be unchanged (size and mtime)
since the previous scan or for ``settle_seconds``. The cursor caches hashes by (size, mtime)
so unchanged files are not re-read every tick. The sensor's scan lands each new file in the raw
store itself (its run finds it there), within a time budget a tick; the raw store's source
index (:class:`SourceIndex`) spares reading again a file landed before and unchanged since.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routeiq_assets.telemetry.raw_store import (
    RawFile,
    batch_key,
    display_name,
    file_sha256,
    find_raw_file,
    land_file,
    landing_files,
    landing_threads,
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
    # another scan (a tick that outlived its timeout, another code server) is landing files
    # into the same raw store: who holds the lock, for how long; this one took nothing and kept
    # the cursor it was given
    busy_with: str = ""

    @property
    def busy(self) -> bool:
        return bool(self.busy_with)

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
    """A scan cursor from its JSON; what is not one (garbage, an entry of another shape) is
    dropped, so a damaged cursor costs files read again, never a tick that fails."""
    try:
        cursor = json.loads(text) if text else {}
    except (ValueError, RecursionError):  # not JSON, or numbers past Python's digit limit
        cursor = {}
    return _clean_cursor(cursor)


def _clean_cursor(cursor: object) -> dict:
    if not isinstance(cursor, dict):
        return {}
    files = cursor.get("files")
    clean: dict = {
        "files": {
            rel: entry
            for rel, entry in (files.items() if isinstance(files, dict) else ())
            if isinstance(rel, str) and _cursor_entry(entry)
        }
    }
    for name in ("failed", "deferred"):
        names = cursor.get(name)
        if isinstance(names, list):
            clean[name] = [n for n in names if isinstance(n, str)]
    return clean


def _cursor_entry(entry: object) -> bool:
    """[size, mtime_ns, sha256 or None] and, since the change time counts, ctime_ns."""
    return (
        isinstance(entry, list)
        and len(entry) in (3, 4)
        and all(type(v) is int for v in entry[:2] + entry[3:])
        and (entry[2] is None or (isinstance(entry[2], str) and _SHA256.fullmatch(entry[2])))
    )


def land_paths(
    paths: list[Path], raw_dir: Path, settle_seconds: float | None = None
) -> list[tuple[Path, str]]:
    """The files of these files or folders, each landed in the raw store (``land_file``)
    with the SHA-256 of the bytes landed, which names its partition: ``raw_traces`` then finds
    them there and copies nothing; a file that changes after this still cannot be stored under
    another content's key.

    A file landed before and unchanged since (the raw store's :class:`SourceIndex`) is neither
    read nor copied again: `routeiq ingest` run every day on a folder that keeps growing costs
    what is new, not the whole folder (``settle_seconds``: see :class:`SourceIndex`)."""
    found = []
    in_folder: set[Path] = set()  # found in a folder: regular files only, links refused
    for given in paths:
        given = Path(given)
        if not given.exists():
            raise FileNotFoundError(f"{given} does not exist")
        if given.is_dir():
            entries = landing_files(given)
            found.extend(entries)
            in_folder.update(entries)
        else:
            found.append(given)  # named on purpose: read as given (a pipe too)
            if stat.S_ISFIFO(given.stat().st_mode):
                log.warning("%s is a FIFO: reading it waits for its writer", display_name(given))
    raw_dir = Path(raw_dir)
    index = SourceIndex(raw_dir, settle_seconds)
    shas = [
        None if path in in_folder and path.is_symlink() else index.known(path) for path in found
    ]
    new = [path for path, sha in zip(found, shas, strict=True) if sha is None]
    # (sizes only matter to a time limit)
    landed = _within(
        lambda path: _land_observed(path, raw_dir, regular_only=path in in_folder),
        [(p, 0) for p in new],
        landing_threads(),
        None,
    )
    for path, result in landed.items():
        if not isinstance(result, Exception):  # remembered even when another file failed
            raw, before, read_at = result
            index.remember(path, before, read_at, raw)
    index.save()
    for path in new:
        if isinstance(landed[path], Exception):
            raise landed[path]
    return [
        (path, landed[path][0].sha256 if sha is None else sha)
        for path, sha in zip(found, shas, strict=True)
    ]


def _land_observed(
    path: Path, raw_dir: Path, regular_only: bool = False
) -> tuple[RawFile, os.stat_result | None, int]:
    """The file landed, its state just before and the moment (ns) it began to be read."""
    before = SourceIndex.stat(path)
    read_at = time.time_ns()
    return land_file(path, raw_dir, regular_only), before, read_at


# Where the raw store remembers the files it landed (hidden: no reader of the store lists it).
SOURCE_INDEX = ".sources.json"
SOURCE_INDEX_ENTRIES = 100_000  # the most recently landed files are kept (~20 MB)
# A file is remembered only when it last changed (content or metadata) at least this long
# before it began to be read: a file changed again within its file system's timestamp
# granularity (a few milliseconds on ext4, 1 s on ext3 and many NFS servers, 2 s on FAT) could
# otherwise keep its times, git's "racy" case.
SOURCE_SETTLE_SECONDS = 2.0
_SHA256 = re.compile(r"[0-9a-f]{64}")


class SourceIndex:
    """The content hash of each file the raw store landed, under its identity and state: its
    path, device and inode, size, modification and change times (the change time moves on
    every write and every metadata change, and no tool sets it back). A file found in the same
    state holds the same bytes, as git's index and rsync's quick check assume, and is not read
    again while its raw file is still in the store. Only a cache: a missing, unreadable or
    damaged index means files are landed again (found in the store, nothing changes) and it is
    rewritten. Saving merges with what another process saved meanwhile (two saving at the
    same instant may still keep one's entries: those files are read again next time).

    File systems whose inode numbers or times do not follow a file (FAT, some FUSE and CIFS
    mounts) weaken this; procfs-like files (size 0, fixed times, content that changes) are
    never remembered, since what was landed is not the size they report."""

    def __init__(self, raw_dir: Path, settle_seconds: float | None = None) -> None:
        self.path = Path(raw_dir) / SOURCE_INDEX
        self.raw_dir = Path(raw_dir)
        self.settle_ns = int(
            (SOURCE_SETTLE_SECONDS if settle_seconds is None else settle_seconds) * 1e9
        )
        self._entries: dict[str, list] | None = None  # read on first use
        self.added: dict[str, list] = {}  # remembered by this process, not saved yet
        self.touched: dict[str, list] = {}  # found by this process

    @property
    def entries(self) -> dict[str, list]:
        if self._entries is None:
            self._entries = self._load()
        return self._entries

    @property
    def changed(self) -> bool:
        return bool(self.added)

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
        return {k: v for k, v in entries.items() if self._valid(v)}

    @staticmethod
    def _valid(entry: object) -> bool:
        return (
            isinstance(entry, list)
            and len(entry) == 4
            and all(type(v) is int for v in entry[:3])
            and isinstance(entry[3], str)
            and _SHA256.fullmatch(entry[3]) is not None
        )

    @staticmethod
    def stat(path: Path) -> os.stat_result | None:
        try:
            return os.stat(path)
        except OSError:
            return None

    @staticmethod
    def _key(path: Path, st: os.stat_result) -> str:
        return f"{st.st_dev}:{st.st_ino}:{os.path.realpath(path)}"

    @staticmethod
    def _state(st: os.stat_result) -> list[int]:
        return [st.st_size, st.st_mtime_ns, st.st_ctime_ns]

    def known(self, path: Path) -> str | None:
        """The SHA-256 of this file when it is in the state it was landed in and its raw file
        is still in the store; else None."""
        st = self.stat(path)
        if st is None or not stat.S_ISREG(st.st_mode):
            return None
        key = self._key(path, st)
        entry = self.entries.get(key)
        if entry is None or entry[:3] != self._state(st):
            return None
        sha = entry[3]
        raw = find_raw_file(self.raw_dir, batch_key(sha))
        if raw is None or not raw.name.startswith(sha):
            return None
        self.touched[key] = entry  # recently used: kept under the cap when the index is saved
        return sha

    def remember(
        self, path: Path, before: os.stat_result | None, read_at_ns: int, raw: RawFile
    ) -> None:
        """That this file, found in state ``before`` just before it began to be read at
        ``read_at_ns``, holds what was landed as ``raw``: only when it is a regular file, still
        in that state, of the size landed, and had not changed for a while when it was read."""
        after = self.stat(path)
        if before is None or after is None or not stat.S_ISREG(before.st_mode):
            return
        key = self._key(path, before)
        if self._key(path, after) != key or self._state(after) != self._state(before):
            return  # changed while it was landed: the copy's hash may be of neither state
        if raw.size_bytes != before.st_size:
            return  # its size says nothing of its content (procfs, sysfs)
        if read_at_ns - max(before.st_mtime_ns, before.st_ctime_ns) < self.settle_ns:
            return
        self.entries[key] = self.added[key] = [*self._state(before), raw.sha256]

    def save(self) -> None:
        """Write the index (atomically: a reader sees the old or the new one); a failure is
        only logged, since the files are landed already."""
        if not self.changed:
            return
        merged = self._load() if self.path.exists() else {}  # what others saved meanwhile
        for key, entry in [*self.touched.items(), *self.added.items()]:
            merged.pop(key, None)  # to the end: the most recent are kept
            merged[key] = entry
        entries = dict(list(merged.items())[-SOURCE_INDEX_ENTRIES:])
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
        self.added = {}


def plan_files(landed: list[tuple[Path, str]], known_keys: set[str]) -> LandingScan:
    """Plan explicit files or folders (``routeiq ingest``: complete by assumption) from what
    :func:`land_paths` gave for them."""
    scan = LandingScan()
    for path, sha in landed:
        scan.take(batch_key(sha), path, known_keys)
    return scan


def _failure(exc: Exception) -> str:
    """Why a landing file could not be read or landed, with the error's own notes."""
    notes = "; ".join(getattr(exc, "__notes__", ()))
    return f"{type(exc).__name__}: {exc}" + (f" ({notes})" if notes else "")


# The rate a tick assumes it lands files at until it has measured one over MEASURED_MIN_BYTES
# of files landed (a slow disk's: a few small files measure their fixed costs, not the rate).
ASSUMED_LANDING_BYTES_PER_SECOND = 50e6
MEASURED_MIN_BYTES = 64 * 2**20


def _within(
    fn: Callable[[Path], Any],
    items: list[tuple[Path, int]],
    threads: int,
    max_seconds: float | None,
) -> dict[Path, Any]:
    """``fn`` of the first ``(path, size)`` items, on ``threads`` threads, each started only
    when it is expected to end within ``max_seconds`` of the start, the bytes still in flight
    ahead of it:
    at the rate the files landed so far went, once they hold MEASURED_MIN_BYTES (a file that
    failed does not count), else ASSUMED_LANDING_BYTES_PER_SECOND. The first always starts.
    The results of those started, by path: what ``fn`` returned, or the exception it raised
    (one file's trouble, I/O or a bug, must not stop the others)."""
    threads = max(1, threads)
    started = time.monotonic()
    results: dict[Path, object] = {}
    running: dict[Future, tuple[Path, int]] = {}
    done_bytes = taken = 0

    def fits(size: int) -> bool:
        if taken == 0 or max_seconds is None:
            return True
        elapsed = time.monotonic() - started
        measured = done_bytes >= MEASURED_MIN_BYTES and elapsed > 0
        rate = done_bytes / elapsed if measured else ASSUMED_LANDING_BYTES_PER_SECOND
        ahead = sum(n for _, n in running.values()) + size
        return elapsed + ahead / rate <= max_seconds

    with ThreadPoolExecutor(threads, thread_name_prefix="routeiq-landing") as pool:
        while True:
            while taken < len(items) and len(running) < threads and fits(items[taken][1]):
                path, size = items[taken]
                running[pool.submit(fn, path)] = (path, size)
                taken += 1
            if not running:
                return results
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                path, size = running.pop(future)
                try:
                    results[path] = future.result()
                except Exception as exc:
                    results[path] = exc
                if not isinstance(results[path], Exception):
                    done_bytes += size


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
    the run then finds in the raw store instead of copying and hashing the file a second time;
    a file the raw store's :class:`SourceIndex` knows unchanged is not read at all).

    With ``max_seconds``, a file starts only when it is expected to end in time (see
    :func:`_within`; the first always starts); the rest are ``deferred`` to the next scan, so a
    backlog of any size is taken over several sensor ticks, each within Dagster's sensor timeout
    (60 s), instead of every tick timing out on the whole backlog and never saving its cursor.
    Files deferred by the scan before go first (never overtaken by newer ones), then the others,
    in name order each, and last the ones that failed in the scan before: a file that keeps
    failing holds back no other. A file that fails (``unreadable``, with the reason) is tried
    again next scan; the others go on. With ``raw_dir``, one scan lands at a time into it (a
    lock file there): a scan that finds another landing (a tick that outlived its timeout,
    another code server) takes nothing, keeps the cursor it was given and says ``busy``."""
    lock = contextlib.nullcontext("") if raw_dir is None else _landing_lock(Path(raw_dir))
    with lock as busy_with:
        if busy_with:
            return LandingScan(cursor=cursor, busy_with=busy_with)
        cursor = _clean_cursor(cursor)
        return _scan(landing_dir, cursor, known_keys, settle_seconds, now, raw_dir, max_seconds)


@contextlib.contextmanager
def _landing_lock(raw_dir: Path) -> Iterator[str]:
    """Hold the raw store's landing lock for the block, which gets ""; or, when another holds
    it, who and for how long (the block then must land nothing)."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    held_by = ""
    with open(raw_dir / LANDING_LOCK, "a+b") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held_by = _holder(lock)
        except OSError as exc:  # no flock here (NFS without lockd, some CIFS): go on unlocked
            log.warning("landing without the raw store's lock (%s): %s", LANDING_LOCK, exc)
        else:
            lock.truncate(0)
            lock.write(f"{os.getpid()} {time.time():.0f}".encode())
            lock.flush()
        if held_by:
            yield held_by
            return
        try:
            yield ""
        finally:
            with contextlib.suppress(OSError):  # (closing the file releases it anyway)
                fcntl.flock(lock, fcntl.LOCK_UN)


# In the raw store: held while a scan lands files into it (flock: one host, or NFS with locks);
# it holds the holder's pid and start time.
LANDING_LOCK = ".landing.lock"


def _holder(lock) -> str:
    """Who holds the lock and for how long, as its holder wrote it."""
    try:
        lock.seek(0)
        pid, since = lock.read(100).decode().split()
        return f"pid {pid}, for {time.time() - float(since):.0f} s"
    except (OSError, ValueError):
        return "unknown holder"


def _scan(
    landing_dir: Path,
    cursor: dict,
    known_keys: set[str],
    settle_seconds: float,
    now: float | None,
    raw_dir: Path | None = None,
    max_seconds: float | None = None,
) -> LandingScan:
    now = time.time() if now is None else now
    previous: dict[str, list] = cursor.get("files", {})
    failed_before = set(cursor.get("failed", []))
    deferred_before = set(cursor.get("deferred", []))
    files: dict[str, list] = {}
    failed: list[str] = []
    deferred: list[str] = []
    scan = LandingScan()
    complete: list[tuple[str, Path, int, int, int, str | None]] = []
    for path in landing_files(Path(landing_dir)):
        rel = path.relative_to(landing_dir).as_posix()
        try:
            st = path.lstat()  # a link is not followed: landing refuses it with its reason
        except FileNotFoundError:  # removed between listing and stat
            continue
        size, mtime_ns, ctime_ns = st.st_size, st.st_mtime_ns, st.st_ctime_ns
        before = previous.get(rel)
        # the change time too (entries of older cursors have none): a same-size rewrite whose
        # modification time was put back (cp -p, rsync -t) is a change
        unchanged = (
            before is not None
            and before[:2] == [size, mtime_ns]
            and (len(before) < 4 or before[3] == ctime_ns)
        )
        settled = now - mtime_ns / 1e9 >= settle_seconds
        if not (unchanged or settled):
            files[rel] = [size, mtime_ns, None, ctime_ns]
            scan.waiting.append(path)
            if rel in failed_before:
                failed.append(rel)  # still last once complete
            continue
        cached = before[2] if unchanged and before is not None else None
        complete.append((rel, path, size, mtime_ns, ctime_ns, cached))
    index = SourceIndex(Path(raw_dir)) if raw_dir is not None else None
    found: dict[Path, object] = {}
    for _rel, path, _size, _mtime, _ctime, cached in complete:
        link = path.is_symlink()
        sha = index.known(path) if index is not None and not cached and not link else None
        if sha is not None:
            found[path] = sha  # landed before (by a tick whose cursor was lost, or the CLI)

    def order(entry: tuple) -> tuple[int, str]:
        rel = entry[0]
        return (0 if rel in deferred_before else 2 if rel in failed_before else 1, rel)

    todo = sorted((c for c in complete if not c[5] and c[1] not in found), key=order)
    items = [(c[1], c[2]) for c in todo]
    # two threads (four when each landing waits for its flush to disk); a file that cannot be
    # read or landed must not hold back the others
    if index is None:
        found |= _within(
            lambda path: file_sha256(path, regular_only=True),
            items,
            min(2, os.cpu_count() or 1),
            max_seconds,
        )
    else:
        landed = _within(
            lambda path: _land_observed(path, Path(raw_dir), regular_only=True),
            items,
            landing_threads(),
            max_seconds,
        )
        for path, result in landed.items():
            if isinstance(result, tuple):
                raw, before, read_at = result
                index.remember(path, before, read_at, raw)
                found[path] = raw.sha256
            else:
                found[path] = result
        index.save()
    for rel, path, size, mtime_ns, ctime_ns, cached in complete:
        if not cached and path not in found:
            files[rel] = [size, mtime_ns, None, ctime_ns]  # complete: taken by a next scan
            scan.deferred.append(path)
            # not tried this time: a failed one still last next time, the others first
            (failed if rel in failed_before else deferred).append(rel)
            continue
        sha = cached or found[path]
        if isinstance(sha, Exception):
            if isinstance(sha, FileNotFoundError) and not os.path.lexists(path):
                continue  # removed since it was listed
            scan.unreadable.append((path, _failure(sha)))
            files[rel] = [size, mtime_ns, None, ctime_ns]  # no hash: read again next scan
            failed.append(rel)
            continue
        assert isinstance(sha, str)
        files[rel] = [size, mtime_ns, sha, ctime_ns]
        scan.take(batch_key(sha), path, known_keys)
    scan.cursor = {"files": files}
    scan.cursor |= {k: v for k, v in (("failed", failed), ("deferred", deferred)) if v}
    return scan
