import pytest

from routeiq_assets.telemetry.raw_store import land_file
from routeiq_assets.telemetry.simulator import (
    load_table,
    replay_table,
    simulate_requests,
    write_otlp_files,
)
from routeiq_assets.training.labels import build_routing_examples, load_prices
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
    files = write_otlp_files(simulate_requests(300, seed=5), tmp_path / "l", "x")
    prices = load_prices(REPO_ROOT / "configs" / "prices.yaml")
    with connect(tmp_path / "w.duckdb") as con:
        _ingest(con, files, tmp_path / "raw")
        counts = build_routing_examples(con, prices)
        assert counts["examples"] == 300 and counts["examples_without_price"] == 0
        rows = con.execute(
            "SELECT e.quality, e.outcome_status, e.cost_usd, d.input_tokens, d.output_tokens,"
            " e.model_name, e.propensity, d.selection_propensity FROM routing_examples e"
            " JOIN router_decisions d USING (event_id)"
        ).fetchall()
        for quality, status, cost, tin, tout, model, prop, logged_prop in rows:
            assert quality == (1.0 if status == "success" else 0.0)
            p = prices[model]
            assert cost == pytest.approx((tin * p.input_price + tout * p.output_price) / 1e6)
            assert prop == logged_prop and 0 < prop <= 1
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
    requests = list(replay_table(records, catalog, seed=9, limit=400))
    files = write_otlp_files(iter(requests), tmp_path / "l", "r")
    prices = load_prices(benchmark_table[1])
    with connect(tmp_path / "w.duckdb") as con:
        _ingest(con, files, tmp_path / "raw")
        build_routing_examples(con, prices)
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
