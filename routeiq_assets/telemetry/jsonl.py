"""Read JSON-lines telemetry: bare routing decisions and the seed's legacy ``traces.jsonl``.

Two readers and a sniffer:

* :func:`read_decision_jsonl` - one ``routeiq.router_decision.v1`` payload per line (what the
  seed guide's extract script writes as ``routing_decisions.jsonl``), bare or wrapped by a log
  shipper. The contract is not checked here; normalisation does that.
* :func:`read_legacy_traces_jsonl` - the seed's legacy ``traces.jsonl``, one LLM call per line,
  mapped onto the ``gen_ai.*`` attribute names of an ``llm_call`` record.
* :func:`sniff_jsonl_kind` - which of the supported formats a file holds, from its first bytes.

A line that cannot be read becomes a ``bad`` record located at ``file:line`` whose ``raw`` is a
bounded excerpt, so one broken line never hides the rest of the file.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from routeiq_assets.contract import PAYLOAD_ATTRIBUTE
from routeiq_assets.contract.nesting import bounded
from routeiq_assets.telemetry.records import (
    BOM,
    TelemetryRecord,
    bad_record,
    parse_json_bytes,
)

JSONL_SNIFF_BYTES = 64 * 1024
SNIFF_MAX_LINES = 20
WRAPPER_KEYS = (PAYLOAD_ATTRIBUTE, "payload")
LEGACY_SPAN_NAME = "legacy.llm_call"
SYNTHETIC_IDS_ATTRIBUTE = "routeiq.synthetic_ids"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HEX = re.compile(r"[0-9a-f]+")
_INT_TEXT = re.compile(r"[+-]?\d+")
_JAEGER_ENVELOPE = {"data", "total", "limit", "offset", "errors"}
_JSON_TYPE_NAMES = {
    str: "string",
    int: "integer",
    float: "number",
    bool: "boolean",
    type(None): "null",
    list: "array",
    dict: "object",
}


class _FieldError(ValueError):
    """A field of a legacy line holds a value of the wrong type or range."""


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type ("string", "array", ...), for error messages."""
    return _JSON_TYPE_NAMES.get(type(value), type(value).__name__)


def _show(value: Any) -> str:
    text = repr(value[:60] if isinstance(value, str) else value)
    return text if len(text) <= 60 else text[:57] + "..."


def _bad(location: str, reason: str, raw_line: bytes) -> TelemetryRecord:
    return bad_record(location, reason, raw_line.decode("utf-8", "replace").rstrip("\r\n"))


def _json_lines(path: Path) -> Iterator[tuple[str, bytes, Any | TelemetryRecord]]:
    """Each non-blank line as ``(location, raw bytes, parsed JSON object)``.

    A line that is not UTF-8, not JSON, or not a JSON object comes back as a ``bad`` record in
    place of the object.
    """
    with path.open("rb") as handle:
        for line_no, raw_line in enumerate(handle, start=1):
            if line_no == 1:
                # Windows editors prepend a byte-order mark that json.loads refuses.
                raw_line = raw_line.removeprefix(BOM)
            if not raw_line.strip():
                continue
            location = f"{path.name}:{line_no}"
            document, _text, bad = parse_json_bytes(
                raw_line, location, "line", excerpt_of=raw_line.rstrip(b"\r\n")
            )
            if bad is not None:
                yield location, raw_line, bad
                continue
            if not isinstance(document, dict):
                reason = f"line is a JSON {json_type(document)}, expected a JSON object"
                yield location, raw_line, _bad(location, reason, raw_line)
                continue
            yield location, raw_line, document


# --- routing decisions -------------------------------------------------------------------------


def _unwrap_payload(document: dict[str, Any]) -> dict[str, Any]:
    """The decision payload of one line: the line itself, or what a wrapper key holds."""
    if "contract_version" in document or "event_id" in document:
        return document
    for key in WRAPPER_KEYS:
        if key not in document:
            continue
        inner = document[key]
        if isinstance(inner, str):
            try:
                inner = bounded(json.loads, inner)
            except (ValueError, RecursionError) as exc:
                raise _FieldError(f"wrapped payload {key!r} is not JSON: {exc}") from None
        if not isinstance(inner, dict):
            raise _FieldError(
                f"wrapped payload {key!r} is a JSON {json_type(inner)}, expected an object"
            )
        return inner
    # Neither marker nor wrapper: hand it on so normalisation names what the contract misses.
    return document


def read_decision_jsonl(path: Path | str) -> Iterator[TelemetryRecord]:
    """Yield one record per non-blank line of a JSONL file of decision payloads.

    A line is a bare ``routeiq.router_decision.v1`` payload, or an object wrapping it under
    ``routeiq.router_decision.payload`` (a JSON string) or ``payload`` (an object or JSON
    string). Each readable line becomes a ``decision`` record whose ``payload`` is always the
    parsed dict, with no trace/span ids and no span attributes; the payload is not validated.
    A line that is not UTF-8, not JSON, not a JSON object, or wraps something that is not an
    object becomes a ``bad`` record saying which.
    """
    path = Path(path)
    for location, raw_line, document in _json_lines(path):
        if isinstance(document, TelemetryRecord):
            yield document
            continue
        try:
            payload = _unwrap_payload(document)
        except _FieldError as exc:
            yield _bad(location, str(exc), raw_line)
            continue
        yield TelemetryRecord(
            "decision",
            location,
            data={"payload": payload, "trace_id": None, "span_id": None, "span_attributes": {}},
        )


# --- feedback -----------------------------------------------------------------------------------


def read_feedback_jsonl(path: Path | str) -> Iterator[TelemetryRecord]:
    """LLM-judge or user scores, one JSON object a line: ``{"event_id" or "trace_id", "score",
    "source", "created_at"}``. A line without an id or with a non-numeric score is ``bad``."""
    path = Path(path)
    for location, raw_line, document in _json_lines(path):
        if isinstance(document, TelemetryRecord):
            yield document
            continue
        event_id, trace_id = document.get("event_id"), document.get("trace_id")
        score = document.get("score")
        problem = None
        if not (isinstance(event_id, str) and event_id) and not (
            isinstance(trace_id, str) and trace_id
        ):
            problem = "feedback needs a non-empty event_id or trace_id"
        elif isinstance(score, bool) or not isinstance(score, (int, float)) or score != score:
            problem = f"score must be a number, got {json_type(score)} {_show(score)}"
        if problem:
            yield _bad(location, problem, raw_line)
            continue
        yield TelemetryRecord(
            "feedback",
            location,
            data={
                "event_id": event_id or None,
                "trace_id": trace_id.lower() if isinstance(trace_id, str) and trace_id else None,
                "score": float(score),
                "source": str(document.get("source") or "unknown"),
                "created_at": document.get("created_at"),
            },
        )


# --- legacy traces.jsonl -----------------------------------------------------------------------


def _optional_int(document: dict[str, Any], key: str) -> int | None:
    value = document.get(key)
    if value is None:
        return None
    whole = (
        (isinstance(value, int) and not isinstance(value, bool))
        or (isinstance(value, float) and value.is_integer())
        or (isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()) is not None)
    )
    if not whole:
        raise _FieldError(
            f"{key} is a JSON {json_type(value)} ({_show(value)}), expected a whole number"
        )
    number = int(value)
    if number < 0:
        raise _FieldError(f"{key} is negative ({number})")
    return number


def _optional_float(
    document: dict[str, Any],
    key: str,
    *,
    nan_is_missing: bool,
    low: float = 0.0,
    high: float = math.inf,
) -> float | None:
    value = document.get(key)
    if value is None:
        return None
    number: float | None = None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None:
        raise _FieldError(f"{key} is a JSON {json_type(value)} ({_show(value)}), expected a number")
    if math.isnan(number) and nan_is_missing and isinstance(value, float):
        # json.dumps writes a pandas missing value as NaN; it means "no score", not a score.
        return None
    if not math.isfinite(number):
        raise _FieldError(f"{key} is not a finite number ({_show(value)})")
    if not low <= number <= high:
        raise _FieldError(f"{key} is {_show(value)}, expected a number from {low:g} to {high:g}")
    return number


def _optional_text(document: dict[str, Any], key: str) -> str | None:
    value = document.get(key)
    if value is None or isinstance(value, str):
        return value
    raise _FieldError(f"{key} is a JSON {json_type(value)} ({_show(value)}), expected a string")


def _required_text(document: dict[str, Any], key: str) -> str:
    value = document.get(key)
    if value is None:
        raise _FieldError(f"line has no {key}")
    if not isinstance(value, str):
        raise _FieldError(f"{key} is a JSON {json_type(value)} ({_show(value)}), expected a string")
    return value


def _legacy_id(document: dict[str, Any], key: str, hex_len: int) -> str | None:
    """A given id, None when absent: hex ids (UUID-style dashes dropped) as lowercase hex, any
    other text as given (RouteIQ's generator writes ids such as ``trace_000001``)."""
    value = document.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _FieldError(f"{key} is a JSON {json_type(value)} ({_show(value)}), expected text")
    text = value.strip().lower().replace("-", "")
    if len(text) == hex_len and _HEX.fullmatch(text):
        return text
    return value


def _unix_nanos(value: Any) -> int:
    """Nanoseconds since the epoch of an ISO-8601 or unix (s/ms/us/ns) timestamp; 0 if unknown."""
    if isinstance(value, bool) or value is None:
        return 0
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text) if not _INT_TEXT.fullmatch(text) else int(text)
        except ValueError:
            try:
                moment = datetime.fromisoformat(text)
            except ValueError:
                return 0
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            delta = moment - _EPOCH
            nanos = (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000
            return max(0, nanos)
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        return 0
    # The unit is not written down, so read it from the magnitude: 1e11 s is the year 5138.
    for limit, nanos_per_unit in ((1e11, 10**9), (1e14, 10**6), (1e17, 10**3)):
        if value < limit:
            if isinstance(value, int):
                return value * nanos_per_unit
            # Whole microseconds: a float of nanoseconds since 1970 is past float precision.
            return round(value * nanos_per_unit / 1000) * 1000
    return int(value) if value < 2**63 else 0


def _legacy_record(location: str, raw_line: bytes, document: dict[str, Any]) -> TelemetryRecord:
    problems: list[str] = []

    def field(read: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return read(document, *args, **kwargs)
        except _FieldError as exc:
            problems.append(str(exc))
            return None

    query = field(_required_text, "query")
    model_name = field(_required_text, "model_name")
    if model_name is not None and not model_name.strip():
        problems.append("model_name is empty")
    response = field(_optional_text, "response")
    task_name = field(_optional_text, "task_name")
    response_time = field(_optional_float, "response_time", nan_is_missing=False)
    if response_time is not None and response_time < 0:
        problems.append(f"response_time is negative ({response_time})")
    input_tokens = field(_optional_int, "input_tokens")
    output_tokens = field(_optional_int, "output_tokens")
    token_num = field(_optional_int, "token_num")
    performance = field(_optional_float, "performance", nan_is_missing=True, high=1.0)
    trace_id = field(_legacy_id, "trace_id", 32)
    span_id = field(_legacy_id, "span_id", 16)
    if problems:
        return _bad(location, "; ".join(problems), raw_line)

    attributes: dict[str, Any] = {
        "gen_ai.prompt": query,
        "gen_ai.request.model": model_name,
        "gen_ai.response.model": model_name,
        "gen_ai.completion": response,
        "gen_ai.usage.input_tokens": input_tokens,
        "gen_ai.usage.output_tokens": output_tokens,
        "gen_ai.usage.total_tokens": (
            token_num
            if token_num is not None
            else input_tokens + output_tokens
            if input_tokens is not None and output_tokens is not None
            else None
        ),
        "litellm.task": task_name,
        "routeiq.quality_score": performance,
        "routeiq.ground_truth": document.get("ground_truth"),
    }
    if trace_id is None or span_id is None:
        # Old exports lack ids; hashing the line (not its file or position) keeps the ids stable
        # when the same export is landed again, so re-ingesting it deduplicates.
        digest = hashlib.sha256(raw_line.rstrip(b"\r\n")).hexdigest()
        trace_id = trace_id or digest[:32]
        span_id = span_id or digest[32:48]
        attributes[SYNTHETIC_IDS_ATTRIBUTE] = True
    return TelemetryRecord(
        "llm_call",
        location,
        data={
            "trace_id": trace_id,
            "span_id": span_id,
            "name": LEGACY_SPAN_NAME,
            "parent_span_id": None,
            "start_unix_nano": _unix_nanos(document.get("timestamp")),
            "duration_ms": None if response_time is None else response_time * 1000,
            "status_code": 1,
            "attributes": attributes,
        },
    )


def read_legacy_traces_jsonl(path: Path | str) -> Iterator[TelemetryRecord]:
    """Yield one ``llm_call`` record per non-blank line of a legacy ``traces.jsonl``.

    Fields map onto ``gen_ai.*`` attributes (``performance`` to ``routeiq.quality_score``,
    ``ground_truth`` to ``routeiq.ground_truth``); ``response_time`` seconds become
    ``duration_ms`` (None when absent) and ``timestamp`` (ISO-8601 or unix s/ms/us/ns) becomes
    ``start_unix_nano`` (0 when absent or unreadable). A line missing trace_id or span_id gets
    ids hashed from its bytes and ``routeiq.synthetic_ids`` = True. A line without ``query`` or
    ``model_name``, or with a value of the wrong type (tokens "abc", performance "high"), is a
    ``bad`` record naming every such field and its JSON type; nothing is coerced to None.
    """
    path = Path(path)
    for location, raw_line, document in _json_lines(path):
        if isinstance(document, TelemetryRecord):
            yield document
        else:
            yield _legacy_record(location, raw_line, document)


# --- sniffing ----------------------------------------------------------------------------------


def _is_jaeger(document: Any) -> bool:
    if not isinstance(document, dict) or not isinstance(document.get("data"), list):
        return False
    traces = document["data"]
    if not traces:
        # An empty API answer still has the envelope, and nothing else.
        return set(document) <= _JAEGER_ENVELOPE
    return any(isinstance(trace, dict) and "spans" in trace for trace in traces[:5])


def _line_kind(document: dict[str, Any]) -> str | None:
    if "score" in document and "contract_version" not in document and "query" not in document:
        return "feedback_jsonl"
    if "contract_version" in document or "event_id" in document:
        return "decision_jsonl"
    if any(key in document for key in WRAPPER_KEYS):
        return "decision_jsonl"
    if "query" in document and "model_name" in document:
        return "legacy_traces_jsonl"
    return None


def _leading_keys(text: str) -> set[str]:
    """Top-level keys of a JSON object cut short, up to and including the one it was cut in."""
    decoder = json.JSONDecoder()
    keys: set[str] = set()
    pos = text.find("{") + 1
    while pos:
        try:
            key, pos = decoder.raw_decode(text, _skip_space(text, pos))
        except (ValueError, RecursionError):
            break
        if not isinstance(key, str):
            break
        keys.add(key)
        pos = _skip_space(text, pos)
        if text[pos : pos + 1] != ":":
            break
        try:
            _, pos = decoder.raw_decode(text, _skip_space(text, pos + 1))
        except (ValueError, RecursionError):  # a value nested deeper than Python recurses
            break
        pos = _skip_space(text, pos)
        if text[pos : pos + 1] != ",":
            break
        pos += 1
    return keys


def _skip_space(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in " \t\r\n":
        pos += 1
    return pos


def sniff_jsonl_kind(path: Path | str) -> str:
    """Best guess of a JSON telemetry file's format from its first 64 KB.

    Returns one of ``"empty"``, ``"otlp_json"``, ``"jaeger_json"``, ``"decision_jsonl"``,
    ``"legacy_traces_jsonl"`` or ``"unknown"``. Never raises on the file's content. Line
    formats are judged by the first line that parses as a JSON object, so a broken first
    line does not hide the format.
    """
    with Path(path).open("rb") as handle:
        head = handle.read(JSONL_SNIFF_BYTES).removeprefix(BOM)
    if not head.strip():
        return "empty"
    if b'"resourceSpans"' in head:
        return "otlp_json"
    text = head.decode("utf-8", "replace")
    is_document = text.lstrip().startswith("{")
    if is_document:
        try:
            if _is_jaeger(json.loads(text)):
                return "jaeger_json"
        except (json.JSONDecodeError, RecursionError):
            pass  # larger than the head, JSON lines, or nested too deep; judged below
    lines = [line for line in text.splitlines() if line.strip()]
    for line in lines[:SNIFF_MAX_LINES]:
        try:
            document = json.loads(line)
        except (json.JSONDecodeError, RecursionError):  # nested deeper than Python recurses
            continue
        if isinstance(document, dict):
            if _is_jaeger(document):
                return "jaeger_json"
            return _line_kind(document) or "unknown"
    cut_short = len(head) == JSONL_SNIFF_BYTES
    if cut_short and len(lines) == 1 and lines[0].lstrip().startswith("{"):
        # One line longer than the head (a huge query or payload): judge it by its leading keys.
        keys = _leading_keys(lines[0])
        if keys & {"contract_version", "event_id", *WRAPPER_KEYS}:
            return "decision_jsonl"
        if keys & {"query", "model_name"}:
            return "legacy_traces_jsonl"
    # A Jaeger dump is often one big (or pretty-printed) document that the head cannot parse.
    if is_document and all(key in text for key in ('"data"', '"traceID"', '"spans"')):
        return "jaeger_json"
    return "unknown"
