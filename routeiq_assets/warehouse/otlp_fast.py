"""Fast normalisation of OTLP JSON files: msgspec structs straight to columns.

The general path (:func:`~routeiq_assets.telemetry.otlp.read_otlp_json` then
:func:`~routeiq_assets.warehouse.normalize.normalise_records`) builds a dict per span and
attribute and validates each decision payload with pydantic. This path decodes an export request
line into typed msgspec structs, each decision payload into strict structs derived from the
contract's pydantic models (:func:`struct_of`), and builds the row tuples the way
:func:`~routeiq_assets.warehouse.normalize.decision_values` and ``llm_call_values`` do, with
each distinct JSON object, prompt and completion serialised or scrubbed once per batch. Columns
go to Arrow every few thousand rows (:class:`~routeiq_assets.warehouse.columnar.BatchBuilder`).

Anything it is not sure of goes the general way, so the result is the same row for row:

* a line that is not UTF-8, not JSON or not shaped like an export request: the whole line;
* a span without valid ids, an event without a string payload, or a payload that strict
  decoding rejects (wrong types, unknown contract version, empty ids, a trace id that is not
  its span's): that span, re-read with ``json.loads`` and normalised by the general functions,
  which quarantine it with the same reason (or accept it, where pydantic's lax mode does).

``tests/warehouse/test_otlp_fast.py`` checks that both paths store identical tables and counts.
"""

from __future__ import annotations

import functools
import json
import re
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import annotated_types
import msgspec
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from routeiq_assets.contract import DECISION_EVENT_NAME, PAYLOAD_ATTRIBUTE, SUPPORTED_VERSIONS
from routeiq_assets.contract.decision import RouterDecision, canonical_id
from routeiq_assets.contract.nesting import TooDeep, bounded
from routeiq_assets.telemetry.otlp import (
    LLM_CALL_KEYS,
    any_value,
    line_records,
    normalise_id,
    otlp_documents,
    scope_spans,
    unix_nano,
)
from routeiq_assets.telemetry.otlp import span_records as general_span_records
from routeiq_assets.telemetry.pii import PromptTextMode
from routeiq_assets.telemetry.records import BOM, quality_value, token_counts
from routeiq_assets.warehouse.columnar import BatchBuilder, ColumnarBatch, gc_paused
from routeiq_assets.warehouse.normalize import (
    custom_fields,
    decision_values,
    json_column,
    status_text,
)

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


# --- the decision payload: strict msgspec structs derived from the contract's pydantic models --


def _constraint(meta: list[Any]) -> msgspec.Meta | None:
    """The contract's field constraints (annotated-types) as msgspec's; one it does not know
    is an error here, so a new constraint in the contract cannot be skipped by this path."""
    bounds: dict[str, Any] = {}
    for item in meta:
        if isinstance(item, annotated_types.Ge):
            bounds["ge"] = item.ge
        elif isinstance(item, annotated_types.Le):
            bounds["le"] = item.le
        elif isinstance(item, annotated_types.MinLen):
            bounds["min_length"] = item.min_length
        else:
            raise TypeError(f"the fast path does not mirror the constraint {item!r}")
    return msgspec.Meta(**bounds) if bounds else None


def _mirror(annotation: Any) -> Any:
    """A pydantic annotation of the contract as a msgspec type (a JSON object: Raw, checked
    when read; a model: its struct)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        base, *extra = get_args(annotation)
        meta = [m for e in extra for m in (e.metadata if isinstance(e, FieldInfo) else [e])]
        constraint = _constraint(meta)
        return Annotated[_mirror(base), constraint] if constraint else _mirror(base)
    if origin in (Union, types.UnionType):
        return Union[tuple(_mirror(arg) for arg in get_args(annotation))]  # noqa: UP007
    if origin is list:
        return list[_mirror(get_args(annotation)[0])]
    if origin is dict:
        return msgspec.Raw
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return struct_of(annotation)
    return annotation  # str, int, float, bool, a Literal, None


@functools.cache
def struct_of(model: type[BaseModel]) -> type[msgspec.Struct]:
    """The strict msgspec struct of a contract model: the same fields, types, constraints and
    defaults (``tests/contract`` checks that both accept and refuse the same payloads)."""
    fields: list[tuple[Any, ...]] = []
    for name, info in model.model_fields.items():
        kind = _mirror(info.annotation)
        constraint = _constraint(info.metadata)
        if constraint is not None:
            kind = Annotated[kind, constraint]
        factory = info.default_factory
        if info.is_required():
            fields.append((name, kind))
        elif factory is dict:
            fields.append((name, kind, msgspec.Raw(b"{}")))
        elif factory is not None:
            made = (
                struct_of(factory)
                if isinstance(factory, type) and issubclass(factory, BaseModel)
                else factory
            )
            fields.append((name, kind, msgspec.field(default_factory=made)))
        else:
            fields.append((name, kind, info.default))
    return msgspec.defstruct(f"Fast{model.__name__}", fields, kw_only=True, gc=False)


_Decision = struct_of(RouterDecision)

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
    return {
        kv.key: v.stringValue
        if (v := kv.value) is not None and v.stringValue is not UNSET
        else _value(v)
        for kv in items or ()
    }


def _id(raw: Any, hex_len: int) -> str | None:
    """:func:`~routeiq_assets.telemetry.otlp.normalise_id`, quick for lowercase hex."""
    if type(raw) is str and len(raw) == hex_len and not raw.strip(_LOWER_HEX):
        return raw
    return normalise_id(raw, hex_len)


_LOWER_HEX = "0123456789abcdef"
_DICT = msgspec.json.Decoder(dict[str, Any])
_MEMO_LIMIT = 1 << 16
READ_BUFFER = 4 << 20  # export requests are long lines: read them in few, large reads


class _Rows:
    """Row builders for one batch, mirroring ``decision_values`` and ``llm_call_values`` with
    the JSON objects serialised once per distinct text."""

    def __init__(self, builder: BatchBuilder) -> None:
        self.batch_id = builder.batch_id
        self.memo = builder.memo
        self._metadata: dict[bytes, str | None] = {}
        self._custom: dict[bytes, tuple[str | None, float | None, Any, float | None]] = {}

    def metadata(self, raw: msgspec.Raw) -> str | None:
        key = bytes(raw)
        found = self._metadata.get(key)
        if found is None:
            if len(self._metadata) > _MEMO_LIMIT:
                self._metadata.clear()
            found = self._metadata[key] = json_column(_object(key), self.memo.prompt_mode)
        return found

    def custom(self, raw: msgspec.Raw) -> tuple[str | None, float | None, Any, float | None]:
        key = bytes(raw)
        found = self._custom.get(key)
        if found is None:
            if len(self._custom) > _MEMO_LIMIT:
                self._custom.clear()
            found = self._custom[key] = custom_fields(_object(key), self.memo.prompt_mode)
        return found

    def decision(
        self, d: _Decision, location: str, trace_id: str | None
    ) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
        # the general path's row builder, with this batch's memoised JSON serialisers
        return decision_values(
            d, location, self.batch_id, trace_id, self.metadata, self.custom, self.memo
        )

    def llm_call(
        self, span: _Span, trace_id: str, span_id: str, attrs: dict[str, Any], location: str
    ) -> tuple[Any, ...]:
        start = unix_nano(span.startTimeUnixNano)
        end = unix_nano(span.endTimeUnixNano)
        memo = self.memo
        prompt = attrs.get("gen_ai.prompt")
        if prompt is None:
            prompt = attrs.get("gen_ai.prompt.0.content")
        prompt_text = None if prompt is None else str(prompt)
        completion = attrs.get("gen_ai.completion")
        if completion is None:
            completion = attrs.get("gen_ai.completion.0.content")
        request_model = attrs.get("gen_ai.request.model")
        response_model = attrs.get("gen_ai.response.model")
        input_tokens, output_tokens, total = token_counts(attrs)
        code = span.status.code if span.status is not None else None
        ground_truth = attrs.get("routeiq.ground_truth")
        return (
            trace_id,
            span_id,
            self.batch_id,
            location,
            _id(span.parentSpanId, 16),
            span.name,
            memo.stored(prompt_text),
            memo.sha256(prompt_text) if prompt_text is not None else None,
            request_model,
            request_model if response_model is None else response_model,
            memo.stored(None if completion is None else str(completion)),
            input_tokens,
            output_tokens,
            total,
            max(0, end - start) / 1e6,
            start // 1_000_000 or None,
            status_text(code),
            attrs.get("litellm.task"),
            quality_value(attrs),
            memo.stored(None if ground_truth is None else str(ground_truth)),
        )


def _object(raw: bytes) -> dict[str, Any]:
    try:
        return bounded(_DICT.decode, raw)
    except (msgspec.DecodeError, RecursionError, TooDeep):
        raise _GeneralPath from None


def _decision(payload: Any, span_trace: str) -> _Decision:
    """A payload the contract accepts as is; anything else raises :class:`_GeneralPath`."""
    if type(payload) is not str:
        raise _GeneralPath
    try:
        decision = bounded(_DECISION.decode, payload)
    except (msgspec.DecodeError, UnicodeEncodeError, RecursionError, TooDeep):
        raise _GeneralPath from None
    if (
        decision.contract_version not in SUPPORTED_VERSIONS
        or not decision.event_id
        or (decision.trace_id and canonical_id(decision.trace_id) != span_trace)
    ):
        raise _GeneralPath
    return decision


_SpanRows = tuple[list[tuple[Any, Any]], Any]  # a span's (decision row, candidates) and call


def _fast_span(span: _Span, location: str, rows: _Rows) -> _SpanRows | None:
    """One span's rows (None: a span of no interest), or raise; adds nothing to any batch."""
    events = span.events
    if events:
        events = [e for e in events if e.name == DECISION_EVENT_NAME]
    items = span.attributes
    is_llm_call = False
    if items:
        for kv in items:
            if kv.key in LLM_CALL_KEYS:
                is_llm_call = True
                break
    if not (events or is_llm_call):
        return None
    trace_id = _id(span.traceId, 32)
    span_id = _id(span.spanId, 16)
    if not (trace_id and span_id):
        raise _GeneralPath
    attrs = _attributes(items)  # as the general path: a bad value anywhere sends the span there
    where = f"{location} span {span.spanId!s}"
    decisions = [
        rows.decision(
            _decision(_attributes(event.attributes).get(PAYLOAD_ATTRIBUTE), trace_id),
            where,
            trace_id,
        )
        for event in events or ()
    ]
    call = rows.llm_call(span, trace_id, span_id, attrs, where) if is_llm_call else None
    return decisions, call


def _add_span_rows(builder: BatchBuilder, found: _SpanRows) -> None:
    decisions, call = found
    for row, candidates in decisions:
        builder.add_decision(row, candidates)
    if call is not None:
        builder.add_llm_call(call)
    builder.fast_records += len(decisions) + (call is not None)


# a UTF-16 surrogate escape, at the line's level or (its backslash escaped) in a payload
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def add_line(builder: BatchBuilder, raw_line: bytes, location: str, rows: _Rows) -> None:
    """Normalise one line (an export request) of an OTLP JSON file into ``builder``."""
    if _SURROGATE_ESCAPE.search(raw_line):
        # msgspec, like json.loads, decodes an unpaired surrogate escape into text no column
        # takes: the general path quarantines the records that hold one (a pair, as in emoji,
        # or an escaped backslash before "ud83d", merely costs this line the fast path)
        builder.add_records(line_records(raw_line, location))
        return
    if not raw_line.isascii():
        try:
            raw_line.decode("utf-8")
        except UnicodeDecodeError:
            # bytes that are not UTF-8, even in a field no column takes: the line is that
            # line's quarantine row, as on the general path
            builder.add_records(line_records(raw_line, location))
            return
    try:
        export = bounded(_EXPORT.decode, raw_line)
    except (msgspec.DecodeError, RecursionError, TooDeep):
        builder.add_records(line_records(raw_line, location))
        return
    # the line's spans are all read before any is added: a line the general path must read
    # whole (one it cannot parse) adds nothing twice
    found: list[_SpanRows | tuple[int, int, int]] = []
    general = False
    for r, resource in enumerate(export.resourceSpans or ()):
        scopes = resource.scopeSpans or resource.instrumentationLibrarySpans or ()
        for s, scope in enumerate(scopes):
            for i, span in enumerate(scope.spans or ()):
                try:
                    rows_of_span = _fast_span(span, location, rows)
                except (_GeneralPath, ValueError, TypeError, OverflowError):
                    found.append((r, s, i))
                    general = True
                    continue
                if rows_of_span is not None:
                    found.append(rows_of_span)
    document = None
    if general:
        try:
            document = bounded(json.loads, raw_line)  # the line as the general path reads it
        except (ValueError, RecursionError):
            builder.add_records(line_records(raw_line, location))
            return
    for item in found:
        if isinstance(item[0], int):  # (resource, scope, span) of a span read the general way
            r, s, i = item
            span_dict = scope_spans(document["resourceSpans"][r])[s]["spans"][i]
            builder.add_records(general_span_records(span_dict, location))
        else:
            _add_span_rows(builder, item)


def normalise_otlp_file(
    path: Path, batch_id: str, source: str, prompt_mode: PromptTextMode = "scrub"
) -> ColumnarBatch:
    """One OTLP JSON file as a batch of Arrow tables, equal to the general path's rows."""
    path = Path(path)
    builder = BatchBuilder(batch_id, source, prompt_mode)
    rows = _Rows(builder)
    with gc_paused():
        documents = otlp_documents(path)  # pretty-printed requests, else None: a request a line
        for line_no, raw_line in documents if documents is not None else _lines(path):
            add_line(builder, raw_line, f"{path.name}:{line_no}", rows)
        return builder.finish()


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    """The non-blank lines of a file, with their numbers (a UTF-8 byte-order mark before the
    first line dropped)."""
    with path.open("rb", buffering=READ_BUFFER) as handle:
        for line_no, raw_line in enumerate(handle, start=1):
            if line_no == 1 and raw_line.startswith(BOM):
                raw_line = raw_line[len(BOM) :]
            if raw_line and not raw_line.isspace():
                yield line_no, raw_line
