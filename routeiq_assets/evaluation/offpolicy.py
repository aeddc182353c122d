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
