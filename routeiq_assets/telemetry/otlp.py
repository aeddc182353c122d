"""Read OTLP JSON trace files (collector file-exporter output: one export request a line).

The reader turns spans into records of two kinds: routing decisions (the
``routeiq.router_decision.v1`` event) and LLM calls (``gen_ai.*`` spans). A line that is not
JSON, a payload that breaks the contract, or a span without ids becomes a quarantine record
naming the file, line and span. Spans of neither kind are counted and skipped.
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
from routeiq_assets.telemetry.records import TelemetryRecord, excerpt

_HEX_ID = re.compile(r"[0-9a-fA-F]+")


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


def _span_records(span: dict[str, Any], location: str) -> Iterator[TelemetryRecord]:
    trace_id = normalise_id(span.get("traceId"), 32)
    span_id = normalise_id(span.get("spanId"), 16)
    name = span.get("name", "")
    where = f"{location} span {span.get('spanId')!s}"
    attrs = attributes(span.get("attributes"))
    decision_events = [e for e in span.get("events") or [] if e.get("name") == DECISION_EVENT_NAME]
    is_llm_call = "gen_ai.prompt" in attrs or "gen_ai.request.model" in attrs
    if (decision_events or is_llm_call) and not (trace_id and span_id):
        yield TelemetryRecord(
            "bad",
            where,
            reason="span has no valid traceId/spanId",
            raw=excerpt(json.dumps(span)),
        )
        return
    for event in decision_events:
        payload = attributes(event.get("attributes")).get(PAYLOAD_ATTRIBUTE)
        if payload is None:
            yield TelemetryRecord(
                "bad",
                where,
                reason=f"event has no {PAYLOAD_ATTRIBUTE}",
                raw=excerpt(json.dumps(event)),
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
        start = int(span.get("startTimeUnixNano") or 0)
        end = int(span.get("endTimeUnixNano") or 0)
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
                "status_code": (span.get("status") or {}).get("code"),
                "attributes": attrs,
            },
        )


def read_otlp_json(path: Path) -> Iterator[TelemetryRecord]:
    """Yield every record of one OTLP JSON file (one export request per line, or one document)."""
    path = Path(path)
    with path.open("rb") as handle:
        for line_no, raw_line in enumerate(handle, start=1):
            if not raw_line.strip():
                continue
            location = f"{path.name}:{line_no}"
            try:
                text = raw_line.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield TelemetryRecord(
                    "bad",
                    location,
                    reason=f"line is not UTF-8: {exc}",
                    raw=excerpt(raw_line.decode("utf-8", "replace")),
                )
                continue
            try:
                document = json.loads(text)
            except json.JSONDecodeError as exc:
                yield TelemetryRecord(
                    "bad", location, reason=f"line is not JSON: {exc}", raw=excerpt(text)
                )
                continue
            if not isinstance(document, dict) or "resourceSpans" not in document:
                yield TelemetryRecord(
                    "bad",
                    location,
                    reason="not an OTLP export (no resourceSpans)",
                    raw=excerpt(text),
                )
                continue
            for resource in document.get("resourceSpans") or []:
                for scope in (
                    resource.get("scopeSpans") or resource.get("instrumentationLibrarySpans") or []
                ):
                    for span in scope.get("spans") or []:
                        yield from _span_records(span, location)
