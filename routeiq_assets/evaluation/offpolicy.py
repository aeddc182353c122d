"""Off-policy value estimates from bandit telemetry.

Production logs show the outcome of the model that was picked, not of the others. To value a
new policy on them we reweight the logged outcomes where the new policy agrees with the logged
choice by 1 / propensity (IPS), normalised by the sum of weights (SNIPS, lower variance).
Examples without a known propensity cannot be used and are counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class PolicyEstimate:
    ips: float
    snips: float
    matched: int  # logged examples where the policy agrees with the logged choice
    usable: int  # logged examples with a known propensity
    effective_sample_size: float
    kind: str = "off-policy (SNIPS)"

    def as_dict(self) -> dict[str, float | int | str]:
        return asdict(self)


def estimate_policy_value(
    chosen: np.ndarray, logged: np.ndarray, reward: np.ndarray, propensity: np.ndarray
) -> PolicyEstimate:
    """IPS and SNIPS value of a deterministic policy that picks ``chosen`` per example."""
    chosen, logged = np.asarray(chosen), np.asarray(logged)
    reward = np.asarray(reward, np.float64)
    propensity = np.asarray(propensity, np.float64)
    usable = np.isfinite(propensity) & (propensity > 0) & np.isfinite(reward)
    weights = np.where(usable & (chosen == logged), 1.0 / np.where(usable, propensity, 1.0), 0.0)
    n = int(usable.sum())
    if n == 0:
        return PolicyEstimate(float("nan"), float("nan"), 0, 0, 0.0)
    total = weights.sum()
    ips = float((weights * np.where(usable, reward, 0.0)).sum() / n)
    snips = (
        float((weights * np.where(usable, reward, 0.0)).sum() / total) if total else float("nan")
    )
    ess = float(total**2 / (weights**2).sum()) if total else 0.0
    return PolicyEstimate(ips, snips, int((weights > 0).sum()), n, ess)


def doubly_robust(
    chosen: np.ndarray,
    logged: np.ndarray,
    reward: np.ndarray,
    propensity: np.ndarray,
    predicted: np.ndarray,
) -> float:
    """Doubly robust value: the direct model's prediction for the chosen model, corrected by the
    reweighted residual where the policy agrees with the logged choice.

    ``predicted`` is the router's own quality matrix [n, n_models] (the direct model). Unbiased
    when either the propensities or the predictions are right.
    """
    chosen, logged = np.asarray(chosen), np.asarray(logged)
    reward = np.asarray(reward, np.float64)
    propensity = np.asarray(propensity, np.float64)
    usable = np.isfinite(propensity) & (propensity > 0) & np.isfinite(reward)
    if not usable.any():
        return float("nan")
    rows = np.arange(len(chosen))
    direct = np.asarray(predicted, np.float64)[rows, chosen]
    safe_logged = np.where(logged >= 0, logged, 0)
    predicted_logged = np.asarray(predicted, np.float64)[rows, safe_logged]
    agree = (chosen == logged) & usable
    correction = np.where(agree, (reward - predicted_logged) / np.where(usable, propensity, 1.0), 0)
    return float((direct + correction)[usable].mean())


@dataclass(frozen=True)
class Interval:
    value: float
    low: float
    high: float


def bootstrap(
    statistic, n: int, samples: int = 500, level: float = 0.95, seed: int = 0
) -> Interval:
    """Percentile bootstrap of ``statistic(indices)`` over ``n`` examples resampled with
    replacement; a fixed seed so reports are reproducible."""
    rng = np.random.default_rng(seed)
    value = statistic(np.arange(n))
    draws = np.array([statistic(rng.integers(0, n, n)) for _ in range(samples)])
    draws = draws[np.isfinite(draws)]
    if not len(draws):
        return Interval(value, float("nan"), float("nan"))
    alpha = (1 - level) / 2
    return Interval(value, float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha)))


def estimate_with_intervals(
    chosen: np.ndarray,
    logged: np.ndarray,
    reward: np.ndarray,
    propensity: np.ndarray,
    predicted: np.ndarray,
    samples: int = 500,
) -> dict[str, Interval]:
    """IPS, SNIPS and DR values of a policy with 95% bootstrap intervals."""

    def ips(idx):
        return estimate_policy_value(chosen[idx], logged[idx], reward[idx], propensity[idx]).ips

    def snips(idx):
        return estimate_policy_value(chosen[idx], logged[idx], reward[idx], propensity[idx]).snips

    def dr(idx):
        return doubly_robust(chosen[idx], logged[idx], reward[idx], propensity[idx], predicted[idx])

    n = len(chosen)
    return {
        name: bootstrap(fn, n, samples) for name, fn in (("ips", ips), ("snips", snips), ("dr", dr))
    }
