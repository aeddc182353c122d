"""The deployment gate's comparison with production, against a real MLflow registry (SQLite) on
a replayed warehouse: a better challenger passes, the same router does not, and the off-policy
path reaches the same verdicts. These tests judge challengers on quality against production
alone (no baselines): the baselines have their own tests (test_gate_baselines.py)."""

import dataclasses

import numpy as np
import pytest

from routeiq_assets.deployment.registry import log_router_run, register_version
from routeiq_assets.evaluation.gate import (
    GateConfigError,
    GatePolicy,
    deployment_slot,
    evaluate_gate,
    load_gate_policy,
    production_router,
)
from routeiq_assets.routers.config import OperatingPointConfig, load_router_config
from routeiq_assets.training.train import data_from_warehouse, fit_and_save
from routeiq_assets.warehouse.store import connect
from tests.conftest import REPO_ROOT
from tests.evaluation.conftest import MODEL


def _at_lambda_zero():
    """The default knn config at lambda 0 (objective fixed_lambda): these tests are of the
    gate's mechanics, not of where a router runs."""
    config = load_router_config(REPO_ROOT / "configs" / "routers" / "knn.yaml")
    return config.model_copy(
        update={"operating_point": OperatingPointConfig(objective="fixed_lambda")}
    )


@pytest.fixture(scope="module")
def routers(replayed_warehouse):
    """A knn router, and a knn trained on inverted labels (it prefers the worst model)."""
    config = _at_lambda_zero()
    out = replayed_warehouse.root / "routers"
    with connect(replayed_warehouse.db) as con:
        data = data_from_warehouse(con, MODEL, replayed_warehouse.encoder, lambda _m: None)
    inverted = dataclasses.replace(
        data, train=dataclasses.replace(data.train, quality=1.0 - data.train.quality)
    )
    good = fit_and_save("knn", config, data, out).folder
    bad = fit_and_save("knn_inverted", config, inverted, out).folder
    return good, bad


def _register(tmp_path, folder, name):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = log_router_run(uri, "gate-test", str(tmp_path / "artifacts"), folder.name, folder, {}, {})
    register_version(uri, run, name)
    return uri


def _gate(warehouse, challengers, production, **policy):
    policy = {"objective": "quality", "baselines": [], "bootstrap_samples": 300, **policy}
    with connect(warehouse.db) as con:
        return evaluate_gate(con, challengers, production, GatePolicy(**policy), warehouse.encoder)


def test_better_challenger_passes_and_same_router_fails(replayed_warehouse, routers, tmp_path):
    good, bad = routers
    uri = _register(tmp_path, bad, "knn-router")
    production = production_router(uri, "knn-router", tmp_path / "prod")
    assert production is not None and production[0] == "1"
    result = _gate(replayed_warehouse, {"knn": good}, production)
    assert result.passed, result.reason
    assert result.estimate == "full information" and result.queries >= 50
    assert result.interval[0] > 0 and result.difference > 0
    assert result.production_version == "1" and "knn beats every baseline" in result.reason

    # the same router in production: a zero difference is not an improvement
    _register(tmp_path, good, "knn-router")
    production = production_router(uri, "knn-router", tmp_path / "prod2")
    assert production[0] == "2"
    same = _gate(replayed_warehouse, {"knn": good}, production)
    assert not same.passed and same.difference == 0 and "production stays" in same.reason
    assert "PASSED" in result.markdown() and "FAILED" in same.markdown()


def test_off_policy_gate_and_first_deployment(replayed_warehouse, routers, tmp_path):
    good, bad = routers
    off_policy = {"min_full_information_queries": 10**6}
    first = _gate(replayed_warehouse, {"knn": good, "knn_inverted": bad}, None, **off_policy)
    assert first.passed and first.router == "knn" and "nothing in production yet" in first.reason
    assert first.estimate == "off-policy SNIPS"
    assert first.challengers["knn"]["quality"] > first.challengers["knn_inverted"]["quality"]
    # the inverted router as challenger against the good one in production fails
    worse = _gate(replayed_warehouse, {"knn_inverted": bad}, ("7", good), **off_policy)
    assert not worse.passed and worse.difference < 0


def test_nothing_registered_and_config_errors(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert production_router(uri, "knn-router", tmp_path / "p") is None
    assert deployment_slot("knn", ["knn", "mlp"]) == ("knn-router", ["knn"])
    assert deployment_slot("best", ["knn", "mlp"]) == ("routeiq-router", ["knn", "mlp"])
    with pytest.raises(GateConfigError, match="'bert' is not a trained router"):
        deployment_slot("bert", ["knn"])
    (bad := tmp_path / "gate.yaml").write_text("objective: profit\n")
    with pytest.raises(GateConfigError, match="gate.yaml"):
        load_gate_policy(bad)
    assert load_gate_policy(REPO_ROOT / "configs" / "gate.yaml").objective == "operating_point"


def test_a_production_router_that_picks_a_retired_model_does_not_block(
    replayed_warehouse, routers, tmp_path
):
    """Production still knows a model the held-out data no longer has ("retired"): its picks of
    it count as the worst outcome, so the gate can still decide (full information and
    off-policy) instead of failing with an undefined value."""
    good, _ = routers
    config = _at_lambda_zero()
    with connect(replayed_warehouse.db) as con:
        data = data_from_warehouse(con, MODEL, replayed_warehouse.encoder, lambda _m: None)
    names = list(data.train.model_names)
    best = int(np.nanargmax(np.nanmean(np.where(data.train.mask, data.train.quality, np.nan), 0)))
    names[best] = "retired-model"  # production's favourite model is gone from today's data
    renamed = dataclasses.replace(data, train=dataclasses.replace(data.train, model_names=names))
    old = fit_and_save("knn_old", config, renamed, replayed_warehouse.root / "routers").folder
    for policy in ({}, {"min_full_information_queries": 10**6}):
        result = _gate(replayed_warehouse, {"knn": good}, ("3", old), **policy)
        assert np.isfinite(result.production_value) and np.isfinite(result.difference)
        assert result.production_unknown_share > 0.1 and "no longer has" in result.reason
        assert result.passed, result.reason


def _without_propensities(warehouse, tmp_path, name):
    """A copy of the warehouse as RouteIQ would have filled it: no propensity logged."""
    import shutil

    copy = tmp_path / f"{name}.duckdb"
    shutil.copy(warehouse.db, copy)
    with connect(copy) as con:
        con.execute("UPDATE routing_examples SET propensity = NULL").fetchall()
        con.execute("UPDATE training_set SET propensity = NULL").fetchall()
    return dataclasses.replace(warehouse, db=copy)


def test_without_logged_propensities_the_gate_decides_on_estimated_ones(
    replayed_warehouse, routers, tmp_path
):
    """The replay's logging policy explores (epsilon-greedy): its propensities are estimated
    from the logged choices, the values are doubly robust, and the gate decides."""
    import json

    from routeiq_assets.evaluation.gate import write_gate

    good, bad = routers
    warehouse = _without_propensities(replayed_warehouse, tmp_path, "no-propensities")
    off_policy = {"min_full_information_queries": 10**6}
    first = _gate(warehouse, {"knn": good, "knn_inverted": bad}, None, **off_policy)
    assert first.estimate == "off-policy DR (estimated propensities)"
    assert first.passed and first.router == "knn", first.reason
    assert first.challengers["knn"]["quality"] > first.challengers["knn_inverted"]["quality"]
    worse = _gate(warehouse, {"knn_inverted": bad}, ("7", good), **off_policy)
    assert not worse.passed and worse.difference < 0 and "production stays" in worse.reason
    for result in (first, worse):
        text = write_gate(result, tmp_path).read_text()
        json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in gate.json"))


def test_a_deterministic_log_without_propensities_holds_with_cause_and_remedy(
    benchmark_table, routers, tmp_path
):
    """A gateway that always picks by a rule of the query and logs no propensity: nothing but
    the decisions a challenger shares with it can be valued, so the gate holds and says what
    to do; gate.json is strict JSON."""
    import json

    from routeiq_assets.evaluation.gate import write_gate
    from routeiq_assets.telemetry.raw_store import land_file
    from routeiq_assets.telemetry.simulator import load_table, replay_table, write_otlp_files
    from routeiq_assets.training.embeddings import minilm_encoder
    from routeiq_assets.training.labels import LabelingPolicy, build_routing_examples, load_prices
    from routeiq_assets.training.training_set import build_training_set
    from routeiq_assets.warehouse.ingest import ingest_pending, register_raw_file

    records, catalog = load_table(*benchmark_table)
    files = write_otlp_files(
        replay_table(records[:240], catalog, seed=3, epsilon=0.0), tmp_path / "l", "d"
    )
    db = tmp_path / "deterministic.duckdb"
    with connect(db) as con:
        for f in files:
            register_raw_file(con, land_file(f, tmp_path / "raw"))
        ingest_pending(con)
        build_routing_examples(
            con, load_prices(benchmark_table[1]), LabelingPolicy(prices_file=benchmark_table[1])
        )
        con.execute("UPDATE routing_examples SET propensity = NULL").fetchall()
        build_training_set(con, validation=0.1, test=0.5)
        policy = GatePolicy(bootstrap_samples=200)
        result = evaluate_gate(
            con, {"knn": routers[0]}, ("4", routers[1]), policy, minilm_encoder(MODEL, "cpu")
        )
    assert not result.passed and result.estimate == "none (deterministic logging policy)"
    assert "no propensities and no full-information data" in result.reason
    assert (
        "enable exploration in the gateway" in result.reason and "production stays" in result.reason
    )
    assert "full_information in configs/labeling.yaml" in result.reason
    text = write_gate(result, tmp_path).read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"{c} in gate.json"))
