"""Raw files to normalised tables: read, normalise, write, one batch (file) at a time."""

from __future__ import annotations

import collections
import contextlib
import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures.process import BrokenProcessPool
from datetime import UTC, datetime
from pathlib import Path

import duckdb
from joblib.externals.loky import get_reusable_executor

from routeiq_assets.telemetry.pii import PromptTextMode
from routeiq_assets.telemetry.raw_store import RawFile
from routeiq_assets.telemetry.readers import read_records
from routeiq_assets.warehouse.columnar import ColumnarBatch
from routeiq_assets.warehouse.normalize import NormalisedBatch, normalise_records
from routeiq_assets.warehouse.otlp_fast import normalise_otlp_file
from routeiq_assets.warehouse.store import (
    BatchCounts,
    bulk_load,
    pending_batches,
    write_batch,
    write_batches,
)

# A pending batch: (batch_id, raw_path, format, original name), as raw_files holds it.
Pending = tuple[str, str, str, str]
Log = Callable[[str], None]

# A file is normalised whole, so its ingest takes memory that grows with its size: one this big
# gets a warning that says so before the work starts.
LARGE_FILE_BYTES = 2**30
# Consecutive batches are written together (one transaction, one INSERT a table) until they hold
# this many records, so that inserts are large enough for DuckDB to skip its write-ahead log
# (see store.write_batches). A crash or a failed write redoes at most one group.
WRITE_GROUP_RECORDS = 400_000
# Below this many bytes of pending files, worker processes cost more (their start-up, about a
# second each, once a process) than they save.
PARALLEL_MIN_BYTES = 64 * 2**20


def _quiet(_message: str) -> None:
    pass


def register_raw_file(con: duckdb.DuckDBPyConnection, raw: RawFile) -> bool:
    """Record a landed file; return False when the same bytes were landed before."""
    exists = con.execute("SELECT 1 FROM raw_files WHERE batch_id = ?", [raw.batch_id]).fetchall()
    if exists:
        return False
    con.execute(
        "INSERT INTO raw_files BY NAME SELECT ? AS batch_id, ? AS sha256, ? AS original_name,"
        " ? AS raw_path, ? AS format, ? AS size_bytes, ? AS landed_at",
        [
            raw.batch_id,
            raw.sha256,
            raw.original_name,
            str(raw.raw_path),
            raw.format,
            raw.size_bytes,
            datetime.now(UTC).replace(tzinfo=None),
        ],
    ).fetchall()
    return True


def normalise_file(
    raw_path: Path,
    fmt: str,
    batch_id: str,
    source: str,
    prompt_mode: PromptTextMode = "scrub",
    fast: bool = True,
) -> NormalisedBatch | ColumnarBatch:
    """One raw file's rows. OTLP JSON takes the fast path unless ``fast`` is False; it gives the
    same rows and counts as the general path (readers + ``normalise_records``)."""
    if fast and fmt == "otlp_json":
        return normalise_otlp_file(Path(raw_path), batch_id, source, prompt_mode)
    return normalise_records(read_records(Path(raw_path), fmt), batch_id, source, prompt_mode)


def ingest_batch(
    con: duckdb.DuckDBPyConnection,
    batch_id: str,
    raw_path: Path,
    fmt: str,
    source: str,
    prompt_mode: PromptTextMode = "scrub",
    log: Log = _quiet,
    fast: bool = True,
) -> BatchCounts:
    """Normalise one landed batch and replace its rows in one transaction."""
    batch = normalise_file(raw_path, fmt, batch_id, source, prompt_mode, fast)
    log(f"writing batch {batch_id} ({source}): {batch.records_in} records")
    return write_batch(con, batch_id, batch)


def ingest_registered(
    con: duckdb.DuckDBPyConnection,
    batch_id: str,
    prompt_mode: PromptTextMode = "scrub",
    log: Log = _quiet,
) -> BatchCounts:
    """Ingest a batch already in ``raw_files`` (the partitioned asset's path)."""
    [(_, counts)] = ingest_registered_batches(con, [batch_id], prompt_mode, log)
    return counts


def ingest_registered_batches(
    con: duckdb.DuckDBPyConnection,
    batch_ids: list[str],
    prompt_mode: PromptTextMode = "scrub",
    log: Log = _quiet,
    warn: Log | None = None,
) -> list[tuple[str, BatchCounts]]:
    """Ingest batches already in ``raw_files``, in this order, as :func:`ingest_batches` does."""
    found = {
        row[0]: row
        for row in con.execute(
            "SELECT batch_id, raw_path, format, original_name FROM raw_files"
            " WHERE list_contains(?, batch_id)",
            [list(batch_ids)],
        ).fetchall()
    }
    missing = [b for b in batch_ids if b not in found]
    if missing:
        raise ValueError(
            f"batch {', '.join(missing)} is not in raw_files: materialise raw_traces for it first"
        )
    return ingest_batches(con, [found[b] for b in batch_ids], prompt_mode, log, warn)


def ingest_pending(
    con: duckdb.DuckDBPyConnection, prompt_mode: PromptTextMode = "scrub", log: Log = _quiet
) -> list[tuple[str, BatchCounts]]:
    """Normalise and write every landed batch not yet in the ingest log, in landing order."""
    return ingest_batches(con, pending_batches(con), prompt_mode, log)


def _size(path: str | Path) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


def ingest_batches(
    con: duckdb.DuckDBPyConnection,
    pending: list[Pending],
    prompt_mode: PromptTextMode = "scrub",
    log: Log = _quiet,
    warn: Log | None = None,
) -> list[tuple[str, BatchCounts]]:
    """Normalise and write these registered batches in order (so which of two copies of an
    event is kept never depends on timing), normalised ahead in worker processes while this one
    writes when there is enough work (:func:`_normalised`); consecutive batches of fewer than
    ``WRITE_GROUP_RECORDS`` records are written together in one transaction
    (:func:`~routeiq_assets.warehouse.store.write_batches`), all under one
    :func:`~routeiq_assets.warehouse.store.bulk_load`. When a batch cannot be
    normalised, the batches before it are written before the error is raised. ``warn``
    (default: ``log``) gets what the caller should show as a warning: a file of
    ``LARGE_FILE_BYTES`` or more, whose ingest takes memory that grows with its size."""
    for _, raw_path, fmt, name in pending:
        if (size := _size(raw_path)) >= LARGE_FILE_BYTES:
            (warn or log)(
                f"large file: {name} is {size / 1e9:.1f} GB of {fmt}, normalised and written "
                "whole, so its ingest takes memory that grows with its size. Rotate the "
                "exporter's files by size (the collector's file exporter: rotation max_megabytes)"
            )
    done: list[tuple[str, BatchCounts]] = []
    group: list[tuple[Pending, NormalisedBatch | ColumnarBatch]] = []

    def write() -> None:
        for (batch_id, _, _, name), batch in group:
            log(f"writing batch {batch_id} ({name}): {batch.records_in} records")
        counts = write_batches(con, [(item[0], batch) for item, batch in group])
        for (item, _), c in zip(group, counts, strict=True):
            log(
                f"[{len(done) + 1}/{len(pending)}] {item[3]}: {c.records_in} records -> "
                f"{c.decisions} decisions, {c.llm_calls} llm calls, "
                f"{c.duplicates} duplicates, {c.quarantined} quarantined"
            )
            done.append((item[0], c))
        group.clear()

    with bulk_load(con) if len(pending) > 1 else contextlib.nullcontext():
        try:
            for item, batch in zip(pending, _normalised(pending, prompt_mode), strict=True):
                group.append((item, batch))
                del batch  # (not held here once written)
                if sum(b.records_in for _, b in group) >= WRITE_GROUP_RECORDS:
                    write()
        except Exception as error:
            if group:  # what was normalised before the error is written all the same
                try:
                    write()
                except Exception as also:  # the first error stays the one raised
                    error.add_note(f"writing the batches normalised before it failed too: {also!r}")
            raise
        if group:
            write()
    return done


def _normalised(
    pending: list[Pending], prompt_mode: PromptTextMode
) -> Iterator[NormalisedBatch | ColumnarBatch]:
    """Each pending batch normalised, in order: in worker processes (one a core, a batch ahead
    each) when the files hold at least ``PARALLEL_MIN_BYTES``, else here. Normalising is Python
    work that holds the GIL, so threads cannot share it out. The workers are loky's (through
    joblib): new interpreters that neither fork this process nor run its main script, kept
    for the next ingest of this process."""
    jobs = [(Path(raw), fmt, batch_id, name, prompt_mode) for batch_id, raw, fmt, name in pending]
    processes = min(os.cpu_count() or 1, len(jobs))
    if (
        processes < 2
        or sum(_size(job[0]) for job in jobs) < PARALLEL_MIN_BYTES
        or multiprocessing.current_process().daemon  # (a daemon may not start processes)
    ):
        for job in jobs:
            yield normalise_job(job)
        return
    # the system allocator hands freed Arrow memory back (mimalloc, Arrow's default, keeps it)
    pool = get_reusable_executor(max_workers=processes, env={"ARROW_DEFAULT_MEMORY_POOL": "system"})
    queued = collections.deque((job, pool.submit(normalise_job, job)) for job in jobs[:processes])
    following = iter(jobs[processes:])
    try:
        while queued:
            job, future = queued.popleft()
            if (after := next(following, None)) is not None:
                queued.append((after, pool.submit(normalise_job, after)))
            try:
                batch = future.result()
            except BrokenProcessPool as exc:  # a worker died (killed, out of memory)
                names = ", ".join(str(j[0]) for j in (job, *(j for j, _ in queued)))
                exc.add_note(f"a worker died while normalising one of {names}")
                raise
            yield batch
            del batch  # (not held while the next one is awaited)
    finally:
        for _, future in queued:
            future.cancel()


Job = tuple[Path, str, str, str, PromptTextMode]  # normalise_file's arguments


def normalise_job(job: Job) -> NormalisedBatch | ColumnarBatch:
    """:func:`normalise_file` of one job; its error names the file."""
    try:
        return normalise_file(*job)
    except Exception as exc:
        exc.add_note(f"while normalising {job[0]} ({job[3]})")
        raise
