"""Held-out evaluation of a router against simple baselines, from logged test examples."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from routeiq_assets.evaluation.offpolicy import (
    Interval,
    PolicyEstimate,
    estimate_policy_value,
    estimate_with_intervals,
)
from routeiq_assets.routers.base import Router, decide, router_inputs


@dataclass
class LoggedExamples:
    """Test-split telemetry: one row per logged decision."""

    embeddings: np.ndarray
    texts: list[str]
    logged_model: np.ndarray  # index into model_names
    quality: np.ndarray
    cost: np.ndarray
    propensity: np.ndarray
    model_names: list[str]
    tasks: list[str] = field(default_factory=list)
    # "logged"; "estimated" where the gateway logged none (evaluation.propensity), then
    # ``deterministic`` says whether the logged choices follow from the query alone
    propensity_source: str = "logged"
    deterministic: bool = False


@dataclass
class EvaluationRow:
    policy: str
    quality: PolicyEstimate
    cost: PolicyEstimate
    share: dict[str, float] = field(default_factory=dict)
    intervals: dict[str, Interval] = field(default_factory=dict)  # quality: ips, snips, dr
    chosen: np.ndarray | None = field(default=None, repr=False)  # the policy's pick per example


def _row(
    name: str, chosen: np.ndarray, ex: LoggedExamples, predicted: np.ndarray | None = None
) -> EvaluationRow:
    counts = np.bincount(chosen, minlength=len(ex.model_names)) / max(len(chosen), 1)
    intervals = {}
    if predicted is not None and len(chosen):
        # the router's own predictions are the direct model of the doubly robust estimate
        intervals = estimate_with_intervals(
            chosen, ex.logged_model, ex.quality, ex.propensity, predicted, samples=200
        )
    return EvaluationRow(
        name,
        estimate_policy_value(chosen, ex.logged_model, ex.quality, ex.propensity),
        estimate_policy_value(chosen, ex.logged_model, ex.cost, ex.propensity),
        {m: round(float(c), 4) for m, c in zip(ex.model_names, counts, strict=True) if c > 0},
        intervals,
        chosen,
    )


def evaluate_against_baselines(
    router: Router,
    ex: LoggedExamples,
    lam: float,
    train_quality_by_model: np.ndarray,
    cost_aware: bool = True,
) -> list[EvaluationRow]:
    """The router at ``lam``, always-cheapest, always-best and uniform random, valued by SNIPS on
    the same data (random with a fixed seed, so reports are reproducible). A quality-only
    router (trained without prices) has no always-cheapest baseline: no model's price is
    known."""
    n = len(ex.logged_model)
    predicted = (
        router.predict_quality(router_inputs(router, ex.texts, ex.embeddings))
        if n
        else np.zeros((0, len(ex.model_names)))
    )
    chosen = decide(predicted, router.cost_, lam) if n else np.zeros(0, int)
    cheapest = int(np.argmin(router.cost_))
    best = int(np.argmax(train_quality_by_model))
    label = f"lambda={lam:g}" if cost_aware else "quality-only: no model priced"
    rows = [
        _row(f"router_{router.router_type} ({label})", chosen, ex, predicted),
        *(
            [
                _row(
                    f"always-cheapest ({ex.model_names[cheapest]})",
                    np.full(n, cheapest),
                    ex,
                    predicted,
                )
            ]
            if cost_aware
            else []
        ),
        _row(f"always-best ({ex.model_names[best]})", np.full(n, best), ex, predicted),
        _row(
            "random (uniform)",
            np.random.default_rng(0).integers(0, len(ex.model_names), n),
            ex,
            predicted,
        ),
    ]
    known = np.isfinite(ex.cost)
    priced = int(known.sum())
    priced_cost = float(ex.cost[known].mean()) if priced else float("nan")
    cost_kind = "on-policy (observed)" + (
        f"; over the {priced} of {n} decisions whose model has a price" if priced < n else ""
    )
    logged = EvaluationRow(
        "logging policy (observed)",
        PolicyEstimate(
            float(ex.quality.mean()) if n else float("nan"),
            float(ex.quality.mean()) if n else float("nan"),
            n,
            n,
            float(n),
            kind="on-policy (observed)",
        ),
        PolicyEstimate(priced_cost, priced_cost, n, priced, float(priced), kind=cost_kind),
    )
    return [*rows, logged]


def per_task(chosen: np.ndarray, ex: LoggedExamples) -> dict[str, dict[str, float]]:
    """A policy's off-policy (SNIPS) quality and cost per task, with the examples behind each."""
    if not len(ex.logged_model):
        return {}
    tasks = np.array(ex.tasks)
    out = {}
    for task in sorted(set(ex.tasks)):
        idx = tasks == task
        quality = estimate_policy_value(
            chosen[idx], ex.logged_model[idx], ex.quality[idx], ex.propensity[idx]
        )
        cost = estimate_policy_value(
            chosen[idx], ex.logged_model[idx], ex.cost[idx], ex.propensity[idx]
        )
        out[task] = {
            "examples": int(idx.sum()),
            "matched": quality.matched,
            "quality_snips": quality.snips,
            "cost_snips": cost.snips,
        }
    return out


def markdown_table(rows: list[EvaluationRow]) -> str:
    lines = [
        "| policy | quality (SNIPS) | 95% interval | quality (DR) | cost / query (USD) | "
        "matched / usable | ESS | estimate |",
        "|---|---:|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        snips, dr = r.intervals.get("snips"), r.intervals.get("dr")
        interval = f"[{snips.low:.4f}, {snips.high:.4f}]" if snips else "-"
        lines.append(
            f"| {r.policy} | {r.quality.snips:.4f} | {interval} | "
            f"{f'{dr.value:.4f}' if dr else '-'} | {r.cost.snips:.6f} | "
            f"{r.quality.matched} / {r.quality.usable} | {r.quality.effective_sample_size:.1f} | "
            f"{r.quality.kind} |"
        )
    return "\n".join(lines)
