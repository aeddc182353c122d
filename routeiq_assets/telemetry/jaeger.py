"""Read traces from Jaeger: JSON dumps, the query HTTP API, and the seed guide's extract outputs.

Jaeger stores what an OTel gateway exports, in its own shape: span attributes become typed
**tags**, span events become **logs** (the event name in a field called ``event``), and ids are
hex strings that may have lost their leading zeros. This module maps that shape onto
:class:`~routeiq_assets.telemetry.records.TelemetryRecord` exactly as the OTLP reader does:
routing decisions (the ``routeiq.router_decision.v1`` event, or its payload flattened into a tag),
LLM calls (``gen_ai.*`` spans), and quarantine records for anything unreadable. Spans of
neither kind are skipped and counted in :class:`JaegerStats`.

The HTTP client pulls ``/api/traces`` window by window. Jaeger silently caps a search at
``limit`` traces, so a window that comes back full is split in half and queried again, down to
one second; traces seen in two windows are returned once. Only the standard library is used.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from routeiq_assets.contract import DECISION_EVENT_NAME, PAYLOAD_ATTRIBUTE
from routeiq_assets.contract.nesting import bounded
from routeiq_assets.redact import mask_url
from routeiq_assets.telemetry.otlp import normalise_id
from routeiq_assets.telemetry.records import (
    BOM,
    TelemetryRecord,
    as_float,
    as_int,
    bad_record,
    first_value,
    parse_json_bytes,
    quality_value,
    token_counts,
)

logger = logging.getLogger(__name__)

MIN_WINDOW_US = 1_000_000  # the shortest max_window_us a caller may ask for
DEFAULT_WINDOW_US = 3_600 * 1_000_000
BODY_EXCERPT_CHARS = 500
_HEX = frozenset("0123456789abcdef")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

LEGACY_TRACE_KEYS = (
    "query",
    "model_name",
    "response",
    "response_time",
    "token_num",
    "input_tokens",
    "output_tokens",
    "task_name",
    "trace_id",
    "span_id",
    "timestamp",
    "performance",
    "ground_truth",
)


@dataclass
class JaegerStats:
    """Counters for one read or pull; pass one in to see what was skipped or split.

    ``skipped_spans`` are spans that are neither a decision nor an LLM call (proxy, DB, HTTP
    spans...). ``split_windows`` are windows that came back with ``limit`` traces and were
    split in two to pull every trace.
    """

    traces: int = 0
    spans: int = 0
    skipped_spans: int = 0
    decisions: int = 0
    llm_calls: int = 0
    bad_records: int = 0
    requests: int = 0
    retries: int = 0
    windows: int = 0
    split_windows: int = 0
    duplicate_traces: int = 0


class JaegerError(RuntimeError):
    """Base class of the errors the Jaeger query client raises."""


class JaegerIncompleteError(JaegerError):
    """A window the API answered with ``limit`` traces cannot be split further (one
    microsecond, the API's resolution): its traces beyond the limit cannot be pulled."""


class JaegerUnavailableError(JaegerError):
    """The query API did not answer (timeouts, connection errors, HTTP 5xx) after every retry."""


class JaegerRequestError(JaegerError):
    """The query API rejected the request (HTTP 4xx) or answered with something not Jaeger."""


# --- Jaeger JSON -> records -------------------------------------------------------------------


def jaeger_id(raw: Any, hex_len: int) -> str | None:
    """A Jaeger trace/span id as lowercase hex of ``hex_len`` chars, left-padded with zeros.

    Jaeger prints ids without leading zeros (and 64-bit trace ids as 16 chars), so shorter hex
    is padded; base64 ids (protobuf-JSON) are accepted as the OTLP reader accepts them.
    """
    if not raw or not isinstance(raw, str):
        return None
    text = raw.strip().lower()
    if 0 < len(text) <= hex_len and set(text) <= _HEX:
        padded = text.rjust(hex_len, "0")
        return None if set(padded) == {"0"} else padded
    return normalise_id(raw, hex_len)


def tag_value(tag: dict[str, Any]) -> Any:
    """The Python value of one Jaeger tag or log field, by its declared ``type``."""
    kind = str(tag.get("type") or "string").lower()
    value = tag.get("value")
    try:
        if kind == "int64":
            return int(value)
        if kind == "float64":
            return float(value)
        if kind == "bool":
            return value if isinstance(value, bool) else str(value).strip().lower() == "true"
    except (TypeError, ValueError):
        pass  # a mistyped value is kept as sent rather than dropping the tag
    return value


def tags_dict(items: Any) -> dict[str, Any]:
    """Jaeger ``tags`` / log ``fields`` as a flat dict; entries without a key are ignored."""
    if not isinstance(items, list):
        return {}
    return {
        str(item["key"]): tag_value(item)
        for item in items
        if isinstance(item, dict) and item.get("key") is not None
    }


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _status_code(tags: dict[str, Any]) -> int:
    status = str(tags.get("otel.status_code") or "").upper()
    if status == "ERROR" or tags.get("error") is True:
        return 2
    return 1 if status == "OK" else 0


def _parent_span_id(span: dict[str, Any]) -> str | None:
    for ref in _list(span.get("references")):
        if isinstance(ref, dict) and str(ref.get("refType", "")).upper() == "CHILD_OF":
            return jaeger_id(ref.get("spanID"), 16)
    # Old Jaeger versions put the parent in a top-level field instead of a reference.
    return jaeger_id(span.get("parentSpanID"), 16)


def _span_records(
    span: dict[str, Any], source: str, stats: JaegerStats
) -> Iterator[TelemetryRecord]:
    raw_trace, raw_span = span.get("traceID"), span.get("spanID")
    where = f"{source} trace {raw_trace} span {raw_span}"
    trace_id, span_id = jaeger_id(raw_trace, 32), jaeger_id(raw_span, 16)
    tags = tags_dict(span.get("tags"))
    logs = [
        tags_dict(log.get("fields")) for log in _list(span.get("logs")) if isinstance(log, dict)
    ]
    decision_logs = [fields for fields in logs if fields.get("event") == DECISION_EVENT_NAME]
    tag_payload = tags.get(PAYLOAD_ATTRIBUTE)
    is_llm_call = "gen_ai.prompt" in tags or "gen_ai.request.model" in tags
    if not (decision_logs or tag_payload is not None or is_llm_call):
        stats.skipped_spans += 1
        return
    if not (trace_id and span_id):
        stats.bad_records += 1
        yield bad_record(
            where,
            "span has no valid traceID/spanID",
            json.dumps(span, default=str),
        )
        return

    def decision(payload: Any) -> TelemetryRecord:
        stats.decisions += 1
        data = {
            "payload": payload,
            "trace_id": trace_id,
            "span_id": span_id,
            "span_attributes": tags,
        }
        return TelemetryRecord("decision", where, data=data)

    seen_payloads = []
    for fields in decision_logs:
        payload = fields.get(PAYLOAD_ATTRIBUTE)
        if payload is None:
            stats.bad_records += 1
            yield bad_record(
                where,
                f"log event {DECISION_EVENT_NAME} has no {PAYLOAD_ATTRIBUTE} field",
                json.dumps(fields, default=str),
            )
            continue
        seen_payloads.append(payload)
        yield decision(payload)
    # Exporters that flatten events into tags may also keep the log: emit that payload once.
    if tag_payload is not None and tag_payload not in seen_payloads:
        yield decision(tag_payload)

    if is_llm_call:
        start_us, duration_us = (
            as_int(span.get("startTime") or 0),
            as_int(span.get("duration") or 0),
        )
        if start_us is None or duration_us is None:
            stats.bad_records += 1
            yield bad_record(
                where,
                "span has a non-numeric startTime/duration (expected microseconds)",
                json.dumps(span, default=str),
            )
            return
        attrs = dict(tags)
        if "gen_ai.prompt" not in attrs:
            prompt = next((f["gen_ai.prompt"] for f in logs if "gen_ai.prompt" in f), None)
            if prompt is not None:
                attrs["gen_ai.prompt"] = prompt
        stats.llm_calls += 1
        yield TelemetryRecord(
            "llm_call",
            where,
            data={
                "trace_id": trace_id,
                "span_id": span_id,
                "name": span.get("operationName"),
                "parent_span_id": _parent_span_id(span),
                "start_unix_nano": start_us * 1000,
                "duration_ms": max(0, duration_us) / 1000,
                "status_code": _status_code(tags),
                "attributes": attrs,
            },
        )


def records_from_jaeger_document(
    doc: dict[str, Any], source: str, stats: JaegerStats | None = None
) -> Iterator[TelemetryRecord]:
    """Every record of one Jaeger query API document (``{"data": [trace, ...], ...}``).

    Never raises for bad data: a document without a ``data`` list, a trace or span that is not
    an object, a decision/LLM span without ids, and each entry of the document's ``errors`` list
    become ``bad`` records. Locations read ``"{source} trace {traceID} span {spanID}"``. Skipped
    spans (neither kind) are counted in ``stats.skipped_spans`` when ``stats`` is given.
    """
    stats = stats if stats is not None else JaegerStats()
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        stats.bad_records += 1
        yield bad_record(
            source,
            'not a Jaeger query API document (no "data" list of traces)',
            json.dumps(doc, default=str),
        )
        return
    for index, trace in enumerate(data):
        if not isinstance(trace, dict):
            stats.bad_records += 1
            yield bad_record(
                f"{source} trace #{index}",
                f"trace is a JSON {type(trace).__name__}, expected an object",
                json.dumps(trace, default=str),
            )
            continue
        stats.traces += 1
        if not isinstance(trace.get("spans"), list):
            stats.bad_records += 1
            yield bad_record(
                f"{source} trace {trace.get('traceID')}",
                'trace has no "spans" list',
                json.dumps(trace, default=str),
            )
            continue
        for span in trace["spans"]:
            stats.spans += 1
            if not isinstance(span, dict):
                stats.bad_records += 1
                yield bad_record(
                    f"{source} trace {trace.get('traceID')}",
                    f"span is a JSON {type(span).__name__}, expected an object",
                    json.dumps(span, default=str),
                )
                continue
            yield from _span_records(span, source, stats)
    for error in _list(doc.get("errors")):
        stats.bad_records += 1
        message = error.get("msg") if isinstance(error, dict) else error
        yield bad_record(
            f"{source} errors",
            f"Jaeger reported an error for this query: {message}",
            json.dumps(error, default=str),
        )


def read_jaeger_json(
    path: Path | str, stats: JaegerStats | None = None
) -> Iterator[TelemetryRecord]:
    """Every record of one file holding a Jaeger query API document (a UI "Download JSON" dump).

    A file that is not UTF-8 JSON or has no ``data`` list yields one ``bad`` record naming the
    file; records' locations start with the file name.
    """
    stats = stats if stats is not None else JaegerStats()
    path = Path(path)
    doc, text, bad = parse_json_bytes(path.read_bytes().removeprefix(BOM), path.name, "file")
    if bad is not None:
        stats.bad_records += 1
        yield bad
        return
    if not isinstance(doc, dict) or not isinstance(doc.get("data"), list):
        stats.bad_records += 1
        yield bad_record(
            path.name,
            'not a Jaeger query API document (no "data" list of traces)',
            text,
        )
        return
    yield from records_from_jaeger_document(doc, path.name, stats)


# --- Jaeger query HTTP API --------------------------------------------------------------------


def _iso_us(us: int) -> str:
    return (_EPOCH + timedelta(microseconds=us)).isoformat().replace("+00:00", "Z")


def _body_excerpt(body: bytes) -> str:
    text = body.decode("utf-8", "replace").strip()
    return text if len(text) <= BODY_EXCERPT_CHARS else text[:BODY_EXCERPT_CHARS] + "..."


def _describe(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    if isinstance(exc, urllib.error.URLError) and reason is not None:
        return f"{type(reason).__name__}: {reason}"
    return f"{type(exc).__name__}: {exc}"


def _get_document(
    url: str,
    window: str,
    timeout_s: float,
    retries: int,
    backoff_s: float,
    sleep: Callable[[float], Any],
    stats: JaegerStats,
) -> dict[str, Any]:
    attempts = max(1, retries)
    last_error = "no attempt made"
    for attempt in range(attempts):
        if attempt:
            stats.retries += 1
            sleep(backoff_s * 2 ** (attempt - 1))
        stats.requests += 1
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            try:
                detail = _body_excerpt(exc.read())
            except (OSError, http.client.HTTPException):
                detail = ""
            # 429 is the server asking us to slow down, not a bad request: retry it.
            if exc.code >= 500 or exc.code == 429:
                last_error = f"HTTP {exc.code}: {detail or exc.reason}"
                continue
            raise JaegerRequestError(
                f"Jaeger query API rejected {mask_url(url)} with HTTP {exc.code} for window "
                f"{window}: {detail or exc.reason}. Check the service name (it must be one Jaeger "
                "lists under /api/services) and the Jaeger URL."
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            # OSError covers URLError (refused, DNS), TimeoutError and reset connections.
            last_error = _describe(exc)
            continue
        try:
            doc = bounded(json.loads, body)
        except (ValueError, RecursionError):
            doc = None
        # Jaeger answers {"data": [...]} or {"data": null}; anything else is not Jaeger.
        if not (isinstance(doc, dict) and isinstance(doc.get("data", False), list | None)):
            raise JaegerRequestError(
                f"{mask_url(url)} answered with something that is not a Jaeger query API document: "
                f"{_body_excerpt(body)!r}. Check that the URL points at the Jaeger query "
                "service (usually port 16686), not the collector or a proxy page."
            )
        return doc
    raise JaegerUnavailableError(
        f"Jaeger query API at {mask_url(url)} did not answer for window {window} after {attempts} "
        f"attempts; last error: {last_error}. Check that the Jaeger query service is up and "
        "reachable from here (the query/UI port, usually 16686)."
    )


def _windows(start_us: int, end_us: int, max_window_us: int) -> Iterator[tuple[int, int]]:
    lo = start_us
    while lo <= end_us:
        hi = min(lo + max_window_us - 1, end_us)
        yield lo, hi
        lo = hi + 1


def fetch_traces(
    base_url: str,
    service: str,
    start_us: int,
    end_us: int,
    limit: int = 1000,
    max_window_us: int = DEFAULT_WINDOW_US,
    timeout_s: float = 10.0,
    retries: int = 4,
    backoff_s: float = 0.5,
    sleep: Callable[[float], Any] = time.sleep,
    stats: JaegerStats | None = None,
) -> Iterator[dict[str, Any]]:
    """Yield Jaeger documents holding every trace of ``service`` in ``[start_us, end_us]``.

    Times are microsecond epochs, both ends inclusive. The range is queried in windows of at
    most ``max_window_us``; a window that returns ``limit`` traces (Jaeger may have cut it) is
    split in half and re-queried, down to one microsecond (the API's resolution). A window of
    one microsecond that still returns ``limit`` traces raises :class:`JaegerIncompleteError`
    naming it: a pull is complete or it fails. Each trace is yielded once, however many windows
    returned it; documents with no new trace are not yielded.

    ``retries`` is the number of attempts per request: timeouts, connection errors, HTTP 5xx
    and 429 are retried after ``backoff_s``, ``2 * backoff_s``, ... (through ``sleep``), and the
    last failure raises :class:`JaegerUnavailableError`. HTTP 4xx raises
    :class:`JaegerRequestError` at once.
    """
    if end_us < start_us:
        raise ValueError(f"end_us {end_us} is before start_us {start_us}")
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if max_window_us < MIN_WINDOW_US:
        raise ValueError(
            f"max_window_us must be at least {MIN_WINDOW_US} (1 s), got {max_window_us}"
        )
    stats = stats if stats is not None else JaegerStats()
    endpoint = base_url.rstrip("/") + "/api/traces"
    seen: set[str] = set()
    for piece in _windows(start_us, end_us, max_window_us):
        pending = [piece]
        while pending:
            lo, hi = pending.pop()
            query = urllib.parse.urlencode(
                {"service": service, "start": lo, "end": hi, "limit": limit}
            )
            window = f"{lo}..{hi} us ({_iso_us(lo)} to {_iso_us(hi)})"
            doc = _get_document(
                f"{endpoint}?{query}", window, timeout_s, retries, backoff_s, sleep, stats
            )
            stats.windows += 1
            traces = doc.get("data") or []
            width = hi - lo + 1
            if len(traces) >= limit:
                if width < 2:
                    raise JaegerIncompleteError(
                        f"Jaeger returned {len(traces)} traces (the limit) for service "
                        f"{service!r} in window {window}, one microsecond (the API's "
                        "resolution) that cannot be split further: traces beyond the limit "
                        "cannot be pulled. Raise the limit (--limit, or ROUTEIQ_JAEGER_LIMIT "
                        "for the hourly pull) above the traces that one microsecond holds."
                    )
                stats.split_windows += 1
                mid = lo + width // 2
                pending.extend([(mid, hi), (lo, mid - 1)])  # earlier half popped first
                continue
            fresh = []
            for trace in traces:
                key = jaeger_id(trace.get("traceID"), 32) if isinstance(trace, dict) else None
                if key is not None:
                    if key in seen:
                        stats.duplicate_traces += 1
                        continue
                    seen.add(key)
                fresh.append(trace)  # a trace without an id passes on to become a bad record
            if fresh or doc.get("errors"):
                yield {**doc, "data": fresh}


def extract_records(
    base_url: str,
    service: str,
    hours_back: float,
    now: datetime | None = None,
    stats: JaegerStats | None = None,
    **kw: Any,
) -> Iterator[TelemetryRecord]:
    """Records of every trace ``service`` sent Jaeger in the last ``hours_back`` hours.

    ``now`` (default: the current time) ends the range; ``kw`` goes to :func:`fetch_traces`
    (``limit``, ``max_window_us``, ``timeout_s``, ``retries``, ``backoff_s``, ``sleep``).
    Locations read ``"jaeger trace <id> span <id>"``. Raises what :func:`fetch_traces` raises.
    """
    if hours_back <= 0:
        raise ValueError(f"hours_back must be positive, got {hours_back}")
    stats = stats if stats is not None else JaegerStats()
    now = now if now is not None else datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    end_us = (now - _EPOCH) // timedelta(microseconds=1)
    # Both ends are inclusive: this keeps the range exactly hours_back long, in whole windows.
    start_us = end_us - int(hours_back * 3_600 * 1_000_000) + 1
    for doc in fetch_traces(base_url, service, start_us, end_us, stats=stats, **kw):
        yield from records_from_jaeger_document(doc, "jaeger", stats)


# --- the seed guide's extract outputs ---------------------------------------------------------


def _legacy_row(data: dict[str, Any]) -> dict[str, Any]:
    """A legacy traces.jsonl row, ``performance`` still unresolved (filled in the second pass)."""
    attrs = data.get("attributes") or {}
    input_tokens, output_tokens, total = token_counts(attrs)
    start_ns = int(data.get("start_unix_nano") or 0)
    timestamp = (
        (_EPOCH + timedelta(microseconds=start_ns // 1000))
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
        if start_ns
        else None
    )
    duration_ms = as_float(data.get("duration_ms"))
    prompt = first_value(attrs, "gen_ai.prompt", "gen_ai.prompt.0.content")
    response = first_value(attrs, "gen_ai.completion", "gen_ai.completion.0.content")
    ground_truth = attrs.get("routeiq.ground_truth")
    return {
        "query": None if prompt is None else str(prompt),
        # The requested model is the deployment the router chose; the response model may be a
        # provider's dated alias that matches no candidate name.
        "model_name": first_value(attrs, "gen_ai.request.model", "gen_ai.response.model"),
        "response": None if response is None else str(response),
        "response_time": None if duration_ms is None else duration_ms / 1000,
        "token_num": total,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "task_name": attrs.get("litellm.task"),
        "trace_id": data.get("trace_id"),
        "span_id": data.get("span_id"),
        "timestamp": timestamp,
        "performance": None,
        "ground_truth": None if ground_truth is None else str(ground_truth),
        "_parent_span_id": data.get("parent_span_id"),
        "_quality_score": quality_value(attrs),
    }


def _payload_object(payload: Any) -> dict[str, Any] | None:
    if isinstance(payload, str | bytes):
        try:
            payload = bounded(json.loads, payload)
        except (ValueError, RecursionError):
            return None
    return payload if isinstance(payload, dict) else None


def write_seed_outputs(
    records: Iterable[TelemetryRecord],
    traces_path: Path | str,
    decisions_path: Path | str | None = None,
) -> dict[str, int]:
    """Write the seed guide's ``traces.jsonl`` (and ``routing_decisions.jsonl``) from records.

    ``traces.jsonl`` gets one legacy row per ``llm_call`` (keys :data:`LEGACY_TRACE_KEYS`);
    its ``performance`` is 1.0 when the matching decision's outcome status is ``success``, 0.0
    for any other status, else the call's ``routeiq.quality_score``, else null. The matching
    decision is the one on the call's parent span, else any decision of the same trace (a trace
    counts as a success if any of its decisions succeeded). ``routing_decisions.jsonl`` gets
    each decision payload as parsed, one object a line. ``bad`` records, and decisions whose
    payload is not a JSON object, are counted under ``"bad"`` and written nowhere.

    Files are written under temporary names and renamed, so a reader never sees half a file;
    rows are spooled to disk, so memory holds only the decision outcomes.
    Returns ``{"traces": n, "routing_decisions": m, "bad": k}``.
    """
    traces_path = Path(traces_path)
    traces_path.parent.mkdir(parents=True, exist_ok=True)
    spool = traces_path.with_name(f".{traces_path.name}.spool")
    traces_tmp = traces_path.with_name(f".{traces_path.name}.tmp")
    decisions_tmp = None
    if decisions_path is not None:
        decisions_path = Path(decisions_path)
        decisions_path.parent.mkdir(parents=True, exist_ok=True)
        decisions_tmp = decisions_path.with_name(f".{decisions_path.name}.tmp")
    counts = {"traces": 0, "routing_decisions": 0, "bad": 0}
    by_span: dict[tuple[str, str], bool] = {}
    by_trace: dict[str, bool] = {}
    decisions_out = decisions_tmp.open("w", encoding="utf-8") if decisions_tmp else None
    try:
        with spool.open("w", encoding="utf-8") as spool_out:
            for record in records:
                if record.kind == "llm_call":
                    try:
                        row = _legacy_row(record.data)
                    except ValueError as exc:  # a value out of its range
                        logger.warning("%s: %s; not written", record.location, exc)
                        counts["bad"] += 1
                        continue
                    spool_out.write(json.dumps(row) + "\n")
                    counts["traces"] += 1
                elif record.kind == "decision":
                    payload = _payload_object(record.data.get("payload"))
                    if payload is None:
                        logger.warning(
                            "%s: decision payload is not a JSON object; not written",
                            record.location,
                        )
                        counts["bad"] += 1
                        continue
                    trace_id = record.data.get("trace_id") or str(payload.get("trace_id") or "")
                    trace_id = trace_id.lower()
                    outcome = payload.get("outcome")
                    status = outcome.get("status") if isinstance(outcome, dict) else None
                    if trace_id and status is not None:
                        ok = status == "success"
                        by_trace[trace_id] = by_trace.get(trace_id, False) or ok
                        span_id = record.data.get("span_id")
                        if span_id:
                            by_span[(trace_id, span_id)] = ok
                    if decisions_out is not None:
                        decisions_out.write(json.dumps(payload) + "\n")
                    counts["routing_decisions"] += 1
                else:
                    counts["bad"] += 1
        with (
            spool.open(encoding="utf-8") as spool_in,
            traces_tmp.open("w", encoding="utf-8") as out,
        ):
            for line in spool_in:
                row = json.loads(line)
                parent = row.pop("_parent_span_id")
                quality = row.pop("_quality_score")
                ok = by_span.get((row["trace_id"], parent))
                if ok is None:
                    ok = by_trace.get(row["trace_id"])
                row["performance"] = quality if ok is None else (1.0 if ok else 0.0)
                out.write(json.dumps(row) + "\n")
        if decisions_out is not None:
            decisions_out.close()
            decisions_tmp.replace(decisions_path)
        traces_tmp.replace(traces_path)
    finally:
        if decisions_out is not None and not decisions_out.closed:
            decisions_out.close()
        for leftover in (spool, traces_tmp, decisions_tmp):
            if leftover is not None and leftover.exists():
                os.unlink(leftover)
    return counts


def pull_window_to_file(
    base_url: str, service: str, start_us: int, end_us: int, out_path: Path, **kw: Any
) -> JaegerStats:
    """Pull one time window from the Jaeger API into one Jaeger JSON file (written to a
    temporary name and renamed, so a landing-folder watcher never sees half of it)."""
    stats = kw.pop("stats", None) or JaegerStats()
    traces = [
        t
        for doc in fetch_traces(base_url, service, start_us, end_us, stats=stats, **kw)
        for t in doc.get("data") or []
    ]
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    tmp.write_text(
        json.dumps({"data": traces, "total": len(traces), "limit": 0, "offset": 0, "errors": None})
    )
    tmp.replace(out_path)
    stats.traces = len(traces)
    return stats
