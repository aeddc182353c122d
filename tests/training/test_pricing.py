"""An unknown price is never zero: training refuses, leaves the model out, or trains a
quality-only router that cannot route by cost."""

import json

import numpy as np
import pytest

from routeiq_assets.routers.config import RouterConfig, load_router_config
from routeiq_assets.serving.runtime import RouterRuntime
from routeiq_assets.settings import REPO_ROOT
from routeiq_assets.training.labels import load_prices
from routeiq_assets.training.train import data_from_files, fit_and_save

MODELS = ("cheap-model", "strong-model", "unpriced-model")


def _encoder(texts):
    """A deterministic stand-in embedding (the real encoder is tested elsewhere)."""
    return np.array([[len(t) % 7, t.count("a"), 1.0] for t in texts], np.float32)


def _files(tmp_path, prices):
    """An LLMRouter routing JSONL over three models, and an llm_data.json with these prices."""
    rows = []
    for i in range(60):
        for j, model in enumerate(MODELS):
            score = 0.9 if (i + j) % 3 else 0.2
            rows.append(
                {
                    "query": f"question {i} {'a' * (i % 5)}",
                    "model_name": model,
                    "performance": score,
                }
            )
    train = tmp_path / "routing_train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    llm_data = tmp_path / "llm_data.json"
    llm_data.write_text(
        json.dumps(
            {m: {"input_price": p, "output_price": p, "size": "7B"} for m, p in prices.items()}
        )
    )
    return train, llm_data


def _config(**overrides):
    base = load_router_config(REPO_ROOT / "configs" / "routers" / "knn.yaml")
    return RouterConfig.model_validate({**base.model_dump(), **overrides, "hparam": base.hparam})


def _data(tmp_path, prices):
    train, llm_data = _files(tmp_path, prices)
    return data_from_files(train, llm_data, _encoder, lambda _m: None)


def test_a_null_price_is_read_as_unpriced(tmp_path):
    _, llm_data = _files(tmp_path, {"cheap-model": 0.1, "strong-model": None})
    prices = load_prices(llm_data)
    assert prices["cheap-model"].priced and not prices["strong-model"].priced


def test_training_refuses_unpriced_candidates_and_names_them(tmp_path):
    data = _data(tmp_path, {"cheap-model": 0.1, "strong-model": 10.0})  # one not listed
    with pytest.raises(ValueError) as refused:
        fit_and_save("knn", _config(unpriced_models="refuse"), data, tmp_path / "out")
    message = str(refused.value)
    assert "['unpriced-model']" in message and "never taken as zero" in message
    assert "input_price" in message and "unpriced_models: exclude" in message
    assert not (tmp_path / "out" / "knn").exists()


def test_excluded_unpriced_candidates_are_left_out(tmp_path):
    data = _data(tmp_path, {"cheap-model": 0.1, "strong-model": 10.0, "unpriced-model": None})
    result = fit_and_save("knn", _config(unpriced_models="exclude"), data, tmp_path / "out")
    assert result.router.model_names_ == ["cheap-model", "strong-model"] and result.cost_aware
    runtime = RouterRuntime.from_folder(result.folder)
    assert runtime.route(embedding=_encoder(["question 3"])[0], lam=1e6).model == "cheap-model"


def test_with_no_prices_the_router_is_quality_only_and_refuses_cost(tmp_path):
    data = _data(tmp_path, dict.fromkeys(MODELS))
    result = fit_and_save("knn", _config(default_lambda=5.0), data, tmp_path / "out")
    assert not result.cost_aware and len(result.router.model_names_) == 3
    meta = json.loads((result.folder / "router.json").read_text())
    assert meta["cost_aware"] is False and meta["default_lambda"] == 0.0
    runtime = RouterRuntime.from_folder(result.folder)
    query = _encoder(["question 3"])[0]
    assert runtime.route(embedding=query).model in MODELS  # by predicted quality
    for cost_aware in ({"lam": 1.0}, {"max_cost": 0.01}):
        with pytest.raises(ValueError, match="quality-only"):
            runtime.route(embedding=query, **cost_aware)
