"""Normalised rows collected as columns, ready for DuckDB as Arrow tables.

:class:`BatchBuilder` is what :func:`~routeiq_assets.warehouse.normalize.normalise_records` does,
record by record, with rows kept as tuples instead of dicts: the fast OTLP path
(:mod:`routeiq_assets.warehouse.otlp_fast`) appends rows it built itself, and hands every record
it cannot handle to :meth:`BatchBuilder.add_record`, so both land in one batch, in file order, with
the same duplicate handling. :meth:`BatchBuilder.finish` turns the columns into Arrow tables the
same way ``pa.Table.from_pylist`` turns row dicts into one, so the stored rows are identical.
"""

from __future__ import annotations

import gc
import json
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from routeiq_assets.contract import ContractError
from routeiq_assets.telemetry.pii import PromptTextMode
from routeiq_assets.telemetry.records import TelemetryRecord
from routeiq_assets.warehouse.normalize import (
    CANDIDATE_COLUMNS,
    DECISION_COLUMNS,
    LLM_CALL_COLUMNS,
    QUARANTINE_COLUMNS,
    NormalisedBatch,
    TextMemo,
    _parse_ts,
    decision_rows,
    llm_call_values,
    quarantine_text,
    unicode_problem,
)

FEEDBACK_COLUMNS = ("batch_id", "location", "event_id", "trace_id", "score", "source", "created_at")


@dataclass
class ColumnarBatch:
    """One batch's rows as Arrow tables (None for a table with no rows) and its counts."""

    tables: dict[str, pa.Table | None]
    records_in: int = 0
    duplicates_in_batch: int = 0
    fast_records: int = 0  # records the fast path normalised itself (the rest went the general way)


def as_columnar(batch: NormalisedBatch) -> ColumnarBatch:
    """Row dicts as Arrow tables (``pa.Table.from_pylist``); candidates only of kept decisions."""
    kept = {row["event_id"] for row in batch.decisions}
    rows = {
        "router_decisions": batch.decisions,
        "decision_candidates": [c for c in batch.candidates if c["event_id"] in kept],
        "llm_calls": batch.llm_calls,
        "feedback": batch.feedback,
        "quarantine": batch.quarantine,
    }
    tables = {name: _from_rows(r) if r else None for name, r in rows.items()}
    return ColumnarBatch(tables, batch.records_in, batch.duplicates_in_batch)


def _from_rows(rows: list[dict[str, Any]]) -> pa.Table:
    try:
        return pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # values of several types
        names = list(rows[0])
        return pa.Table.from_arrays([infer_array([r.get(k) for r in rows]) for k in names], names)


def infer_array(values: list[Any]) -> pa.Array:
    """The values of a column whose type comes from the telemetry (a span name, an attribute
    value, a timestamp) as Arrow infers them (``pa.array``); where their types cannot share a
    column (a text and a number, a naive and an aware time), every value as text. The warehouse
    columns are VARCHAR (or TIMESTAMPTZ, which parses the ISO text), so the batch is stored
    instead of failing whole."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):  # OverflowError: beyond int64
        return pa.array([_as_text(v) for v in values], pa.string())


def _as_text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"  # as DuckDB casts a BOOLEAN to text
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)
    return str(value)


# Arrow types of the columns whose Python type the row builders guarantee (pydantic/msgspec
# fields, as_int/as_float, str). None: inferred from the values, as ``pa.Table.from_pylist``
# does, for columns that hold whatever the telemetry carried (a span name, an attribute value,
# a custom attribute) and for timestamps (aware or naive, as parsed).
_S, _I, _F, _B = pa.string(), pa.int64(), pa.float64(), pa.bool_()
_TYPES: dict[str, pa.DataType | None] = {
    **{name: _S for name in DECISION_COLUMNS},
    **{
        name: _I
        for name in (
            "timestamp_unix_ms",
            "query_length",
            "experiment_hash_bucket",
            "input_tokens",
            "output_tokens",
            "total_tokens",
            "fallback_attempt",
            "num_candidates",
        )
    },
    **{
        name: _F
        for name in (
            "experiment_weight",
            "experiment_total_weight",
            "total_ms",
            "strategy_ms",
            "embedding_ms",
            "candidate_filter_ms",
            "selection_propensity",
            "quality_score",
        )
    },
    "fallback_triggered": _B,
    "timestamp_utc": None,
    "logging_policy": None,
}
_CANDIDATE_TYPES = (_S, _S, _I, _S, _S, _F, _B, _B)
_LLM_TYPES: dict[str, pa.DataType | None] = {
    **{name: _S for name in LLM_CALL_COLUMNS},
    **{name: _I for name in ("input_tokens", "output_tokens", "total_tokens", "start_unix_ms")},
    "duration_ms": _F,
    "quality_score": _F,
    **{name: None for name in ("span_name", "request_model", "response_model", "task")},
}
CHUNK_ROWS = 8192


class _Sink:
    """Rows of one table; typed columns go to Arrow every ``CHUNK_ROWS`` rows, so a batch never
    holds more than a chunk of them as Python objects."""

    def __init__(self, names: Sequence[str], types: Sequence[pa.DataType | None]) -> None:
        self.names = tuple(names)
        self.types = tuple(types)
        self.rows: list[tuple[Any, ...]] = []
        self.count = 0
        self._chunks: list[list[pa.Array]] = [[] for _ in self.names]
        self._values: list[list[Any]] = [[] for _ in self.names]

    def flush(self) -> None:
        if not self.rows:
            return
        for col, kind, chunks, values in zip(
            zip(*self.rows, strict=True), self.types, self._chunks, self._values, strict=True
        ):
            if kind is None:
                values.extend(col)
            else:
                chunks.append(pa.array(col, type=kind))
        self.count += len(self.rows)
        self.rows = []

    def table(self) -> pa.Table | None:
        self.flush()
        if not self.count:
            return None
        arrays = [
            infer_array(values) if kind is None else pa.chunked_array(chunks, type=kind)
            for kind, chunks, values in zip(self.types, self._chunks, self._values, strict=True)
        ]
        self._chunks = [[] for _ in self.names]
        self._values = [[] for _ in self.names]
        return pa.Table.from_arrays(arrays, self.names)


_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building a batch.

    A batch allocates millions of small acyclic objects (structs, tuples); each allocation burst
    would otherwise trigger collections that walk every row built so far. The collector is
    process-wide: with batches built on several threads, it resumes when the last one ends.
    """
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()


class BatchBuilder:
    """Collect one batch's rows; every record lands in exactly one table or is a duplicate."""

    def __init__(self, batch_id: str, source: str, prompt_mode: PromptTextMode = "scrub") -> None:
        self.batch_id = batch_id
        self.source = source
        self.prompt_mode = prompt_mode
        self.now = datetime.now(UTC).replace(tzinfo=None)
        self.memo = TextMemo(prompt_mode)
        self._decisions = _Sink(DECISION_COLUMNS, [_TYPES[c] for c in DECISION_COLUMNS])
        self._candidates = _Sink(CANDIDATE_COLUMNS, _CANDIDATE_TYPES)
        self._llm_calls = _Sink(LLM_CALL_COLUMNS, [_LLM_TYPES[c] for c in LLM_CALL_COLUMNS])
        self._feedback = _Sink(FEEDBACK_COLUMNS, [None] * len(FEEDBACK_COLUMNS))
        self._quarantined = _Sink(QUARANTINE_COLUMNS, [None] * len(QUARANTINE_COLUMNS))
        self.decisions = self._decisions.rows
        self.candidates = self._candidates.rows
        self.llm_calls = self._llm_calls.rows
        self.feedback = self._feedback.rows
        self.quarantine = self._quarantined.rows
        self.records_in = 0
        self.duplicates = 0
        self.fast_records = 0
        self._seen_events: set[str] = set()
        self._seen_calls: set[tuple[str, str]] = set()

    def add_decision(self, row: tuple[Any, ...], candidates: list[tuple[Any, ...]]) -> None:
        """A validated decision (``DECISION_COLUMNS``) and its candidate rows."""
        self.records_in += 1
        event_id = row[0]
        if event_id in self._seen_events:
            self.duplicates += 1
            return
        self._seen_events.add(event_id)
        self.decisions.append(row)
        self.candidates.extend(candidates)
        if len(self.decisions) >= CHUNK_ROWS:
            self._flush()

    def add_llm_call(self, row: tuple[Any, ...]) -> None:
        """A normalised LLM call (``LLM_CALL_COLUMNS``)."""
        self.records_in += 1
        key = (row[0], row[1])
        if key in self._seen_calls:
            self.duplicates += 1
            return
        self._seen_calls.add(key)
        self.llm_calls.append(row)
        if len(self.llm_calls) >= CHUNK_ROWS:
            self._flush()

    def add_quarantined(self, location: str, reason: str, raw: str) -> None:
        self.records_in += 1
        self.quarantine.append((self.batch_id, self.source, location, reason, raw, self.now))

    def add_record(self, rec: TelemetryRecord) -> None:
        """A reader's record, normalised exactly as ``normalise_records`` does."""
        if rec.kind == "bad":
            self._quarantine(rec, rec.reason or "unreadable record")
        elif problem := unicode_problem(rec):
            self._quarantine(rec, problem)
        elif rec.kind == "decision":
            try:
                row, cands = decision_rows(rec, self.batch_id, self.memo)
            except ContractError as exc:
                self._quarantine(rec, str(exc))
                return
            self.add_decision(
                tuple(row.values()), [tuple(c[k] for k in CANDIDATE_COLUMNS) for c in cands]
            )
        elif rec.kind == "llm_call":
            try:
                row = llm_call_values(
                    rec.data, rec.location, self.batch_id, self.prompt_mode, self.memo
                )
            except ValueError as exc:  # a value out of its range
                self._quarantine(rec, f"span has a value out of range: {exc}")
                return
            self.add_llm_call(row)
        elif rec.kind == "feedback":
            self.records_in += 1
            created = rec.data.get("created_at")
            self.feedback.append(
                (
                    self.batch_id,
                    rec.location,
                    rec.data["event_id"],
                    rec.data["trace_id"],
                    rec.data["score"],
                    rec.data["source"],
                    _parse_ts(created if isinstance(created, str) else None, None),
                )
            )
        else:
            self._quarantine(rec, f"unknown record kind {rec.kind!r}")

    def add_records(self, records: Iterable[TelemetryRecord]) -> None:
        for rec in records:
            self.add_record(rec)

    def _quarantine(self, rec: TelemetryRecord, reason: str) -> None:
        self.add_quarantined(*quarantine_text(rec, reason, self.prompt_mode))

    def _flush(self) -> None:
        for sink in (self._decisions, self._candidates, self._llm_calls):
            sink.flush()
        self.decisions = self._decisions.rows
        self.candidates = self._candidates.rows
        self.llm_calls = self._llm_calls.rows

    def finish(self) -> ColumnarBatch:
        """The batch as Arrow tables."""
        tables = {
            "router_decisions": self._decisions.table(),
            "decision_candidates": self._candidates.table(),
            "llm_calls": self._llm_calls.table(),
            "feedback": self._feedback.table(),
            "quarantine": self._quarantined.table(),
        }
        self._flush()
        return ColumnarBatch(tables, self.records_in, self.duplicates, self.fast_records)


def call_keys(calls: pa.Table) -> pa.Array | pa.ChunkedArray:
    """An LLM call's identity as one string a row: trace id and span id."""
    return pc.binary_join_element_wise(calls["trace_id"], calls["span_id"], "/")


def drop_repeats(batches: Sequence[ColumnarBatch]) -> list[tuple[dict[str, pa.Table | None], int]]:
    """Each batch's tables without the decisions (by event id, with their candidates) and LLM
    calls (by trace and span id) that an earlier batch of the sequence holds, and how many rows
    each batch lost: what normalising or writing them one after another counts as duplicates.

    A table is copied only when something goes.
    """
    seen_events: list[pa.Array] = []
    seen_calls: list[pa.Array] = []
    out = []
    for batch in batches:
        tables = dict(batch.tables)
        dropped = 0
        decisions, candidates = tables["router_decisions"], tables["decision_candidates"]
        calls = tables["llm_calls"]
        if decisions is not None and seen_events:
            earlier = pa.chunked_array(seen_events, type=pa.string()).combine_chunks()
            new = pc.invert(pc.is_in(decisions["event_id"], value_set=earlier))
            repeated = decisions.num_rows - (pc.sum(new).as_py() or 0)
            if repeated:
                dropped += repeated
                tables["router_decisions"] = decisions = decisions.filter(new)
                if candidates is not None:
                    tables["decision_candidates"] = candidates.filter(
                        pc.invert(pc.is_in(candidates["event_id"], value_set=earlier))
                    )
        if calls is not None:
            keys = call_keys(calls)
            if seen_calls:
                earlier = pa.chunked_array(seen_calls, type=pa.string()).combine_chunks()
                new = pc.invert(pc.is_in(keys, value_set=earlier))
                repeated = calls.num_rows - (pc.sum(new).as_py() or 0)
                if repeated:
                    dropped += repeated
                    tables["llm_calls"] = calls.filter(new)
                    keys = keys.filter(new)
            seen_calls.extend(_chunks(keys))
        if decisions is not None:
            seen_events.extend(_chunks(decisions["event_id"]))
        out.append((tables, dropped))
    return out


def concat_tables(tables: Sequence[pa.Table | None]) -> pa.Table | None:
    """The tables (None and empty ones left out) as one, or None when none has rows. Column
    types must agree, except where one side is all null; else Arrow raises."""
    present = [t for t in tables if t is not None and t.num_rows]
    if not present:
        return None
    return pa.concat_tables(present, promote_options="default")


def _chunks(column: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    return list(column.chunks) if isinstance(column, pa.ChunkedArray) else [column]
