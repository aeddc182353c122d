"""The compiled OTLP normaliser stores exactly what the Python path stores, line for line.

It accepts a strict subset of the Python path's input and hands every other line back to it, so
the tests below compare the two paths' tables (Arrow types included) and counts on clean files,
on the messy file of every known kind of trouble, and on lines altered at random in the ways the
C scanner must get right: types, escapes, repeated keys, ids, numbers at the limits, Unicode.
"""

import json
import os
import random
import sys
import time

import pyarrow as pa
import pytest

from routeiq_assets.telemetry.raw_store import land_file
from routeiq_assets.telemetry.simulator import request_spans, simulate_requests
from routeiq_assets.warehouse import otlp_native
from routeiq_assets.warehouse.ingest import ingest_batch
from routeiq_assets.warehouse.otlp_fast import merge_parts, normalise_otlp_file, split_lines
from routeiq_assets.warehouse.store import connect, write_batch
from tests.warehouse.test_otlp_fast import _contents, _line, _messy_file, _payload, _set_payload


def test_the_compiled_normaliser_is_built():
    # `pip install -e .` builds it wherever a C compiler and Python's headers are found (every
    # machine this project is installed on); without it ingestion is correct but slower
    assert otlp_native.available(), "routeiq_assets/warehouse/_otlp_native.c was not built"


def _batch(path, native, mode="scrub", part=None, batch_id="b"):
    return normalise_otlp_file(path, batch_id, "src", mode, part, native=native)


def _every_path(path):
    """An OTLP file's batch from the compiled path, the msgspec path and the general path."""
    from routeiq_assets.warehouse.columnar import as_columnar
    from routeiq_assets.warehouse.ingest import normalise_file

    general = as_columnar(normalise_file(path, "otlp_json", "b", "src", fast=False))
    return _batch(path, True), _batch(path, False), general


def _assert_same(native, python, label=""):
    assert (native.records_in, native.duplicates_in_batch) == (
        python.records_in,
        python.duplicates_in_batch,
    ), label
    for name, expected in python.tables.items():
        got = native.tables[name]
        if expected is None or got is None:
            assert expected is None and got is None, (label, name)
            continue
        if name == "quarantine":  # when a row was made, not what it says
            expected, got = expected.drop(["quarantined_at"]), got.drop(["quarantined_at"])
        assert got.schema == expected.schema, (label, name, got.schema, expected.schema)
        for column in expected.column_names:
            assert _values(got[column]) == _values(expected[column]), (label, name, column)


def _values(column):
    return [("NaN" if isinstance(v, float) and v != v else v) for v in column.to_pylist()]


def _clean_file(path, n=300, seed=3):
    reqs = list(simulate_requests(n, seed=seed))
    lines = [
        _line([s for r in reqs[i : i + 25] for s in request_spans(r)]) for i in range(0, n, 25)
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.parametrize("mode", ["scrub", "keep", "hash"])
def test_clean_telemetry_is_all_read_natively_and_equals_the_python_path(tmp_path, mode):
    path = _clean_file(tmp_path / "clean.otlp.json")
    native, python = _batch(path, True, mode), _batch(path, False, mode)
    _assert_same(native, python)
    assert native.stats == {"native": True, "native_records": 600, "python_lines": 0}
    assert native.records_in == 600 and native.tables["decision_candidates"].num_rows > 600


@pytest.mark.parametrize("mode", ["scrub", "keep", "hash"])
def test_the_messy_file_stores_the_same_through_the_warehouse(tmp_path, mode):
    path = _messy_file(tmp_path / "messy.otlp.json")
    raw = land_file(path, tmp_path / "raw")
    results = {}
    for native in (False, True):
        with connect(tmp_path / f"{native}.duckdb") as con:
            batch = _batch(raw.raw_path, native, mode, batch_id=raw.batch_id)
            counts = write_batch(con, raw.batch_id, batch)
            results[native] = (counts, _contents(con))
        if native:
            # the clean lines went natively, the troubled ones the Python way
            assert 40 <= batch.stats["native_records"] < batch.records_in
            assert batch.stats["python_lines"] >= 1
    assert results[True] == results[False]
    with connect(tmp_path / "general.duckdb") as con:
        general = ingest_batch(con, raw.batch_id, raw.raw_path, raw.format, "src", mode, fast=False)
        assert (general, _contents(con)) == results[True]


def test_small_chunks_many_lines_back_to_python_and_parts(tmp_path, monkeypatch):
    """Duplicates across chunks and across native and Python parts count as in one pass; past
    MAX_STOPS lines the rest of the range goes the Python way."""
    reqs = list(simulate_requests(60, seed=8))
    lines = []
    for i, req in enumerate(reqs):
        spans = request_spans(req)
        if i % 3 == 1:  # an array attribute value: the Python way
            spans[1]["attributes"].append({"key": "x", "value": {"arrayValue": {"values": []}}})
        lines.append(_line(spans))
    lines += lines[:12]  # duplicates of earlier lines, native and not
    path = tmp_path / "mixed.otlp.json"
    path.write_bytes(b"\n".join(lines) + b"\n")
    python = _batch(path, False)
    monkeypatch.setattr(otlp_native, "CHUNK_RECORDS", 7)
    _assert_same(_batch(path, True), python, "chunks of 7")
    monkeypatch.setattr(otlp_native, "MAX_STOPS", 3)
    few = _batch(path, True)
    _assert_same(few, python, "3 stops")
    assert few.stats["python_lines"] == 3
    assert python.duplicates_in_batch == 24
    for parts in (2, 5):
        merged = merge_parts([_batch(path, True, part=p) for p in split_lines(path, parts)])
        _assert_same(merged, python, f"{parts} parts")


def test_an_object_msgspec_refuses_sends_the_file_the_python_way(tmp_path):
    req = next(iter(simulate_requests(1, seed=2)))
    decision, call = request_spans(req)
    text = json.dumps(_payload(decision)).replace(
        '"custom_attributes": {', '"custom_attributes": {"x": 1e400, ', 1
    )
    _set_payload(decision, text)
    path = tmp_path / "f.otlp.json"
    path.write_bytes(_line([decision, call]) + b"\n")
    native = _batch(path, True)
    _assert_same(native, _batch(path, False))
    assert native.stats == {}  # the whole range went the Python way


# --- random alterations ------------------------------------------------------------------------

VALUES = [
    "2026-02-30T00:00:00Z",
    "2026-11-01T23:59:60Z",
    "2026-11-01T00:00:00.1234567Z",
    None,
    "",
    "x",
    "é ✓ \U0001f600",
    'q"uo\\te',
    "tab\there",
    0,
    -1,
    7,
    1.5,
    -0.0,
    1e300,
    10**17,
    10**19,
    2**63,
    True,
    False,
    [],
    {},
    [1],
    {"a": None},
    "24",
    "2.5",
    "v1.0",
    "NaN",
]
PAYLOAD_FIELDS = [
    "contract_version",
    "contract_name",
    "event_id",
    "trace_id",
    "span_id",
    "parent_span_id",
    "timestamp_utc",
    "timestamp_unix_ms",
    "input",
    "strategy_name",
    "strategy_version",
    "candidate_deployments",
    "selected_deployment",
    "selection_reason",
    "experiment",
    "timings",
    "outcome",
    "fallback",
    "custom_attributes",
]
NESTED = {
    "input": [
        "requested_model",
        "query_length",
        "user_id",
        "team_id",
        "api_type",
        "request_metadata",
    ],
    "timings": ["total_ms", "strategy_ms", "embedding_ms", "candidate_filter_ms"],
    "outcome": [
        "status",
        "error_message",
        "error_type",
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "api_type",
    ],
    "fallback": ["fallback_triggered", "original_model", "fallback_reason", "fallback_attempt"],
}
ANY_VALUES = [
    None,
    {},
    {"stringValue": "s"},
    {"stringValue": 5},
    {"intValue": "12"},
    {"intValue": 12},
    {"intValue": "-3"},
    {"intValue": "007"},
    {"intValue": "1e3"},
    {"intValue": 1.5},
    {"intValue": str(10**19)},
    {"doubleValue": 2},
    {"doubleValue": 0.1},
    {"doubleValue": "0.5"},
    {"boolValue": True},
    {"boolValue": "false"},
    {"stringValue": "a", "intValue": "1"},
    {"arrayValue": {"values": []}},
    {"stringValue": 'ünï"code\\'},
]
CALL_KEYS = [
    "gen_ai.prompt",
    "gen_ai.prompt.0.content",
    "gen_ai.completion",
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.prompt_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.total_tokens",
    "litellm.task",
    "routeiq.quality_score",
    "routeiq.ground_truth",
    "other.key",
]
SPAN_VALUES = {
    "traceId": [None, "", "ABC", "A" * 32, 5],
    "spanId": [None, "", "F" * 16, "0" * 16, "short", 7],
    "parentSpanId": [None, "", "ab" * 8, "AB" * 8, "AAAAAAAAAAA="],
    "name": [None, "", "ñame", 5],
    "startTimeUnixNano": [None, "", "0", 0, "17", "-5", 1.5, "1" * 20, 10**18],
    "endTimeUnixNano": [None, "5", 5, "99999999999999999999"],
    "status": [
        None,
        {},
        {"code": 1},
        {"code": 2},
        {"code": 3},
        {"code": "x"},
        {"code": 1.0},
        {"code": True},
        "bad",
        {"code": None, "message": "m"},
        {"code": "2"},
        {"code": "STATUS_CODE_OK"},
        {"code": "STATUS_CODE_ERROR"},
        {"code": " 2"},
    ],
}


def _alter_payload(rng, p):
    kind = rng.randrange(5)
    if kind == 0:
        p[rng.choice(PAYLOAD_FIELDS)] = rng.choice(VALUES)
    elif kind == 1:
        p.pop(rng.choice(PAYLOAD_FIELDS), None)
    elif kind == 2:
        obj = rng.choice(list(NESTED))
        if isinstance(p.get(obj), dict):
            p[obj][rng.choice(NESTED[obj])] = rng.choice(VALUES)
    elif kind == 3 and isinstance(p.get("candidate_deployments"), list):
        cand = rng.choice(p["candidate_deployments"] or [{}])
        if not isinstance(cand, dict):
            return p
        cand[rng.choice(["model_name", "provider", "score", "available", "extra"])] = rng.choice(
            VALUES
        )
    else:
        p["custom_attributes"] = rng.choice(
            [
                {"selection_propensity": rng.choice(VALUES), "logging_policy": rng.choice(VALUES)},
                {"n": 10**30},
                {"dup": 1},
                rng.choice(VALUES),
            ]
        )
    return p


def _payload_text(rng, payload):
    text = json.dumps(payload, ensure_ascii=rng.random() < 0.5)
    trick = rng.randrange(8)
    if trick == 0:  # a repeated key: msgspec keeps the last
        text = text.replace("{", '{"event_id": "first", ', 1)
    elif trick == 1:  # an escaped key
        text = text.replace('"event_id"', '"event\\u005fid"', 1)
    elif trick == 2:
        text = "  " + json.dumps(payload, indent=1) + "\n"
    elif trick == 3:
        text = text + " trailing"
    elif trick == 4:
        text = text.replace('"success"', '"succ\\u0065ss"')
    return text


def _alter_spans(rng, spans):
    decision, call = spans
    payload, text = _payload(decision), None
    for _ in range(rng.randrange(1, 4)):
        target = rng.randrange(7)
        if target <= 1:
            payload = _alter_payload(rng, payload)
            text = _payload_text(rng, payload)
        elif target == 2:
            span = rng.choice(spans)
            key = rng.choice(list(SPAN_VALUES))
            if rng.random() < 0.2:
                span.pop(key, None)
            else:
                span[key] = rng.choice(SPAN_VALUES[key])
        elif target == 3:
            span = rng.choice(spans)
            item = {"key": rng.choice(CALL_KEYS)}
            value = rng.choice(ANY_VALUES)
            if value is not None or rng.random() < 0.5:
                item["value"] = value
            span.setdefault("attributes", []).append(item)
        elif target == 4:
            call["attributes"] = [a for a in call["attributes"] if rng.random() < 0.7]
        else:
            payload["trace_id"] = rng.choice(
                [str(payload.get("trace_id")).upper(), "f" * 32, f"{payload.get('trace_id')} "]
            )
            text = None
    _set_payload(decision, json.dumps(payload) if text is None else text)
    if rng.random() < 0.3:  # the events themselves, after the payload is in place
        event = decision["events"][0]
        choice = rng.randrange(4)
        if choice == 0:
            event["name"] = rng.choice(["other", None, "routeiq.router_decision.v1"])
        elif choice == 1:
            decision["events"].append(json.loads(json.dumps(event)))
        elif choice == 2:
            event["attributes"].append(
                {"key": "routeiq.router_decision.payload", "value": rng.choice(ANY_VALUES)}
            )
        else:
            decision["events"] = rng.choice([None, [], [{"name": "x"}]])
    return spans


def _raw_line(rng, line):
    trick = rng.randrange(24)
    if trick == 0:
        return line[: rng.randrange(len(line))]
    if trick == 1:
        return b" \t" + line + b"\r"
    if trick == 2:
        return line + b" x"
    if trick == 3:
        return line.replace(b'"spans"', b'"spans":null,"spans"', 1)
    if trick == 4:
        return line.replace(b"scopeSpans", b"instrumentationLibrarySpans", 1)
    if trick == 5:
        return line.replace(b"o", b"\xc3", 1)  # broken UTF-8
    if trick == 6:
        return b"\x0b "
    return line


@pytest.mark.parametrize("seed", range(8))
def test_randomly_altered_lines_store_the_same(tmp_path, seed):
    rng = random.Random(seed)
    reqs = list(simulate_requests(120, seed=100 + seed))
    lines = []
    for i in range(0, len(reqs), 2):
        spans = []
        for req in reqs[i : i + 2]:
            pair = request_spans(req)
            spans += _alter_spans(rng, pair) if rng.random() < 0.5 else pair
        lines.append(_raw_line(rng, _line(spans)))
    lines += rng.sample(lines, 5)  # repeated lines: duplicates
    path = tmp_path / f"fuzz{seed}.otlp.json"
    path.write_bytes(b"\n".join(lines) + b"\n")
    python = _batch(path, False)
    native = _batch(path, True)
    _assert_same(native, python, f"seed {seed}")
    assert native.stats.get("python_lines", 0) >= 1  # some lines were beyond the C subset


def test_escaped_unicode_and_numbers_at_the_limits(tmp_path):
    """Values the C scanner converts itself: escapes to UTF-8 (surrogate pairs), floats by
    strtod, ints up to 18 digits and 19-digit nanosecond times."""
    req = next(iter(simulate_requests(1, seed=4)))
    decision, call = request_spans(req)
    p = _payload(decision)
    p["selection_reason"] = 'é\u2713\U0001f600\n"\\/\b\f\r\t\x01'
    p["timings"] = {
        "total_ms": 0.1,
        "strategy_ms": 1e-300,
        "embedding_ms": 123456789012345,
        "candidate_filter_ms": -2.5e10,
    }
    p["outcome"]["input_tokens"] = 999_999_999_999_999_999
    p["outcome"]["output_tokens"] = -999_999_999_999_999_999
    p["timestamp_unix_ms"] = 0
    _set_payload(decision, json.dumps(p, ensure_ascii=True))
    call["startTimeUnixNano"] = str(2**63 - 1)
    call["endTimeUnixNano"] = str(2**63 - 1)
    call["attributes"].append(
        {"key": "routeiq.ground_truth", "value": {"stringValue": "\ud83d\ude00"}}
    )
    path = tmp_path / "limits.otlp.json"
    text = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [decision, call]}]}]})
    path.write_text(text + "\n", encoding="utf-8")
    native, python = _batch(path, True), _batch(path, False)
    _assert_same(native, python)
    assert native.stats["python_lines"] == 0
    row = native.tables["router_decisions"].to_pylist()[0]
    assert row["selection_reason"] == p["selection_reason"]
    assert row["input_tokens"] == 999_999_999_999_999_999
    assert native.tables["llm_calls"]["ground_truth"].to_pylist() == ["\U0001f600"]
    assert native.tables["llm_calls"].schema.field("start_unix_ms").type == pa.int64()


def test_parts_with_differently_typed_columns_join_as_one_pass_types_them():
    from datetime import UTC, datetime, timedelta, timezone

    from routeiq_assets.warehouse.columnar import infer_array, join_parts

    utc = datetime(2026, 11, 1, tzinfo=UTC)
    plus2 = datetime(2026, 11, 1, 2, tzinfo=timezone(timedelta(hours=2)))
    first = {"ts": [utc, None], "task": ["math", None], "n": [1, 2]}
    second = {"ts": [plus2], "task": [7], "n": [3]}
    joined = join_parts([pa.table(first), None, pa.table(second)])
    for name in ("ts", "task"):
        assert joined[name].to_pylist() == infer_array(first[name] + second[name]).to_pylist()
    assert joined["task"].to_pylist() == ["math", None, "7"]
    assert joined.schema.field("n").type == pa.int64() and joined["n"].to_pylist() == [1, 2, 3]


def test_threads_yield_batches_in_order_and_name_a_failing_file(tmp_path):
    from routeiq_assets.warehouse.ingest import normalise_in_threads

    paths = []
    for i in range(5):
        paths.append(_clean_file(tmp_path / f"f{i}.otlp.json", n=50, seed=i))
    jobs = [(p, "otlp_json", f"b{i}", p.name, "scrub", None) for i, p in enumerate(paths)]
    got = list(normalise_in_threads(jobs, 2))
    for job, batch in zip(jobs, got, strict=True):
        _assert_same(batch, normalise_otlp_file(job[0], job[2], job[3], "scrub", native=False))
    jobs[3] = (tmp_path / "gone.otlp.json", *jobs[3][1:])
    seen = []
    with pytest.raises(FileNotFoundError) as failure:
        for batch in normalise_in_threads(jobs, 2):
            seen.append(batch)
    assert len(seen) == 3  # the batches before the missing file, in order
    assert "gone.otlp.json" in "".join(failure.value.__notes__)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread niceness is Linux's")
@pytest.mark.parametrize("setting, lower", [(None, 10), ("3", 3), ("0", 0)])
def test_normaliser_threads_run_below_the_writer_and_the_caller_keeps_its_priority(
    tmp_path, monkeypatch, setting, lower
):
    import threading

    from routeiq_assets.warehouse import ingest

    if setting is None:
        monkeypatch.delenv("ROUTEIQ_NORMALISE_NICENESS", raising=False)
    else:
        monkeypatch.setenv("ROUTEIQ_NORMALISE_NICENESS", setting)
    paths = [_clean_file(tmp_path / f"f{i}.otlp.json", n=20, seed=i) for i in range(3)]
    jobs = [(p, "otlp_json", f"b{i}", p.name, "scrub", None) for i, p in enumerate(paths)]
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    batches = ingest.normalise_in_threads(jobs, 2)
    next(batches)  # the pool's threads are alive until the generator ends
    workers = [t for t in threading.enumerate() if t.name.startswith("routeiq-normalise")]
    assert workers
    want = min(19, mine + lower)
    for worker in workers:  # a thread started but not yet scheduled sets it when it runs
        deadline = time.monotonic() + 10
        while os.getpriority(os.PRIO_PROCESS, worker.native_id) != want:
            assert time.monotonic() < deadline, f"{worker.name} does not run {lower} lower"
            time.sleep(0.01)
    assert len(list(batches)) == 2
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine


@pytest.mark.parametrize("bad", ["-1", "20", "ten", "1.5"])
def test_a_bad_normaliser_niceness_is_refused_before_any_work_naming_the_setting(
    tmp_path, monkeypatch, bad
):
    from routeiq_assets.warehouse import ingest

    monkeypatch.setenv("ROUTEIQ_NORMALISE_NICENESS", bad)
    path = _clean_file(tmp_path / "f.otlp.json", n=5, seed=1)
    with pytest.raises(ValueError, match=f"ROUTEIQ_NORMALISE_NICENESS='{bad}'.*0 to 19"):
        next(ingest.normalise_in_threads([(path, "otlp_json", "b", "f", "scrub", None)], 2))


@pytest.mark.parametrize(
    "stamps",
    [
        ["2026-11-01T00:00:00.763701Z", "2026-11-01T00:00:01Z", "2026-11-01T00:00:01.5Z"],
        ["2026-11-01T00:00:00Z", "2026-02-30T00:00:00Z"],  # plain UTC text, a day that is not
        ["2026-11-01T00:00:00Z", "2026-11-01T02:00:00+02:00", None, "2026-11-01 00:00:00"],
    ],
)
def test_timestamps_read_in_one_cast_or_row_by_row_equal_the_python_path(tmp_path, stamps):
    spans = []
    for req, stamp in zip(simulate_requests(len(stamps), seed=6), stamps, strict=True):
        decision, call = request_spans(req)
        payload = _payload(decision)
        payload["timestamp_utc"] = stamp
        _set_payload(decision, payload)
        spans += [decision, call]
    path = tmp_path / "ts.otlp.json"
    path.write_bytes(_line(spans) + b"\n")
    native, python = _batch(path, True), _batch(path, False)
    _assert_same(native, python)
    assert native.stats["python_lines"] == 0


def _decision_line(trace, span, payloads, attribute_lists=1):
    """One span with decision events (a raw line: for shapes json.dumps cannot make)."""
    events = []
    for payload in payloads:
        value = json.dumps({"stringValue": json.dumps(payload)})
        attrs = f'[{{"key":"routeiq.router_decision.payload","value":{value}}}]'
        lists = ",".join([f'"attributes":{attrs}'] + ['"attributes":[]'] * (attribute_lists - 1))
        events.append(f'{{"name":"routeiq.router_decision.v1",{lists}}}')
    span_json = f'{{"traceId":"{trace}","spanId":"{span}","events":[{",".join(events)}]}}'
    return f'{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{span_json}]}}]}}]}}'.encode()


def _review_payload(event_id, **extra):
    return {
        "contract_version": "v1",
        "event_id": event_id,
        "trace_id": "a" * 32,
        "outcome": {"status": "success"},
        **extra,
    }


# a span id with a JSON escape: the same id to Python, a line the C scanner hands back
ESCAPED_SPAN = "b" * 15 + "\\u0062"

REVIEW_CASES = {
    # a repeated event "attributes" key: msgspec keeps the last list (here: no payload)
    "repeated attributes": [_decision_line("a" * 32, "b" * 16, [_review_payload("e1")], 2)],
    # a native part typed float (1.5, 0) beside text from a Python part: "0", not "0.0"
    "float part beside text": [
        _decision_line(
            "a" * 32,
            "b" * 16,
            [
                _review_payload("e2", custom_attributes={"logging_policy": 1.5}),
                _review_payload("e3", custom_attributes={"logging_policy": 0}),
            ],
        ),
        _decision_line(
            "a" * 32,
            ESCAPED_SPAN,
            [_review_payload("e4", custom_attributes={"logging_policy": "x"})],
        ),
    ],
    # unix milliseconds beyond the years a datetime holds: no timestamp, no crash
    "huge unix ms": [
        _decision_line("a" * 32, "b" * 16, [_review_payload("e5", timestamp_unix_ms=10**17)])
    ],
}


@pytest.mark.parametrize("case", list(REVIEW_CASES))
def test_review_cases_store_what_the_python_path_stores(tmp_path, case):
    path = tmp_path / "review.otlp.json"
    path.write_bytes(b"\n".join(REVIEW_CASES[case]) + b"\n")
    native, python = _batch(path, True), _batch(path, False)
    _assert_same(native, python, case)
    decisions = python.tables["router_decisions"]
    if case == "repeated attributes":
        assert decisions is None and python.tables["quarantine"].num_rows == 1
    elif case == "float part beside text":
        assert decisions["logging_policy"].to_pylist() == ["1.5", "0", "x"]
    else:
        assert decisions["timestamp_utc"].to_pylist() == [None]


def test_a_call_ends_early_before_its_text_outgrows_arrow_offsets(tmp_path):
    from routeiq_assets.warehouse import _otlp_native

    reqs = list(simulate_requests(300, seed=13))
    prompt = "word " * (2**20 // 5)  # 1 MiB
    lines = []
    for req in reqs:
        decision, call = request_spans(req)
        for attr in call["attributes"]:
            if attr["key"] == "gen_ai.prompt":
                attr["value"] = {"stringValue": prompt}
        lines.append(_line([decision, call]))
    path = tmp_path / "long.otlp.json"
    path.write_bytes(b"\n".join(lines) + b"\n")
    data = path.read_bytes()
    columns, offset, line, stopped = _otlp_native.parse(data, 0, len(data), 1, b"f", 16384)
    assert not stopped and 1 < line <= 300  # ended early, at a line, before 2 GiB
    _assert_same(_batch(path, True, "keep"), _batch(path, False, "keep"))


def test_a_module_built_from_another_source_is_not_used():
    """An edited C file whose rebuild failed (setup.py builds it optionally) leaves the old
    module behind: it is noticed by the source hash it carries."""
    from types import SimpleNamespace

    from routeiq_assets.warehouse import _otlp_native

    assert not otlp_native._stale(_otlp_native)
    assert otlp_native._stale(SimpleNamespace(SOURCE_SHA256="0" * 64))
    assert otlp_native._stale(SimpleNamespace())  # built before modules carried the hash


def _call_line(edit):
    decision, call = request_spans(next(iter(simulate_requests(1, seed=14))))
    edit(decision, call)
    return _line([decision, call])


def _deep(n):
    return "[" * n + "]" * n


MALFORMED = {
    "start time 1e400": lambda: _call_line(lambda d, c: c.update(startTimeUnixNano=1e400)),
    "intValue 1e400": lambda: _call_line(
        lambda d, c: c["attributes"].append({"key": "x", "value": {"intValue": 1e400}})
    ),
    "doubleValue of 400 digits": lambda: _call_line(
        lambda d, c: c["attributes"].append({"key": "x", "value": {"doubleValue": 10**400}})
    ),
    "quality score of 400 digits": lambda: _call_line(
        lambda d, c: c["attributes"].append(
            {"key": "routeiq.quality_score", "value": {"intValue": "9" * 400}}
        )
    ),
    "propensity of 400 digits": lambda: _call_line(
        lambda d, c: _set_payload(
            d, {**_payload(d), "custom_attributes": {"selection_propensity": 10**400}}
        )
    ),
    "status code a list": lambda: _call_line(lambda d, c: c.update(status={"code": [1]})),
    "payload with a 5,000-digit number": lambda: _call_line(
        lambda d, c: _set_payload(d, json.dumps(_payload(d))[:-1] + ', "n": ' + "9" * 5000 + "}")
    ),
    "line with a 5,000-digit number": lambda: b'{"resourceSpans": [], "n": ' + b"9" * 5000 + b"}",
    "line nested 100,000 deep": lambda: b'{"resourceSpans": ' + _deep(100_000).encode() + b"}",
    "payload nested 100,000 deep": lambda: _call_line(
        lambda d, c: _set_payload(d, '{"contract_version": "v1", "x": ' + _deep(100_000) + "}")
    ),
    # valid JSON whose \\ud83d-style escapes decode to no Unicode text (json.dumps writes a lone
    # surrogate of a Python str as such an escape)
    **{
        f"unpaired surrogate in {where}": make
        for where, make in {
            "the prompt": lambda: _call_line(
                lambda d, c: c["attributes"].append(
                    {"key": "gen_ai.prompt", "value": {"stringValue": "hi \ud83d there"}}
                )
            ),
            "a payload field": lambda: _call_line(
                lambda d, c: _set_payload(d, {**_payload(d), "selection_reason": "x\udc00"})
            ),
            "a payload key": lambda: _call_line(
                lambda d, c: _set_payload(d, {**_payload(d), "custom_attributes": {"k\ud800": 1}})
            ),
            "the span name": lambda: _call_line(lambda d, c: c.update(name="\ud83d")),
            "the span id": lambda: _call_line(lambda d, c: c.update(spanId="\udbff" * 16)),
        }.items()
    },
    # bytes that are not UTF-8 inside a string (msgspec raised UnicodeDecodeError, from review)
    "Latin-1 bytes in the prompt": lambda: _call_line(
        lambda d, c: c["attributes"].append(
            {"key": "gen_ai.prompt", "value": {"stringValue": "@@LATIN1@@"}}
        )
    ).replace(b"@@LATIN1@@", b"caf\xe9"),
    "a UTF-8-encoded surrogate in a payload": lambda: _call_line(
        lambda d, c: _set_payload(d, {**_payload(d), "selection_reason": "@@SURR@@"})
    ).replace(b"@@SURR@@", b"\xed\xa0\xbd"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_values_are_quarantined_not_fatal(tmp_path, case):

    path = tmp_path / "bad.otlp.json"
    path.write_bytes(MALFORMED[case]() + b"\n")
    native, python, general = _every_path(path)
    _assert_same(native, python, case)
    for batch in (python, general):  # every record accounted for, none raised
        tables = batch.tables
        stored = sum(
            0 if tables[t] is None else tables[t].num_rows
            for t in ("router_decisions", "llm_calls", "quarantine")
        )
        assert batch.records_in == stored + batch.duplicates_in_batch, case


def test_unpaired_surrogates_are_quarantined_with_where_they_are(tmp_path):
    """In OTLP lines (every path) and in the other formats (the general path), a record holding
    an unpaired surrogate escape is quarantined, its reason naming the field; the rest stored."""
    from routeiq_assets.warehouse.columnar import as_columnar
    from routeiq_assets.warehouse.ingest import normalise_file

    path = tmp_path / "bad.otlp.json"
    path.write_bytes(MALFORMED["unpaired surrogate in a payload field"]() + b"\n")
    for batch in _every_path(path):
        assert batch.tables["llm_calls"].num_rows == 1
        [reason] = batch.tables["quarantine"]["reason"].to_pylist()
        assert reason == "payload is not valid Unicode: selection_reason holds '\\\\udc00'"
    decisions = [
        _review_payload("e1"),
        {**_review_payload("e2"), "custom_attributes": {"note": "\ud83d!"}},
    ]
    jsonl = tmp_path / "decisions.jsonl"
    jsonl.write_text("".join(json.dumps(d) + "\n" for d in decisions))
    batch = as_columnar(normalise_file(jsonl, "decision_jsonl", "b", "src"))
    assert batch.tables["router_decisions"]["event_id"].to_pylist() == ["e1"]
    [row] = batch.tables["quarantine"].to_pylist()
    assert row["location"].endswith(":2")
    assert row["reason"] == (
        "record is not valid Unicode: data.payload.custom_attributes.note holds '\\\\ud83d'"
    )


def test_objects_in_parts_are_stored_as_one_pass_stores_them(tmp_path):
    """Found by review: struct-typed parts (one object per key set) beside text."""
    trace, span = "a" * 32, "b" * 16
    lines = [
        _decision_line(
            trace,
            span,
            [
                _review_payload("e1", custom_attributes={"logging_policy": {"a": 1}}),
                _review_payload("e2", custom_attributes={"logging_policy": {"b": [1]}}),
            ],
        ),
        _decision_line(
            trace, ESCAPED_SPAN, [_review_payload("e3", custom_attributes={"logging_policy": "x"})]
        ),
    ]
    path = tmp_path / "objects.otlp.json"
    path.write_bytes(b"\n".join(lines) + b"\n")
    python = _batch(path, False)
    _assert_same(_batch(path, True), python)
    assert python.tables["router_decisions"]["logging_policy"].to_pylist() == [
        '{"a": 1}',
        '{"b": [1]}',
        "x",
    ]
    # parts typed apart cannot be joined into what one pass stores: the callers re-read the file
    with pytest.raises(pa.ArrowInvalid):
        merge_parts([_batch(path, False, part=p) for p in split_lines(path, 2)])


def test_upper_case_and_base64_ids_are_read_natively(tmp_path):
    """protobuf-JSON exporters send ids in base64, some in upper-case hex: normalised in C as
    normalise_id does (stray bits after the last byte ignored, as binascii does)."""
    import base64

    def b64(hex_id):
        return base64.b64encode(bytes.fromhex(hex_id)).decode()

    spans = []
    for i, req in enumerate(simulate_requests(40, seed=15)):
        decision, call = request_spans(req)
        if i % 2:
            decision["spanId"], call["traceId"] = b64(decision["spanId"]), b64(call["traceId"])
            call["parentSpanId"] = b64("0123456789abcdef")
        else:
            decision["traceId"], call["spanId"] = (
                decision["traceId"].upper(),
                call["spanId"].upper(),
            )
            call["parentSpanId"] = "ABCDEF0123456789"
        spans += [decision, call]
    spans[1]["parentSpanId"] = "AAAAAAAAAAB="  # stray bits: still 0000000000000000
    path = tmp_path / "ids.otlp.json"
    path.write_bytes(_line(spans) + b"\n")
    native, python = _batch(path, True), _batch(path, False)
    _assert_same(native, python)
    assert native.stats["python_lines"] == 0 and native.stats["native_records"] == 80
    parents = set(python.tables["llm_calls"]["parent_span_id"].to_pylist())
    assert parents == {"0123456789abcdef", "abcdef0123456789", "0000000000000000"}


def test_threads_hand_files_the_compiled_path_gives_up_on_to_worker_processes(
    tmp_path, monkeypatch
):
    """Lines outside the compiled subset run Python under the GIL: once a file comes back given
    up on, the files not started yet go to worker processes (every core)."""
    from routeiq_assets.warehouse import ingest

    files = []
    for f in range(4):
        lines = []
        for req in simulate_requests(12, seed=30 + f):
            decision, call = request_spans(req)
            call["attributes"].append({"key": "x", "value": {"arrayValue": {"values": []}}})
            lines.append(_line([decision, call]))
        path = tmp_path / f"odd{f}.otlp.json"
        path.write_bytes(b"\n".join(lines) + b"\n")
        files.append(path)
    jobs = [(p, "otlp_json", f"b{i}", p.name, "scrub", None) for i, p in enumerate(files)]
    handed = []

    def processes(rest, workers):
        handed.append([job[2] for job in rest])
        yield from ingest.normalise_in_workers(rest, workers)

    monkeypatch.setattr(otlp_native, "MAX_STOPS", 3)
    got = list(ingest.normalise_in_threads(jobs, 1, processes))
    assert handed and handed[0][-1] == "b3" and len(handed[0]) < 4
    for job, batch in zip(jobs, got, strict=True):
        _assert_same(batch, normalise_otlp_file(job[0], job[2], job[3], "scrub", native=False))


# Pieces of the text of a JSON string, as written in the file: plain bytes, every escape,
# backslash runs of every length before a quote, and (BAD) what makes the string invalid.
STRING_PIECES = [
    "a",
    "bc",
    "é",
    "✓",
    " ",
    '\\"',
    "\\\\",
    "\\/",
    "\\b",
    "\\f",
    "\\n",
    "\\r",
    "\\t",
    "\\u00e9",
    "\\u2713",
    "\\uD83D\\uDE00",
    "\\ud83d\\ude00",
    '\\\\\\"',
    "\\\\\\\\",
    "\\\\\\\\\\\\",
]
BAD_PIECES = ["\\x", "\\ud83d", "\\ude00", "\\u12G4", "\\uD83Dx", "\x01", "\\", '"', "\\u00"]


def _json_string_text(rng, length, bad):
    pieces = []
    while sum(map(len, pieces)) < length:
        pieces.append(rng.choice(STRING_PIECES))
    if bad:
        pieces.insert(rng.randrange(len(pieces) + 1), rng.choice(BAD_PIECES))
    return "".join(pieces)


def _escapes_file(path, rng, n, bad_every=None):
    """Lines of one request each, whose prompt and payload selection_reason are JSON string
    texts of 0 to 150 bytes from STRING_PIECES (every ``bad_every``-th with a BAD_PIECE)."""
    lines = []
    for i, req in enumerate(simulate_requests(n, seed=21)):
        decision, call = request_spans(req)
        bad = bad_every is not None and i % bad_every == bad_every - 1
        prompt = _json_string_text(rng, i % 151, bad and i % 2 == 0)
        reason = _json_string_text(rng, (i * 7) % 151, bad and i % 2 == 1)
        for attr in call["attributes"]:
            if attr["key"] == "gen_ai.prompt":
                attr["value"] = {"stringValue": "@@PROMPT@@"}
        p = _payload(decision)
        if i % 2:  # the payload's last field: its end is in the scanner's last, short block
            del p["selection_reason"]
        p["selection_reason"] = "@@REASON@@"
        _set_payload(decision, json.dumps(p).replace('"@@REASON@@"', f'"{reason}"'))
        lines.append(_line([decision, call]).replace(b'"@@PROMPT@@"', f'"{prompt}"'.encode()))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.parametrize("simd", [0, 1, 2])
def test_escapes_at_every_offset_of_the_vector_blocks(tmp_path, simd):
    """The string scanner and unescaper work on 32- and 64-byte blocks where the CPU has AVX2 /
    AVX-512: strings of every length from 0 to 150 bytes, made of every escape and backslash run
    (and of invalid ones), in the prompt (escaped once) and in a payload string (escaped twice,
    so its backslash runs double), land at every offset of a block and across block ends. Each
    path (portable, AVX2, AVX-512, as far as this CPU has them) reads every valid line itself,
    hands each invalid one back, and stores what the Python path stores."""
    native = otlp_native._native
    previous = native.set_simd(simd)
    try:
        if native.set_simd(simd) < simd:  # set_simd caps the level at what this CPU has
            pytest.skip(f"this CPU has no scanner level {simd}")
        rng = random.Random(simd)
        valid = _escapes_file(tmp_path / "valid.otlp.json", rng, 300)
        got, expected = _batch(valid, True), _batch(valid, False)
        _assert_same(got, expected, f"simd {simd}")
        assert got.stats["python_lines"] == 0 and got.stats["native_records"] == 600
        # fewer invalid lines than the compiled path hands back before it gives up on a file
        mixed = _escapes_file(tmp_path / "mixed.otlp.json", rng, 90, bad_every=6)
        got, expected = _batch(mixed, True), _batch(mixed, False)
        _assert_same(got, expected, f"simd {simd}")
        assert got.stats["python_lines"] == 15
        assert expected.tables["quarantine"].num_rows == 15
    finally:
        native.set_simd(previous)


def _text_in(where, req, text):
    """One request's line with ``text`` (raw JSON string text) as its prompt (0), as an
    attribute key of its call (1) or as its payload's selection_reason (2)."""
    decision, call = request_spans(req)
    if where == 0:
        for attr in call["attributes"]:
            if attr["key"] == "gen_ai.prompt":
                attr["value"] = {"stringValue": "@@TEXT@@"}
    elif where == 1:
        call["attributes"].append({"key": "@@TEXT@@", "value": {"intValue": "1"}})
    else:
        p = _payload(decision)
        p["selection_reason"] = "@@TEXT@@"
        _set_payload(decision, json.dumps(p).replace('"@@TEXT@@"', f'"{text}"'))
    return _line([decision, call]).replace(b'"@@TEXT@@"', f'"{text}"'.encode())


@pytest.mark.parametrize("simd", [0, 1, 2])
def test_short_strings_with_a_control_character_or_escape_anywhere_equal_the_python_path(
    tmp_path, simd
):
    """With AVX2, a string whose closing quote is among the 16 bytes after its opening one is
    taken in one SSE2 step unless a backslash or control character comes before that quote.
    Strings of 0 to 20 bytes with a control character (invalid) or an escape (valid) at every
    position, in an attribute key, a prompt and a payload's field, read as the Python path
    reads them: each invalid line handed back (and quarantined), the valid ones read natively
    (files of fewer invalid lines than the compiled path hands back before it gives up)."""
    native = otlp_native._native
    previous = native.set_simd(simd)
    try:
        if native.set_simd(simd) < simd:
            pytest.skip(f"this CPU has no scanner level {simd}")
        cases = []
        for length in range(21):
            cases.append(("a" * length, False))
            for at in range(length):
                for piece in ("\x01", "\x1f", "\\n", '\\"'):
                    text = "a" * at + piece + "a" * (length - at - 1)
                    cases.append((text, piece in ("\x01", "\x1f")))
        reqs = list(simulate_requests(3 * len(cases), seed=4))
        # (line, quarantined, handed back): the compiled path hands back keys with escapes too
        lines = [
            (_text_in(where, req, text), bad, bad or (where == 1 and "\\" in text))
            for where in range(3)
            for (text, bad), req in zip(cases, reqs[where * len(cases) :], strict=False)
        ]
        files, invalid, chunk = 0, 0, []
        for k, line in enumerate(lines):
            chunk.append(line)
            if sum(back for *_, back in chunk) < otlp_native.MAX_STOPS - 1 and k + 1 < len(lines):
                continue
            path = tmp_path / f"short{files}.otlp.json"
            path.write_bytes(b"\n".join(text for text, *_ in chunk) + b"\n")
            got, expected = _batch(path, True), _batch(path, False)
            _assert_same(got, expected, f"simd {simd}, {path.name}")
            assert got.stats["python_lines"] == sum(back for *_, back in chunk), path.name
            bad_lines = sum(bad for _, bad, _ in chunk)
            quarantined = expected.tables["quarantine"]
            assert (0 if quarantined is None else quarantined.num_rows) == bad_lines, path.name
            files, invalid, chunk = files + 1, invalid + bad_lines, []
        assert invalid == 3 * 2 * sum(range(21))  # every control character at every position
    finally:
        native.set_simd(previous)


@pytest.mark.parametrize("simd", [0, 1, 2])
def test_the_line_split_finds_each_newline_and_knows_when_the_line_is_ascii(simd):
    """The parser splits lines and, with AVX2, learns in the same pass whether a line is all
    ASCII (then it skips the UTF-8 check): random bytes (ASCII, newlines, UTF-8 and invalid
    bytes) from random starts give Python's newline, and 'ASCII' exactly when it is (the
    portable split never claims it)."""
    native = otlp_native._native
    previous = native.set_simd(simd)
    try:
        if native.set_simd(simd) < simd:
            pytest.skip(f"this CPU has no scanner level {simd}")
        want_ascii = int(simd >= 1)
        # the block edges for certain: a newline at 31, 32, 33, 63, 64, 65 bytes from the start,
        # with a high byte just before it, or just after it (which does not count)
        for at in (0, 31, 32, 33, 63, 64, 65):
            assert native.line_end(b"a" * at + b"\n" + b"\xff" * 40, 0) == (at, want_ascii)
            if at:
                high_before = b"a" * (at - 1) + b"\xff\n" + b"a" * 40
                assert native.line_end(high_before, 0) == (at, 0)
        assert native.line_end(b"abc", 3) == (3, want_ascii)  # from the end: no line, no bytes
        assert native.line_end(b"", 0) == (0, want_ascii)
        rng = random.Random(simd)
        alphabet = [b"a", b"{", b"\n", b"\xc3\xa9", b"\xff", b"\x80", b" "]
        for _ in range(5000):
            weights = [50, 5, rng.choice([0, 1, 3]), rng.choice([0, 1]), rng.choice([0, 1]), 1, 5]
            data = b"".join(rng.choices(alphabet, weights, k=rng.randrange(0, 160)))
            start = rng.randrange(0, len(data) + 1)
            found = data.find(b"\n", start)
            end = len(data) if found < 0 else found
            ascii = all(byte < 0x80 for byte in data[start:end])
            assert native.line_end(data, start) == (end, int(ascii and simd >= 1)), (data, start)
    finally:
        native.set_simd(previous)


@pytest.mark.parametrize("simd", [0, 1, 2])
def test_a_byte_that_is_not_utf8_next_to_the_newline_is_quarantined_like_the_python_path(
    tmp_path, simd
):
    """An invalid byte (or a valid two-byte character) at the end of a line's last string, with
    0 to 39 spaces after the JSON (and a line after it): in the newline's 32-byte block and in
    the blocks before it.
    The invalid lines are handed back and quarantined as the Python path does; the valid ones
    are read natively."""
    native = otlp_native._native
    previous = native.set_simd(simd)
    try:
        if native.set_simd(simd) < simd:
            pytest.skip(f"this CPU has no scanner level {simd}")
        for char, bad in ((b"\xff", True), (b"\xc3\xa9", False)):
            for pad in range(40):
                decision, call = request_spans(next(iter(simulate_requests(1, seed=pad))))
                del call["events"], call["status"]  # the completion ends 9 bytes before the end
                line = _line([decision, call])
                cut = line.rindex(b'"}}]')
                line = line[:cut] + char + line[cut:] + b" " * pad
                path = tmp_path / f"u{pad}.otlp.json"
                # a line after it: the newline is then found in a whole 32-byte block too
                after = _line(list(request_spans(next(iter(simulate_requests(1, seed=99))))))
                path.write_bytes(line + b"\n" + after + b"\n")
                got, expected = _batch(path, True), _batch(path, False)
                _assert_same(got, expected, f"simd {simd}, pad {pad}")
                assert got.stats["python_lines"] == int(bad), pad
                quarantined = expected.tables["quarantine"]
                assert (0 if quarantined is None else quarantined.num_rows) == int(bad), pad
    finally:
        native.set_simd(previous)


def test_a_byte_order_mark_before_the_first_line_is_dropped_in_every_path(tmp_path):
    """Some Windows tools write a UTF-8 BOM first; json.loads refuses it, so the first line (a
    whole export request) was quarantined before."""

    clean = _clean_file(tmp_path / "clean.otlp.json", n=100)
    path = tmp_path / "bom.otlp.json"
    path.write_bytes(b"\xef\xbb\xbf" + clean.read_bytes())
    native, python, general = _every_path(path)
    for batch in (native, python, general):
        assert batch.tables["quarantine"] is None or batch.tables["quarantine"].num_rows == 0
        assert batch.tables["router_decisions"].num_rows == 100
    _assert_same(native, python)
    assert native.stats["python_lines"] == 0
    parts = [_batch(path, True, part=p) for p in split_lines(path, 2)]
    _assert_same(merge_parts(parts), python)


def test_pretty_printed_export_requests_are_read_whole_in_every_path(tmp_path):
    """An export request spread over many lines (json.dump with indent, as tools other than the
    collector write them; two in a row too) is one request, not hundreds of bad lines; its
    records are located by the line the request starts on."""
    from tests.warehouse.test_otlp_fast import _export_request

    reqs = list(simulate_requests(6, seed=12))
    docs = [
        json.dumps(
            _export_request([s for r in reqs[i : i + 3] for s in request_spans(r)]), indent=2
        )
        for i in (0, 3)
    ]
    path = tmp_path / "pretty.otlp.json"
    path.write_text(docs[0] + "\n\n" + docs[1] + "\n")
    assert split_lines(path, 2) == [(0, -1, 1)]  # never cut inside a request
    native, python, general = _every_path(path)
    for batch in (native, python, general):
        assert batch.records_in == 12 and batch.tables["quarantine"] is None
        assert batch.tables["router_decisions"].num_rows == 6
    _assert_same(native, python)
    stored = []
    for fast in (True, False):  # the general path's rows equal in the warehouse
        with connect(tmp_path / f"{fast}.duckdb") as con:
            ingest_batch(con, "b", path, "otlp_json", "src", fast=fast)
            stored.append(_contents(con))
    assert stored[0] == stored[1]
    second = docs[0].count("\n") + 3  # the line the second request starts on
    locations = {
        loc.split(" span ")[0] for loc in python.tables["llm_calls"]["location"].to_pylist()
    }
    assert locations == {"pretty.otlp.json:1", f"pretty.otlp.json:{second}"}


def test_a_broken_pretty_printed_file_is_read_line_by_line_and_nothing_lost(tmp_path):
    from tests.warehouse.test_otlp_fast import _export_request

    reqs = list(simulate_requests(2, seed=13))
    text = json.dumps(_export_request([s for r in reqs for s in request_spans(r)]), indent=2)
    path = tmp_path / "truncated.otlp.json"
    path.write_text(text[: len(text) // 2])  # cut off mid-request
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    for batch in _every_path(path):
        assert batch.records_in == batch.tables["quarantine"].num_rows == len(lines)


@pytest.mark.parametrize(
    ("first_bytes", "said"),
    [
        (b"\x1f\x8b\x08\x00", "gzip-compressed"),
        (b"\x28\xb5\x2f\xfd", "zstd-compressed"),
        ('{"resourceSpans": []}'.encode("utf-16"), "UTF-16"),
    ],
)
def test_compressed_and_utf16_files_are_quarantined_saying_what_they_are(
    tmp_path, first_bytes, said
):
    from routeiq_assets.telemetry.raw_store import sniff_format
    from routeiq_assets.warehouse.ingest import normalise_file

    path = tmp_path / "telemetry.json"
    path.write_bytes(first_bytes + bytes(range(256)))
    fmt = sniff_format(path)
    batch = normalise_file(path, fmt, "b", "src")
    assert fmt == "unknown" and batch.records_in == 1
    [row] = batch.quarantine
    assert said in row["reason"] and "unsupported telemetry format" in row["reason"]


def test_status_codes_as_text_are_read_as_protobuf_json_writes_them(tmp_path):
    """protobuf's JSON printers write the enum's name, and some tools an int as a string: both
    are the code (an error stays an error); any other text is no code ("unset")."""

    codes = [2, "2", "STATUS_CODE_ERROR", "1", "STATUS_CODE_OK", "0", "STATUS_CODE_UNSET", "02"]
    reqs = list(simulate_requests(len(codes), seed=15))
    lines = []
    for req, code in zip(reqs, codes, strict=True):
        decision, call = request_spans(req)
        call["status"] = {"code": code}
        lines.append(_line([decision, call]))
    path = tmp_path / "status.otlp.json"
    path.write_bytes(b"\n".join(lines) + b"\n")
    expected = ["error", "error", "error", "ok", "ok", "unset", "unset", "unset"]
    native, python, general = _every_path(path)
    for batch in (native, python, general):
        by_location = dict(
            zip(
                batch.tables["llm_calls"]["location"].to_pylist(),
                batch.tables["llm_calls"]["status"].to_pylist(),
                strict=True,
            )
        )
        got = [
            by_location[loc]
            for loc in sorted(by_location, key=lambda x: int(x.split(":")[1].split()[0]))
        ]
        assert got == expected
    _assert_same(native, python)
    assert native.stats["python_lines"] == 0


def test_otlp_with_proto_field_names_is_quarantined_saying_so(tmp_path):
    """snake_case keys are not OTLP/JSON (the specification allows only lowerCamelCase): a file
    of them, or such a line in an OTLP file, is quarantined with a reason that says what it is."""
    from routeiq_assets.telemetry.raw_store import sniff_format
    from routeiq_assets.warehouse.ingest import normalise_file
    from tests.warehouse.test_otlp_fast import _export_request

    req = next(iter(simulate_requests(1, seed=16)))
    snake = json.dumps({"resource_spans": _export_request(request_spans(req))["resourceSpans"]})
    whole = tmp_path / "snake.json"
    whole.write_text(snake + "\n")
    assert sniff_format(whole) == "unknown"
    [row] = normalise_file(whole, "unknown", "b", "src").quarantine
    assert "proto field names" in row["reason"]
    mixed = _clean_file(tmp_path / "mixed.otlp.json", n=25)
    mixed.write_bytes(mixed.read_bytes() + snake.encode() + b"\n")
    native, python = _batch(mixed, True), _batch(mixed, False)
    _assert_same(native, python)
    [reason] = python.tables["quarantine"]["reason"].to_pylist()
    assert "its keys are proto field names (resource_spans)" in reason
