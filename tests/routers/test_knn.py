import numpy as np
import pytest

from routeiq_assets.routers import KNNRouter, decide, load_router, save_router
from routeiq_assets.routers.base import expected_cost
from routeiq_assets.routers.config import load_router_config
from tests.conftest import REPO_ROOT


def _two_cluster_problem(n=200, seed=0):
    """Queries near +e0 are solved only by model 0, near -e0 only by model 1; bandit mask."""
    rng = np.random.default_rng(seed)
    side = rng.integers(0, 2, n)
    x = rng.normal(0, 0.1, (n, 8))
    x[:, 0] += np.where(side == 0, 1.0, -1.0)
    quality = np.stack([side == 0, side == 1], axis=1).astype(np.float32)
    mask = np.zeros((n, 2), bool)
    mask[np.arange(n), rng.integers(0, 2, n)] = True  # one logged model per query
    return x, quality, mask


def test_knn_learns_which_model_wins_where():
    x, q, m = _two_cluster_problem()
    router = KNNRouter(k=15, prior_weight=1.0).fit(x, q, m, ["a", "b"], np.array([1.0, 1.0]))
    probe = np.array([[1.0] + [0] * 7, [-1.0] + [0] * 7])
    pred = router.predict_quality(probe)
    assert pred[0, 0] > 0.7 > pred[0, 1] and pred[1, 1] > 0.7 > pred[1, 0]
    assert list(router.route(probe)) == [0, 1]


def test_save_load_predicts_identically(tmp_path):
    x, q, m = _two_cluster_problem()
    router = KNNRouter(k=5).fit(x, q, m, ["a", "b"], np.array([0.5, 2.0]))
    files = save_router(router, tmp_path / "r", extra={"embedding_model": "e", "embedding_dim": 8})
    assert {f.name for f in files} == {"router.json", "weights.npz"}
    loaded = load_router(tmp_path / "r")
    assert loaded.model_names_ == ["a", "b"] and np.array_equal(loaded.cost_, router.cost_)
    assert np.array_equal(loaded.predict_quality(x), router.predict_quality(x))


def test_decide_trades_quality_for_cost():
    quality = np.array([[0.9, 0.8, 0.3]])
    cost = np.array([1.0, 0.1, 0.0])
    assert decide(quality, cost, lam=0.0)[0] == 0
    assert decide(quality, cost, lam=0.5)[0] == 1
    assert decide(quality, cost, lam=10.0)[0] == 2
    assert decide(quality, cost, 0.0, available=np.array([False, True, True]))[0] == 1
    assert decide(np.array([[0.5, 0.5]]), np.array([2.0, 1.0]))[0] == 1  # tie -> cheaper


def test_expected_cost_fills_unobserved_models_and_never_prices_unpriced_ones():
    cost = np.array([[1.0, 0, 0, np.nan], [3.0, 0.5, 0, np.nan]])
    mask = np.array([[True, False, False, True], [True, True, False, True]])
    mean, priced = expected_cost(cost, mask)
    assert mean.tolist() == [2.0, 0.5, 1.25, 0.0]
    assert priced.tolist() == [True, True, True, False]  # the last: observed, never priced


def test_config_errors_name_file_and_key(tmp_path):
    cfg = load_router_config(REPO_ROOT / "configs" / "routers" / "knn.yaml")
    assert cfg.router_type == "knn" and cfg.hparam.k >= 1
    bad = tmp_path / "knn.yaml"
    bad.write_text("hparam:\n  k: 0\n  colour: blue\n")
    with pytest.raises(ValueError) as err:
        load_router_config(bad)
    assert (
        str(bad) in str(err.value) and "hparam.k" in str(err.value) and "colour" in str(err.value)
    )


def test_index_finds_the_same_neighbours_as_brute_force(tmp_path):
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(40, 16))
    x = np.repeat(centres, 60, axis=0) + rng.normal(0, 0.05, (2400, 16))
    q = (rng.random((2400, 3)) < 0.5).astype(np.float32)
    m = np.ones_like(q, bool)
    exact = KNNRouter(k=5, index_min_examples=10**9).fit(x, q, m, ["a", "b", "c"], np.ones(3))
    indexed = KNNRouter(k=5, index_min_examples=100, nprobe=8).fit(
        x, q, m, ["a", "b", "c"], np.ones(3)
    )
    assert len(indexed.centroids_) > 8 and len(exact.centroids_) == 0
    probe = x[::97] + rng.normal(0, 0.01, (len(x[::97]), 16))
    agree = np.isclose(indexed.predict_quality(probe), exact.predict_quality(probe)).all(axis=1)
    assert agree.mean() >= 0.95
    save_router(indexed, tmp_path / "r")
    assert np.array_equal(
        load_router(tmp_path / "r").predict_quality(probe), indexed.predict_quality(probe)
    )
