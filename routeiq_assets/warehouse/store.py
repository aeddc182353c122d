"""The DuckDB warehouse: schema, idempotent batch writes, and the counts that prove nothing
is lost."""

from __future__ import annotations

import functools
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from routeiq_assets.warehouse.columnar import (
    ColumnarBatch,
    as_columnar,
    call_keys,
    concat_tables,
    drop_repeats,
)
from routeiq_assets.warehouse.normalize import NormalisedBatch

log = logging.getLogger(__name__)

TELEMETRY_TABLES = (
    "router_decisions",
    "decision_candidates",
    "llm_calls",
    "feedback",
    "quarantine",
)


def schema_sql() -> str:
    return resources.files("routeiq_assets.warehouse").joinpath("schema.sql").read_text()


@contextmanager
def connect(path: Path, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse (creating file and schema on first write) and always close it."""
    path = Path(path)
    if read_only and not path.exists():
        raise FileNotFoundError(
            f"warehouse {path} does not exist yet: materialise the telemetry assets first"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path), read_only=read_only)
    try:
        if not read_only:
            con.execute(schema_sql())
        yield con
    finally:
        con.close()


@contextmanager
def transaction(
    con: duckdb.DuckDBPyConnection, *registered: str
) -> Iterator[duckdb.DuckDBPyConnection]:
    """One transaction: COMMIT when the block ends, ROLLBACK (and re-raise) on any error, so a
    crash never leaves half a rebuild; the named registered views are unregistered either way."""
    try:
        con.execute("BEGIN TRANSACTION").fetchall()
        try:
            yield con
            con.execute("COMMIT").fetchall()
        except BaseException as error:
            # a ROLLBACK that fails too (the connection or database gone, no transaction left
            # after a failed COMMIT) must not hide why the block failed
            try:
                con.execute("ROLLBACK").fetchall()
            except duckdb.Error as also:
                error.add_note(f"and the ROLLBACK after it failed: {also}")
            raise
    finally:
        for name in registered:
            with suppress(duckdb.Error):  # gone with a closed connection
                con.unregister(name)


# While many batches are written in a row, DuckDB checkpoints only when the write-ahead log
# reaches this size instead of its default 16 MiB. Each 50,000-event OTLP batch logs ~53 MB, so
# the default folds the log into the database file after every batch, and each checkpoint
# re-reads and recompresses the tables' last row groups. Measured here (12 such batches, one
# process): 16 MiB 0.66 s a batch, 256 MB 0.50 s, 1 GB 0.44 s; but rows not yet checkpointed stay
# in memory, and 1 GB took 300 MB more peak RSS (256 MB: +34 MB). The log's replay after a crash
# grows with it too; transactions are unchanged.
BULK_CHECKPOINT_THRESHOLD = "256MB"


# DuckDB's memory while many batches are written in a row. DuckDB keeps every block it writes
# in its buffer pool until its memory limit (80% of the machine's memory by default) makes it
# evict them, so without a cap a backlog ingested in one run holds the warehouse it wrote in
# memory: about 300 MB more peak RSS a million events (measured here, one ingest of 2 million
# OTLP events: 2.28-2.31 GB peak without it, 1.93-1.98 GB with 768 MB, in the same time; a
# million: 1.78-1.85 against 1.69-1.72 GB). Blocks written are on disk, so evicting them costs
# nothing; a lower cap did (512 MB: about 6% slower, the anti-joins re-read evicted ids).
# ROUTEIQ_INGEST_DUCKDB_MEMORY sets another (a DuckDB size, e.g. "2GB").
BULK_MEMORY_LIMIT = os.environ.get("ROUTEIQ_INGEST_DUCKDB_MEMORY", "768MB")


@contextmanager
def bulk_load(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """Defer checkpoints and cap DuckDB's memory while the block writes many batches;
    checkpoint once at its end, and restore both settings."""
    bad_cap = (
        f"ROUTEIQ_INGEST_DUCKDB_MEMORY={BULK_MEMORY_LIMIT!r} is not a DuckDB memory size "
        "(such as 768MB or 2GB)"
    )
    cap = _size_bytes(BULK_MEMORY_LIMIT)
    if cap is None:
        raise ValueError(bad_cap)
    before = con.execute(
        "SELECT current_setting('checkpoint_threshold'), current_setting('memory_limit')"
    ).fetchall()[0]
    # only DuckDB's default limit is capped (RESET after), and only lowered: a limit the
    # connection was given is kept (DuckDB shows limits rounded, so one could not be set back
    # exactly), and on a machine with less memory than the cap the default is smaller already
    limit = _size_bytes(before[1])
    capped = before[1] == _default_memory_limit() and limit is not None and cap < limit
    con.execute(f"SET checkpoint_threshold = '{BULK_CHECKPOINT_THRESHOLD}'").fetchall()
    if capped:
        try:
            con.execute(f"SET memory_limit = '{BULK_MEMORY_LIMIT}'").fetchall()
        except duckdb.OutOfMemoryException as exc:  # it holds more already: go on without
            log.warning("bulk load without ROUTEIQ_INGEST_DUCKDB_MEMORY's cap: %s", exc)
            capped = False
        except duckdb.Error as exc:
            con.execute(f"SET checkpoint_threshold = '{before[0]}'").fetchall()
            raise ValueError(f"{bad_cap}: {exc}") from exc
    try:
        yield con
    except duckdb.OutOfMemoryException as exc:
        if not capped:
            raise
        exc.add_note(
            f"while writing under ROUTEIQ_INGEST_DUCKDB_MEMORY={BULK_MEMORY_LIMIT}: set a "
            "larger size to ingest this (the batches committed before stay committed)"
        )
        raise
    finally:
        # neither may hide the block's own error, nor fail writes that are committed already:
        # the settings end with the connection, and DuckDB checkpoints when it closes anyway
        try:
            con.execute(f"SET checkpoint_threshold = '{before[0]}'").fetchall()
            if capped:
                con.execute("RESET memory_limit").fetchall()
            con.execute("CHECKPOINT").fetchall()
        except duckdb.Error as exc:
            log.warning("after a bulk load: %s (the written batches are committed)", exc)


_SIZE_UNITS = {"": 1, "b": 1, "bytes": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}
_SIZE_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def _size_bytes(text: str) -> float | None:
    """A DuckDB memory size ("768MB", "18.8 GiB", as it is set or shown) in bytes; None when it
    is not one."""
    found = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    if found is None or found.group(2).lower() not in _SIZE_UNITS:
        return None
    return float(found.group(1)) * _SIZE_UNITS[found.group(2).lower()]


@functools.cache
def _default_memory_limit() -> str:
    """DuckDB's default memory limit on this machine, as it shows it (asked once a process)."""
    with duckdb.connect() as scratch:
        return scratch.execute("SELECT current_setting('memory_limit')").fetchall()[0][0]


@dataclass(frozen=True)
class BatchCounts:
    records_in: int
    decisions: int
    llm_calls: int
    duplicates: int
    quarantined: int
    feedback: int = 0

    @property
    def balanced(self) -> bool:
        accounted = self.decisions + self.llm_calls + self.feedback + self.duplicates
        return self.records_in == accounted + self.quarantined


def _insert(
    con: duckdb.DuckDBPyConnection,
    table: str,
    incoming: pa.Table | None,
    where: str = "",
    params: list | None = None,
    scan_once: bool = False,
) -> int:
    """Insert ``incoming``'s rows (``where``: a filter on them); ``scan_once``: registered as
    :func:`one_pass`, for a query with no join on it (DuckDB cannot tell a stream's size)."""
    if incoming is None or incoming.num_rows == 0:
        return 0
    con.register("incoming", one_pass(incoming) if scan_once else incoming)
    try:
        inserted = con.execute(
            f"INSERT INTO {table} BY NAME SELECT * FROM incoming {where}", params
        ).fetchall()[0][0]
    except BaseException:
        # the failed insert aborted the transaction, which then refuses even this (and would
        # hide the insert's own error); the view is replaced by the next register anyway
        with suppress(duckdb.Error):
            con.unregister("incoming")
        raise
    con.unregister("incoming")
    return int(inserted)


def one_pass(table: pa.Table) -> pa.RecordBatchReader:
    """The table's record batches, to register for one scan: DuckDB keeps an Arrow object
    registered in a transaction alive until the transaction ends (after unregister too), and a
    table with it all its memory; this stream lets go of each batch once DuckDB has read it.
    Measured here, 20 inserts of 500,000 rows in one transaction: 913 MB peak RSS with the
    tables registered (481 MB of Arrow memory still held), 401 MB with streams; as fast."""
    batches = table.to_batches()
    batches.reverse()

    def each() -> Iterator[pa.RecordBatch]:
        while batches:
            yield batches.pop()

    return pa.RecordBatchReader.from_batches(table.schema, each())


def write_batch(
    con: duckdb.DuckDBPyConnection, batch_id: str, batch: NormalisedBatch | ColumnarBatch
) -> BatchCounts:
    """Replace one batch's rows in one transaction (delete, then insert).

    Events already stored by another batch are counted as duplicates and not inserted, so
    re-ingesting the same telemetry under a new file changes nothing. ``batch`` holds row dicts
    (:class:`NormalisedBatch`) or Arrow tables (:class:`ColumnarBatch`, the fast path's).
    """
    return write_batches(con, [(batch_id, batch)])[0]


def write_batches(
    con: duckdb.DuckDBPyConnection,
    items: Sequence[tuple[str, NormalisedBatch | ColumnarBatch]],
) -> list[BatchCounts]:
    """Replace several batches' rows in one transaction, with one INSERT a table: the same rows
    and counts as :func:`write_batch` on each in turn (an event of an earlier batch of the group
    is a later batch's duplicate), all or none of them committed.

    Why: DuckDB logs an insert of fewer rows than a row group (122,880) to its write-ahead log and
    copies it into the database file at the next checkpoint, while a larger insert is written
    to the file once. Four 50,000-event batches take 1.4 s as one group and 2.1 s as four
    transactions (tests/benchmarks/test_ingest_throughput.py measures both).

    The batches are written in turn instead (each in its own transaction, as before grouping)
    when grouping could store something else: a batch holds feedback rows (deduplicated against
    stored rows only); a batch is already stored (written in turn, its old rows still count
    while the batches before it are rewritten); or the batches' tables cannot be joined without
    converting a column whose type was inferred from the telemetry (an int in one file and a
    float in the next would be stored as '7.0' instead of '7').
    """
    ids = [batch_id for batch_id, _ in items]
    if len(set(ids)) != len(ids):
        raise ValueError(f"a batch appears twice in one write: {ids}")
    batches = [b if isinstance(b, ColumnarBatch) else as_columnar(b) for _, b in items]
    for batch_id, batch in zip(ids, batches, strict=True):
        _check_batch_ids(batch_id, batch)
    joined = _joined(batches) if len(batches) > 1 and not _in_turn(con, ids, batches) else None
    if joined is None:
        return [
            _write_group(con, [batch_id], [(batch.tables, 0)], batch.tables, [batch])[0]
            for batch_id, batch in zip(ids, batches, strict=True)
        ]
    kept, incoming = joined
    return _write_group(con, ids, kept, incoming, batches)


def _in_turn(con: duckdb.DuckDBPyConnection, ids: list[str], batches: list[ColumnarBatch]) -> bool:
    """Whether these batches must be written in turn (see :func:`write_batches`)."""
    if any(b.tables["feedback"] is not None for b in batches):
        return True
    return already_ingested(con, ids)


def _joined(
    batches: list[ColumnarBatch],
) -> tuple[list[tuple[dict[str, pa.Table | None], int]], dict[str, pa.Table | None]] | None:
    """Each batch's tables without what an earlier batch holds, and those tables joined; None
    when a column's types differ between batches."""
    kept = drop_repeats(batches)
    try:
        joined = {
            name: concat_tables([t[name] for t, _ in kept], strict=True)
            for name in TELEMETRY_TABLES
        }
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    return kept, joined


def _check_batch_ids(batch_id: str, batch: ColumnarBatch) -> None:
    """Every row of a batch carries its id (the counts are read back by it)."""
    for name, table in batch.tables.items():
        if table is None or not table.num_rows:
            continue
        found = pc.unique(table["batch_id"]).to_pylist()
        if found != [batch_id]:
            raise ValueError(
                f"batch {batch_id}: {name} rows carry batch_id {sorted(map(str, found))[:3]}"
            )


def _write_group(
    con: duckdb.DuckDBPyConnection,
    ids: list[str],
    kept: list[tuple[dict[str, pa.Table | None], int]],
    incoming: dict[str, pa.Table | None],
    batches: list[ColumnarBatch],
) -> list[BatchCounts]:
    """Delete these batches' rows and insert ``incoming`` (their tables joined) in one
    transaction; ``kept``: each batch's own tables and the rows it lost to an earlier one."""
    with transaction(con):
        _delete_batches(con, ids)
        _insert(
            con,
            "router_decisions",
            incoming["router_decisions"],
            # an anti-join (ids are NOT NULL, so this is NOT IN, without its slow plan)
            "WHERE NOT EXISTS (SELECT 1 FROM router_decisions r"
            " WHERE r.event_id = incoming.event_id)",
        )
        _insert(
            con,
            "decision_candidates",
            incoming["decision_candidates"],
            "WHERE event_id IN (SELECT event_id FROM router_decisions"
            " WHERE list_contains(?, batch_id))",
            [ids],
        )
        _insert(
            con,
            "llm_calls",
            incoming["llm_calls"],
            "WHERE NOT EXISTS (SELECT 1 FROM llm_calls c"
            " WHERE c.trace_id = incoming.trace_id AND c.span_id = incoming.span_id)",
        )
        _insert(
            con,
            "feedback",
            incoming["feedback"],
            "WHERE (event_id, trace_id, score, source, created_at) NOT IN"
            " (SELECT (event_id, trace_id, score, source, created_at) FROM feedback)",
        )
        _insert(con, "quarantine", incoming["quarantine"])
        counted = ("router_decisions", "llm_calls", "feedback", "quarantine")
        stored = batch_row_counts(con, ids, counted)  # all new: the batches' old rows are gone
        done = []
        now = datetime.now(UTC).replace(tzinfo=None)
        for batch_id, batch, (tables, dropped) in zip(ids, batches, kept, strict=True):
            decisions, calls, feedback, quarantined = (stored[batch_id][t] for t in counted)
            duplicates = (
                batch.duplicates_in_batch
                + dropped
                + (_len(tables["router_decisions"]) - decisions)
                + (_len(tables["llm_calls"]) - calls)
                + (_len(tables["feedback"]) - feedback)
            )
            counts = BatchCounts(
                batch.records_in, decisions, calls, duplicates, quarantined, feedback
            )
            _log_batch(con, batch_id, counts, now)
            done.append(counts)
    return done


def _delete_batches(con: duckdb.DuckDBPyConnection, ids: list[str]) -> None:
    for table in (*TELEMETRY_TABLES, "ingest_log"):
        con.execute(f"DELETE FROM {table} WHERE list_contains(?, batch_id)", [ids]).fetchall()


def _log_batch(
    con: duckdb.DuckDBPyConnection, batch_id: str, counts: BatchCounts, now: datetime
) -> None:
    con.execute(
        "INSERT INTO ingest_log VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            batch_id,
            counts.records_in,
            counts.decisions,
            counts.llm_calls,
            counts.duplicates,
            counts.quarantined,
            counts.feedback,
            now,
        ],
    ).fetchall()


class CannotStream(Exception):
    """A batch's parts cannot be written one after another as :func:`write_batch_parts` does
    (it rolled back): the batch is to be normalised and written whole."""


def write_batch_parts(
    con: duckdb.DuckDBPyConnection,
    batch_id: str,
    parts: Iterable[NormalisedBatch | ColumnarBatch],
    chunk_records: int = 400_000,
) -> BatchCounts:
    """Replace one batch's rows in one transaction, its parts (consecutive parts of one file, in
    file order) inserted as they come, joined into inserts of at least ``chunk_records``
    records, so that only a chunk's tables are in memory, not the file's: the same rows and
    counts as joining all the parts (``otlp_fast.merge_parts``) and :func:`write_batch`, or as
    reading the file in one go.

    A decision or call of an earlier part is a duplicate (within a chunk, ``drop_repeats``;
    across chunks and batches, what the database holds, the transaction's rows included); a
    chunk's candidates go in with its decisions that do. DuckDB writes a large transaction's
    rows to the database file as its row groups fill, and lets go of each chunk once read
    (:func:`one_pass`).

    Raises :class:`CannotStream` (after the rollback) where writing parts one by one could store
    something else than the whole file: a column typed differently by two parts (one pass over
    the file would infer one type from all the values), or feedback rows (deduplicated against
    the rows stored before the batch only)."""
    records = in_batch = 0
    offered = {"router_decisions": 0, "llm_calls": 0}
    with transaction(con):
        _delete_batches(con, [batch_id])
        for chunk in _chunks_of(parts, batch_id, chunk_records):
            records += chunk.records_in
            in_batch += chunk.duplicates_in_batch
            offered["router_decisions"] += _len(chunk.tables["router_decisions"])
            offered["llm_calls"] += _len(chunk.tables["llm_calls"])
            _write_chunk(con, chunk.tables)
            del chunk  # (not held while the next one is gathered)
        counted = ("router_decisions", "llm_calls", "quarantine")
        stored = batch_row_counts(con, [batch_id], counted)[batch_id]
        duplicates = in_batch + sum(offered[t] - stored[t] for t in offered)
        counts = BatchCounts(
            records,
            stored["router_decisions"],
            stored["llm_calls"],
            duplicates,
            stored["quarantine"],
        )
        _log_batch(con, batch_id, counts, datetime.now(UTC).replace(tzinfo=None))
    return counts


def _write_chunk(con: duckdb.DuckDBPyConnection, tables: dict[str, pa.Table | None]) -> None:
    """Insert a chunk of a batch's parts, without the decisions (with their candidates) and
    calls already stored (by the chunks before it, or by other batches)."""
    tables = dict(tables)
    if (decisions := tables["router_decisions"]) is not None:
        stored = _stored_keys(con, "router_decisions", decisions, ("event_id",))
        if stored is not None:
            for name in ("router_decisions", "decision_candidates"):
                if (rows := tables[name]) is not None:
                    tables[name] = rows.filter(pc.invert(pc.is_in(rows["event_id"], stored[0])))
    if (calls := tables["llm_calls"]) is not None:
        stored = _stored_keys(con, "llm_calls", calls, ("trace_id", "span_id"))
        if stored is not None:
            kept = pc.invert(pc.is_in(call_keys(calls), call_keys(stored)))
            tables["llm_calls"] = calls.filter(kept)
    for name in ("router_decisions", "decision_candidates", "llm_calls", "quarantine"):
        _insert(con, name, tables[name], scan_once=True)


def _stored_keys(
    con: duckdb.DuckDBPyConnection, table: str, rows: pa.Table, keys: tuple[str, ...]
) -> pa.Table | None:
    """The keys of these rows that ``table`` holds already (None: none)."""
    con.register("keys", one_pass(rows.select(list(keys))))
    try:
        match = " AND ".join(f"s.{k} = keys.{k}" for k in keys)
        found = con.execute(
            f"SELECT * FROM keys WHERE EXISTS (SELECT 1 FROM {table} s WHERE {match})"
        ).fetchall()
    finally:
        with suppress(duckdb.Error):
            con.unregister("keys")
    if not found:
        return None
    return pa.table(
        [pa.array(column, pa.string()) for column in zip(*found, strict=True)], names=list(keys)
    )


def _chunks_of(
    parts: Iterable[NormalisedBatch | ColumnarBatch], batch_id: str, chunk_records: int
) -> Iterator[ColumnarBatch]:
    """Consecutive parts joined until they hold ``chunk_records`` records, each checked first.
    Measured here on one 3.7 GB file in 28 parts, with this path's first version (anti-joins in
    SQL): inserts of 400,000 records 9.7-9.9 s and 1.75 GB peak, of 200,000 10.6 s and 1.39 GB,
    a part each 11.0 s and 1.30 GB."""
    types: dict[tuple[str, str], pa.DataType] = {}
    held: list[ColumnarBatch] = []
    for given in parts:
        part = given if isinstance(given, ColumnarBatch) else as_columnar(given)
        del given
        _check_batch_ids(batch_id, part)
        _check_streamable(part, types)
        held.append(part)
        del part
        if sum(p.records_in for p in held) >= chunk_records:
            yield _join_parts(_emptied(held))  # (this frame keeps no reference to them)
    if held:
        yield _join_parts(_emptied(held))


def _emptied(held: list[ColumnarBatch]) -> list[ColumnarBatch]:
    """The list's items, the list left empty."""
    taken = list(held)
    held.clear()
    return taken


def _join_parts(parts: list[ColumnarBatch]) -> ColumnarBatch:
    """Parts of one file as one batch, a decision or call of an earlier part a duplicate; their
    column types agree (:func:`_check_streamable`)."""
    if len(parts) == 1:
        return parts[0]
    joined = _joined(parts)
    assert joined is not None  # (the types were checked)
    kept, tables = joined
    return ColumnarBatch(
        tables,
        sum(p.records_in for p in parts),
        sum(p.duplicates_in_batch for p in parts) + sum(dropped for _, dropped in kept),
    )


def _check_streamable(part: ColumnarBatch, types: dict[tuple[str, str], pa.DataType]) -> None:
    """Raise CannotStream when this part holds feedback, or types a column otherwise than an
    earlier part did (``types``: the types seen so far, updated); an all-null column fits any."""
    if _len(part.tables["feedback"]):
        raise CannotStream("it holds feedback rows")
    for name, table in part.tables.items():
        if table is None or not table.num_rows:
            continue
        for column in table.schema:
            if pa.types.is_null(column.type):
                continue
            seen = types.setdefault((name, column.name), column.type)
            if seen != column.type:
                raise CannotStream(f"its parts type {name}.{column.name} {seen} and {column.type}")


def _len(table: pa.Table | None) -> int:
    return 0 if table is None else table.num_rows


def batch_row_counts(
    con: duckdb.DuckDBPyConnection,
    batch_ids: list[str],
    tables: Sequence[str] = TELEMETRY_TABLES,
) -> dict[str, dict[str, int]]:
    """Rows each of ``tables`` holds for each of these batches (one query a table)."""
    counts: dict[str, dict[str, int]] = {b: dict.fromkeys(tables, 0) for b in batch_ids}
    for table in tables:
        for batch_id, n in con.execute(
            f"SELECT batch_id, count(*) FROM {table} WHERE list_contains(?, batch_id)"
            " GROUP BY batch_id",
            [list(batch_ids)],
        ).fetchall():
            counts[batch_id][table] = int(n)
    return counts


def decision_call_join_counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """How decisions and LLM calls pair up by trace id; the unpaired are kept, and counted here."""
    row = con.execute(
        """
        SELECT
          (SELECT count(*) FROM router_decisions d
            WHERE EXISTS (SELECT 1 FROM llm_calls c WHERE c.trace_id = d.trace_id)),
          (SELECT count(*) FROM router_decisions d
            WHERE NOT EXISTS (SELECT 1 FROM llm_calls c WHERE c.trace_id = d.trace_id)),
          (SELECT count(*) FROM llm_calls c
            WHERE NOT EXISTS (SELECT 1 FROM router_decisions d WHERE d.trace_id = c.trace_id))
        """
    ).fetchall()[0]
    return {
        "decisions_with_call": int(row[0]),
        "decisions_without_call": int(row[1]),
        "calls_without_decision": int(row[2]),
    }


PAIRING_FIELDS = ("decisions_with_call", "decisions_without_call", "calls_without_decision")


def _ingest_log_state(con: duckdb.DuckDBPyConnection) -> tuple[int, object]:
    """The ingest log's row count and latest ingested_at: they change with every batch written
    (a rewritten batch gets a new ingested_at)."""
    n, latest = con.execute("SELECT count(*), max(ingested_at) FROM ingest_log").fetchall()[0]
    return int(n), latest


def already_ingested(con: duckdb.DuckDBPyConnection, batch_ids: list[str]) -> bool:
    """Whether any of these batches is in the ingest log (a rerun rewrites it)."""
    return bool(
        con.execute(
            "SELECT count(*) FROM ingest_log WHERE list_contains(?, batch_id)", [list(batch_ids)]
        ).fetchall()[0][0]
    )


def current_pairing(con: duckdb.DuckDBPyConnection) -> dict[str, int] | None:
    """The stored warehouse-wide pairing counts, if they are of the ingest log's present state
    (None when missing, or when batches were written since without advancing them)."""
    rows = con.execute(
        "SELECT decisions_with_call, decisions_without_call, calls_without_decision,"
        " ingest_log_rows, ingest_log_latest FROM trace_pairing"
    ).fetchall()
    if len(rows) != 1 or tuple(rows[0][3:]) != _ingest_log_state(con):
        return None
    return dict(zip(PAIRING_FIELDS, map(int, rows[0][:3]), strict=True))


# Per trace touched by a run's new batches: its decisions and calls now (n) and the run's share
# of them (r); before the run it had n - r. What pairs up changed only for these traces.
_PAIRING_DELTA = """
WITH t AS (
    SELECT trace_id FROM router_decisions WHERE batch_id IN (SELECT unnest($ids))
    UNION SELECT trace_id FROM llm_calls WHERE batch_id IN (SELECT unnest($ids))
),
d AS (
    SELECT trace_id, count(*) AS n, count(*) FILTER (WHERE batch_id IN (SELECT unnest($ids))) AS r
    FROM router_decisions WHERE trace_id IN (SELECT trace_id FROM t) GROUP BY trace_id
),
c AS (
    SELECT trace_id, count(*) AS n, count(*) FILTER (WHERE batch_id IN (SELECT unnest($ids))) AS r
    FROM llm_calls WHERE trace_id IN (SELECT trace_id FROM t) GROUP BY trace_id
),
j AS (
    SELECT coalesce(d.n, 0) AS dn, coalesce(d.n - d.r, 0) AS d0,
           coalesce(c.n, 0) AS cn, coalesce(c.n - c.r, 0) AS c0
    FROM d FULL OUTER JOIN c USING (trace_id)
)
SELECT coalesce(sum(CASE WHEN cn > 0 THEN dn ELSE 0 END)
                - sum(CASE WHEN c0 > 0 THEN d0 ELSE 0 END), 0),
       coalesce(sum(CASE WHEN cn = 0 THEN dn ELSE 0 END)
                - sum(CASE WHEN c0 = 0 THEN d0 ELSE 0 END), 0),
       coalesce(sum(CASE WHEN dn = 0 THEN cn ELSE 0 END)
                - sum(CASE WHEN d0 = 0 THEN c0 ELSE 0 END), 0)
FROM j
"""


def _large_share(con: duckdb.DuckDBPyConnection, batch_ids: list[str]) -> bool:
    """Whether these batches hold more than a quarter of the decisions and calls: counting
    their traces again then costs about what joining the whole tables does (a backfill's one
    run over 2,000 batches of a million rows: 0.5 s against 0.2 s), so the tables are joined."""
    mine, total = con.execute(
        "SELECT (SELECT count(*) FROM router_decisions WHERE batch_id IN (SELECT unnest($ids)))"
        " + (SELECT count(*) FROM llm_calls WHERE batch_id IN (SELECT unnest($ids))),"
        " (SELECT count(*) FROM router_decisions) + (SELECT count(*) FROM llm_calls)",
        {"ids": list(batch_ids)},
    ).fetchall()[0]
    return mine * 4 > total


def advance_pairing(
    con: duckdb.DuckDBPyConnection, new_batches: list[str], before: dict[str, int] | None
) -> dict[str, int]:
    """The warehouse-wide pairing counts after a run that wrote ``new_batches``, none of them
    stored before it, and stored them. ``before``: :func:`current_pairing` as the run began;
    with it, only the traces the new batches touch are counted again (10 million decisions and
    calls, one 50,000-row batch: 0.19-0.22 s instead of 1.8-2.4 s for joining the whole
    tables); without it (None: missing, stale, or a batch rewritten), or when the batches hold
    more than a quarter of the rows, the whole tables are joined."""
    if before is None or _large_share(con, new_batches):
        counts = decision_call_join_counts(con)
    else:
        delta = con.execute(_PAIRING_DELTA, {"ids": list(new_batches)}).fetchall()[0]
        counts = {f: before[f] + int(d) for f, d in zip(PAIRING_FIELDS, delta, strict=True)}
    with transaction(con):
        con.execute("DELETE FROM trace_pairing").fetchall()
        con.execute(
            "INSERT INTO trace_pairing VALUES (?, ?, ?, ?, ?)",
            [*(counts[f] for f in PAIRING_FIELDS), *_ingest_log_state(con)],
        ).fetchall()
    return counts


def pending_batches(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str, str]]:
    """Raw files landed but not yet normalised: (batch_id, raw_path, format, original_name)."""
    return con.execute(
        "SELECT batch_id, raw_path, format, original_name FROM raw_files "
        "WHERE batch_id NOT IN (SELECT batch_id FROM ingest_log) ORDER BY landed_at, batch_id"
    ).fetchall()


def ingest_totals(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    """Totals across all batches, and the row counts actually stored, for the balance check."""
    logged = con.execute(
        "SELECT coalesce(sum(records_in), 0), coalesce(sum(decisions), 0),"
        " coalesce(sum(llm_calls), 0), coalesce(sum(duplicates), 0),"
        " coalesce(sum(quarantined), 0) FROM ingest_log"
    ).fetchall()[0]
    stored = {
        t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in TELEMETRY_TABLES
    }
    return {
        "records_in": int(logged[0]),
        "decisions": int(logged[1]),
        "llm_calls": int(logged[2]),
        "duplicates": int(logged[3]),
        "quarantined": int(logged[4]),
        **{f"stored_{t}": int(v) for t, v in stored.items()},
    }
