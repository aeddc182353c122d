import json
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from routeiq_assets.telemetry.simulator import (
    EpsilonGreedyPolicy,
    load_table,
    replay_table,
    simulate_requests,
    with_distinct_prompts,
    write_otlp_files,
)


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
    replayed = list(replay_table(records, catalog, seed=5, limit=500))
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
    [path] = json.loads(done.stdout)["files"]
    assert Path(path).read_text().count("(request 49)") == 1
