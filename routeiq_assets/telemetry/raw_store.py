"""The raw zone: telemetry files as received, content-addressed and never edited."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import os
import re
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from routeiq_assets.telemetry.jsonl import sniff_jsonl_kind


@dataclass(frozen=True)
class RawFile:
    batch_id: str  # the first 16 hex digits of sha256: the Dagster partition key
    sha256: str
    original_name: str
    raw_path: Path
    format: str
    size_bytes: int


# control characters (newlines, ANSI escapes), DEL, C1 controls, Unicode line separators and
# bidirectional overrides: a name holding one could forge or hide log lines
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def display_name(name: str | os.PathLike[str]) -> str:
    """A file name (or path) as text any database, log or terminal takes: bytes that are not
    UTF-8 (which Python keeps as lone surrogates in the str of a path) shown as ``\\xff``
    escapes, control characters as ``\\n``, ``\\x1b``..."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def file_sha256(path: Path, regular_only: bool = False) -> str:
    """The SHA-256 of a file's bytes (``regular_only``: as :func:`land_file`)."""
    with open(_open_source(Path(path), regular_only), "rb", buffering=0) as handle:
        return _fd_sha256(handle.fileno())


def sniff_format(path: Path) -> str:
    """The telemetry format of a file, from its first bytes (see telemetry.jsonl)."""
    return sniff_jsonl_kind(path)


def landing_files(landing_dir: Path) -> list[Path]:
    """Complete entries of the landing folder (hidden and temporary names are still being
    written). Links are never followed: a symbolic link (to a file or a folder) and anything
    that is not a regular file is listed as it is, so that landing it (``regular_only``) refuses
    it with its reason instead of reading what it points at."""
    landing_dir = Path(landing_dir)
    if not landing_dir.is_dir():
        return []
    found = []
    for root, dirs, files in os.walk(landing_dir):  # never descends into a linked folder
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        here = Path(root)
        found += [here / d for d in dirs if (here / d).is_symlink()]
        found += [
            here / f for f in files if not f.startswith(".") and not f.endswith((".tmp", ".part"))
        ]
    return sorted(found)


COPY_CHUNK = 1 << 20
# copy_file_range copies in the kernel, page cache to page cache (no pass through this
# process); where the kernel or the file systems refuse it, a plain read/write loop.
_KERNEL_COPY = hasattr(os, "copy_file_range")
_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EPERM}


def _copy(src: int, dst: int) -> None:
    # only regular files: a pipe (`routeiq ingest <(zcat f.gz)`) is read and written; and a
    # file some file systems report empty to copy_file_range (procfs...) is too
    if _KERNEL_COPY and stat.S_ISREG(os.fstat(src).st_mode):
        copied = 0
        try:
            while n := os.copy_file_range(src, dst, 1 << 30):
                copied += n
            if copied or not os.fstat(src).st_size:
                return
        except OSError as exc:
            if exc.errno not in _NO_KERNEL_COPY:
                raise
        # nothing or part copied: start again with plain reads and writes
        os.lseek(src, 0, os.SEEK_SET)
        os.lseek(dst, 0, os.SEEK_SET)
        os.ftruncate(dst, 0)
    for chunk in _chunks(src):
        written = 0
        while written < len(chunk):
            written += os.write(dst, chunk[written:])


def durable() -> bool:
    """Whether a landed file is flushed to disk (and its name in its folder) before land_file
    returns (the ``raw_fsync`` setting, default on): a batch is registered in the warehouse only
    after, so a crash never leaves a registered batch whose raw file is empty or short (ext4
    with delayed allocation, XFS). Without it the kernel writes the same bytes later anyway."""
    from routeiq_assets.settings import load_settings

    return load_settings().raw_fsync


def _libc_sync_file_range() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


# Linux's sync_file_range(SYNC_FILE_RANGE_WRITE) (not in the os module): the kernel starts
# writing a copy to disk as soon as it is made, while the landing thread reads it back to hash
# it, instead of when the fsync after asks: landing is bound by the disk's writes.
_SYNC_FILE_RANGE = _libc_sync_file_range()
_SYNC_FILE_RANGE_WRITE = 2


def _start_writeback(fd: int) -> bool:
    """Ask the kernel to start writing the file's dirty pages to disk now (a hint: durability is
    still the fsync's); whether it did."""
    if _SYNC_FILE_RANGE is None:
        return False
    return _SYNC_FILE_RANGE(fd, 0, 0, _SYNC_FILE_RANGE_WRITE) == 0


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _chunks(fd: int) -> Iterator[memoryview]:
    """What is left of a file, a buffer of up to COPY_CHUNK bytes at a time (reused)."""
    buffer = bytearray(COPY_CHUNK)
    view = memoryview(buffer)
    while size := os.readv(fd, [buffer]):
        yield view[:size]


def _fd_sha256(fd: int) -> str:
    digest = hashlib.sha256()
    os.lseek(fd, 0, os.SEEK_SET)
    for chunk in _chunks(fd):
        digest.update(chunk)
    return digest.hexdigest()


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def land_file(source: Path, raw_dir: Path, regular_only: bool = False) -> RawFile:
    """Copy a file into the raw store under its hash (idempotent; the copy is read-only).

    The hash is of the copy, read back after copying (it is read from the page cache): a file
    that changes while it is landed can never be stored under the hash of other content. An
    error says which file it was landing (a failed read or write names none of its own).
    ``regular_only``: anything else (a FIFO swapped in for the file, whose open would wait for
    a writer) is refused at once instead of read.
    """
    try:
        return _land_file(Path(source), Path(raw_dir), regular_only)
    except OSError as exc:
        exc.add_note(f"while landing {display_name(source)} in {display_name(raw_dir)}")
        raise


REFUSED_LINK = (
    "a symbolic link, refused: only regular files inside the landing folder are read "
    "(copy the file in instead)"
)


def _open_source(source: Path, regular_only: bool) -> int:
    """An open file descriptor of ``source``. ``regular_only`` (files found in a folder): a
    symbolic link is refused, not followed, and so is anything but a regular file."""
    if not regular_only:
        return os.open(source, os.O_RDONLY)
    try:  # a FIFO's open does not wait; a link (even one swapped in since the scan) fails
        fd = os.open(source, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP or os.path.islink(source):
            raise OSError(errno.ELOOP, REFUSED_LINK, str(source)) from None
        raise
    kind = stat.S_IFMT(os.fstat(fd).st_mode)
    if kind != stat.S_IFREG:
        os.close(fd)
        what = {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket"}
        raise OSError(
            errno.EINVAL,
            f"not a regular file ({what.get(kind, 'a device')}), refused",
            str(source),
        )
    return fd


def _land_file(source: Path, raw_dir: Path, regular_only: bool = False) -> RawFile:
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    flush = durable()
    with open(_open_source(source, regular_only), "rb", buffering=0) as src:
        # a file of its own for each copy, created exclusively: threads, processes or hosts
        # sharing the raw store may land the same bytes at once
        fd, tmp_name = tempfile.mkstemp(dir=raw_dir, prefix=".landing.", suffix=".tmp")
        tmp = Path(tmp_name)
        try:
            try:
                _copy(src.fileno(), fd)
                if flush:
                    _start_writeback(fd)  # the disk writes while this thread hashes
                sha = _fd_sha256(fd)
                if flush:
                    os.fsync(fd)  # on disk before it is named, let alone registered
            finally:
                os.close(fd)
            # the raw file's name is its hash and the source's suffixes, in plain characters
            # only (a name's bytes that are not UTF-8 must not reach the warehouse's raw_path)
            suffix = _UNSAFE.sub("", "".join(source.suffixes[-2:])) or ".bin"
            target = raw_dir / sha[:2] / f"{sha}{suffix}"
            if not target.exists():
                if not target.parent.exists():
                    target.parent.mkdir(exist_ok=True)
                    if flush:
                        _fsync_dir(raw_dir)  # the new shard folder's own name
                tmp.chmod(0o444)
                tmp.replace(target)
            if flush:
                # also when another thread or process named it: its flush may not be done yet
                _fsync_dir(target.parent)
        finally:
            tmp.unlink(missing_ok=True)
    return RawFile(
        batch_key(sha),
        sha,
        display_name(source.name),
        target,
        sniff_format(target),
        target.stat().st_size,
    )


T = TypeVar("T")
R = TypeVar("R")


def in_threads(fn: Callable[[T], R], items: Iterable[T], threads: int | None = None) -> list[R]:
    """``[fn(x) for x in items]`` on up to ``threads`` threads (default: one a core, at most 2),
    in order; the first error is raised. Hashing (hashlib) and file reads and writes release
    the GIL, so landing a backlog of large files uses both cores. Landing is idempotent, so a
    file landed next to one that failed is simply found in the raw store next time."""
    items = list(items)
    threads = threads or min(2, os.cpu_count() or 1)
    if threads <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="routeiq-landing") as pool:
        return list(pool.map(fn, items))


def landing_threads() -> int:
    """Threads to land files on: two a core (at most four) when each waits for its file's
    flush to disk while the others copy and hash; else one a core, at most 2."""
    return (2 if durable() else 1) * min(2, os.cpu_count() or 1)


def land_files(sources: Iterable[Path], raw_dir: Path) -> list[RawFile]:
    """:func:`land_file` for each file, in order, on :func:`landing_threads` threads."""
    return in_threads(lambda source: land_file(source, raw_dir), sources, landing_threads())


def batch_key(sha256: str) -> str:
    """A batch's id and Dagster partition key: 64 bits of its content hash."""
    return sha256[:16]


def describe_raw_file(raw_path: Path, original_name: str | None = None) -> RawFile:
    """The RawFile of something already in the raw store (named by its hash)."""
    raw_path = Path(raw_path)
    sha = raw_path.name.split(".", 1)[0]
    return RawFile(
        batch_key(sha),
        sha,
        display_name(original_name or raw_path.name),
        raw_path,
        sniff_format(raw_path),
        raw_path.stat().st_size,
    )


def find_raw_file(raw_dir: Path, batch_id: str) -> Path | None:
    """The raw file of a batch, if it has been landed."""
    matches = sorted((Path(raw_dir) / batch_id[:2]).glob(f"{batch_id}*"))
    return matches[0] if matches else None
