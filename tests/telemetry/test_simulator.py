import json
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from routeiq_assets.telemetry.raw_store import land_file
from routeiq_assets.telemetry.simulator import (
    EpsilonGreedyPolicy,
    load_table,
    replay_table,
    simulate_requests,
    with_distinct_prompts,
    write_gateway_files,
    write_otlp_files,
)
from routeiq_assets.warehouse.ingest import ingest_pending, register_raw_file
from routeiq_assets.warehouse.store import connect, decision_call_join_counts
from tests.telemetry.test_routeiq_shapes import generator_trace_line, routeiq_decision


def test_same_seed_same_bytes(tmp_path):
    a = write_otlp_files(simulate_requests(300, seed=3), tmp_path / "a", "x", requests_per_file=100)
    b = write_otlp_files(simulate_requests(300, seed=3), tmp_path / "b", "x", requests_per_file=100)
    assert len(a) == 3
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]
    c = write_otlp_files(simulate_requests(300, seed=4), tmp_path / "c", "x", requests_per_file=100)
    assert [p.read_bytes() for p in a] != [p.read_bytes() for p in c]


def test_files_are_otlp_export_requests_with_two_spans_per_request(tmp_path):
    (path,) = write_otlp_files(simulate_requests(50, seed=1), tmp_path, "x", requests_per_line=20)
    lines = path.read_text().splitlines()
    assert len(lines) == 3  # 20 + 20 + 10 requests
    spans = [
        s
        for line in lines
        for rs in json.loads(line)["resourceSpans"]
        for ss in rs["scopeSpans"]
        for s in ss["spans"]
    ]
    assert len(spans) == 100
    names = Counter(s["name"].split(" ")[0] for s in spans)
    assert names == {"llm.routing.decision": 50, "chat": 50}
    decision = spans[0]
    assert decision["events"][0]["name"] == "routeiq.router_decision.v1"
    payload = json.loads(decision["events"][0]["attributes"][0]["value"]["stringValue"])
    assert payload["trace_id"] == decision["traceId"] and payload["span_id"] == decision["spanId"]
    assert spans[1]["parentSpanId"] == decision["spanId"]


def test_epsilon_greedy_records_the_true_choice_probability():
    import random

    policy = EpsilonGreedyPolicy(0.3)
    rng = random.Random(0)
    picks = Counter()
    probs = {}
    for _ in range(20000):
        idx, p = policy.choose(rng, incumbent=2, available=(True, True, True, False))
        picks[idx] += 1
        probs[idx] = p
    assert probs[2] == pytest.approx(0.7 + 0.1)
    assert probs[0] == pytest.approx(0.1)
    assert 3 not in picks
    for idx, p in probs.items():
        assert picks[idx] / 20000 == pytest.approx(p, abs=0.015)


def test_table_replay_outcome_is_the_logged_models_score(benchmark_table):
    records, catalog = load_table(*benchmark_table)
    assert len(catalog) == 9
    replayed = list(replay_table(records, catalog, seed=5, limit=500, log_propensities=True))
    assert len(replayed) == 500
    for rec, req in zip(records[:500], replayed, strict=True):
        assert req.query == rec["question"]
        assert req.quality == rec["scores"][req.selected.name]
        assert 0 < req.propensity <= 1


def test_distinct_prompts_differ_only_in_their_text(tmp_path):
    plain = list(simulate_requests(300, seed=5))
    distinct = list(with_distinct_prompts(simulate_requests(300, seed=5)))
    assert len({r.query for r in plain}) < 300 == len({r.query for r in distinct})
    for a, b in zip(plain, distinct, strict=True):
        assert b.query.startswith(a.query) and replace(b, query=a.query) == a
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "routeiq_assets.cli", "simulate", "--out", str(out)]
        + ["--requests", "50", "--distinct-prompts"],
        capture_output=True,
        text=True,
        check=True,
    )
    paths = json.loads(done.stdout)["files"]
    assert sum(Path(p).read_text().count("(request 49)") for p in paths) == 1


def _payloads(paths):
    """Every decision payload in OTLP files and decision JSONL files."""
    out = []
    for path in paths:
        for line in path.read_text().splitlines():
            doc = json.loads(line)
            if "contract_name" in doc:
                out.append(doc)
            if "resourceSpans" not in doc:
                continue
            for rs in doc["resourceSpans"]:
                for span in rs["scopeSpans"][0]["spans"]:
                    for event in span["events"]:
                        out.append(json.loads(event["attributes"][0]["value"]["stringValue"]))
    return out


def _keys(doc, prefix=""):
    """The nested key paths of a JSON object (lists by their first element)."""
    keys = set()
    for key, value in doc.items():
        keys.add(prefix + key)
        if isinstance(value, list) and value and isinstance(value[0], dict):
            value = value[0]
        if isinstance(value, dict):
            keys |= _keys(value, f"{prefix}{key}.")
    return keys


def test_the_default_is_what_routeiq_sends(tmp_path):
    """No propensity anywhere, one request in 50 a decision JSONL line without trace context and
    one in 50 a legacy generator line with non-hex ids; the shapes are those of RouteIQ's own
    code (the fixtures of test_routeiq_shapes), and all of it is ingested: nothing quarantined,
    counts in equal counts out."""
    files = write_gateway_files(simulate_requests(1000, seed=2), tmp_path / "in", "sim", 400)
    names = sorted(p.name for p in files)
    assert names == [
        "sim-00000.otlp.json",
        "sim-00001.otlp.json",
        "sim-00002.otlp.json",
        "sim-decisions.jsonl",
        "sim-traces.jsonl",
    ]
    payloads = _payloads(files)
    assert len(payloads) == 980
    assert all(p["custom_attributes"] == {} for p in payloads)
    assert "propensity" not in "".join(p.read_text() for p in files)
    # request_metadata is the gateway's free-form dict (here the task)
    free = {"input.request_metadata.task"}
    assert _keys(payloads[0]) - free == _keys(routeiq_decision(0))
    side = [json.loads(line) for line in (tmp_path / "in" / "sim-decisions.jsonl").open()]
    assert len(side) == 20 and all(d["trace_id"] is None and d["span_id"] is None for d in side)
    legacy = [json.loads(line) for line in (tmp_path / "in" / "sim-traces.jsonl").open()]
    assert len(legacy) == 20 and set(legacy[0]) == set(generator_trace_line(0))
    assert legacy[0]["trace_id"] == "trace_sim_000033"

    with connect(tmp_path / "w.duckdb") as con:
        for path in files:
            register_raw_file(con, land_file(path, tmp_path / "raw"))
        results = ingest_pending(con)
        assert all(c.balanced for _, c in results)
        assert sum(c.quarantined for _, c in results) == 0
        assert sum(c.decisions for _, c in results) == 980
        assert sum(c.llm_calls for _, c in results) == 980
        joins = decision_call_join_counts(con)
        assert joins["decisions_without_call"] == 20
        prop = con.execute("SELECT count(selection_propensity) FROM router_decisions")
        assert prop.fetchall() == [(0,)]


def test_logged_propensities_are_an_option(tmp_path):
    requests = list(simulate_requests(200, seed=2, log_propensities=True))
    assert all(0 < r.propensity <= 1 for r in requests)
    plain = list(simulate_requests(200, seed=2))
    # the same gateway, choices included; only what it logs differs
    assert [r.selected for r in plain] == [r.selected for r in requests]
    files = write_otlp_files(iter(requests), tmp_path, "p")
    custom = [p["custom_attributes"] for p in _payloads(files)]
    assert all(c["logging_policy"] == "epsilon_greedy" for c in custom)
    assert [c["selection_propensity"] for c in custom] == [round(r.propensity, 6) for r in requests]
