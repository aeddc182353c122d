import hashlib
import json
from datetime import UTC, datetime

import pytest

from routeiq_assets.contract import PAYLOAD_ATTRIBUTE
from routeiq_assets.telemetry.jsonl import (
    read_decision_jsonl,
    read_legacy_traces_jsonl,
    sniff_jsonl_kind,
)
from routeiq_assets.telemetry.records import EXCERPT_CHARS
from routeiq_assets.telemetry.simulator import decision_payload, simulate_requests, write_otlp_files

EXCERPT_LIMIT = EXCERPT_CHARS + len("...[truncated]")


def payloads(n: int, seed: int = 7) -> list[dict]:
    return [decision_payload(req) for req in simulate_requests(n, seed=seed)]


def legacy_line(**overrides) -> dict:
    line = {
        "query": "What is 2 + 2?",
        "model_name": "gpt-4o-mini",
        "response": "4",
        "response_time": 1.25,
        "token_num": 30,
        "input_tokens": 12,
        "output_tokens": 18,
        "task_name": "math",
        "trace_id": "0AF7651916CD43DD8448EB211C80319C",
        "span_id": "B7AD6B7169203331",
        "timestamp": "2024-05-01T12:00:00Z",
        "performance": 0.75,
        "ground_truth": "4",
    }
    line.update(overrides)
    return {k: v for k, v in line.items() if v is not ...}


def write_lines(path, lines, newline=b"\n"):
    encoded = [
        line if isinstance(line, bytes) else json.dumps(line).encode("utf-8") for line in lines
    ]
    path.write_bytes(newline.join(encoded) + newline)
    return path


# --- decisions ---------------------------------------------------------------------------------


def test_decision_lines_round_trip(tmp_path):
    written = payloads(25)
    path = write_lines(tmp_path / "routing_decisions.jsonl", written)
    records = list(read_decision_jsonl(path))
    assert [r.kind for r in records] == ["decision"] * 25
    assert [r.data["payload"] for r in records] == written
    assert [r.location for r in records] == [f"routing_decisions.jsonl:{i}" for i in range(1, 26)]
    assert records[0].data["trace_id"] is None
    assert records[0].data["span_id"] is None
    assert records[0].data["span_attributes"] == {}


def test_wrapped_decision_payloads_are_unwrapped(tmp_path):
    first, second, third = payloads(3)
    path = write_lines(
        tmp_path / "shipped.jsonl",
        [
            {PAYLOAD_ATTRIBUTE: json.dumps(first), "host": "gw-1"},
            {"payload": second, "@timestamp": "2026-11-01T00:00:00Z"},
            {"payload": json.dumps(third)},
        ],
    )
    records = list(read_decision_jsonl(path))
    assert [r.kind for r in records] == ["decision"] * 3
    assert [r.data["payload"] for r in records] == [first, second, third]


def test_wrapper_holding_no_object_is_bad(tmp_path):
    path = write_lines(
        tmp_path / "shipped.jsonl",
        [{PAYLOAD_ATTRIBUTE: '{"contract_version": "v1", '}, {"payload": [1, 2]}],
    )
    bad = list(read_decision_jsonl(path))
    assert [r.kind for r in bad] == ["bad", "bad"]
    assert [r.location for r in bad] == ["shipped.jsonl:1", "shipped.jsonl:2"]
    assert "not JSON" in bad[0].reason and PAYLOAD_ATTRIBUTE in bad[0].reason
    assert "array" in bad[1].reason


def test_unreadable_decision_lines_are_bad_with_location(tmp_path):
    good = [json.dumps(p).encode() for p in payloads(3)]
    path = write_lines(
        tmp_path / "d.jsonl",
        [
            good[0],
            good[1][:150],
            b'\xff\xfe{"event_id": 1}',
            b"[1, 2, 3]",
            b'"just a string"',
            good[2],
        ],
    )
    records = list(read_decision_jsonl(path))
    assert [r.kind for r in records] == ["decision", "bad", "bad", "bad", "bad", "decision"]
    bad = {r.location: r for r in records if r.kind == "bad"}
    assert "not JSON" in bad["d.jsonl:2"].reason
    assert bad["d.jsonl:2"].raw == good[1][:150].decode()
    assert "not UTF-8" in bad["d.jsonl:3"].reason
    assert "array" in bad["d.jsonl:4"].reason and "object" in bad["d.jsonl:4"].reason
    assert "string" in bad["d.jsonl:5"].reason


def test_decision_payload_is_not_validated_here(tmp_path):
    path = write_lines(tmp_path / "d.jsonl", [{"contract_version": "v9"}, {"hello": "world"}])
    records = list(read_decision_jsonl(path))
    assert [r.kind for r in records] == ["decision", "decision"]
    assert records[1].data["payload"] == {"hello": "world"}


def test_blank_lines_are_skipped_but_counted(tmp_path):
    first, second = payloads(2)
    path = tmp_path / "d.jsonl"
    path.write_text(f"\n{json.dumps(first)}\n   \n\t\n{json.dumps(second)}\n\n")
    records = list(read_decision_jsonl(path))
    assert [r.kind for r in records] == ["decision", "decision"]
    assert [r.location for r in records] == ["d.jsonl:2", "d.jsonl:5"]


def test_windows_line_endings_and_bom(tmp_path):
    written = payloads(3)
    path = write_lines(tmp_path / "d.jsonl", written, newline=b"\r\n")
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    records = list(read_decision_jsonl(path))
    assert [r.data["payload"] for r in records] == written


@pytest.mark.parametrize("content", [b"", b"\n\n", b"  \r\n\t\n"])
def test_empty_files_yield_nothing(tmp_path, content):
    path = tmp_path / "empty.jsonl"
    path.write_bytes(content)
    assert list(read_decision_jsonl(path)) == []
    assert list(read_legacy_traces_jsonl(path)) == []
    assert sniff_jsonl_kind(path) == "empty"


# --- legacy traces -----------------------------------------------------------------------------


def test_legacy_fields_map_onto_llm_call(tmp_path):
    path = write_lines(tmp_path / "traces.jsonl", [legacy_line()])
    (record,) = read_legacy_traces_jsonl(path)
    assert record.kind == "llm_call"
    assert record.location == "traces.jsonl:1"
    assert record.data == {
        "trace_id": "0af7651916cd43dd8448eb211c80319c",
        "span_id": "b7ad6b7169203331",
        "name": "legacy.llm_call",
        "parent_span_id": None,
        "start_unix_nano": int(datetime(2024, 5, 1, 12, tzinfo=UTC).timestamp()) * 10**9,
        "duration_ms": 1250.0,
        "status_code": 1,
        "attributes": {
            "gen_ai.prompt": "What is 2 + 2?",
            "gen_ai.request.model": "gpt-4o-mini",
            "gen_ai.response.model": "gpt-4o-mini",
            "gen_ai.completion": "4",
            "gen_ai.usage.input_tokens": 12,
            "gen_ai.usage.output_tokens": 18,
            "gen_ai.usage.total_tokens": 30,
            "litellm.task": "math",
            "routeiq.quality_score": 0.75,
            "routeiq.ground_truth": "4",
        },
    }


def test_legacy_total_tokens_fall_back_to_input_plus_output(tmp_path):
    path = write_lines(
        tmp_path / "t.jsonl", [legacy_line(token_num=...), legacy_line(token_num=None)]
    )
    totals = [
        r.data["attributes"]["gen_ai.usage.total_tokens"] for r in read_legacy_traces_jsonl(path)
    ]
    assert totals == [30, 30]


def test_legacy_optional_fields_may_be_absent(tmp_path):
    line = {"query": "hi", "model_name": "m", "trace_id": "a" * 32, "span_id": "b" * 16}
    (record,) = read_legacy_traces_jsonl(write_lines(tmp_path / "t.jsonl", [line]))
    assert record.kind == "llm_call"
    assert record.data["duration_ms"] is None
    assert record.data["start_unix_nano"] == 0
    attrs = record.data["attributes"]
    assert attrs["routeiq.quality_score"] is None
    assert attrs["gen_ai.usage.total_tokens"] is None
    assert "routeiq.synthetic_ids" not in attrs


@pytest.mark.parametrize(
    ("timestamp", "expected"),
    [
        ("2024-05-01T12:00:00Z", 1714564800 * 10**9),
        ("2024-05-01T14:00:00+02:00", 1714564800 * 10**9),
        ("2024-05-01 12:00:00.250", 1714564800 * 10**9 + 250_000_000),
        (1714564800, 1714564800 * 10**9),
        (1714564800.5, 1714564800 * 10**9 + 500_000_000),
        ("1714564800", 1714564800 * 10**9),
        (1714564800123, 1714564800123 * 10**6),
        ("yesterday", 0),
        (None, 0),
        (True, 0),
        (-5, 0),
    ],
)
def test_legacy_timestamps(tmp_path, timestamp, expected):
    path = write_lines(tmp_path / "t.jsonl", [legacy_line(timestamp=timestamp)])
    (record,) = read_legacy_traces_jsonl(path)
    assert record.kind == "llm_call"
    assert record.data["start_unix_nano"] == expected


def test_legacy_missing_ids_are_derived_from_the_line(tmp_path):
    raw = json.dumps(legacy_line(trace_id=..., span_id=...)).encode()
    digest = hashlib.sha256(raw).hexdigest()
    lf = write_lines(tmp_path / "lf.jsonl", [raw])
    crlf = write_lines(tmp_path / "crlf.jsonl", [raw], newline=b"\r\n")
    (a,) = read_legacy_traces_jsonl(lf)
    (b,) = read_legacy_traces_jsonl(crlf)
    assert (a.data["trace_id"], a.data["span_id"]) == (digest[:32], digest[32:48])
    assert (b.data["trace_id"], b.data["span_id"]) == (a.data["trace_id"], a.data["span_id"])
    assert a.data["attributes"]["routeiq.synthetic_ids"] is True
    assert a.data["attributes"]["gen_ai.prompt"] == "What is 2 + 2?"


def test_legacy_keeps_a_given_trace_id_when_only_span_id_is_missing(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [legacy_line(span_id=None)])
    (record,) = read_legacy_traces_jsonl(path)
    assert record.data["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert len(record.data["span_id"]) == 16
    assert record.data["attributes"]["routeiq.synthetic_ids"] is True


@pytest.mark.parametrize(
    ("overrides", "words"),
    [
        ({"input_tokens": "abc"}, ["input_tokens", "string", "abc"]),
        ({"output_tokens": 3.5}, ["output_tokens", "number"]),
        ({"token_num": -1}, ["token_num", "negative"]),
        ({"performance": "high"}, ["performance", "string", "high"]),
        ({"performance": True}, ["performance", "boolean"]),
        ({"response_time": [1]}, ["response_time", "array"]),
        ({"response": {"text": "4"}}, ["response", "object"]),
        ({"task_name": 3}, ["task_name", "integer"]),
        ({"query": ...}, ["query"]),
        ({"query": None}, ["query"]),
        ({"query": 42}, ["query", "integer"]),
        ({"model_name": ...}, ["model_name"]),
        ({"model_name": "  "}, ["model_name", "empty"]),
        ({"span_id": 12345}, ["span_id", "integer"]),
    ],
)
def test_legacy_wrong_fields_make_the_line_bad(tmp_path, overrides, words):
    path = write_lines(tmp_path / "t.jsonl", [legacy_line(), legacy_line(**overrides)])
    good, bad = read_legacy_traces_jsonl(path)
    assert good.kind == "llm_call"
    assert bad.kind == "bad"
    assert bad.location == "t.jsonl:2"
    for word in words:
        assert word in bad.reason
    assert json.loads(bad.raw) == legacy_line(**overrides)


def test_legacy_ids_that_are_not_hex_are_kept_as_given(tmp_path):
    """RouteIQ's generate_synthetic_traces.py writes trace_000001 and span_000001."""
    line = legacy_line(trace_id="trace_000001", span_id="span_000001")
    (record,) = read_legacy_traces_jsonl(write_lines(tmp_path / "t.jsonl", [line]))
    assert record.kind == "llm_call"
    assert (record.data["trace_id"], record.data["span_id"]) == ("trace_000001", "span_000001")
    assert "routeiq.synthetic_ids" not in record.data["attributes"]


def test_legacy_reports_every_wrong_field(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [legacy_line(input_tokens="abc", performance="high")])
    (bad,) = read_legacy_traces_jsonl(path)
    assert "input_tokens" in bad.reason and "performance" in bad.reason


def test_legacy_numbers_written_as_text_are_read(tmp_path):
    line = legacy_line(input_tokens="12", response_time="0.5", performance="1")
    (record,) = read_legacy_traces_jsonl(write_lines(tmp_path / "t.jsonl", [line]))
    assert record.data["attributes"]["gen_ai.usage.input_tokens"] == 12
    assert record.data["duration_ms"] == 500.0
    assert record.data["attributes"]["routeiq.quality_score"] == 1.0


def test_legacy_unreadable_lines_are_bad(tmp_path):
    good = json.dumps(legacy_line()).encode()
    path = write_lines(tmp_path / "t.jsonl", [good[:40], b"\xc3\x28 broken", b"[]", good])
    records = list(read_legacy_traces_jsonl(path))
    assert [r.kind for r in records] == ["bad", "bad", "bad", "llm_call"]
    assert [r.location for r in records[:3]] == ["t.jsonl:1", "t.jsonl:2", "t.jsonl:3"]
    assert "not JSON" in records[0].reason
    assert "not UTF-8" in records[1].reason
    assert "array" in records[2].reason


def test_windows_line_endings_in_legacy_traces(tmp_path):
    path = write_lines(tmp_path / "t.jsonl", [legacy_line(), legacy_line()], newline=b"\r\n")
    records = list(read_legacy_traces_jsonl(path))
    assert [r.kind for r in records] == ["llm_call", "llm_call"]
    assert records[1].location == "t.jsonl:2"
    assert records[0].data["attributes"]["gen_ai.completion"] == "4"


def test_huge_lines_are_read_and_bad_excerpts_stay_bounded(tmp_path):
    huge = "x" * (5 * 1024 * 1024)
    path = write_lines(
        tmp_path / "t.jsonl",
        [
            legacy_line(query=huge),
            legacy_line(query=huge, input_tokens="abc"),
            json.dumps(legacy_line(query=huge)).encode()[:-10],
        ],
    )
    good, wrong_type, truncated = read_legacy_traces_jsonl(path)
    assert good.kind == "llm_call"
    assert good.data["attributes"]["gen_ai.prompt"] == huge
    for bad in (wrong_type, truncated):
        assert bad.kind == "bad"
        assert 1000 < len(bad.raw) <= EXCERPT_LIMIT
        assert len(bad.reason) < 500
    assert "input_tokens" in wrong_type.reason
    assert "not JSON" in truncated.reason

    decisions = write_lines(tmp_path / "d.jsonl", [b'{"payload": "' + huge.encode()])
    (bad,) = read_decision_jsonl(decisions)
    assert bad.kind == "bad" and len(bad.raw) <= EXCERPT_LIMIT


# --- sniffing ----------------------------------------------------------------------------------


def jaeger_document(n_traces: int) -> dict:
    traces = []
    for i in range(n_traces):
        trace_id = f"{i + 1:032x}"
        traces.append(
            {
                "traceID": trace_id,
                "spans": [
                    {
                        "traceID": trace_id,
                        "spanID": f"{i + 1:016x}",
                        "operationName": "litellm_request",
                        "references": [],
                        "startTime": 1714564800000000 + i,
                        "duration": 1500,
                        "tags": [{"key": "gen_ai.request.model", "type": "string", "value": "m"}],
                        "processID": "p1",
                    }
                ],
                "processes": {"p1": {"serviceName": "litellm-gateway", "tags": []}},
            }
        )
    return {"data": traces, "total": 0, "limit": 0, "offset": 0, "errors": None}


def test_sniff_otlp_files_from_the_simulator(tmp_path):
    (path,) = write_otlp_files(simulate_requests(5, seed=1), tmp_path, "x")
    assert sniff_jsonl_kind(path) == "otlp_json"


def test_sniff_jaeger_documents(tmp_path):
    small = tmp_path / "small.json"
    small.write_text(json.dumps(jaeger_document(2)))
    big = tmp_path / "big.json"
    big.write_text(json.dumps(jaeger_document(400), indent=2))
    assert big.stat().st_size > 64 * 1024
    empty_answer = tmp_path / "none.json"
    empty_answer.write_text(json.dumps(jaeger_document(0)))
    assert sniff_jsonl_kind(small) == "jaeger_json"
    assert sniff_jsonl_kind(big) == "jaeger_json"
    assert sniff_jsonl_kind(empty_answer) == "jaeger_json"


def test_sniff_decision_files(tmp_path):
    bare = write_lines(tmp_path / "bare.jsonl", payloads(3))
    wrapped = write_lines(tmp_path / "wrapped.jsonl", [{PAYLOAD_ATTRIBUTE: "{}"}])
    shipped = write_lines(tmp_path / "shipped.jsonl", [{"payload": payloads(1)[0]}])
    assert sniff_jsonl_kind(bare) == "decision_jsonl"
    assert sniff_jsonl_kind(wrapped) == "decision_jsonl"
    assert sniff_jsonl_kind(shipped) == "decision_jsonl"


def test_sniff_legacy_traces(tmp_path):
    path = write_lines(tmp_path / "traces.jsonl", [legacy_line(), legacy_line()], newline=b"\r\n")
    assert sniff_jsonl_kind(path) == "legacy_traces_jsonl"


def test_sniff_looks_past_a_broken_first_line(tmp_path):
    legacy = json.dumps(legacy_line()).encode()
    decision = json.dumps(payloads(1)[0]).encode()
    broken_legacy = write_lines(tmp_path / "a.jsonl", [legacy[:30], b"\xff\xfe", b"", legacy])
    broken_decision = write_lines(tmp_path / "b.jsonl", [b"{oops", b"[1]", decision])
    assert sniff_jsonl_kind(broken_legacy) == "legacy_traces_jsonl"
    assert sniff_jsonl_kind(broken_decision) == "decision_jsonl"


def test_sniff_a_first_line_longer_than_the_head(tmp_path):
    huge = "x" * 200_000
    legacy = write_lines(tmp_path / "t.jsonl", [legacy_line(query=huge), legacy_line()])
    decision = write_lines(tmp_path / "d.jsonl", [{"event_id": "e1", "blob": huge}])
    wrapped = write_lines(tmp_path / "w.jsonl", [{PAYLOAD_ATTRIBUTE: huge}])
    other = write_lines(tmp_path / "o.jsonl", [{"text": huge, "query": "q"}])
    assert sniff_jsonl_kind(legacy) == "legacy_traces_jsonl"
    assert sniff_jsonl_kind(decision) == "decision_jsonl"
    assert sniff_jsonl_kind(wrapped) == "decision_jsonl"
    # Only keys before the cut count; "query" comes after a huge value here.
    assert sniff_jsonl_kind(other) == "unknown"


@pytest.mark.parametrize(
    "content",
    [
        b'{"hello": "world"}\n{"query": "q", "model_name": "m"}\n',
        b"not json at all\n",
        b"[1, 2, 3]\n",
        b'{"data": [1, 2], "other": true}',
        b"\xff\xfe\x00\x01",
    ],
)
def test_sniff_unknown(tmp_path, content):
    path = tmp_path / "x.jsonl"
    path.write_bytes(content)
    assert sniff_jsonl_kind(path) == "unknown"


def test_sniff_never_raises_on_json_nested_deeper_than_python_recurses(tmp_path):
    # json.loads raises RecursionError, not a decode error, on these: sniffing (which the landing
    # sensor's tick runs on every file it lands) must neither raise nor stop at them
    deep = write_lines(tmp_path / "deep.jsonl", [b"[" * 50_000])
    deep_doc = write_lines(tmp_path / "doc.json", [b'{"a": ' * 50_000])
    then_good = write_lines(
        tmp_path / "then.jsonl", [b"[" * 3_000 + b"]" * 3_000, json.dumps(payloads(1)[0]).encode()]
    )
    assert sniff_jsonl_kind(deep) == "unknown"
    assert sniff_jsonl_kind(deep_doc) == "unknown"
    assert sniff_jsonl_kind(then_good) == "decision_jsonl"


def test_legacy_nan_score_means_no_score_but_nan_text_is_bad(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(
        json.dumps(legacy_line(performance=float("nan")))
        + "\n"
        + json.dumps(legacy_line(performance="nan"))
        + "\n"
        + json.dumps(legacy_line(response_time=float("nan")))
        + "\n"
    )
    missing, text_nan, nan_latency = read_legacy_traces_jsonl(path)
    assert missing.kind == "llm_call"
    assert missing.data["attributes"]["routeiq.quality_score"] is None
    assert text_nan.kind == "bad" and "performance" in text_nan.reason
    assert nan_latency.kind == "bad" and "response_time" in nan_latency.reason
