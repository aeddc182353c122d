"""Read OTLP JSON trace files (collector file-exporter output: one export request a line).

The reader turns spans into records of two kinds: routing decisions (the
``routeiq.router_decision.v1`` event) and LLM calls (``gen_ai.*`` spans). A line that is not
JSON, a payload that breaks the contract, or a span without ids or with a value of the wrong
type becomes a quarantine record naming the file, line and span. Spans of neither kind are
skipped.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from routeiq_assets.contract import DECISION_EVENT_NAME, PAYLOAD_ATTRIBUTE
from routeiq_assets.telemetry.records import BOM, TelemetryRecord, bad_record, parse_json_bytes

_HEX_ID = re.compile(r"[0-9a-fA-F]+")
LLM_CALL_KEYS = ("gen_ai.prompt", "gen_ai.request.model")  # a span with either is an LLM call


def any_value(value: dict[str, Any] | None) -> Any:
    """Decode an OTLP AnyValue (ints may arrive as strings in protobuf-JSON)."""
    if not value:
        return None
    if "stringValue" in value:
        return value["stringValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "boolValue" in value:
        return bool(value["boolValue"])
    if "arrayValue" in value:
        return [any_value(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return {
            kv["key"]: any_value(kv.get("value")) for kv in value["kvlistValue"].get("values", [])
        }
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def attributes(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {item["key"]: any_value(item.get("value")) for item in items or []}


def normalise_id(raw: Any, hex_len: int) -> str | None:
    """Trace/span ids as lowercase hex; accept hex or base64 (protobuf-JSON) forms."""
    if not raw or not isinstance(raw, str):
        return None
    if len(raw) == hex_len and _HEX_ID.fullmatch(raw):
        return raw.lower()
    try:
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return None
    return decoded.hex() if len(decoded) * 2 == hex_len else None


def unix_nano(value: Any) -> int:
    """A span's start or end time, ``int(value or 0)`` (protobuf-JSON sends a string); one
    beyond a 64-bit integer is refused (ValueError), as no warehouse column holds it."""
    try:
        number = int(value or 0)
    except OverflowError:  # an infinite float
        raise ValueError(f"time {value!r} is out of range") from None
    if not -(2**63) <= number <= 2**63 - 1:
        raise ValueError(f"time {value!r} is out of range")
    return number


def span_records(span: Any, location: str) -> Iterator[TelemetryRecord]:
    """Records of one span: its decision events, and the LLM call when it is one.

    Attribute values are read only for those spans; a value that cannot be read (an intValue
    that is not an integer, say) makes the span one bad record. So does a span not shaped like
    one (events that are not objects, a status that is text...): it might have been a decision.
    """
    if not isinstance(span, dict):
        yield bad_record(location, "span is not a JSON object", json.dumps(span))
        return
    trace_id = normalise_id(span.get("traceId"), 32)
    span_id = normalise_id(span.get("spanId"), 16)
    name = span.get("name", "")
    where = f"{location} span {span.get('spanId')!s}"
    items = span.get("attributes")
    try:
        decision_events = [
            e for e in span.get("events") or [] if e.get("name") == DECISION_EVENT_NAME
        ]
        is_llm_call = any(item["key"] in LLM_CALL_KEYS for item in items or [])
    except (AttributeError, TypeError, KeyError) as exc:
        yield bad_record(where, f"span is not shaped like an OTLP span: {exc!r}", json.dumps(span))
        return
    if not (decision_events or is_llm_call):
        return
    if not (trace_id and span_id):
        yield bad_record(
            where,
            "span has no valid traceId/spanId",
            json.dumps(span),
        )
        return
    try:
        attrs = attributes(items)
        payloads = [
            attributes(event.get("attributes")).get(PAYLOAD_ATTRIBUTE) for event in decision_events
        ]
        start = unix_nano(span.get("startTimeUnixNano")) if is_llm_call else 0
        end = unix_nano(span.get("endTimeUnixNano")) if is_llm_call else 0
        status_code = (span.get("status") or {}).get("code") if is_llm_call else None
    except (ValueError, TypeError, AttributeError, KeyError, OverflowError) as exc:
        yield bad_record(
            where,
            f"span has a value of the wrong type: {exc}",
            json.dumps(span),
        )
        return
    for event, payload in zip(decision_events, payloads, strict=True):
        if payload is None:
            yield bad_record(
                where,
                f"event has no {PAYLOAD_ATTRIBUTE}",
                json.dumps(event),
            )
            continue
        yield TelemetryRecord(
            "decision",
            where,
            data={
                "payload": payload,
                "trace_id": trace_id,
                "span_id": span_id,
                "span_attributes": attrs,
            },
        )
    if is_llm_call:
        yield TelemetryRecord(
            "llm_call",
            where,
            data={
                "trace_id": trace_id,
                "span_id": span_id,
                "name": name,
                "parent_span_id": normalise_id(span.get("parentSpanId"), 16),
                "start_unix_nano": start,
                "duration_ms": max(0, end - start) / 1e6,
                "status_code": status_code,
                "attributes": attrs,
            },
        )


def scope_spans(resource: dict[str, Any]) -> list[dict[str, Any]]:
    """A resource's scopes (``instrumentationLibrarySpans`` in old exporters)."""
    return resource.get("scopeSpans") or resource.get("instrumentationLibrarySpans") or []


def line_records(raw_line: bytes, location: str) -> Iterator[TelemetryRecord]:
    """Records of one line (one export request) of an OTLP JSON file."""
    document, text, bad = parse_json_bytes(raw_line, location, "line")
    if bad is not None:
        yield bad
        return
    if not isinstance(document, dict) or "resourceSpans" not in document:
        reason = "not an OTLP export (no resourceSpans)"
        if isinstance(document, dict) and "resource_spans" in document:
            # protobuf's JSON printer with preserving_proto_field_name: the OTLP/JSON
            # specification allows only the lowerCamelCase keys
            reason += "; its keys are proto field names (resource_spans): OTLP/JSON wants camelCase"
        yield bad_record(location, reason, text)
        return
    try:
        spans = [
            span
            for resource in document.get("resourceSpans") or []
            for scope in scope_spans(resource)
            for span in scope.get("spans") or []
        ]
    except (AttributeError, TypeError) as exc:  # a resource or scope that is not an object...
        yield bad_record(location, f"line is not shaped like an OTLP export: {exc!r}", text)
        return
    for span in spans:
        yield from span_records(span, location)


# A file of pretty-printed export requests is parsed whole: up to this size (a pretty-printed
# document costs about ten times its size in Python objects; the collector's file exporter
# writes one request a line, which has no limit).
DOCUMENT_MAX_BYTES = 256 * 2**20
FIRST_LINE_BYTES = 64 * 2**10


def is_multiline_document(path: Path) -> bool:
    """Whether an OTLP JSON file is read as pretty-printed export requests (each spread over
    many lines) rather than one request a line: at most DOCUMENT_MAX_BYTES, and its first
    non-blank line, an object's start, is no JSON by itself. Only the first 64 KiB are read: a
    longer first line is a request a line."""
    if Path(path).stat().st_size > DOCUMENT_MAX_BYTES:
        return False
    with Path(path).open("rb") as handle:
        head = handle.read(FIRST_LINE_BYTES).removeprefix(BOM)
    for line in head.splitlines(keepends=True):
        if not line.strip():
            continue
        if not line.lstrip().startswith(b"{") or not line.endswith((b"\n", b"\r")):
            return False  # not an object, or longer than the head: one request a line
        try:
            json.loads(line)
        except (ValueError, RecursionError):
            return True
        return False
    return False


def otlp_documents(path: Path) -> list[tuple[int, bytes]] | None:
    """The export requests of a pretty-printed OTLP JSON file, each as its bytes with the number
    of the line it starts on; None when the file is one request a line, or is not a sequence of
    JSON documents (bigger than DOCUMENT_MAX_BYTES, not UTF-8, or broken somewhere): it is then
    read line by line, and its bad lines quarantined one by one."""
    path = Path(path)
    if not is_multiline_document(path):
        return None
    try:
        text = path.read_bytes().removeprefix(BOM).decode("utf-8")
    except UnicodeDecodeError:
        return None
    decoder = json.JSONDecoder()
    documents: list[tuple[int, bytes]] = []
    pos, line_no, counted = 0, 1, 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        if pos == len(text):
            return documents
        try:
            _, end = decoder.raw_decode(text, pos)
        except (ValueError, RecursionError):
            return None
        line_no += text.count("\n", counted, pos)
        counted = pos
        documents.append((line_no, text[pos:end].encode("utf-8")))
        pos = end


def read_otlp_json(path: Path) -> Iterator[TelemetryRecord]:
    """Yield every record of one OTLP JSON file: one export request a line (the collector's
    file exporter), or pretty-printed requests (:func:`otlp_documents`), located by the line
    each starts on."""
    path = Path(path)
    documents = otlp_documents(path)
    if documents is not None:
        for line_no, raw in documents:
            yield from line_records(raw, f"{path.name}:{line_no}")
        return
    with path.open("rb") as handle:
        for line_no, raw_line in enumerate(handle, start=1):
            if line_no == 1:
                raw_line = raw_line.removeprefix(BOM)
            if raw_line.strip():
                yield from line_records(raw_line, f"{path.name}:{line_no}")
