import dataclasses
import json
import socket
import threading
import time
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from routeiq_assets.telemetry.jaeger import (
    LEGACY_TRACE_KEYS,
    JaegerIncompleteError,
    JaegerRequestError,
    JaegerStats,
    JaegerUnavailableError,
    extract_records,
    fetch_traces,
    jaeger_id,
    read_jaeger_json,
    records_from_jaeger_document,
    write_seed_outputs,
)
from routeiq_assets.telemetry.otlp import any_value
from routeiq_assets.telemetry.records import TelemetryRecord
from routeiq_assets.telemetry.simulator import (
    DEFAULT_START,
    SERVICE_NAME,
    decision_payload,
    request_spans,
    simulate_requests,
)
from routeiq_assets.warehouse.normalize import normalise_records

START_US = int(DEFAULT_START.timestamp()) * 1_000_000


# --- simulator output in Jaeger's shape -------------------------------------------------------


def _tag(key, value):
    if isinstance(value, bool):
        return {"key": key, "type": "bool", "value": value}
    if isinstance(value, int):
        return {"key": key, "type": "int64", "value": value}
    if isinstance(value, float):
        return {"key": key, "type": "float64", "value": value}
    return {"key": key, "type": "string", "value": str(value)}


def _jaeger_hex(hex_id, strip_zeros):
    return (hex_id.lstrip("0") or "0") if strip_zeros else hex_id


def jaeger_span(otlp_span, strip_zeros=False):
    """One OTLP span as the Jaeger query API prints it: tags, logs, references, microseconds."""
    trace_id = _jaeger_hex(otlp_span["traceId"], strip_zeros)
    tags = [_tag(a["key"], any_value(a["value"])) for a in otlp_span["attributes"]]
    code = otlp_span.get("status", {}).get("code")
    if code == 2:
        tags += [_tag("otel.status_code", "ERROR"), _tag("error", True)]
    elif code == 1:
        tags.append(_tag("otel.status_code", "OK"))
    start, end = int(otlp_span["startTimeUnixNano"]), int(otlp_span["endTimeUnixNano"])
    parent = otlp_span.get("parentSpanId")
    return {
        "traceID": trace_id,
        "spanID": _jaeger_hex(otlp_span["spanId"], strip_zeros),
        "operationName": otlp_span["name"],
        "references": (
            [{"refType": "CHILD_OF", "traceID": trace_id, "spanID": parent}] if parent else []
        ),
        "startTime": start // 1000,
        "duration": (end - start) // 1000,
        "tags": tags,
        "logs": [
            {
                "timestamp": int(event["timeUnixNano"]) // 1000,
                "fields": [_tag("event", event["name"])]
                + [_tag(a["key"], any_value(a["value"])) for a in event["attributes"]],
            }
            for event in otlp_span["events"]
        ],
        "processID": "p1",
        "warnings": None,
    }


def jaeger_trace(req, strip_zeros=False):
    spans = [jaeger_span(s, strip_zeros) for s in request_spans(req)]
    return {
        "traceID": spans[0]["traceID"],
        "spans": spans,
        "processes": {"p1": {"serviceName": SERVICE_NAME, "tags": []}},
        "warnings": None,
    }


def jaeger_doc(traces):
    return {"data": traces, "total": 0, "limit": 0, "offset": 0, "errors": None}


def _tags(span):
    return {t["key"]: t for t in span["tags"]}


# --- reading documents ------------------------------------------------------------------------


def test_simulated_traces_round_trip():
    reqs = list(simulate_requests(60, seed=3))
    stats = JaegerStats()
    records = list(
        records_from_jaeger_document(jaeger_doc([jaeger_trace(r) for r in reqs]), "dump", stats)
    )
    decisions = [r for r in records if r.kind == "decision"]
    calls = [r for r in records if r.kind == "llm_call"]
    assert (len(decisions), len(calls), len(records)) == (60, 60, 120)
    assert (stats.traces, stats.spans, stats.skipped_spans, stats.bad_records) == (60, 120, 0, 0)
    for req, dec, call in zip(reqs, decisions, calls, strict=True):
        assert json.loads(dec.data["payload"]) == decision_payload(req)
        assert dec.data["trace_id"] == req.trace_id
        assert dec.data["span_id"] == req.decision_span_id
        assert dec.data["span_attributes"]["router.candidates_evaluated"] == len(req.candidates)
        assert dec.location == f"dump trace {req.trace_id} span {req.decision_span_id}"
        attrs = call.data["attributes"]
        assert attrs["gen_ai.prompt"] == req.query
        assert attrs["gen_ai.usage.input_tokens"] == req.input_tokens
        assert call.data["parent_span_id"] == req.decision_span_id
        assert call.data["name"] == f"chat {req.selected.name}"
        assert call.data["start_unix_nano"] == int(request_spans(req)[1]["startTimeUnixNano"])
        assert call.data["duration_ms"] == pytest.approx(req.duration_ms, abs=0.001)
        expected_status = 2 if req.status in ("timeout", "error") else 1
        assert call.data["status_code"] == expected_status
    assert {c.data["status_code"] for c in calls} == {1, 2}  # the sample covers both
    batch = normalise_records(records, "b1", "jaeger")
    assert (len(batch.decisions), len(batch.llm_calls), batch.quarantine) == (60, 60, [])


def test_ids_without_leading_zeros_are_padded():
    (req,) = simulate_requests(1, seed=4)
    req = dataclasses.replace(
        req,
        trace_id="0000000" + req.trace_id[7:],
        decision_span_id="000" + req.decision_span_id[3:],
    )
    trace = jaeger_trace(req, strip_zeros=True)
    assert len(trace["spans"][0]["traceID"]) < 32 and len(trace["spans"][0]["spanID"]) < 16
    records = list(records_from_jaeger_document(jaeger_doc([trace]), "dump"))
    dec, call = records
    assert dec.data["trace_id"] == req.trace_id and dec.data["span_id"] == req.decision_span_id
    assert call.data["parent_span_id"] == req.decision_span_id
    assert normalise_records(records, "b", "jaeger").quarantine == []
    assert jaeger_id("ABC", 16) == "0000000000000abc"
    assert jaeger_id("0", 16) is None and jaeger_id("xyz", 16) is None


def test_payload_in_tag_prompt_in_logs_and_typed_tags():
    (req,) = simulate_requests(1, seed=5)
    trace = jaeger_trace(req)
    decision_span, call_span = trace["spans"]
    payload = json.dumps(decision_payload(req))
    # An exporter that flattens the event into a tag and drops the log.
    decision_span["logs"] = []
    decision_span["tags"].append(_tag("routeiq.router_decision.payload", payload))
    # The prompt as an event (log) rather than a tag; token counts typed but sent as strings.
    call_span["tags"] = [t for t in call_span["tags"] if t["key"] != "gen_ai.prompt"]
    call_span["logs"] = [
        {
            "timestamp": call_span["startTime"],
            "fields": [_tag("event", "gen_ai.content.prompt"), _tag("gen_ai.prompt", req.query)],
        }
    ]
    tags = _tags(call_span)
    tags["gen_ai.usage.input_tokens"]["value"] = str(req.input_tokens)
    call_span["tags"] += [
        {"key": "routeiq.flag", "type": "bool", "value": "true"},
        {"key": "routeiq.ratio", "type": "float64", "value": "0.25"},
    ]
    records = list(records_from_jaeger_document(jaeger_doc([trace]), "dump"))
    assert [r.kind for r in records] == ["decision", "llm_call"]
    assert records[0].data["payload"] == payload
    attrs = records[1].data["attributes"]
    assert attrs["gen_ai.prompt"] == req.query
    assert attrs["gen_ai.usage.input_tokens"] == req.input_tokens
    assert attrs["routeiq.flag"] is True and attrs["routeiq.ratio"] == 0.25


def test_payload_in_both_log_and_tag_is_one_decision():
    (req,) = simulate_requests(1, seed=5)
    trace = jaeger_trace(req)
    trace["spans"][0]["tags"].append(
        _tag("routeiq.router_decision.payload", json.dumps(decision_payload(req)))
    )
    kinds = [r.kind for r in records_from_jaeger_document(jaeger_doc([trace]), "dump")]
    assert kinds == ["decision", "llm_call"]


@pytest.mark.parametrize(
    ("extra_tags", "expected"),
    [
        ([{"key": "otel.status_code", "type": "string", "value": "ERROR"}], 2),
        ([{"key": "error", "type": "bool", "value": True}], 2),
        ([{"key": "otel.status_code", "type": "string", "value": "OK"}], 1),
        ([], 0),
    ],
)
def test_status_code_from_tags(extra_tags, expected):
    (req,) = simulate_requests(1, seed=6)
    trace = jaeger_trace(req)
    call = trace["spans"][1]
    call["tags"] = [t for t in call["tags"] if t["key"] not in ("otel.status_code", "error")]
    call["tags"] += extra_tags
    (record,) = [
        r for r in records_from_jaeger_document(jaeger_doc([trace]), "d") if r.kind == "llm_call"
    ]
    assert record.data["status_code"] == expected


def test_other_spans_are_skipped_and_counted():
    (req,) = simulate_requests(1, seed=7)
    trace = jaeger_trace(req)
    trace["spans"].append(
        {
            "traceID": trace["traceID"],
            "spanID": "00000000000000aa",
            "operationName": "redis GET",
            "references": [],
            "startTime": START_US,
            "duration": 10,
            "tags": [_tag("db.system", "redis")],
            "logs": [],
            "processID": "p1",
        }
    )
    stats = JaegerStats()
    records = list(records_from_jaeger_document(jaeger_doc([trace]), "d", stats))
    assert len(records) == 2
    assert (stats.spans, stats.skipped_spans, stats.decisions, stats.llm_calls) == (3, 1, 1, 1)


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
def test_file_round_trip(tmp_path, bom):
    reqs = list(simulate_requests(5, seed=8))
    path = tmp_path / "dump.json"
    path.write_bytes(bom + json.dumps(jaeger_doc([jaeger_trace(r) for r in reqs])).encode())
    records = list(read_jaeger_json(path))
    assert [r.kind for r in records].count("decision") == 5
    assert "bad" not in [r.kind for r in records]
    assert records[0].location.startswith("dump.json trace ")


def test_non_json_and_non_jaeger_files_are_one_bad_record(tmp_path):
    cases = {
        "broken.json": (b'{"data": [', "not JSON"),
        "binary.json": (b"\xff\xfe\x00", "not UTF-8"),
        "otlp.json": (b'{"resourceSpans": []}', '"data"'),
        "list.json": (b"[1, 2]", '"data"'),
    }
    for name, (content, reason) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        stats = JaegerStats()
        (record,) = list(read_jaeger_json(path, stats))
        assert record.kind == "bad" and record.location == name
        assert reason in record.reason, (name, record.reason)
        assert record.raw is not None and stats.bad_records == 1


def test_span_without_ids_is_bad_and_others_still_read():
    reqs = list(simulate_requests(2, seed=9))
    traces = [jaeger_trace(r) for r in reqs]
    traces[0]["spans"][1]["spanID"] = ""
    del traces[0]["spans"][0]["traceID"]
    doc = jaeger_doc(traces + ["not a trace"])
    doc["errors"] = [{"code": 500, "msg": "trace 42 not found"}]
    records = list(records_from_jaeger_document(doc, "d"))
    bad = [r for r in records if r.kind == "bad"]
    assert [r.reason for r in bad[:2]] == ["span has no valid traceID/spanID"] * 2
    assert bad[0].location == f"d trace None span {reqs[0].decision_span_id}"
    assert "expected an object" in bad[2].reason and bad[2].location == "d trace #2"
    assert "trace 42 not found" in bad[3].reason
    assert len(bad) == 4
    assert sum(r.kind != "bad" for r in records) == 2


def test_malformed_shapes_never_raise():
    (req,) = simulate_requests(1, seed=10)
    trace = jaeger_trace(req)
    trace["spans"][0]["logs"] = 7
    trace["spans"][0]["tags"] = "junk"
    trace["spans"][1]["references"] = {"refType": "CHILD_OF"}
    trace["spans"][1]["startTime"] = "yesterday"
    doc = jaeger_doc([trace, {"traceID": "ab", "spans": 3}])
    doc["errors"] = "not a list"
    records = list(records_from_jaeger_document(doc, "d"))
    assert [r.kind for r in records] == ["bad", "bad"]
    assert "startTime" in records[0].reason and "spans" in records[1].reason
    assert list(records_from_jaeger_document([], "d"))[0].kind == "bad"


def test_decision_log_without_payload_is_bad():
    (req,) = simulate_requests(1, seed=10)
    trace = jaeger_trace(req)
    trace["spans"][0]["logs"][0]["fields"] = [_tag("event", "routeiq.router_decision.v1")]
    records = list(records_from_jaeger_document(jaeger_doc([trace]), "d"))
    assert records[0].kind == "bad" and "routeiq.router_decision.payload" in records[0].reason


# --- the query HTTP API against a real server -------------------------------------------------


class FakeJaeger:
    """A Jaeger query service in memory: ``/api/traces`` filtered by span start and capped."""

    def __init__(self):
        self.traces = []
        self.statuses = []  # answered one per request before serving normally
        self.always = None  # a status answered to every request
        self.body = b'{"data": null, "errors": [{"code": 500, "msg": "boom"}]}'
        self.hang_s = 0.0
        self.requests = []
        self.release = threading.Event()
        self.url = ""

    def answer(self, query):
        status = self.statuses.pop(0) if self.statuses else self.always
        if status:
            return status, self.body
        start, end = int(query["start"][0]), int(query["end"][0])
        limit = int(query.get("limit", ["100"])[0])
        hits = [t for t in self.traces if any(start <= s["startTime"] <= end for s in t["spans"])]
        hits.sort(key=lambda t: -max(s["startTime"] for s in t["spans"]))
        doc = {"data": hits[:limit], "total": 0, "limit": 0, "offset": 0, "errors": None}
        return 200, json.dumps(doc).encode()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        fake = self.server.fake
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        fake.requests.append(query)
        if fake.hang_s and fake.release.wait(fake.hang_s) is not None:
            return  # the client has given up; answer nothing
        status, body = fake.answer(query) if parts.path == "/api/traces" else (404, b"no")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def jaeger(request, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    fake = FakeJaeger()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.fake = fake
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"

    def stop():
        fake.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)

    request.addfinalizer(stop)
    return fake


class RecordingSleep:
    def __init__(self):
        self.delays = []

    def __call__(self, seconds):
        self.delays.append(seconds)


def _trace_ids(docs):
    return [t["traceID"] for doc in docs for t in doc["data"]]


def test_capped_windows_are_split_and_every_trace_returned_once(jaeger):
    reqs = list(simulate_requests(250, seed=11))
    jaeger.traces = [jaeger_trace(r) for r in reqs]
    stats = JaegerStats()
    ids = _trace_ids(
        fetch_traces(
            jaeger.url, SERVICE_NAME, START_US, START_US + 800_000_000, limit=100, stats=stats
        )
    )
    assert len(ids) == 250 and sorted(ids) == sorted(r.trace_id for r in reqs)
    assert stats.split_windows >= 2
    assert all(len(q["limit"]) == 1 and q["limit"] == ["100"] for q in jaeger.requests)


def test_trace_seen_in_two_windows_is_returned_once(jaeger):
    reqs = list(simulate_requests(2, seed=12))
    jaeger.traces = [jaeger_trace(r) for r in reqs]
    for trace in jaeger.traces:
        for span in trace["spans"]:
            span["startTime"] = START_US + 5_000_000
    jaeger.traces[0]["spans"][1]["startTime"] = START_US + 15_000_000  # crosses the boundary
    stats = JaegerStats()
    ids = _trace_ids(
        fetch_traces(
            jaeger.url,
            SERVICE_NAME,
            START_US,
            START_US + 20_000_000 - 1,
            max_window_us=10_000_000,
            stats=stats,
        )
    )
    assert sorted(ids) == sorted(r.trace_id for r in reqs)
    assert stats.duplicate_traces == 1 and stats.windows == 2


def test_a_full_window_is_split_down_to_the_microsecond(jaeger):
    """Five traces within one second, the limit three: every trace is pulled."""
    reqs = list(simulate_requests(5, seed=13))
    jaeger.traces = [jaeger_trace(r) for r in reqs]
    for k, trace in enumerate(jaeger.traces):
        for span in trace["spans"]:
            span["startTime"] = START_US + 100 + k
    stats = JaegerStats()
    ids = _trace_ids(
        fetch_traces(jaeger.url, SERVICE_NAME, START_US, START_US + 999_999, limit=3, stats=stats)
    )
    assert sorted(ids) == sorted(r.trace_id for r in reqs) and stats.split_windows >= 2


def test_a_full_microsecond_fails_the_pull_naming_the_window(jaeger):
    reqs = list(simulate_requests(5, seed=13))
    jaeger.traces = [jaeger_trace(r) for r in reqs]
    for trace in jaeger.traces:
        for span in trace["spans"]:
            span["startTime"] = START_US + 100
    with pytest.raises(JaegerIncompleteError) as failed:
        list(fetch_traces(jaeger.url, SERVICE_NAME, START_US, START_US + 999_999, limit=3))
    assert f"{START_US + 100}..{START_US + 100} us" in str(failed.value)
    assert "ROUTEIQ_JAEGER_LIMIT" in str(failed.value)


def test_server_errors_are_retried(jaeger):
    reqs = list(simulate_requests(3, seed=14))
    jaeger.traces = [jaeger_trace(r) for r in reqs]
    jaeger.statuses = [500, 503]
    sleep, stats = RecordingSleep(), JaegerStats()
    ids = _trace_ids(
        fetch_traces(
            jaeger.url, SERVICE_NAME, START_US, START_US + 60_000_000, sleep=sleep, stats=stats
        )
    )
    assert sorted(ids) == sorted(r.trace_id for r in reqs)
    assert len(jaeger.requests) == 3 and stats.retries == 2
    assert sleep.delays == [0.5, 1.0]


def test_server_that_always_fails_raises_unavailable_with_backoff(jaeger):
    jaeger.always = 500
    sleep = RecordingSleep()
    with pytest.raises(JaegerUnavailableError) as info:
        list(
            fetch_traces(
                jaeger.url,
                SERVICE_NAME,
                START_US,
                START_US + 60_000_000,
                retries=4,
                backoff_s=0.5,
                sleep=sleep,
            )
        )
    message = str(info.value)
    assert f"{jaeger.url}/api/traces?service=litellm-gateway" in message
    assert "HTTP 500" in message and "Jaeger query service is up" in message
    assert "2026-11-01T00:00:00Z" in message  # the window, readable
    assert len(jaeger.requests) == 4 and sleep.delays == [0.5, 1.0, 2.0]


def test_hanging_server_times_out_and_raises(jaeger):
    jaeger.hang_s = 30
    sleep = RecordingSleep()
    began = time.monotonic()
    with pytest.raises(JaegerUnavailableError) as info:
        list(
            fetch_traces(
                jaeger.url,
                SERVICE_NAME,
                START_US,
                START_US + 60_000_000,
                timeout_s=0.5,
                retries=2,
                sleep=sleep,
            )
        )
    assert time.monotonic() - began < 5
    assert len(jaeger.requests) == 2 and sleep.delays == [0.5]
    assert "timed out" in str(info.value) and "Jaeger query service is up" in str(info.value)


def test_bad_request_raises_at_once_with_the_body(jaeger):
    jaeger.always = 400
    jaeger.body = (
        b'{"data": null, "errors": [{"code": 400, "msg": "parameter service is required"}]}'
    )
    sleep = RecordingSleep()
    with pytest.raises(JaegerRequestError) as info:
        list(fetch_traces(jaeger.url, "", START_US, START_US + 1_000_000, sleep=sleep))
    assert "HTTP 400" in str(info.value) and "parameter service is required" in str(info.value)
    assert len(jaeger.requests) == 1 and sleep.delays == []


def test_non_jaeger_answer_raises_request_error(jaeger):
    jaeger.always = 200
    jaeger.body = b"<html>login</html>"
    with pytest.raises(JaegerRequestError, match="not a Jaeger query API document"):
        list(fetch_traces(jaeger.url, SERVICE_NAME, START_US, START_US + 1_000_000))


def test_connection_refused_is_unavailable(monkeypatch):
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sleep = RecordingSleep()
    with pytest.raises(JaegerUnavailableError, match=f"127.0.0.1:{port}/api/traces"):
        list(
            fetch_traces(
                f"http://127.0.0.1:{port}/", SERVICE_NAME, 0, 1_000_000, retries=3, sleep=sleep
            )
        )
    assert sleep.delays == [0.5, 1.0]


def test_extract_records_pulls_the_last_hours(jaeger):
    reqs = list(simulate_requests(20, seed=15))
    jaeger.traces = [jaeger_trace(r) for r in reqs]
    stats = JaegerStats()
    now = DEFAULT_START + timedelta(minutes=10)
    records = list(
        extract_records(jaeger.url, "litellm gateway/eu", 1, now=now, stats=stats, limit=50)
    )
    kinds = [r.kind for r in records]
    assert kinds.count("decision") == 20 and kinds.count("llm_call") == 20
    assert all(r.location.startswith("jaeger trace ") for r in records)
    (query,) = jaeger.requests
    assert query["service"] == ["litellm gateway/eu"]
    end_us = int(now.timestamp()) * 1_000_000
    assert query["end"] == [str(end_us)] and query["start"] == [str(end_us - 3_600_000_000 + 1)]
    assert stats.requests == 1 and stats.decisions == 20


# --- the seed guide's outputs -----------------------------------------------------------------


def test_write_seed_outputs(tmp_path):
    reqs = list(simulate_requests(40, seed=16))
    statuses = {r.status for r in reqs}
    assert "success" in statuses and len(statuses) > 1  # the sample covers both outcomes
    records = list(records_from_jaeger_document(jaeger_doc([jaeger_trace(r) for r in reqs]), "d"))
    # An LLM call with no decision but a quality score and a reference answer, one with neither.
    loose = dataclasses.replace(records[1], data=json.loads(json.dumps(records[1].data)))
    loose.data["trace_id"] = "ab" * 16
    loose.data["attributes"]["routeiq.quality_score"] = 0.75
    loose.data["attributes"]["routeiq.ground_truth"] = "42"
    bare = dataclasses.replace(records[1], data=json.loads(json.dumps(records[1].data)))
    bare.data["trace_id"] = "cd" * 16
    bad = TelemetryRecord("bad", "x", reason="broken")
    junk = TelemetryRecord("decision", "y", data={"payload": "{not json", "trace_id": None})
    traces_path = tmp_path / "out" / "traces.jsonl"
    decisions_path = tmp_path / "out" / "routing_decisions.jsonl"
    counts = write_seed_outputs(
        iter(records + [loose, bare, bad, junk]), traces_path, decisions_path
    )
    assert counts == {"traces": 42, "routing_decisions": 40, "bad": 2}
    rows = [json.loads(line) for line in traces_path.read_text().splitlines()]
    assert len(rows) == 42
    assert all(list(row) == list(LEGACY_TRACE_KEYS) for row in rows)
    by_trace = {row["trace_id"]: row for row in rows}
    for req in reqs:
        row = by_trace[req.trace_id]
        assert row["performance"] == (1.0 if req.status == "success" else 0.0)
        assert row["query"] == req.query and row["model_name"] == req.selected.name
        assert row["token_num"] == req.input_tokens + req.output_tokens
        assert row["input_tokens"] == req.input_tokens
        assert row["response_time"] == pytest.approx(req.duration_ms / 1000, abs=1e-5)
        assert row["task_name"] == req.task and row["span_id"] == req.llm_span_id
        assert row["ground_truth"] is None
        assert row["timestamp"].endswith("Z")
        parsed = datetime.fromisoformat(row["timestamp"].replace("Z", "+00:00"))
        assert abs(parsed - (req.timestamp + timedelta(milliseconds=2.5))) < timedelta(
            microseconds=2
        )
    assert by_trace["ab" * 16]["performance"] == 0.75
    assert by_trace["ab" * 16]["ground_truth"] == "42"
    assert by_trace["cd" * 16]["performance"] is None
    payloads = [json.loads(line) for line in decisions_path.read_text().splitlines()]
    assert payloads == [decision_payload(r) for r in reqs]
    assert sorted(p.name for p in traces_path.parent.iterdir()) == [
        "routing_decisions.jsonl",
        "traces.jsonl",
    ]


def test_write_seed_outputs_prefers_the_parent_decision(tmp_path):
    (req,) = simulate_requests(1, seed=17)
    failed = dataclasses.replace(req, status="failure")
    records = list(records_from_jaeger_document(jaeger_doc([jaeger_trace(failed)]), "d"))
    # Another decision of the same trace, on a span that is not the call's parent, succeeded:
    # the call's own decision (its parent span) still decides its performance.
    other = dataclasses.replace(records[0], data=dict(records[0].data))
    other_payload = json.loads(other.data["payload"])
    other_payload["outcome"]["status"] = "success"
    other.data.update(payload=json.dumps(other_payload), span_id="f" * 16)
    counts = write_seed_outputs([other, *records], tmp_path / "t.jsonl")
    (row,) = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert row["performance"] == 0.0
    assert counts == {"traces": 1, "routing_decisions": 2, "bad": 0}


def test_an_error_message_that_is_not_unicode_is_quarantined_shown_escaped(tmp_path):
    """A Jaeger error message with an unpaired surrogate escape is quoted in the quarantine
    reason with it escaped (DuckDB refused the batch before; found by review)."""
    from routeiq_assets.warehouse.columnar import as_columnar
    from routeiq_assets.warehouse.ingest import normalise_file

    reqs = list(simulate_requests(2, seed=8))
    doc = jaeger_doc([jaeger_trace(r) for r in reqs])
    doc["errors"] = [{"code": 500, "msg": "storage \ud83d failed"}]
    path = tmp_path / "dump.json"
    path.write_text(json.dumps(doc))
    batch = as_columnar(normalise_file(path, "jaeger_json", "b", "src"))
    [reason] = batch.tables["quarantine"]["reason"].to_pylist()
    assert reason == "Jaeger reported an error for this query: storage \\ud83d failed"
    assert batch.tables["router_decisions"].num_rows == 2
