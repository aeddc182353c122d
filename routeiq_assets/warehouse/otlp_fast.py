"""Fast normalisation of OTLP JSON files: msgspec structs straight to columns.

The general path (:func:`~routeiq_assets.telemetry.otlp.read_otlp_json` then
:func:`~routeiq_assets.warehouse.normalize.normalise_records`) builds a dict per span and
attribute and validates each decision payload with pydantic. This path decodes an export request
line into typed msgspec structs, each decision payload into strict structs that mirror the
contract's models, and builds the row tuples the way
:func:`~routeiq_assets.warehouse.normalize.decision_values` and ``llm_call_values`` do, with
each distinct JSON object, prompt and completion serialised or scrubbed once per batch. Columns
go to Arrow every few thousand rows (:class:`~routeiq_assets.warehouse.columnar.BatchBuilder`).
A large file can be read in parts (:func:`split_lines`) by several processes and joined in file
order (:func:`merge_parts`).

Anything it is not sure of goes the general way, so the result is the same row for row:

* a line that is not UTF-8, not JSON or not shaped like an export request: the whole line;
* a span without valid ids, an event without a string payload, or a payload that strict
  decoding rejects (wrong types, unknown contract version, empty ids, a trace id that is not
  its span's): that span, re-read with ``json.loads`` and normalised by the general functions,
  which quarantine it with the same reason (or accept it, where pydantic's lax mode does).

``tests/warehouse/test_otlp_fast.py`` checks that both paths store identical tables and counts.
"""

from __future__ import annotations

import json
import mmap
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import numpy as np

from routeiq_assets.contract import DECISION_EVENT_NAME, PAYLOAD_ATTRIBUTE, SUPPORTED_VERSIONS
from routeiq_assets.contract.decision import INT32_RANGE, INT64_RANGE
from routeiq_assets.telemetry.otlp import (
    LLM_CALL_KEYS,
    any_value,
    is_multiline_document,
    line_records,
    normalise_id,
    otlp_documents,
    scope_spans,
    unix_nano,
)
from routeiq_assets.telemetry.otlp import span_records as general_span_records
from routeiq_assets.telemetry.pii import PromptTextMode
from routeiq_assets.telemetry.records import BOM, as_float, token_counts
from routeiq_assets.warehouse import otlp_native
from routeiq_assets.warehouse.columnar import (
    BatchBuilder,
    ColumnarBatch,
    drop_repeats,
    gc_paused,
    join_parts,
)
from routeiq_assets.warehouse.normalize import (
    custom_fields,
    decision_values,
    json_text,
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


# --- the decision payload: strict mirrors of routeiq_assets.contract.decision's models --------

_Int32 = Annotated[int, msgspec.Meta(ge=INT32_RANGE[0], le=INT32_RANGE[1])]
_Int64 = Annotated[int, msgspec.Meta(ge=INT64_RANGE[0], le=INT64_RANGE[1])]


class _Input(msgspec.Struct, gc=False):
    requested_model: str | None = None
    query_length: _Int32 | None = None
    user_id: str | None = None
    team_id: str | None = None
    api_type: str | None = None
    request_metadata: msgspec.Raw = msgspec.Raw(b"{}")  # a JSON object: checked when read


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
    hash_bucket: _Int32 | None = None
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
    input_tokens: _Int64 | None = None
    output_tokens: _Int64 | None = None
    total_tokens: _Int64 | None = None
    api_type: str | None = None


class _Fallback(msgspec.Struct, gc=False):
    fallback_triggered: bool = False
    original_model: str | None = None
    fallback_reason: str | None = None
    fallback_attempt: _Int32 | None = None


class _Decision(msgspec.Struct, gc=False):
    contract_version: str
    event_id: str
    trace_id: str
    outcome: _Outcome
    contract_name: str = DECISION_EVENT_NAME
    span_id: str | None = None
    parent_span_id: str | None = None
    timestamp_utc: str | None = None
    timestamp_unix_ms: _Int64 | None = None
    input: _Input = msgspec.field(default_factory=_Input)
    strategy_name: str | None = None
    strategy_version: str | None = None
    candidate_deployments: list[_Candidate] = []
    selected_deployment: str | None = None
    selection_reason: str | None = None
    experiment: _Experiment | None = None
    timings: _Timings = msgspec.field(default_factory=_Timings)
    fallback: _Fallback = msgspec.field(default_factory=_Fallback)
    custom_attributes: msgspec.Raw = msgspec.Raw(b"{}")  # a JSON object: checked when read


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
        self._metadata: dict[bytes, str] = {}
        self._custom: dict[bytes, tuple[str, float | None, Any, float | None]] = {}

    def metadata(self, raw: msgspec.Raw) -> str:
        key = bytes(raw)
        found = self._metadata.get(key)
        if found is None:
            if len(self._metadata) > _MEMO_LIMIT:
                self._metadata.clear()
            found = self._metadata[key] = json_text(_object(key))
        return found

    def custom(self, raw: msgspec.Raw) -> tuple[str, float | None, Any, float | None]:
        key = bytes(raw)
        found = self._custom.get(key)
        if found is None:
            if len(self._custom) > _MEMO_LIMIT:
                self._custom.clear()
            found = self._custom[key] = custom_fields(_object(key))
        return found

    def decision(
        self, d: _Decision, location: str
    ) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
        # the general path's row builder, with this batch's memoised JSON serialisers
        return decision_values(d, location, self.batch_id, self.metadata, self.custom)

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
            as_float(attrs.get("routeiq.quality_score")),
            None if ground_truth is None else str(ground_truth),
        )


def _object(raw: bytes) -> dict[str, Any]:
    try:
        return _DICT.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        raise _GeneralPath from None


def _decision(payload: Any, span_trace: str) -> _Decision:
    """A payload the contract accepts as is; anything else raises :class:`_GeneralPath`."""
    if type(payload) is not str:
        raise _GeneralPath
    try:
        decision = _DECISION.decode(payload)
    except (msgspec.DecodeError, UnicodeEncodeError, RecursionError):
        raise _GeneralPath from None
    if (
        decision.contract_version not in SUPPORTED_VERSIONS
        or not decision.event_id
        or not decision.trace_id
        or decision.trace_id.lower() != span_trace
    ):
        raise _GeneralPath
    return decision


def _fast_span(span: _Span, location: str, builder: BatchBuilder, rows: _Rows) -> None:
    """Add one span's records to ``builder``, or raise before adding anything."""
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
        return
    trace_id = _id(span.traceId, 32)
    span_id = _id(span.spanId, 16)
    if not (trace_id and span_id):
        raise _GeneralPath
    attrs = _attributes(items)  # as the general path: a bad value anywhere sends the span there
    where = f"{location} span {span.spanId!s}"
    decisions = [
        rows.decision(
            _decision(_attributes(event.attributes).get(PAYLOAD_ATTRIBUTE), trace_id), where
        )
        for event in events or ()
    ]
    call = rows.llm_call(span, trace_id, span_id, attrs, where) if is_llm_call else None
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
    try:
        export = _EXPORT.decode(raw_line)
    except (msgspec.DecodeError, RecursionError, UnicodeDecodeError):
        # UnicodeDecodeError: bytes that are not UTF-8 inside a string (msgspec raises it there)
        builder.add_records(line_records(raw_line, location))
        return
    document = None  # the line as json.loads reads it, for spans that go the general way
    for r, resource in enumerate(export.resourceSpans or ()):
        scopes = resource.scopeSpans or resource.instrumentationLibrarySpans or ()
        for s, scope in enumerate(scopes):
            for i, span in enumerate(scope.spans or ()):
                try:
                    _fast_span(span, location, builder, rows)
                except (_GeneralPath, ValueError, TypeError, OverflowError):
                    if document is None:
                        document = json.loads(raw_line)
                    span_dict = scope_spans(document["resourceSpans"][r])[s]["spans"][i]
                    builder.add_records(general_span_records(span_dict, location))


def normalise_otlp_file(
    path: Path,
    batch_id: str,
    source: str,
    prompt_mode: PromptTextMode = "scrub",
    part: tuple[int, int, int] | None = None,
    native: bool | None = None,
) -> ColumnarBatch:
    """One OTLP JSON file as a batch of Arrow tables, equal to the general path's rows.

    ``part`` = (start byte, end byte, number of the line at start) restricts it to the lines of
    one :func:`split_lines` part; :func:`merge_parts` joins the parts' batches. ``native``: use
    the compiled normaliser (:mod:`~routeiq_assets.warehouse.otlp_native`; default: where it is
    built and not switched off), which hands every line it is unsure of back to this function.
    """
    path = Path(path)
    documents = otlp_documents(path) if part is None or part == (0, -1, 1) else None
    # pretty-printed requests: the compiled path reads lines only
    if documents is None and (otlp_native.available() if native is None else native):

        def python_part(p: tuple[int, int, int]) -> ColumnarBatch:
            return normalise_otlp_file(path, batch_id, source, prompt_mode, p, native=False)

        try:
            return otlp_native.normalise_native(
                path, batch_id, source, prompt_mode, part, python_part, merge_parts
            )
        except otlp_native.NotNative:
            pass  # the whole range the Python way
    builder = BatchBuilder(batch_id, source, prompt_mode)
    rows = _Rows(builder)
    with gc_paused():
        lines = documents if documents is not None else _lines(path, part or (0, -1, 1))
        for line_no, raw_line in lines:
            add_line(builder, raw_line, f"{path.name}:{line_no}", rows)
        return builder.finish()


def _lines(path: Path, part: tuple[int, int, int]) -> Iterator[tuple[int, bytes]]:
    """The non-blank lines of ``part`` of a file, with their numbers (a UTF-8 byte-order mark
    before the first line dropped)."""
    start, end, first_line = part
    with path.open("rb", buffering=READ_BUFFER) as handle:
        handle.seek(start)
        offset = start
        for line_no, raw_line in enumerate(handle, start=first_line):
            if 0 <= end <= offset:
                break
            if offset == 0 and raw_line.startswith(BOM):
                offset, raw_line = len(BOM), raw_line[len(BOM) :]
            offset += len(raw_line)
            if raw_line and not raw_line.isspace():
                yield line_no, raw_line


def split_lines(path: Path, parts: int) -> list[tuple[int, int, int]]:
    """About equal byte ranges of whole lines: (start, end, number of the first line). A file of
    pretty-printed requests (:func:`~routeiq_assets.telemetry.otlp.otlp_documents`) is one part:
    its lines are no requests."""
    ranges = split_bytes(path, parts)
    counter = LineCounter(path, [start for start, _ in ranges])
    return [(start, end, counter.line_at(start)) for start, end in ranges]


def split_bytes(path: Path, parts: int) -> list[tuple[int, int]]:
    """:func:`split_lines` without the line numbers (:class:`LineCounter` counts them)."""
    path = Path(path)
    size = path.stat().st_size
    if is_multiline_document(path):
        return [(0, -1)]
    bounds = [0]
    with path.open("rb") as handle:
        for k in range(1, parts):
            handle.seek(max(size * k // parts, bounds[-1]))
            handle.readline()  # to the end of the line the cut falls in
            bounds.append(min(handle.tell(), size))
    bounds = sorted({*bounds, size})
    if len(bounds) < 2:
        return [(0, 0)]
    return list(zip(bounds, bounds[1:], strict=False))


class LineCounter:
    """The number of the line at each of these offsets of a file (the starts of its parts),
    counted when first asked for, in one pass in file order, by whichever thread asks (a part's
    normaliser, so that the parts after the first need not wait for the whole file to be
    counted). Counted where the file is mapped (no copy), each block's pages dropped from this
    process once counted (they stay in the page cache; else the whole file would count towards
    its RSS): 3.7 GB in 0.8 s here, where reading it in blocks to count them took 1.7 s."""

    def __init__(self, path: Path, starts: list[int]) -> None:
        self.path = Path(path)
        self.starts = sorted(set(starts))
        self._lines = {0: 1}  # the starts counted so far (in file order), and their lines
        self._lock = threading.Lock()

    def line_at(self, offset: int) -> int:
        if offset not in self.starts and offset:
            raise ValueError(f"{offset} is not one of the starts of {self.path}'s parts")
        with self._lock:
            if offset not in self._lines:
                self._count_to(offset)
            return self._lines[offset]

    def _count_to(self, offset: int) -> None:
        done = max(self._lines)
        line = self._lines[done]
        with (
            self.path.open("rb") as handle,
            mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mm,
        ):
            data = np.frombuffer(mm, dtype=np.uint8)
            try:
                for start in (s for s in self.starts if done < s <= offset):
                    for at in range(done, start, READ_BUFFER):
                        stop = min(at + READ_BUFFER, start)
                        line += int(np.count_nonzero(data[at:stop] == 10))
                        page = at - at % mmap.PAGESIZE
                        mm.madvise(mmap.MADV_DONTNEED, page, stop - page)
                    done = start
                    self._lines[start] = line
            finally:
                del data  # (the map cannot close while an array points into it)


def resolved_part(part: tuple[int, int, Any] | None) -> tuple[int, int, int] | None:
    """A part whose first line is still to be counted (a :class:`LineCounter`) with it."""
    if part is None or isinstance(part[2], int):
        return part
    start, end, counter = part
    return start, end, counter.line_at(start)


def merge_parts(parts: list[ColumnarBatch]) -> ColumnarBatch:
    """One batch from the batches of its parts, in file order: a decision or call already in an
    earlier part is a duplicate, as when the file is read in one go."""
    if len(parts) == 1:
        return parts[0]
    kept = drop_repeats(parts)
    merged = {name: join_parts([t[name] for t, _ in kept]) for name in parts[0].tables}
    return ColumnarBatch(
        merged,
        sum(p.records_in for p in parts),
        sum(p.duplicates_in_batch for p in parts) + sum(dropped for _, dropped in kept),
        sum(p.fast_records for p in parts),
    )
