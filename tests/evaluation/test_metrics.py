import numpy as np
import pytest

from routeiq_assets.evaluation.metrics import (
    Reference,
    aiq,
    apgr,
    cpt,
    default_lambdas,
    sweep,
    upper_hull,
)


def test_upper_hull_keeps_only_non_decreasing_convex_points():
    pts = [(0.0, 0.5), (1.0, 0.8), (2.0, 0.7), (1.5, 0.82), (3.0, 0.9), (0.5, 0.55)]
    # (0.5, 0.55) lies under the chord (0, .5)-(1, .8); (2, .7) is dominated
    assert upper_hull(pts) == [(0.0, 0.5), (1.0, 0.8), (3.0, 0.9)]


def test_aiq_of_a_flat_and_a_linear_hull():
    assert aiq([(0.0, 0.6)], 0.0, 1.0) == pytest.approx(0.6)
    assert aiq([(0.0, 0.0), (1.0, 1.0)], 0.0, 1.0) == pytest.approx(0.5, abs=1e-3)


def test_apgr_and_cpt_against_weak_and_strong():
    ref = Reference(weak=(0.0, 0.4), strong=(1.0, 0.8))
    # a router that reaches the strong quality at 20% of the strong cost
    points = [(0.2, 0.8)]
    assert cpt(points, ref, 0.5) == pytest.approx(0.1, abs=2e-3)  # half way to (0.2, 0.8)
    assert cpt(points, ref, 1.0) == pytest.approx(0.2, abs=2e-3)
    assert apgr(points, ref) == pytest.approx(0.9, abs=2e-3)  # 1 - area of the ramp (0.1)
    # the weak model alone: nothing gained
    assert apgr([], ref) == pytest.approx(0.0) and np.isnan(cpt([], ref, 0.5))


def test_sweep_moves_from_quality_to_cost():
    true_q = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    true_c = np.array([[1.0, 0.1], [1.0, 0.1], [1.0, 0.1]])
    predicted = true_q.copy()
    points = sweep(predicted, np.array([1.0, 0.1]), true_q, true_c, [0.0, 100.0])
    assert points[0] == (pytest.approx(0.4), pytest.approx(1.0))  # oracle-like at lambda 0
    assert points[1] == (pytest.approx(0.1), pytest.approx(2 / 3))  # cheapest at high lambda
    assert default_lambdas(np.array([0.1, 1.0]))[0] == 0.0
