"""The gate against the baselines on a replayed warehouse (LLMRouter's benchmark: logged
epsilon-greedy telemetry and a full-information table): a challenger that loses to a baseline
is held and the reason names that baseline; one that beats every baseline ships. Routers are
real knn routers trained on crafted labels so that each behaves like a known policy."""

import dataclasses
import json

import numpy as np
import pytest

from routeiq_assets.evaluation.gate import GatePolicy, evaluate_gate, write_gate
from routeiq_assets.evaluation.run import train_quality_by_model
from routeiq_assets.routers.config import OperatingPointConfig, load_router_config
from routeiq_assets.training.train import data_from_warehouse, fit_and_save
from routeiq_assets.training.training_set import load_quality_matrix
from routeiq_assets.warehouse.store import connect
from tests.conftest import REPO_ROOT
from tests.evaluation.conftest import MODEL

OFF_POLICY = {"min_full_information_queries": 10**6}


def _config(objective: str, **kwargs):
    config = load_router_config(REPO_ROOT / "configs" / "routers" / "knn.yaml")
    return config.model_copy(
        update={"operating_point": OperatingPointConfig(objective=objective, **kwargs)}
    )


@pytest.fixture(scope="module")
def setting(replayed_warehouse):
    with connect(replayed_warehouse.db) as con:
        data = data_from_warehouse(con, MODEL, replayed_warehouse.encoder, lambda _m: None)
        names = list(data.train.model_names)
        best = int(np.argmax(train_quality_by_model(con, names)))
    return data, names, best, int(np.argmin(data.cost))


def _one_hot(name, setting, model: int, config, warehouse):
    """A router that predicts quality 1 for ``model`` and 0 for the rest: it always picks it."""
    data = setting[0]
    quality = np.zeros_like(data.train.quality)
    quality[:, model] = 1.0
    train = dataclasses.replace(data.train, quality=quality, mask=np.ones_like(data.train.mask))
    return fit_and_save(
        name, config, dataclasses.replace(data, train=train), warehouse.root / "routers"
    ).folder


def _gate(warehouse, challengers, **policy):
    with connect(warehouse.db) as con:
        return evaluate_gate(
            con,
            challengers,
            None,
            GatePolicy(bootstrap_samples=300, **policy),
            warehouse.encoder,
        )


def _lost_to(result) -> list[str]:
    return [c["baseline"].split(" ")[0] for c in result.comparisons if not c["passed"]]


def test_always_best_wins_over_its_own_clone(replayed_warehouse, setting):
    """match_best: a router that always picks the always-best model reaches its quality but is
    not cheaper, so always-best wins; it beats always-cheapest (which misses the quality) and
    the logging policy (off-policy), and the reason says all that. Off-policy, the cheapest
    model was logged too rarely to show that it misses the target: the gate says it may not."""
    data, names, best, _ = setting
    folder = _one_hot("clone_best", setting, best, _config("match_best"), replayed_warehouse)
    for kwargs, lost in (({}, ["always-best"]), (OFF_POLICY, ["always-best", "always-cheapest"])):
        result = _gate(replayed_warehouse, {"clone_best": folder}, **kwargs)
        assert not result.passed
        assert _lost_to(result) == lost, result.reason
        assert f"loses to always-best ({names[best]})" in result.reason
        assert "is not cheaper beyond the interval" in result.reason
        assert result.objective.startswith("match_best")
        versus_best = next(c for c in result.comparisons if c["baseline"].startswith("always-b"))
        assert versus_best["quality_difference"][0] == 0 and versus_best["cost_difference"][0] == 0
    assert "logging policy" in result.reason  # off-policy: it beats what the gateway does


def test_always_cheapest_wins_over_its_own_clone_within_a_budget(replayed_warehouse, setting):
    """budget: a router that always picks the cheapest model is within a budget that every
    other model exceeds, but it is not better than always-cheapest, which wins."""
    data, names, _, cheapest = setting
    budget = float(data.cost[cheapest]) * 1.4
    config = _config("budget", budget_usd=budget)
    folder = _one_hot("clone_cheap", setting, cheapest, config, replayed_warehouse)
    for kwargs in ({}, OFF_POLICY):
        result = _gate(replayed_warehouse, {"clone_cheap": folder}, **kwargs)
        assert not result.passed and _lost_to(result) == ["always-cheapest"], result.reason
        assert f"always-cheapest ({names[cheapest]}) is within the budget" in result.reason
        assert result.objective == f"budget: the best quality at no more than ${budget:g} a query"


def test_the_logging_policy_wins_over_a_worse_router(replayed_warehouse, setting):
    """A router trained on inverted labels is worse than what the gateway does today: held,
    the logging policy named with the quality difference and its interval."""
    data, *_ = setting
    inverted = dataclasses.replace(data.train, quality=1.0 - data.train.quality)
    folder = fit_and_save(
        "inverted",
        _config("fixed_lambda"),
        dataclasses.replace(data, train=inverted),
        replayed_warehouse.root / "routers",
    ).folder
    result = _gate(
        replayed_warehouse, {"inverted": folder}, baselines=["logging_policy"], **OFF_POLICY
    )
    assert not result.passed and _lost_to(result) == ["logging"]
    assert "loses to logging policy (what the gateway does today)" in result.reason
    difference = result.comparisons[0]["quality_difference"]
    assert difference[0] < 0 and difference[2] < 0  # worse beyond the interval
    assert f"quality difference {difference[0]:.4f} [{difference[1]:.4f}" in result.reason


def _logged_on_the_table(warehouse, tmp_path):
    """A copy of the warehouse where the gateway also logged every full-information test query
    (with the model it logged most): the logging policy's outcome on them is known exactly."""
    import shutil

    copy = tmp_path / "overlap.duckdb"
    shutil.copy(warehouse.db, copy)
    with connect(copy) as con:
        [(incumbent,)] = con.execute(
            "SELECT model_name FROM routing_examples WHERE is_logged GROUP BY 1 "
            "ORDER BY count(*) DESC LIMIT 1"
        ).fetchall()
        con.execute(
            "INSERT INTO routing_examples SELECT 'shadow-' || event_id, 'shadow', query_text, "
            "query_sha256, model_name, task, outcome_status, quality, cost_usd, latency_ms, 1.0, "
            "label_source, TRUE, utility, timestamp_utc FROM routing_examples "
            "WHERE NOT is_logged AND model_name = ? AND query_sha256 IN "
            "(SELECT query_sha256 FROM training_set WHERE split = 'test')",
            [incumbent],
        ).fetchall()
    return dataclasses.replace(warehouse, db=copy)


def test_a_router_that_beats_every_baseline_ships(
    replayed_warehouse, setting, benchmark_table, tmp_path
):
    """A router that knows every test query's scores (an oracle) beats the logging policy,
    always-best and always-cheapest on quality (full information, every baseline valued
    exactly): the gate passes, gate.json is strict JSON, and the headline compares it with
    always-best and with what the gateway does today."""
    data, names, *_ = setting
    scores = {r["question"]: r["scores"] for r in json.loads(benchmark_table[0].read_text())}
    with connect(replayed_warehouse.db) as con:
        test = load_quality_matrix(con, "test", names)
    quality = np.array([[scores[t][m] for m in names] for t in test.query_text], np.float32)
    known = dataclasses.replace(test, quality=quality, mask=np.ones_like(quality, bool))
    x_test = replayed_warehouse.encoder(test.query_text)
    oracle_data = dataclasses.replace(data, train=known, x_train=x_test)
    config = _config("fixed_lambda")
    config = config.model_copy(update={"hparam": config.hparam.model_copy(update={"k": 1})})
    folder = fit_and_save("oracle", config, oracle_data, replayed_warehouse.root / "routers").folder
    warehouse = _logged_on_the_table(replayed_warehouse, tmp_path)
    result = _gate(warehouse, {"oracle": folder})
    assert result.passed, result.reason
    assert result.estimate == "full information" and not result.skipped
    assert "oracle beats every baseline" in result.reason
    assert "nothing in production yet, so it ships" in result.reason
    beaten = [c["baseline"].split(" ")[0] for c in result.comparisons]
    assert beaten == ["logging", "always-best", "always-cheapest"]
    assert all(c["passed"] and c["quality_difference"][1] > 0 for c in result.comparisons)
    assert "Against what the gateway does today: quality +" in result.headline
    assert f"Against always-best ({names[setting[2]]})" in result.headline
    text = write_gate(result, tmp_path).read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in gate.json"))
    markdown = result.markdown()
    assert "| logging policy (what the gateway does today) |" in markdown
    # the same data without the overlap: the logging policy cannot be valued there, and says so
    plain = _gate(replayed_warehouse, {"oracle": folder})
    assert plain.passed and plain.skipped == [
        "logging policy: no logged decision on the held-out full-information queries"
    ]
