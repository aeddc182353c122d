"""The DuckDB warehouse: schema, idempotent batch writes, and the counts that prove nothing
is lost."""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterator, Sequence
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


REBUILD_HINT = (
    "move the file aside and re-create the warehouse from the raw store with `routeiq ingest "
    "--rebuild`, then `routeiq materialize --skip-ingest` for the tables built from it"
)


class WarehouseDamaged(OSError):
    """The warehouse file fails DuckDB's block checksums; the message says how to rebuild it."""


def _damaged(path: Path, exc: BaseException) -> WarehouseDamaged | None:
    if "Corrupt database file" in str(exc) or "checksum" in str(exc).lower():
        return WarehouseDamaged(f"warehouse {path} is damaged ({exc}): {REBUILD_HINT}")
    return None


@contextmanager
def connect(path: Path, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse (creating file and schema on first write) and always close it. A
    damaged file (a block that fails its checksum, wherever it is read) raises
    :class:`WarehouseDamaged`, which names the fix."""
    path = Path(path)
    if read_only and not path.exists():
        raise FileNotFoundError(
            f"warehouse {path} does not exist yet: materialise the telemetry assets first"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        con = duckdb.connect(str(path), read_only=read_only)
        try:
            if not read_only:
                con.execute(schema_sql())
                _migrate(con)
            yield con
        finally:
            con.close()
    except duckdb.Error as exc:
        damaged = _damaged(path, exc)
        if damaged is None:
            raise
        raise damaged from exc


def verify_warehouse(path: Path) -> dict[str, int]:
    """Read every stored value of every table (DuckDB checks each block's checksum as it reads
    it); the tables and rows read, or :class:`WarehouseDamaged` naming the fix."""
    tables = rows = 0
    with connect(path, read_only=True) as con:
        for (table,) in con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE NOT internal ORDER BY 1"
        ).fetchall():
            columns = [
                c
                for (c,) in con.execute(
                    "SELECT column_name FROM duckdb_columns() WHERE table_name = ?", [table]
                ).fetchall()
            ]
            sums = ", ".join(f'sum(hash("{c}"))' for c in columns)
            [(count, *_)] = con.execute(f'SELECT count(*), {sums} FROM "{table}"').fetchall()
            tables, rows = tables + 1, rows + count
    return {"tables": tables, "rows": rows}


def ingested_batch_ids(path: Path) -> set[str] | None:
    """The batches the warehouse holds (its ingest_log); an empty set when the file is gone,
    None when it cannot be read now (another process writing it): then nothing is known."""
    path = Path(path)
    if not path.exists():
        return set()
    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error:
        return None
    try:
        return {b for (b,) in con.execute("SELECT batch_id FROM ingest_log").fetchall()}
    except duckdb.Error:  # no ingest_log yet
        return set()
    finally:
        con.close()


def _migrate(con: duckdb.DuckDBPyConnection) -> None:
    """Bring a warehouse made by an earlier version to the schema (CREATE IF NOT EXISTS leaves
    its tables as they were): a decision's trace_id may be NULL (no trace context)."""
    [(nullable,)] = con.execute(
        "SELECT is_nullable FROM duckdb_columns()"
        " WHERE table_name = 'router_decisions' AND column_name = 'trace_id'"
    ).fetchall()
    if not nullable:
        con.execute("ALTER TABLE router_decisions ALTER COLUMN trace_id DROP NOT NULL").fetchall()


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
# reaches this size instead of its default 16 MiB, which would fold the log into the database
# file (re-reading and recompressing the tables' last row groups) after every large batch. Rows
# not yet checkpointed stay in memory, and the log's replay after a crash grows with it.
BULK_CHECKPOINT_THRESHOLD = "256MB"


@contextmanager
def bulk_load(
    con: duckdb.DuckDBPyConnection, memory_limit: str | None = None
) -> Iterator[duckdb.DuckDBPyConnection]:
    """Defer checkpoints and cap DuckDB's memory while the block writes many batches;
    checkpoint once at its end, and restore both settings.

    DuckDB keeps the blocks it writes in its buffer pool until its memory limit (80% of the
    machine's by default) makes it evict them, so without a cap a backlog ingested in one run
    holds the warehouse it wrote in memory. ``memory_limit``: a DuckDB size (default: the
    ``ingest_duckdb_memory`` setting)."""
    if memory_limit is None:
        from routeiq_assets.settings import load_settings

        memory_limit = load_settings().ingest_duckdb_memory
    cap = _size_bytes(memory_limit)
    if cap is None:
        raise ValueError(
            f"ROUTEIQ_INGEST_DUCKDB_MEMORY={memory_limit!r} is not a DuckDB memory size "
            "(such as 768MB or 2GB)"
        )
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
            con.execute(f"SET memory_limit = '{memory_limit}'").fetchall()
        except duckdb.OutOfMemoryException as exc:  # it holds more already: go on without
            log.warning("bulk load without ROUTEIQ_INGEST_DUCKDB_MEMORY's cap: %s", exc)
            capped = False
    try:
        yield con
    except duckdb.OutOfMemoryException as exc:
        if not capped:
            raise
        exc.add_note(
            f"while writing under ROUTEIQ_INGEST_DUCKDB_MEMORY={memory_limit}: set a "
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
) -> int:
    """Insert ``incoming``'s rows (``where``: a filter on them)."""
    if incoming is None or incoming.num_rows == 0:
        return 0
    con.register("incoming", incoming)
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
    to the file once (tests/benchmarks/test_ingest_throughput.py measures both).

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
        joined = {name: concat_tables([t[name] for t, _ in kept]) for name in TELEMETRY_TABLES}
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
# of them (r); before the run it had n - r. What pairs up changed only for these traces. A
# decision without a trace (trace_id NULL) pairs with nothing.
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
                - sum(CASE WHEN c0 = 0 THEN d0 ELSE 0 END), 0)
       + (SELECT count(*) FROM router_decisions
          WHERE trace_id IS NULL AND batch_id IN (SELECT unnest($ids))),
       coalesce(sum(CASE WHEN dn = 0 THEN cn ELSE 0 END)
                - sum(CASE WHEN d0 = 0 THEN c0 ELSE 0 END), 0)
FROM j
"""


def _large_share(con: duckdb.DuckDBPyConnection, batch_ids: list[str]) -> bool:
    """Whether these batches hold more than a quarter of the decisions and calls: counting
    their traces again then costs more than joining the whole tables, so the tables are
    joined."""
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
    with it, only the traces the new batches touch are counted again (a small batch then
    costs a small query, not a join of the whole tables); without it (None: missing, stale,
    or a batch rewritten), or when the batches hold more than a quarter of the rows, the whole
    tables are joined."""
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
