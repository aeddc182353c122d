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
