"""Raw files to normalised tables: read, normalise, write, one batch (file) at a time."""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from routeiq_assets.telemetry.pii import PromptTextMode
from routeiq_assets.telemetry.raw_store import RawFile
from routeiq_assets.telemetry.readers import read_records
from routeiq_assets.warehouse import otlp_native
from routeiq_assets.warehouse.columnar import ColumnarBatch
from routeiq_assets.warehouse.normalize import NormalisedBatch, normalise_records
from routeiq_assets.warehouse.otlp_fast import (
    LineCounter,
    merge_parts,
    normalise_otlp_file,
    resolved_part,
    split_bytes,
    split_lines,
)
from routeiq_assets.warehouse.store import (
    BatchCounts,
    CannotStream,
    bulk_load,
    pending_batches,
    write_batch,
    write_batch_parts,
    write_batches,
)
from routeiq_assets.warehouse.workers import normalise_in_workers

log = logging.getLogger(__name__)

# Below this many bytes of pending files, normalising in parallel (threads, or worker processes
# without the compiled normaliser) costs more than it saves.
PARALLEL_MIN_BYTES = 64 * 2**20
# A file at least this big is normalised in parts, one a worker.
SPLIT_MIN_BYTES = 16 * 2**20
# An OTLP JSON file (one export request a line) of at least this size is normalised in parts
# of about STREAM_PART_BYTES on the normaliser threads and written as they come, joined into
# inserts of WRITE_GROUP_RECORDS, all in the one transaction of its batch
# (store.write_batch_parts): its memory is then a few parts', whatever its size. Measured here
# (tests/benchmarks/test_big_file_memory.py), one 3.5 GB file of a million events: 10.5-10.6 s
# and 1.68-1.74 GB peak RSS, against 8.3-8.4 s and 4.17-4.18 GB held whole. Smaller files are
# held whole and joined with their neighbours into large inserts; 512 MiB of the OTLP here holds
# more than a DuckDB row group (122,880) of decisions.
STREAM_MIN_BYTES = 512 * 2**20
STREAM_PART_BYTES = 128 * 2**20
# Any other file is normalised whole (the general path's formats, OTLP pretty-printed over many
# lines), so ingesting it takes memory that grows with its size: one this big gets a warning
# that says so, before the work starts.
LARGE_FILE_BYTES = 2**30
# Consecutive batches are written together (one transaction, one INSERT a table) until they hold
# this many records, so that inserts are large enough for DuckDB to skip its write-ahead log (see
# store.write_batches). Measured here on four 50,000-event OTLP batches (100,000 records each):
# 4 transactions 2.1 s, groups of 2+2 2.0 s, 3+1 1.9 s, one group 1.4 s (CPU 2.6 s -> 1.7 s).
# A crash or a failed write redoes at most one group.
WRITE_GROUP_RECORDS = 400_000


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
    part: tuple[int, int, int] | None = None,
) -> NormalisedBatch | ColumnarBatch:
    """One raw file's rows. OTLP JSON takes the fast path unless ``fast`` is False; it gives the
    same rows and counts as the general path (readers + ``normalise_records``). ``part``: only
    these lines of an OTLP JSON file (see :func:`~routeiq_assets.warehouse.otlp_fast.split_lines`).
    """
    part = resolved_part(part)
    if fast and fmt == "otlp_json":
        return normalise_otlp_file(Path(raw_path), batch_id, source, prompt_mode, part)
    if part is not None:
        raise ValueError(f"only OTLP JSON files are normalised in parts, not {fmt}")
    return normalise_records(read_records(Path(raw_path), fmt), batch_id, source, prompt_mode)


def ingest_batch(
    con: duckdb.DuckDBPyConnection,
    batch_id: str,
    raw_path: Path,
    fmt: str,
    source: str,
    prompt_mode: PromptTextMode = "scrub",
    log: Callable[[str], None] = lambda _msg: None,
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
    log: Callable[[str], None] = lambda _msg: None,
) -> BatchCounts:
    """Ingest a batch already in ``raw_files`` (the partitioned asset's path)."""
    [(_, counts)] = ingest_registered_batches(con, [batch_id], prompt_mode, log)
    return counts


def ingest_registered_batches(
    con: duckdb.DuckDBPyConnection,
    batch_ids: list[str],
    prompt_mode: PromptTextMode = "scrub",
    log: Callable[[str], None] = lambda _msg: None,
    warn: Callable[[str], None] | None = None,
) -> list[tuple[str, BatchCounts]]:
    """Ingest batches already in ``raw_files``, in this order, through the same pipeline as
    :func:`ingest_pending` (a large OTLP JSON file is normalised in parts by threads or workers;
    several batches are normalised ahead while one is written)."""
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
    return ingest_batches(con, [found[b] for b in batch_ids], log, prompt_mode, warn=warn)


def _size(path: str | Path) -> int:
    try:
        return Path(path).stat().st_size
    except OSError:
        return 0


def _worker_count(
    pending: list[tuple[str, str, str, str]], workers: int | None, min_bytes: int
) -> int:
    """Processes to normalise with: one unless the pending files are worth their start-up."""
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    if sum(_size(raw_path) for _b, raw_path, _f, _n in pending) < min_bytes:
        return 1
    return max(1, workers)


def ingest_pending(
    con: duckdb.DuckDBPyConnection,
    log: Callable[[str], None] = lambda _msg: None,
    prompt_mode: PromptTextMode = "scrub",
    workers: int | None = None,
    parallel_min_bytes: int = PARALLEL_MIN_BYTES,
    split_min_bytes: int = SPLIT_MIN_BYTES,
) -> list[tuple[str, BatchCounts]]:
    """Normalise every landed batch not yet in the ingest log.

    Batches are written one at a time, in landing order (so which of two copies of an event is
    kept never depends on timing). When the pending files hold at least ``parallel_min_bytes``,
    threads (``workers``, default up to 2; OTLP JSON with the compiled normaliser,
    :func:`normalise_in_threads`) or worker processes (:mod:`routeiq_assets.warehouse.workers`)
    normalise the next batches while this process writes, each OTLP JSON file of at least
    ``split_min_bytes`` and more than its share of the pending bytes in as many parts as there
    are workers (joined again in file order). An OTLP JSON file of at least ``STREAM_MIN_BYTES``
    is normalised in parts of about ``STREAM_PART_BYTES`` and written part by part in one
    transaction (:func:`~routeiq_assets.warehouse.store.write_batch_parts`).
    """
    return ingest_batches(
        con, pending_batches(con), log, prompt_mode, workers, parallel_min_bytes, split_min_bytes
    )


def ingest_batches(
    con: duckdb.DuckDBPyConnection,
    pending: list[tuple[str, str, str, str]],
    log: Callable[[str], None] = lambda _msg: None,
    prompt_mode: PromptTextMode = "scrub",
    workers: int | None = None,
    parallel_min_bytes: int = PARALLEL_MIN_BYTES,
    split_min_bytes: int = SPLIT_MIN_BYTES,
    group_records: int = WRITE_GROUP_RECORDS,
    stream_min_bytes: int = STREAM_MIN_BYTES,
    stream_part_bytes: int = STREAM_PART_BYTES,
    warn: Callable[[str], None] | None = None,
) -> list[tuple[str, BatchCounts]]:
    """Normalise and write these registered batches, ``(batch_id, raw_path, format, name)``,
    in order, as :func:`ingest_pending` describes; several of them under one
    :func:`~routeiq_assets.warehouse.store.bulk_load`, consecutive batches of fewer than
    ``group_records`` records together in one transaction
    (:func:`~routeiq_assets.warehouse.store.write_batches`), an OTLP JSON file of at least
    ``stream_min_bytes`` in parts of about ``stream_part_bytes``, each written as it comes. When
    a batch cannot be normalised, the batches before it are written before the error is
    raised. ``warn`` (default: ``log``) gets what the caller should show as a warning."""
    n_workers = _worker_count(pending, workers, parallel_min_bytes)
    plan = _plan(pending, n_workers, split_min_bytes, stream_min_bytes, stream_part_bytes)

    def warn_if_large(i: int) -> None:
        """A file read whole: it says so when it is large (memory grows with its size)."""
        _, raw_path, fmt, name = pending[i]
        if (size := _size(raw_path)) >= LARGE_FILE_BYTES:
            (warn or log)(
                f"large file: {name} is {size / 1e9:.1f} GB of {fmt}, normalised and written "
                "whole (only OTLP JSON with one export request a line is read in parts, when "
                "their column types agree), so its ingest takes memory that grows with its "
                "size. Rotate the exporter's files by size (the collector's file exporter: "
                "rotation max_megabytes)"
            )

    for i, (parts, streamed) in enumerate(plan):
        if not (streamed and len(parts) > 1):
            warn_if_large(i)
    many = len(pending) > 1 or any(streamed for _, streamed in plan)
    with bulk_load(con) if many else contextlib.nullcontext():
        done: list[tuple[str, BatchCounts]] = []
        group: list[tuple[int, NormalisedBatch | ColumnarBatch]] = []

        def written(i: int, counts: BatchCounts) -> None:
            batch_id, _, _, name = pending[i]
            log(
                f"[{i + 1}/{len(pending)}] {name}: {counts.records_in} records -> "
                f"{counts.decisions} decisions, {counts.llm_calls} llm calls, "
                f"{counts.duplicates} duplicates, {counts.quarantined} quarantined"
            )
            done.append((batch_id, counts))

        def write() -> None:
            items = list(group)
            group.clear()
            for i, batch in items:
                batch_id, _, _, name = pending[i]
                log(f"writing batch {batch_id} ({name}): {batch.records_in} records")
            counts = write_batches(con, [(pending[i][0], batch) for i, batch in items])
            for (i, _), c in zip(items, counts, strict=True):
                written(i, c)

        def add(i: int, batch: NormalisedBatch | ColumnarBatch) -> None:
            group.append((i, batch))
            if sum(b.records_in for _, b in group) >= group_records:
                write()

        def stream(i: int, parts: Iterator[ColumnarBatch], n_parts: int) -> None:
            if group:
                write()
            batch_id, raw_path, fmt, name = pending[i]
            log(f"writing batch {batch_id} ({name}) in {n_parts} parts, each as it is normalised")
            try:
                written(
                    i,
                    write_batch_parts(
                        con, batch_id, _logged(parts, n_parts, name, log), group_records
                    ),
                )
                return
            except CannotStream as exc:
                why = str(exc)  # (not the exception: its traceback holds the parts read so far)
            for _ in parts:  # the rest of this file's parts, normalised already or under way
                pass
            log(f"{name} is normalised whole instead: {why}")
            warn_if_large(i)
            whole = normalise_file(Path(raw_path), fmt, batch_id, name, prompt_mode)
            written(i, write_batch(con, batch_id, whole))

        try:
            _normalise_in_workers(pending, plan, prompt_mode, n_workers, add, stream)
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


def _logged(
    parts: Iterator[ColumnarBatch], n_parts: int, name: str, log: Callable[[str], None]
) -> Iterator[ColumnarBatch]:
    """The parts, each logged as it is handed to the writer (a large file's progress); none
    held here once handed on."""
    k = 0
    for part in parts:
        k += 1  # noqa: SIM113 (enumerate keeps its last tuple, and with it the last part)
        log(f"{name}: part {k}/{n_parts}, {part.records_in} records")
        yield part
        del part


# The writer (DuckDB's inserts, on about one core) is the ingest's critical path: the normalisers
# run ahead of it at a lower priority (a niceness this much above the caller's, Linux only), so
# they take only the CPU it leaves, and far enough ahead that a group's worth of batches is ready
# when it finishes a write. Measured here on a million pre-landed OTLP events (20 files, 2 cores,
# four interleaved runs each): 10.8-11.5 s as equals two jobs a thread ahead, 10.2-10.7 s niced,
# 9.8-10.2 s niced three ahead (four ahead: the same, for more memory). Peak RSS 1.50-1.64 GB
# (three ahead without the niceness: 1.76-1.81 GB). The price: beside another process that keeps
# a core busy, the same ingest took 17.7-18.4 s instead of 14.8-15.0 s. ROUTEIQ_NORMALISE_NICENESS
# sets another (0 to 19; 0: the threads run as equals).
DEFAULT_NORMALISER_NICENESS = 10
AHEAD_PER_THREAD = 3


def normaliser_niceness() -> int:
    """How much lower the normaliser threads run than their caller (ROUTEIQ_NORMALISE_NICENESS)."""
    text = os.environ.get("ROUTEIQ_NORMALISE_NICENESS", "").strip()
    if not text:
        return DEFAULT_NORMALISER_NICENESS
    try:
        niceness = int(text)
    except ValueError:
        niceness = -1
    if not 0 <= niceness <= 19:
        raise ValueError(
            f"ROUTEIQ_NORMALISE_NICENESS={text!r} is not a niceness from 0 to 19 (how much lower "
            "the normaliser threads run than the writer; 0: as equals)"
        )
    return niceness


def _yield_to_writer(niceness: int) -> None:
    """Lower this thread's scheduling priority by ``niceness`` (a thread's niceness is its own
    on Linux; elsewhere, or where it is refused, the thread runs as it is)."""
    if not niceness or not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        now = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, now + niceness))
    except OSError as exc:
        log.debug("normaliser thread keeps its priority: %s", exc)


def normalise_in_threads(
    jobs: list[tuple[Any, ...]],
    threads: int,
    fallback: Callable[[list[tuple[Any, ...]], int], Iterator[Any]] | None = None,
) -> Iterator[NormalisedBatch | ColumnarBatch]:
    """The batches of ``jobs`` (``normalise_file`` arguments), in order, normalised on
    ``threads`` threads, at most ``AHEAD_PER_THREAD`` jobs a thread ahead of the one being
    consumed (so finished batches waiting their turn stay few). The threads run at a lower
    priority than the caller, which writes (:func:`normaliser_niceness`).

    Threads run in parallel only while the compiled normaliser reads (it releases the GIL). When
    a batch comes back that it gave up on (``MAX_STOPS`` lines went the Python way) and
    ``fallback`` is given, the jobs not started yet go to ``fallback(jobs, threads)`` instead:
    worker processes, where the Python path runs on every core."""
    with ThreadPoolExecutor(
        max(1, threads),
        thread_name_prefix="routeiq-normalise",
        initializer=_yield_to_writer,
        initargs=(normaliser_niceness(),),
    ) as pool:
        window = AHEAD_PER_THREAD * max(1, threads)
        futures: dict[int, Future[NormalisedBatch | ColumnarBatch]] = {}
        switched = False
        try:
            for i in range(len(jobs)):
                for k in range(i, min(i + window, len(jobs))):
                    if not switched and k not in futures:
                        path, fmt, batch_id, source, prompt_mode, part = jobs[k]
                        futures[k] = pool.submit(
                            normalise_file, path, fmt, batch_id, source, prompt_mode, True, part
                        )
                if i not in futures:  # switched: this job and the rest never started here
                    assert fallback is not None
                    yield from fallback(jobs[i:], threads)
                    return
                try:
                    batch = futures.pop(i).result()
                except Exception as exc:
                    exc.add_note(f"while normalising {jobs[i][0]}")
                    raise
                if fallback is not None and not switched and _gave_up(batch):
                    switched = True
                    for k in sorted(futures):  # queued, not running: a suffix of the jobs
                        if futures[k].cancel():
                            del futures[k]
                yield batch
                del batch  # (not held while the next one is awaited)
        finally:
            for future in futures.values():
                future.cancel()


def _gave_up(batch: NormalisedBatch | ColumnarBatch) -> bool:
    return (
        isinstance(batch, ColumnarBatch)
        and batch.stats.get("python_lines", 0) >= otlp_native.MAX_STOPS
    )


def _plan(
    pending: list[tuple[str, str, str, str]],
    n_workers: int,
    split_min_bytes: int,
    stream_min_bytes: int,
    stream_part_bytes: int,
) -> list[tuple[list[tuple[int, int, int] | None], bool]]:
    """Each pending batch's parts (``split_lines`` ranges; ``[None]``: the file whole) and
    whether they are written one by one as they come (else joined again)."""
    # A file is split when it is big (split_min_bytes) and more than its share of the work: with
    # many files of about equal size, whole files keep every worker busy, and parts would only
    # cost this process line counting (split_lines) and joining (merge_parts) on the write path.
    share = sum(_size(raw_path) for _, raw_path, _, _ in pending) / n_workers
    plan = []
    for _batch_id, raw_path, fmt, _name in pending:
        size = _size(raw_path)
        if fmt == "otlp_json" and size >= stream_min_bytes:
            n_parts = max(n_workers, math.ceil(size / max(1, stream_part_bytes)))
            ranges = split_bytes(Path(raw_path), n_parts)
            # each part's first line counted by its normaliser, not all before the first starts
            counter = LineCounter(Path(raw_path), [start for start, _ in ranges])
            plan.append(([(start, end, counter) for start, end in ranges], True))
        elif fmt == "otlp_json" and n_workers > 1 and size >= split_min_bytes and size > share:
            plan.append((split_lines(Path(raw_path), n_workers), False))
        else:
            plan.append(([None], False))
    return plan


def _normalise_in_workers(
    pending: list[tuple[str, str, str, str]],
    plan: list[tuple[list[tuple[int, int, int] | None], bool]],
    prompt_mode: PromptTextMode,
    n_workers: int,
    add: Callable[[int, NormalisedBatch | ColumnarBatch], None],
    stream: Callable[[int, Iterator[ColumnarBatch], int], None],
) -> None:
    """Each pending batch, in order, normalised (in parallel on ``n_workers`` threads or worker
    processes when more than one) as ``plan`` says: a batch in parts joined again here and
    handed to ``add`` with its index, or its parts handed to ``stream`` as they come."""
    jobs = [
        (Path(raw_path), fmt, batch_id, name, prompt_mode, part)
        for (batch_id, raw_path, fmt, name), (parts, _) in zip(pending, plan, strict=True)
        for part in parts
    ]
    if n_workers == 1:
        batches_of: Iterator[NormalisedBatch | ColumnarBatch] = (
            normalise_file(path, fmt, batch_id, name, mode, True, part)
            for path, fmt, batch_id, name, mode, part in jobs
        )
    # The compiled normaliser releases the GIL: threads of this process then do the work of the
    # worker processes without their start-up, and without passing every table through an
    # Arrow IPC file (3 GB for a million events).
    elif otlp_native.available() and all(job[1] == "otlp_json" for job in jobs):
        batches_of = normalise_in_threads(jobs, n_workers, normalise_in_workers)
    else:
        batches_of = normalise_in_workers(jobs, n_workers)
    with contextlib.closing(batches_of) as batches:
        for i, (parts, streamed) in enumerate(plan):
            mine = itertools.islice(batches, len(parts))
            if streamed:
                stream(i, mine, len(parts))
                continue
            got = list(mine)
            batch_id, raw_path, fmt, name = pending[i]
            try:
                whole: NormalisedBatch | ColumnarBatch = merge_parts(got)
            except (pa.ArrowInvalid, pa.ArrowTypeError):
                # parts whose inferred column types cannot be joined: read the file in one go
                whole = normalise_file(Path(raw_path), fmt, batch_id, name, prompt_mode)
            add(i, whole)
