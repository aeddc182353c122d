"""What "beats" means in the deployment gate: one rule per objective, judged on paired bootstrap
draws.

A challenger and a baseline are valued on the same resampled held-out queries (draw ``b`` of
both uses the same rows), so the differences' intervals carry only the noise the two do not
share. A rule turns the draws of the challenger, the baseline and (for ``match_best``) the
target into a verdict and a sentence that says who won and by how much:

* ``target`` (``match_best``: at least the always-best model's quality at the lowest cost;
  ``quality_floor``: at least a fixed quality): a policy *reaches* the target when the lower end
  of its quality-minus-target interval is above ``-margin``, and *misses* it when the upper end
  is below ``-margin``. The challenger beats a baseline when it reaches the target and is
  cheaper beyond the cost difference's interval, or reaches it where the baseline misses it.
  When neither reaches it, the better quality beyond its interval wins.
* ``budget`` (the best quality at a mean cost per query of at most ``budget``): the challenger
  must be within the budget (its cost interval's upper end), and then better in quality beyond
  the interval, or the baseline over budget (its cost interval's lower end above it).
* ``utility`` (``quality - lam * cost``, lam in quality per USD; lam 0 is quality alone): the
  lower end of the utility difference's interval must be above ``min_improvement``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Draws:
    """One policy's quality and mean cost per query (USD) on the full row set, and on each
    bootstrap draw of it."""

    quality: float
    cost: float
    quality_draws: np.ndarray
    cost_draws: np.ndarray


@dataclass(frozen=True)
class Span:
    value: float
    low: float
    high: float

    def text(self, digits: int = 4, money: bool = False) -> str:
        unit = "$" if money else ""
        return (
            f"{_signed(self.value, digits, unit)} [{_signed(self.low, digits, unit)}, "
            f"{_signed(self.high, digits, unit)}]"
        )

    def as_list(self) -> list[float]:
        return [self.value, self.low, self.high]


def _signed(value: float, digits: int, unit: str) -> str:
    if not np.isfinite(value):
        return "n/a"
    return f"{'-' if value < 0 else '+'}{unit}{abs(value):.{digits}f}"


def span(value: float, draws: np.ndarray, level: float) -> Span:
    """The percentile interval of ``draws`` (NaN ends when fewer than half are finite)."""
    finite = np.asarray(draws, np.float64)
    finite = finite[np.isfinite(finite)]
    if len(finite) < max(1, len(draws) // 2):
        return Span(float(value), float("nan"), float("nan"))
    alpha = (1 - level) / 2
    low, high = np.quantile(finite, [alpha, 1 - alpha])
    return Span(float(value), float(low), float(high))


@dataclass(frozen=True)
class Rule:
    """How a challenger is compared, from its operating point's objective (or the gate's)."""

    kind: str  # "target" | "budget" | "utility"
    objective: str  # the objective's name, as configured
    lam: float = 0.0  # utility: quality per USD
    floor: float | None = None  # target: a fixed quality; None: the always-best model's
    budget: float | None = None  # budget: USD per query
    margin: float = 0.0  # target: how far below the target still counts as reaching it
    min_improvement: float = 0.0

    def describe(self) -> str:
        if self.kind == "target":
            target = "the always-best model's" if self.floor is None else f"{self.floor:g}"
            return (
                f"{self.objective}: at least {target} quality (within {self.margin:g}) at the "
                "lowest cost"
            )
        if self.kind == "budget":
            return f"{self.objective}: the best quality at no more than ${self.budget:g} a query"
        if self.lam == 0:
            return f"{self.objective}: quality"
        return f"{self.objective}: quality - {self.lam:g} x cost (USD)"


@dataclass
class Comparison:
    baseline: str
    passed: bool
    reason: str  # who won, and by how much
    quality: float  # the baseline's
    cost: float
    quality_difference: Span  # challenger - baseline
    cost_difference: Span
    utility_difference: Span | None = None
    queries: int = 0
    # what holds against every baseline alike (a quality target the challenger does not reach)
    shortfall: str | None = None

    def as_dict(self) -> dict:
        return {
            "baseline": self.baseline,
            "passed": self.passed,
            "reason": self.reason,
            "quality": self.quality,
            "cost": self.cost,
            "quality_difference": self.quality_difference.as_list(),
            "cost_difference": self.cost_difference.as_list(),
            "utility_difference": (
                self.utility_difference.as_list() if self.utility_difference else None
            ),
            "queries": self.queries,
        }


def compare(
    rule: Rule,
    name: str,
    challenger: Draws,
    baseline_name: str,
    baseline: Draws,
    level: float,
    target: Draws | None = None,
) -> Comparison:
    """Whether ``challenger`` beats ``baseline`` under ``rule``; ``target`` is the always-best
    model's draws (the target of ``match_best``)."""
    dq = span(
        challenger.quality - baseline.quality,
        challenger.quality_draws - baseline.quality_draws,
        level,
    )
    dc = span(challenger.cost - baseline.cost, challenger.cost_draws - baseline.cost_draws, level)
    out = Comparison(baseline_name, False, "", baseline.quality, baseline.cost, dq, dc)
    says = f"quality {dq.text()}, cost {dc.text(6, money=True)}"
    if rule.kind == "utility":
        du = span(
            dq.value - rule.lam * dc.value,
            (challenger.quality_draws - baseline.quality_draws)
            - rule.lam * (challenger.cost_draws - baseline.cost_draws),
            level,
        )
        out.utility_difference = du
        what = "quality" if rule.lam == 0 else "utility"
        if not np.isfinite(du.low):
            out.reason = f"{what} difference from {baseline_name} cannot be estimated"
        elif du.low > rule.min_improvement:
            out.passed = True
            out.reason = f"{name} beats {baseline_name}: {what} {du.text()}"
        else:
            out.reason = (
                f"{baseline_name} is not beaten beyond the interval: {what} difference "
                f"{du.text()} (needs the lower end above {rule.min_improvement:g})"
            )
        return out
    if rule.kind == "budget":
        budget = float(rule.budget or 0.0)
        ch_cost = span(challenger.cost, challenger.cost_draws, level)
        b_cost = span(baseline.cost, baseline.cost_draws, level)
        if not ch_cost.high <= budget:
            out.reason = (
                f"{name} is not shown within the ${budget:g} budget (cost "
                f"{ch_cost.text(6, money=True)}); {baseline_name}: {says}"
            )
        elif b_cost.low > budget:
            out.passed = True
            out.reason = f"{name} is within the budget, {baseline_name} over it: {says}"
        elif dq.low > rule.min_improvement:
            out.passed = True
            out.reason = f"{name} is better within the budget than {baseline_name}: {says}"
        else:
            out.reason = (
                f"{baseline_name} is within the budget and {name} is not better beyond the "
                f"interval: {says}"
            )
        return out
    # a quality target: match_best (the always-best model's quality) or a fixed floor
    if rule.floor is None:
        if target is None:
            raise ValueError("a match_best comparison needs the always-best model's draws")
        t_value, t_draws, t_name = target.quality, target.quality_draws, "the always-best model"
    else:
        t_value, t_draws, t_name = (
            rule.floor,
            np.full_like(challenger.quality_draws, rule.floor),
            (f"the floor {rule.floor:g}"),
        )
    ch_gap = span(challenger.quality - t_value, challenger.quality_draws - t_draws, level)
    b_gap = span(baseline.quality - t_value, baseline.quality_draws - t_draws, level)
    reaches = ch_gap.low >= -rule.margin
    b_misses = b_gap.high < -rule.margin
    if reaches and dc.high < 0:
        out.passed = True
        out.reason = (
            f"{name} reaches {t_name}'s quality and is cheaper than {baseline_name}: {says}"
        )
    elif reaches and b_misses:
        out.passed = True
        out.reason = f"{name} reaches {t_name}'s quality, {baseline_name} misses it: {says}"
    elif reaches:
        out.reason = (
            f"{baseline_name} reaches {t_name}'s quality too (or may), and {name} is not "
            f"cheaper beyond the interval: {says}"
        )
    elif b_misses and dq.low > rule.min_improvement:
        out.passed = True
        out.reason = (
            f"neither reaches {t_name}'s quality; {name} is better than {baseline_name}: {says}"
        )
    else:
        out.shortfall = (
            f"{name} is not shown to reach {t_name}'s quality (its shortfall {ch_gap.text()}, "
            f"margin {rule.margin:g})"
        )
        out.reason = f"{baseline_name} is not beaten: {says}"
    return out


def score(rule: Rule, d: Draws) -> float:
    """Which of several challengers that all pass is deployed: the objective's own measure
    (higher is better)."""
    if rule.kind == "target":
        return -d.cost
    if rule.kind == "budget":
        return d.quality
    return d.quality - rule.lam * d.cost
