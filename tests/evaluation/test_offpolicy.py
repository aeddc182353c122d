import numpy as np
import pytest

from routeiq_assets.evaluation.offpolicy import estimate_policy_value


def test_snips_recovers_the_true_value_of_a_new_policy():
    """Full information known: log with epsilon-greedy, value another policy from the logs."""
    rng = np.random.default_rng(0)
    n, k, eps = 20000, 3, 0.3
    true_quality = rng.random((n, k)) < np.array([0.3, 0.6, 0.8])  # per-model success rates
    incumbent = 0
    explore = rng.random(n) < eps
    logged = np.where(explore, rng.integers(0, k, n), incumbent)
    propensity = np.where(logged == incumbent, 1 - eps + eps / k, eps / k)
    reward = true_quality[np.arange(n), logged].astype(float)
    new_policy = np.full(n, 2)
    est = estimate_policy_value(new_policy, logged, reward, propensity)
    truth = true_quality[:, 2].mean()
    assert est.snips == pytest.approx(truth, abs=0.03)
    assert est.ips == pytest.approx(truth, abs=0.05)
    assert est.usable == n and 0 < est.effective_sample_size < n


def test_unknown_propensities_are_not_used():
    est = estimate_policy_value(
        np.array([0, 0]), np.array([0, 0]), np.array([1.0, 0.0]), np.array([0.5, np.nan])
    )
    assert est.usable == 1 and est.snips == 1.0
    none = estimate_policy_value(np.array([0]), np.array([0]), np.array([1.0]), np.array([np.nan]))
    assert none.usable == 0 and np.isnan(none.snips)


def test_estimates_of_a_new_router_cover_the_true_value(benchmark_table):
    """Replay the full-information table through an epsilon-greedy logging policy; value a
    different policy from the logs alone; each interval must contain the true value."""
    import json

    from routeiq_assets.evaluation.offpolicy import estimate_with_intervals

    records = json.loads(benchmark_table[0].read_text())[:3000]
    names = sorted({m for r in records for m in r["scores"]})
    quality = np.array([[r["scores"][m] for m in names] for r in records])
    rng = np.random.default_rng(7)
    n, k, eps = len(records), len(names), 0.3
    incumbent = np.full(n, names.index(min(names)))
    explore = rng.random(n) < eps
    logged = np.where(explore, rng.integers(0, k, n), incumbent)
    propensity = np.where(logged == incumbent, 1 - eps + eps / k, eps / k)
    reward = quality[np.arange(n), logged]
    # the new router: a noisy version of the truth, so the direct model is imperfect
    predicted = np.clip(quality + rng.normal(0, 0.3, quality.shape), 0, 1)
    chosen = predicted.argmax(1)
    truth = quality[np.arange(n), chosen].mean()
    intervals = estimate_with_intervals(chosen, logged, reward, propensity, predicted, samples=300)
    for name, interval in intervals.items():
        assert interval.low <= truth <= interval.high, (name, interval, truth)
        assert interval.high - interval.low < 0.3, (name, interval)
