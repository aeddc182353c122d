"""Fast normalisation of OTLP JSON files: msgspec structs straight to columns.

The general path (:func:`~routeiq_assets.telemetry.otlp.read_otlp_json` then
:func:`~routeiq_assets.warehouse.normalize.normalise_records`) builds a dict per span and
attribute and validates each decision payload with pydantic. This path decodes an export request
line into typed msgspec structs, each decision payload into strict structs that mirror the
contract's models, and builds the rows with the same functions
(:func:`~routeiq_assets.warehouse.normalize.decision_values`, ``llm_call_values``).

Anything it is not sure of goes the general way, so the result is the same row for row:

* a line that is not UTF-8, not JSON or not shaped like an export request: the whole line;
* a span without valid ids, an event without a string payload, or a payload that strict
  decoding rejects (wrong types, unknown contract version, empty ids, a trace id that is not
  its span's): that span, re-read with ``json.loads`` and normalised by the general functions,
  which quarantine it with the same reason (or accept it, where pydantic's lax mode does).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import msgspec

from routeiq_assets.contract import DECISION_EVENT_NAME, PAYLOAD_ATTRIBUTE, SUPPORTED_VERSIONS
from routeiq_assets.telemetry.otlp import (
    LLM_CALL_KEYS,
    any_value,
    line_records,
    normalise_id,
    scope_spans,
)
from routeiq_assets.telemetry.otlp import span_records as general_span_records
from routeiq_assets.telemetry.pii import PromptTextMode
from routeiq_assets.warehouse.columnar import BatchBuilder, ColumnarBatch, gc_paused
from routeiq_assets.warehouse.normalize import decision_values, llm_call_values

UNSET = msgspec.UNSET

# --- the OTLP envelope (fields typed Any where the general path accepts any JSON value) --------


class _AnyValue(msgspec.Struct, gc=False):
    stringValue: Any = UNSET
    intValue: Any = UNSET
    doubleValue: Any = UNSET
    boolValue: Any = UNSET
    arrayValue: Any = UNSET
    kvlistValue: Any = UNSET
    bytesValue: Any = UNSET


class _KeyValue(msgspec.Struct, gc=False):
    key: str
    value: _AnyValue | None = None


class _Event(msgspec.Struct, gc=False):
    name: Any = None
    attributes: list[_KeyValue] | None = None


class _Status(msgspec.Struct, gc=False):
    code: Any = None


class _Span(msgspec.Struct, gc=False):
    traceId: Any = None
    spanId: Any = None
    parentSpanId: Any = None
    name: Any = ""
    startTimeUnixNano: Any = None
    endTimeUnixNano: Any = None
    attributes: list[_KeyValue] | None = None
    events: list[_Event] | None = None
    status: _Status | None = None


class _Scope(msgspec.Struct, gc=False):
    spans: list[_Span] | None = None


class _Resource(msgspec.Struct, gc=False):
    scopeSpans: list[_Scope] | None = None
    instrumentationLibrarySpans: list[_Scope] | None = None


class _Export(msgspec.Struct, gc=False):
    resourceSpans: list[_Resource] | None


# --- the decision payload: strict mirrors of routeiq_assets.contract.decision's models --------


class _Input(msgspec.Struct, gc=False):
    requested_model: str | None = None
    query_length: int | None = None
    user_id: str | None = None
    team_id: str | None = None
    api_type: str | None = None
    request_metadata: dict[str, Any] = {}


class _Candidate(msgspec.Struct, gc=False):
    model_name: str
    provider: str | None = None
    score: float | None = None
    available: bool = True


class _Experiment(msgspec.Struct, gc=False):
    experiment_id: str | None = None
    variant: str | None = None
    strategy_name: str | None = None
    strategy_version: str | None = None
    weight: float | None = None
    total_weight: float | None = None
    hash_bucket: int | None = None
    hash_key_type: str | None = None


class _Timings(msgspec.Struct, gc=False):
    total_ms: float | None = None
    strategy_ms: float | None = None
    embedding_ms: float | None = None
    candidate_filter_ms: float | None = None


class _Outcome(msgspec.Struct, gc=False):
    status: Literal["success", "failure", "fallback", "error", "no_candidates", "timeout"]
    error_message: str | None = None
    error_type: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    total_tokens: int | None = None
    api_type: str | None = None


class _Fallback(msgspec.Struct, gc=False):
    fallback_triggered: bool = False
    original_model: str | None = None
    fallback_reason: str | None = None
    fallback_attempt: int | None = None


class _Decision(msgspec.Struct, gc=False):
    contract_version: str
    event_id: str
    trace_id: str
    outcome: _Outcome
    contract_name: str = DECISION_EVENT_NAME
    span_id: str | None = None
    parent_span_id: str | None = None
    timestamp_utc: str | None = None
    timestamp_unix_ms: int | None = None
    input: _Input = msgspec.field(default_factory=_Input)
    strategy_name: str | None = None
    strategy_version: str | None = None
    candidate_deployments: list[_Candidate] = []
    selected_deployment: str | None = None
    selection_reason: str | None = None
    experiment: _Experiment | None = None
    timings: _Timings = msgspec.field(default_factory=_Timings)
    fallback: _Fallback = msgspec.field(default_factory=_Fallback)
    custom_attributes: dict[str, Any] = {}


_EXPORT = msgspec.json.Decoder(_Export)
_DECISION = msgspec.json.Decoder(_Decision)


class _GeneralPath(Exception):
    """This span needs the general path."""


def _value(value: _AnyValue | None) -> Any:
    """:func:`~routeiq_assets.telemetry.otlp.any_value` for a decoded struct."""
    if value is None:
        return None
    if value.stringValue is not UNSET:
        return value.stringValue
    if value.intValue is not UNSET:
        return int(value.intValue)
    if value.doubleValue is not UNSET:
        return float(value.doubleValue)
    if value.boolValue is not UNSET:
        return bool(value.boolValue)
    if value.arrayValue is not UNSET:
        return any_value({"arrayValue": value.arrayValue})
    if value.kvlistValue is not UNSET:
        return any_value({"kvlistValue": value.kvlistValue})
    if value.bytesValue is not UNSET:
        return value.bytesValue
    return None


def _attributes(items: list[_KeyValue] | None) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in items or ()}


def _decision(payload: Any, span_trace: str) -> _Decision:
    """A payload the contract accepts as is; anything else raises :class:`_GeneralPath`."""
    if not isinstance(payload, str):
        raise _GeneralPath
    try:
        decision = _DECISION.decode(payload)
    except (msgspec.DecodeError, UnicodeEncodeError):
        raise _GeneralPath from None
    if (
        decision.contract_version not in SUPPORTED_VERSIONS
        or not decision.event_id
        or not decision.trace_id
        or decision.trace_id.lower() != span_trace
    ):
        raise _GeneralPath
    return decision


def _fast_span(span: _Span, location: str, builder: BatchBuilder) -> None:
    """Add one span's records to ``builder``, or raise before adding anything."""
    events = [e for e in span.events or () if e.name == DECISION_EVENT_NAME]
    items = span.attributes or ()
    is_llm_call = any(kv.key in LLM_CALL_KEYS for kv in items)
    if not (events or is_llm_call):
        return
    trace_id = normalise_id(span.traceId, 32)
    span_id = normalise_id(span.spanId, 16)
    if not (trace_id and span_id):
        raise _GeneralPath
    attrs = _attributes(items)  # as the general path: a bad value anywhere sends the span there
    where = f"{location} span {span.spanId!s}"
    batch_id = builder.batch_id
    decisions = [
        decision_values(
            _decision(_attributes(event.attributes).get(PAYLOAD_ATTRIBUTE), trace_id),
            where,
            batch_id,
        )
        for event in events
    ]
    call = None
    if is_llm_call:
        start = int(span.startTimeUnixNano or 0)
        end = int(span.endTimeUnixNano or 0)
        data = {
            "trace_id": trace_id,
            "span_id": span_id,
            "name": span.name,
            "parent_span_id": normalise_id(span.parentSpanId, 16),
            "start_unix_nano": start,
            "duration_ms": max(0, end - start) / 1e6,
            "status_code": span.status.code if span.status is not None else None,
            "attributes": attrs,
        }
        call = llm_call_values(data, where, batch_id, builder.prompt_mode, builder.memo)
    for row, candidates in decisions:
        builder.add_decision(row, candidates)
    if call is not None:
        builder.add_llm_call(call)
    builder.fast_records += len(decisions) + (call is not None)


def _general_span(raw_line: bytes, indexes: tuple[int, int, int], location: str) -> Any:
    """The span at ``indexes`` (resource, scope, span) of a line, as ``json.loads`` reads it."""
    document = json.loads(raw_line)
    r, s, i = indexes
    return scope_spans(document["resourceSpans"][r])[s]["spans"][i]


def add_line(builder: BatchBuilder, raw_line: bytes, location: str) -> None:
    """Normalise one line (an export request) of an OTLP JSON file into ``builder``."""
    try:
        export = _EXPORT.decode(raw_line)
    except msgspec.DecodeError:
        builder.add_records(line_records(raw_line, location))
        return
    for r, resource in enumerate(export.resourceSpans or ()):
        scopes = resource.scopeSpans or resource.instrumentationLibrarySpans or ()
        for s, scope in enumerate(scopes):
            for i, span in enumerate(scope.spans or ()):
                try:
                    _fast_span(span, location, builder)
                except (_GeneralPath, ValueError, TypeError):
                    span_dict = _general_span(raw_line, (r, s, i), location)
                    builder.add_records(general_span_records(span_dict, location))


def normalise_otlp_file(
    path: Path, batch_id: str, source: str, prompt_mode: PromptTextMode = "scrub"
) -> ColumnarBatch:
    """One OTLP JSON file as a batch of Arrow tables, equal to the general path's rows."""
    path = Path(path)
    builder = BatchBuilder(batch_id, source, prompt_mode)
    with gc_paused(), path.open("rb") as handle:
        for line_no, raw_line in enumerate(handle, start=1):
            if raw_line.strip():
                add_line(builder, raw_line, f"{path.name}:{line_no}")
        return builder.finish()
