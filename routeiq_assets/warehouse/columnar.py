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
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from routeiq_assets.contract import ContractError
from routeiq_assets.telemetry.pii import PromptTextMode
from routeiq_assets.telemetry.records import TelemetryRecord
from routeiq_assets.warehouse.normalize import (
    CANDIDATE_COLUMNS,
    DECISION_COLUMNS,
    LLM_CALL_COLUMNS,
    QUARANTINE_COLUMNS,
    TextMemo,
    _excerpt_of,
    _parse_ts,
    decision_rows,
    llm_call_values,
)

FEEDBACK_COLUMNS = ("batch_id", "location", "event_id", "trace_id", "score", "source", "created_at")


@dataclass
class ColumnarBatch:
    """One batch's rows as Arrow tables (None for a table with no rows) and its counts."""

    tables: dict[str, pa.Table | None]
    records_in: int = 0
    duplicates_in_batch: int = 0
    fast_records: int = 0  # records the fast path normalised itself (the rest went the general way)
    stats: dict[str, Any] = field(default_factory=dict)


def _table(columns: Sequence[str], rows: list[tuple[Any, ...]]) -> pa.Table | None:
    if not rows:
        return None
    return pa.Table.from_arrays([pa.array(col) for col in zip(*rows, strict=True)], columns)


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building a batch.

    A batch allocates millions of small acyclic objects (structs, tuples); each allocation burst
    would otherwise trigger collections that walk every row built so far.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


class BatchBuilder:
    """Collect one batch's rows; every record lands in exactly one table or is a duplicate."""

    def __init__(self, batch_id: str, source: str, prompt_mode: PromptTextMode = "scrub") -> None:
        self.batch_id = batch_id
        self.source = source
        self.prompt_mode = prompt_mode
        self.now = datetime.now(UTC).replace(tzinfo=None)
        self.memo = TextMemo(prompt_mode)
        self.decisions: list[tuple[Any, ...]] = []
        self.candidates: list[tuple[Any, ...]] = []
        self.llm_calls: list[tuple[Any, ...]] = []
        self.feedback: list[tuple[Any, ...]] = []
        self.quarantine: list[tuple[Any, ...]] = []
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

    def add_llm_call(self, row: tuple[Any, ...]) -> None:
        """A normalised LLM call (``LLM_CALL_COLUMNS``)."""
        self.records_in += 1
        key = (row[0], row[1])
        if key in self._seen_calls:
            self.duplicates += 1
            return
        self._seen_calls.add(key)
        self.llm_calls.append(row)

    def add_quarantined(self, location: str, reason: str, raw: str) -> None:
        self.records_in += 1
        self.quarantine.append((self.batch_id, self.source, location, reason, raw, self.now))

    def add_record(self, rec: TelemetryRecord) -> None:
        """A reader's record, normalised exactly as ``normalise_records`` does."""
        if rec.kind == "bad":
            self._quarantine(rec, rec.reason or "unreadable record")
        elif rec.kind == "decision":
            try:
                row, cands = decision_rows(rec, self.batch_id)
            except ContractError as exc:
                self._quarantine(rec, str(exc))
                return
            self.add_decision(
                tuple(row.values()), [tuple(c[k] for k in CANDIDATE_COLUMNS) for c in cands]
            )
        elif rec.kind == "llm_call":
            self.add_llm_call(
                llm_call_values(rec.data, rec.location, self.batch_id, self.prompt_mode, self.memo)
            )
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
        self.add_quarantined(
            rec.location, reason, rec.raw if rec.raw is not None else _excerpt_of(rec)
        )

    def finish(self) -> ColumnarBatch:
        """The batch as Arrow tables (the builder's lists are released)."""
        tables = {
            "router_decisions": _table(DECISION_COLUMNS, self.decisions),
            "decision_candidates": _table(CANDIDATE_COLUMNS, self.candidates),
            "llm_calls": _table(LLM_CALL_COLUMNS, self.llm_calls),
            "feedback": _table(FEEDBACK_COLUMNS, self.feedback),
            "quarantine": _table(QUARANTINE_COLUMNS, self.quarantine),
        }
        self.decisions, self.candidates, self.llm_calls = [], [], []
        self.feedback, self.quarantine = [], []
        return ColumnarBatch(tables, self.records_in, self.duplicates, self.fast_records)
