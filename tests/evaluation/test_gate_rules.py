"""The gate's rules on paired draws: each objective's verdict in each case, with the reason
naming the winner. Draws are built so the intervals are known: a constant shift plus shared
noise (which cancels in a paired difference) or independent noise (which does not)."""

import numpy as np
import pytest

from routeiq_assets.evaluation.gate_rules import Draws, Rule, compare, score, span

RNG = np.random.default_rng(0)
SHARED = RNG.normal(0, 0.05, 400)  # noise every policy shares on a draw (the same queries)


def policy(quality: float, cost: float, noise: float = 0.0) -> Draws:
    own = RNG.normal(0, noise, 400) if noise else 0.0
    return Draws(quality, cost, quality + SHARED + own, cost + SHARED * cost + own * cost)


BEST = policy(0.80, 0.010)  # the always-best model
MATCH = Rule("target", "match_best", margin=0.02)


def test_match_best_wins_by_cost_at_the_target_quality():
    cheaper = policy(0.795, 0.004, noise=0.005)
    result = compare(MATCH, "knn", cheaper, "always-best (m)", BEST, 0.95, BEST)
    assert result.passed and "reaches the always-best model's quality" in result.reason
    assert result.cost_difference.high < 0


def test_match_best_loses_when_not_cheaper_or_below_the_target():
    same_cost = policy(0.81, 0.010, noise=0.001)
    tie = compare(MATCH, "knn", same_cost, "always-best (m)", BEST, 0.95, BEST)
    assert not tie.passed and "always-best (m) reaches" in tie.reason
    worse = policy(0.74, 0.004)
    below = compare(MATCH, "knn", worse, "always-best (m)", BEST, 0.95, BEST)
    assert not below.passed and "is not shown to reach the always-best model's quality" in (
        below.shortfall
    )
    assert below.reason.startswith("always-best (m) is not beaten: quality -0.0600")
    assert below.quality_difference.value == pytest.approx(-0.06)


def test_match_best_beats_a_cheap_policy_that_misses_the_target():
    """The logging policy (or always-cheapest) is cheaper but misses the quality target: a
    challenger that reaches it wins, though it costs more."""
    cheap = policy(0.70, 0.001, noise=0.01)
    mine = policy(0.80, 0.006, noise=0.005)
    result = compare(MATCH, "knn", mine, "logging policy", cheap, 0.95, BEST)
    assert result.passed and "logging policy misses it" in result.reason
    assert result.cost_difference.low > 0  # dearer, and still the winner


def test_match_best_below_the_target_against_a_policy_that_reaches_it_loses():
    good = policy(0.81, 0.002)
    mine = policy(0.75, 0.001)
    result = compare(MATCH, "knn", mine, "logging policy", good, 0.95, BEST)
    assert not result.passed and result.reason.startswith("logging policy is not beaten")
    assert result.shortfall.startswith("knn is not shown to reach")


def test_quality_floor_and_budget():
    floor = Rule("target", "quality_floor", floor=0.6, margin=0.0)
    over = compare(
        floor, "knn", policy(0.75, 0.003), "always-cheapest (c)", policy(0.45, 0.001), 0.95
    )
    assert over.passed and "misses it" in over.reason
    budget = Rule("budget", "budget", budget=0.005)
    within = policy(0.78, 0.004)
    assert compare(budget, "knn", within, "always-best (m)", BEST, 0.95).passed  # over budget
    lost = compare(budget, "knn", within, "cheap", policy(0.79, 0.003), 0.95)
    assert not lost.passed and "cheap is within the budget" in lost.reason
    broke = compare(budget, "knn", policy(0.9, 0.006), "cheap", policy(0.5, 0.001), 0.95)
    assert not broke.passed and "not shown within the $0.005 budget" in broke.reason


def test_utility_needs_the_lower_end_above_min_improvement():
    rule = Rule("utility", "fixed_lambda 10", lam=10.0, min_improvement=0.0)
    # +0.05 quality for +$0.002: utility +0.03 at lambda 10
    win = compare(rule, "knn", policy(0.85, 0.012, 0.002), "always-best (m)", BEST, 0.95)
    assert win.passed and win.utility_difference.value == pytest.approx(0.03)
    noisy = compare(rule, "knn", policy(0.805, 0.010, 0.05), "always-best (m)", BEST, 0.95)
    assert not noisy.passed and "not beaten beyond the interval" in noisy.reason


def test_score_and_span_are_finite_or_say_unknown():
    assert score(MATCH, policy(0.8, 0.004)) > score(MATCH, policy(0.9, 0.005))  # cheaper wins
    assert score(Rule("budget", "budget", budget=1), policy(0.9, 0.5)) == 0.9
    unknown = span(0.1, np.full(10, np.nan), 0.95)
    assert np.isnan(unknown.low) and unknown.text() == "+0.1000 [n/a, n/a]"
