import pytest

from routeiq_assets.telemetry.raw_store import land_file
from routeiq_assets.telemetry.simulator import (
    load_table,
    replay_table,
    simulate_requests,
    write_otlp_files,
)
from routeiq_assets.training.labels import (
    LabelingPolicy,
    build_routing_examples,
    load_policy,
    load_prices,
)
from routeiq_assets.training.splits import split_for
from routeiq_assets.training.training_set import build_training_set, load_quality_matrix
from routeiq_assets.warehouse.ingest import ingest_pending, register_raw_file
from routeiq_assets.warehouse.store import connect
from tests.conftest import REPO_ROOT


def _ingest(con, files, raw_dir):
    for f in files:
        register_raw_file(con, land_file(f, raw_dir))
    ingest_pending(con)


def test_split_is_stable_and_ignores_case_and_whitespace():
    assert split_for("What is  2+2?") == split_for("  what is 2+2? ")
    splits = [split_for(f"query number {i}") for i in range(5000)]
    assert 0.07 < splits.count("test") / 5000 < 0.13
    assert 0.07 < splits.count("validation") / 5000 < 0.13
    with pytest.raises(ValueError):
        split_for("x", validation=0.6, test=0.5)


def test_prices_file_errors_name_the_model(tmp_path):
    bad = tmp_path / "p.yaml"
    bad.write_text("gpt-x: {input_price: -1, output_price: 2}\n")
    with pytest.raises(ValueError, match="gpt-x"):
        load_prices(bad)
    assert load_prices(REPO_ROOT / "configs" / "prices.yaml")["gpt-4o"].output_price == 10.0


def test_examples_label_quality_cost_and_propensity(tmp_path):
    requests = list(simulate_requests(300, seed=5, log_propensities=True))
    files = write_otlp_files(iter(requests), tmp_path / "l", "x")
    prices = load_prices(REPO_ROOT / "configs" / "prices.yaml")
    unpriced = sum(r.selected.name not in prices for r in requests)
    assert unpriced > 0  # the default prices leave one simulated model (mistral-7b) unpriced
    with connect(tmp_path / "w.duckdb") as con:
        _ingest(con, files, tmp_path / "raw")
        policy = LabelingPolicy(utility_lambda=100.0)
        counts = build_routing_examples(con, prices, policy)
        assert counts["examples"] == 300 and counts["examples_without_price"] == unpriced
        rows = con.execute(
            "SELECT e.quality, e.outcome_status, e.cost_usd, d.input_tokens, d.output_tokens,"
            " e.model_name, e.propensity, d.selection_propensity, e.utility FROM routing_examples e"
            " JOIN router_decisions d USING (event_id)"
        ).fetchall()
        for quality, status, cost, tin, tout, model, prop, logged_prop, utility in rows:
            assert quality == (1.0 if status == "success" else 0.0)
            assert prop == logged_prop and 0 < prop <= 1
            if model not in prices:  # an unknown price is unknown, in the utility too
                assert cost is None and utility is None
                continue
            p = prices[model]
            assert cost == pytest.approx((tin * p.input_price + tout * p.output_price) / 1e6)
            assert utility == pytest.approx(quality - 100.0 * cost)
        summary = build_training_set(con)
        assert sum(summary["queries_per_split"].values()) == counts["distinct_queries"]
        # no query text appears in two splits
        leaks = con.execute(
            "SELECT query_sha256 FROM training_set GROUP BY 1 HAVING count(DISTINCT split) > 1"
        ).fetchall()
        assert leaks == []
        matrix = load_quality_matrix(con, "train")
        assert (
            matrix.mask.sum()
            == con.execute("SELECT count(*) FROM training_set WHERE split='train'").fetchall()[0][0]
        )


def test_replayed_benchmark_labels_equal_the_table(tmp_path, benchmark_table):
    records, catalog = load_table(*benchmark_table)
    requests = list(replay_table(records, catalog, seed=9, limit=400, log_propensities=True))
    files = write_otlp_files(iter(requests), tmp_path / "l", "r")
    prices = load_prices(benchmark_table[1])
    with connect(tmp_path / "w.duckdb") as con:
        _ingest(con, files, tmp_path / "raw")
        build_routing_examples(con, prices, LabelingPolicy())
        got = {
            r[0]: r[1:]
            for r in con.execute(
                "SELECT trace_id, quality, model_name, propensity FROM routing_examples"
            ).fetchall()
        }
    assert len(got) == 400
    for req in requests:
        quality, model, propensity = got[req.trace_id]
        assert model == req.selected.name
        assert quality == pytest.approx(req.quality)
        assert propensity == pytest.approx(req.propensity, abs=1e-6)


def test_policy_file_validates_and_names_bad_keys(tmp_path):
    policy = load_policy(REPO_ROOT / "configs" / "labeling.yaml")
    assert policy.quality_sources[0] == "feedback" and policy.prices_file.exists()
    bad = tmp_path / "labeling.yaml"
    bad.write_text("quality_sources: [vibes]\noutcome_quality: {success: 2}\nextra_key: 1\n")
    with pytest.raises(ValueError) as err:
        load_policy(bad)
    message = str(err.value)
    assert str(bad) in message and "quality_sources" in message and "extra_key" in message


def test_feedback_full_information_legacy_and_utility(tmp_path, benchmark_table):
    import json

    requests = list(simulate_requests(40, seed=8, log_propensities=True))
    (otlp,) = write_otlp_files(iter(requests), tmp_path / "l", "x")
    judged = requests[:10]
    feedback = tmp_path / "feedback.jsonl"
    feedback.write_text(
        "\n".join(
            json.dumps({"event_id": r.event_id, "score": 4, "source": "llm_judge"}) for r in judged
        )
        + "\n"
        + json.dumps({"trace_id": requests[10].trace_id, "score": 2, "source": "user"})
        + "\n"
    )
    legacy = tmp_path / "traces.jsonl"
    legacy.write_text(
        json.dumps(
            {
                "query": "legacy question",
                "model_name": "gpt-4o",
                "input_tokens": 1000,
                "output_tokens": 2000,
                "response_time": 2.0,
                "performance": 0.25,
            }
        )
        + "\n"
    )
    table = tmp_path / "bench.json"
    records = json.loads(benchmark_table[0].read_text())[:5]
    table.write_text(json.dumps(records))
    policy = LabelingPolicy(
        feedback_min=1,
        feedback_max=5,
        utility_lambda=10.0,
        utility_mu=0.1,
        prices_file=REPO_ROOT / "configs" / "prices.yaml",
        full_information=[{"path": table, "name": "bench", "output_tokens": 100}],
    )
    prices = load_prices(policy.prices_file)
    with connect(tmp_path / "w.duckdb") as con:
        _ingest(con, [otlp, feedback, legacy], tmp_path / "raw")
        assert con.execute("SELECT count(*) FROM feedback").fetchall()[0][0] == 11
        from routeiq_assets.training.labels import load_full_information

        load_full_information(con, policy.full_information)
        counts = build_routing_examples(con, prices, policy)
        got = {
            r[0]: r[1:]
            for r in con.execute(
                "SELECT event_id, quality, label_source, utility, cost_usd, latency_ms, is_logged"
                " FROM routing_examples"
            ).fetchall()
        }
    assert counts["logged_examples"] == 41 and counts["examples"] == 41 + 5 * 9
    for r in judged:
        assert got[r.event_id][:2] == (0.75, "feedback")  # (4 - 1) / (5 - 1)
    assert got[requests[10].event_id][:2] == (0.25, "feedback")  # joined by trace id
    other = got[requests[20].event_id]
    assert other[1] == "event_score" and other[0] == requests[20].quality
    quality, _, utility, cost, latency, _ = other
    assert utility == pytest.approx(quality - 10.0 * cost - 0.1 * latency / 1000)
    legacy_row = next(v for k, v in got.items() if k.startswith("call:"))
    assert legacy_row[0] == 0.25 and legacy_row[1] == "call_score"
    assert legacy_row[3] == pytest.approx((1000 * 2.5 + 2000 * 10.0) / 1e6)
    full = [v for k, v in got.items() if k.startswith("full:")]
    assert len(full) == 45 and not any(v[5] for v in full)
    assert {v[1] for v in full} == {"full_information:bench"}


def test_routeiq_copies_of_a_plugin_decision_are_labelled_once(tmp_path):
    """With the gateway plugin as its routing strategy, RouteIQ's pipeline logs its own decision
    event for the plugin's decision: same trace, same deployment, no propensity. Both events are
    kept in router_decisions; the plugin's (with the propensity) is the one labelled."""
    import json

    from routeiq_assets.telemetry.simulator import decision_payload

    requests = list(simulate_requests(120, seed=9, log_propensities=True))
    files = write_otlp_files(iter(requests), tmp_path / "l", "p")
    copies = tmp_path / "l" / "routeiq-pipeline-decisions.jsonl"
    with copies.open("w") as out:
        for req in requests[:50]:
            payload = dict(decision_payload(req), event_id=f"pipeline-{req.event_id}")
            payload["custom_attributes"] = {}
            out.write(json.dumps(payload) + "\n")
    prices = load_prices(REPO_ROOT / "configs" / "prices.yaml")
    with connect(tmp_path / "w.duckdb") as con:
        _ingest(con, [*files, copies], tmp_path / "raw")
        assert con.execute("SELECT count(*) FROM router_decisions").fetchall()[0][0] == 170
        counts = build_routing_examples(con, prices, LabelingPolicy())
        assert counts["logged_examples"] == 120 and counts["decisions_duplicated_by_gateway"] == 50
        assert counts["logged_examples_without_propensity"] == 0
        labelled = {r[0] for r in con.execute("SELECT event_id FROM routing_examples").fetchall()}
    assert labelled == {r.event_id for r in requests}
