"""Where a trained router runs: the lambda chosen from its quality/cost curve on the validation
split, for the objective its config declares.

Objectives (``operating_point`` in a router config):

* ``match_best`` (default): the lowest cost at which the router's validated quality is at least
  the best single model's;
* ``budget``: the best quality at a mean cost per query of at most ``budget_usd``;
* ``quality_floor``: the lowest cost at a quality of at least ``quality_floor``;
* ``fixed_lambda``: the config's ``default_lambda``, as given.

The curve is a sweep of lambda; each point's quality is estimated on the validation queries:
exactly where every candidate's score is known (full-information rows), else self-normalised
inverse-propensity weighting of the logged outcomes (the gateway's propensities where it logged
them, else estimated from its logged choices). A point's cost is the mean expected cost per
query of the models it picks. When no point meets the objective, the closest one is chosen and
the result says so (``met`` false, with the reason).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from routeiq_assets.evaluation.metrics import default_lambdas
from routeiq_assets.routers.base import Router, decide
from routeiq_assets.routers.config import OperatingPointConfig
from routeiq_assets.training.training_set import QualityMatrix

MIN_PROPENSITY = 0.01
# lambdas swept (0 and a geometric grid): 121 rather than the metrics' 41, so that a budget or
# the cheapest point matching the best single model is found within a few % of cost, not ~10%
LAMBDAS = 121


@dataclass
class OperatingPoint:
    objective: str
    lam: float
    quality: float | None  # validated quality at the chosen lambda (None: no validation data)
    cost: float | None  # its mean expected cost per query (USD)
    met: bool
    reason: str
    estimate: str
    queries: int
    best_single: dict[str, float | str | None] = field(default_factory=dict)
    curve: list[tuple[float, float, float]] = field(default_factory=list)  # (lambda, cost, q)
    # 95% paired bootstrap intervals over the validation queries: of the chosen point's quality,
    # and of its difference from the best single model's
    quality_interval: tuple[float, float] | None = None
    vs_best_interval: tuple[float, float] | None = None

    def as_dict(self) -> dict:
        return asdict(self)


def _propensities(val: QualityMatrix, x: np.ndarray) -> tuple[np.ndarray, str]:
    """p(model | query) [n, m] of the logging policy: logged where the gateway logged it, else
    a logistic regression of the logged choices on the query embedding (clipped)."""
    n, m = val.mask.shape
    logged = np.asarray(val.propensity, np.float64)
    known = np.isfinite(logged) & val.mask
    if known[val.mask].all():
        return np.where(known, logged, np.nan), "logged propensities"
    rows, models = np.nonzero(val.mask)
    probs = np.full((n, m), np.nan)
    if len(np.unique(models)) < 2:
        probs[:, models[0] if len(models) else 0] = 1.0
    else:
        from sklearn.linear_model import LogisticRegression

        fit = LogisticRegression(C=1.0, max_iter=1000).fit(x[rows], models)
        probs[:, fit.classes_] = fit.predict_proba(x)
    probs = np.where(known, logged, probs)
    return np.clip(probs, MIN_PROPENSITY, 1.0), "estimated propensities"


class _Estimator:
    """Validated quality of any per-query choice of model."""

    def __init__(self, val: QualityMatrix, x: np.ndarray) -> None:
        self.quality = np.asarray(val.quality, np.float64)
        self.mask = np.asarray(val.mask, bool)
        full = self.mask.all(axis=1)
        self.kind = "full information"
        self.weight = np.ones(self.mask.shape)
        if not full.all():
            propensity, source = _propensities(val, x)
            self.weight = np.where(full[:, None], 1.0, 1.0 / np.nan_to_num(propensity, nan=1.0))
            self.kind = f"off-policy SNIPS ({source})"

    def value(self, chosen: np.ndarray, rows: np.ndarray | None = None) -> float:
        rows = np.arange(len(chosen)) if rows is None else rows
        picks = chosen[rows]
        hit = self.mask[rows, picks]
        w = self.weight[rows, picks] * hit
        total = w.sum()
        return float((w * self.quality[rows, picks]).sum() / total) if total > 0 else float("nan")


def _intervals(
    estimator: _Estimator, chosen: np.ndarray, best: int | None, samples: int = 200
) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    """95% bootstrap intervals (queries resampled, the same draws for both) of the quality of
    ``chosen`` and of its difference from always ``best``."""
    n = len(chosen)
    draws = np.random.default_rng(0).integers(0, n, size=(samples, n))
    always = np.full(n, best if best is not None else 0)
    quality, difference = [], []
    for rows in draws:
        q = estimator.value(chosen, rows)
        quality.append(q)
        difference.append(q - estimator.value(always, rows) if best is not None else np.nan)

    def interval(values: list[float]) -> tuple[float, float] | None:
        finite = np.asarray(values, np.float64)
        finite = finite[np.isfinite(finite)]
        if len(finite) < samples // 2:
            return None
        low, high = np.percentile(finite, [2.5, 97.5])
        return float(low), float(high)

    return interval(quality), interval(difference)


def choose_operating_point(
    router: Router,
    predicted: np.ndarray,
    val: QualityMatrix,
    x_val: np.ndarray,
    config: OperatingPointConfig,
    fixed_lambda: float,
    cost_aware: bool = True,
) -> OperatingPoint:
    """The lambda ``router`` runs at, from its predictions on the validation queries."""
    cost = np.asarray(router.cost_, np.float64)
    names = list(router.model_names_)
    if not cost_aware:
        return OperatingPoint(
            config.objective,
            0.0,
            None,
            None,
            False,
            "quality-only router (no model priced): it runs at lambda 0",
            "none",
            len(val.mask),
        )
    if len(val.mask) == 0 or not val.mask.any():
        return OperatingPoint(
            config.objective,
            fixed_lambda,
            None,
            None,
            False,
            "no validation data: the config's default_lambda is used",
            "none",
            0,
        )
    estimator = _Estimator(val, x_val)
    n = len(val.mask)
    singles = [
        (estimator.value(np.full(n, j)), float(cost[j]), names[j]) for j in range(len(names))
    ]
    best_index = max(
        (j for j, s in enumerate(singles) if np.isfinite(s[0])),
        key=lambda j: (singles[j][0], -singles[j][1]),
        default=None,
    )
    best_q, best_c, best_name = (
        singles[best_index] if best_index is not None else (float("nan"), float("nan"), None)
    )
    lambdas = sorted({*default_lambdas(cost, LAMBDAS), fixed_lambda})
    curve = []
    for lam in lambdas:
        chosen = decide(predicted, cost, lam)
        q = estimator.value(chosen)
        if np.isfinite(q):
            curve.append((float(lam), float(cost[chosen].mean()), q))
    point = OperatingPoint(
        config.objective,
        fixed_lambda,
        None,
        None,
        False,
        "",
        estimator.kind,
        n,
        {"model": best_name, "quality": best_q, "cost": best_c},
        curve,
    )
    if not curve:
        point.reason = "no lambda's quality can be estimated on the validation data"
        return point

    def pick(candidates, key, met: bool, reason: str) -> OperatingPoint:
        lam, c, q = min(candidates, key=key)
        point.lam, point.cost, point.quality, point.met, point.reason = lam, c, q, met, reason
        point.quality_interval, point.vs_best_interval = _intervals(
            estimator, decide(predicted, cost, lam), best_index
        )
        return point

    best_quality = lambda p: (-p[2], p[1])  # noqa: E731
    cheapest = lambda p: (p[1], -p[2])  # noqa: E731
    if config.objective == "fixed_lambda":
        [fixed] = [p for p in curve if p[0] == fixed_lambda] or [min(curve, key=best_quality)]
        return pick([fixed], cheapest, True, f"fixed lambda {fixed_lambda:g}")
    if config.objective == "match_best":
        target, what = best_q, f"the best single model's ({best_name}, {best_q:.4f})"
        ok = [p for p in curve if p[2] >= target]
        if ok:
            return pick(ok, cheapest, True, f"lowest cost at a quality of at least {what}")
        return pick(curve, best_quality, False, f"no lambda reaches {what}: best quality chosen")
    if config.objective == "quality_floor":
        floor = float(config.quality_floor or 0.0)
        ok = [p for p in curve if p[2] >= floor]
        if ok:
            return pick(ok, cheapest, True, f"lowest cost at a quality of at least {floor:g}")
        return pick(curve, best_quality, False, f"no lambda reaches {floor:g}: best quality")
    budget = float(config.budget_usd or 0.0)
    ok = [p for p in curve if p[1] <= budget]
    if ok:
        return pick(ok, best_quality, True, f"best quality at a cost of at most ${budget:g}")
    return pick(curve, cheapest, False, f"no lambda costs at most ${budget:g}: cheapest chosen")
