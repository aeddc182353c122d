"""The operating point: the lambda a router runs at is chosen on the validation split for the
objective its config declares, and recorded where serving reads it."""

import json

import numpy as np
import pytest

from routeiq_assets.routers.base import read_router_meta
from routeiq_assets.routers.config import RouterConfig, load_router_config
from routeiq_assets.serving.runtime import RouterRuntime
from routeiq_assets.settings import REPO_ROOT
from routeiq_assets.training.train import data_from_files, fit_and_save

PRICES = {"cheap": 0.1, "middle": 2.0, "strong": 10.0}
SCORES = {  # per model: quality on chat and on code queries
    "cheap": (0.9, 0.1),
    "middle": (0.6, 0.6),
    "strong": (0.9, 0.9),
}


def _encoder(texts):
    """Two clusters a knn router can tell apart: code questions and chat questions."""
    return np.array(
        [[1.0 if t.startswith("code") else 0.0, (hash(t) % 97) / 970, 1.0] for t in texts],
        np.float32,
    )


def _data(tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(400):
        kind = "code" if i % 2 else "chat"
        for model, (chat, code) in SCORES.items():
            score = code if kind == "code" else chat
            rows.append(
                {"query": f"{kind} question {i}", "model_name": model, "performance": score}
            )
    train = tmp_path / "routing_train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    llm_data = tmp_path / "llm_data.json"
    llm_data.write_text(
        json.dumps({m: {"input_price": p, "output_price": p} for m, p in PRICES.items()})
    )
    return data_from_files(train, llm_data, _encoder, lambda _m: None)


def _config(**operating_point):
    base = load_router_config(REPO_ROOT / "configs" / "routers" / "knn.yaml")
    return RouterConfig.model_validate(
        {**base.model_dump(), "operating_point": operating_point, "hparam": base.hparam}
    )


def _train(tmp_path, **operating_point):
    result = fit_and_save("knn", _config(**operating_point), _data(tmp_path), tmp_path / "out")
    meta = read_router_meta(result.folder)
    return meta["operating_point"], meta, result


def test_match_best_runs_at_the_best_models_quality_for_less(tmp_path):
    point, meta, result = _train(tmp_path)  # the default objective
    assert point["objective"] == "match_best" and point["met"]
    assert point["estimate"] == "full information"
    best = point["best_single"]
    assert best["model"] == "strong" and point["quality"] >= best["quality"]
    # chat goes to the cheap model: the same quality at about 55% of the strong model's cost
    assert point["cost"] < 0.7 * best["cost"] and point["lam"] > 0
    # serving runs there unless a request says otherwise
    assert meta["default_lambda"] == point["lam"]
    assert RouterRuntime.from_folder(result.folder).default_lambda == point["lam"]
    assert result.metrics["operating_lambda"] == point["lam"]
    # with intervals over the validation queries: about the point, and about its difference
    low, high = point["quality_interval"]
    assert low <= point["quality"] <= high
    low, high = point["vs_best_interval"]
    assert low <= point["quality"] - best["quality"] <= high
    # the curve holds the chosen point, and nothing cheaper reaches the best model's quality
    cheaper = [p for p in point["curve"] if p[1] < point["cost"]]
    assert all(p[2] < best["quality"] for p in cheaper)


def test_budget_and_floor_and_fixed_lambda(tmp_path):
    budget, _, _ = _train(tmp_path / "b", objective="budget", budget_usd=1.0e-3)
    assert budget["met"] and budget["cost"] <= 1.0e-3
    affordable = [p for p in budget["curve"] if p[1] <= 1.0e-3]
    assert budget["quality"] == max(p[2] for p in affordable)

    floor, _, _ = _train(tmp_path / "f", objective="quality_floor", quality_floor=0.5)
    assert floor["met"] and floor["quality"] >= 0.5
    assert floor["cost"] == min(p[1] for p in floor["curve"] if p[2] >= 0.5)

    impossible, _, _ = _train(tmp_path / "i", objective="quality_floor", quality_floor=0.99)
    assert not impossible["met"] and "no lambda reaches 0.99" in impossible["reason"]
    assert impossible["quality"] == max(p[2] for p in impossible["curve"])

    fixed, meta, _ = _train(tmp_path / "x", objective="fixed_lambda")
    assert fixed["lam"] == meta["config"]["default_lambda"] == meta["default_lambda"]


def test_an_objective_without_its_number_is_refused():
    with pytest.raises(ValueError, match="budget needs budget_usd"):
        _config(objective="budget")
    with pytest.raises(ValueError, match="quality_floor needs quality_floor"):
        _config(objective="quality_floor")
