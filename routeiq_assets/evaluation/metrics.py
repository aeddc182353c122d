"""Quality/cost metrics of a router's lambda sweep (full information: the true quality and cost of
every candidate for every query are known).

* curve: (mean cost, mean quality) of the router's decisions for each lambda;
* AIQ (RouterBench): area under the non-decreasing upper convex hull of quality against cost,
  divided by the cost range; the hull is extended flat beyond its last point;
* PGR and APGR (RouteLLM), generalised to N models by cost: with a weak (cheapest) and a strong
  (best-quality) reference, x = (cost - c_weak) / (c_strong - c_weak) and
  PGR = (quality - q_weak) / (q_strong - q_weak); APGR is the mean PGR of the hull over
  x in [0, 1]. CPT(p) is the smallest x at which the hull reaches PGR p (nan if never).
Every router may always fall back to the weak model, so the weak point is on every hull.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from routeiq_assets.routers.base import decide

Point = tuple[float, float]  # (cost, quality)


def default_lambdas(cost: np.ndarray, n: int = 41) -> list[float]:
    """0 and a geometric sweep wide enough to go from best quality to cheapest model."""
    spread = float(np.max(cost) - np.min(cost)) or 1.0
    return [0.0, *np.geomspace(1e-3 / spread, 1e3 / spread, n - 1).tolist()]


def sweep(
    predicted: np.ndarray,
    decide_cost: np.ndarray,
    true_quality: np.ndarray,
    true_cost: np.ndarray,
    lambdas: list[float],
) -> list[Point]:
    """The router's (mean cost, mean quality) on full-information data for each lambda."""
    rows = np.arange(len(true_quality))
    points = []
    for lam in lambdas:
        chosen = decide(predicted, decide_cost, lam)
        points.append(
            (float(true_cost[rows, chosen].mean()), float(true_quality[rows, chosen].mean()))
        )
    return points


def upper_hull(points: list[Point]) -> list[Point]:
    """The non-decreasing upper convex hull, sorted by cost."""
    pts = sorted(set(points))
    hull: list[Point] = []
    for p in pts:
        if hull and p[1] <= hull[-1][1]:
            continue  # more cost for no more quality: never on a non-decreasing hull
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (p[1] - y1) - (y2 - y1) * (p[0] - x1) >= 0:
                hull.pop()  # hull[-1] lies on or below the chord: not convex
            else:
                break
        hull.append(p)
    return hull


def hull_value(hull: list[Point], cost: np.ndarray) -> np.ndarray:
    """Quality of the hull at ``cost`` (flat beyond the ends)."""
    xs, ys = zip(*hull, strict=True)
    return np.interp(cost, xs, ys)


def aiq(points: list[Point], c_min: float, c_max: float, grid: int = 2001) -> float:
    hull = upper_hull(points)
    costs = np.linspace(c_min, c_max, grid)
    return float(np.trapezoid(hull_value(hull, costs), costs) / (c_max - c_min))


@dataclass(frozen=True)
class Reference:
    weak: Point
    strong: Point


def pgr_curve(
    points: list[Point], ref: Reference, grid: int = 1001
) -> tuple[np.ndarray, np.ndarray]:
    hull = upper_hull([*points, ref.weak])
    x = np.linspace(0.0, 1.0, grid)
    cost = ref.weak[0] + x * (ref.strong[0] - ref.weak[0])
    pgr = (hull_value(hull, cost) - ref.weak[1]) / (ref.strong[1] - ref.weak[1])
    return x, pgr


def apgr(points: list[Point], ref: Reference) -> float:
    x, pgr = pgr_curve(points, ref)
    return float(np.trapezoid(pgr, x))


def cpt(points: list[Point], ref: Reference, target: float) -> float:
    x, pgr = pgr_curve(points, ref)
    reached = np.nonzero(pgr >= target)[0]
    return float(x[reached[0]]) if len(reached) else float("nan")


def best_at_budget(points: list[Point], budget: float) -> Point | None:
    """The highest-quality point that costs at most ``budget``."""
    affordable = [p for p in points if p[0] <= budget]
    return max(affordable, key=lambda p: (p[1], -p[0])) if affordable else None
