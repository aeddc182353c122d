"""Held-out evaluation of a router against simple baselines, from logged test examples."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from routeiq_assets.evaluation.offpolicy import PolicyEstimate, estimate_policy_value
from routeiq_assets.routers.base import Router, router_inputs


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


@dataclass
class EvaluationRow:
    policy: str
    quality: PolicyEstimate
    cost: PolicyEstimate
    share: dict[str, float] = field(default_factory=dict)


def _row(name: str, chosen: np.ndarray, ex: LoggedExamples) -> EvaluationRow:
    counts = np.bincount(chosen, minlength=len(ex.model_names)) / max(len(chosen), 1)
    return EvaluationRow(
        name,
        estimate_policy_value(chosen, ex.logged_model, ex.quality, ex.propensity),
        estimate_policy_value(chosen, ex.logged_model, ex.cost, ex.propensity),
        {m: round(float(c), 4) for m, c in zip(ex.model_names, counts, strict=True) if c > 0},
    )


def evaluate_against_baselines(
    router: Router, ex: LoggedExamples, lam: float, train_quality_by_model: np.ndarray
) -> list[EvaluationRow]:
    """The router at ``lam``, always-cheapest, always-best and uniform random, valued by SNIPS on
    the same data (random with a fixed seed, so reports are reproducible)."""
    n = len(ex.logged_model)
    chosen = (
        router.route(router_inputs(router, ex.texts, ex.embeddings), lam)
        if n
        else (np.zeros(0, int))
    )
    cheapest = int(np.argmin(router.cost_))
    best = int(np.argmax(train_quality_by_model))
    rows = [
        _row(f"router_{router.router_type} (lambda={lam:g})", chosen, ex),
        _row(f"always-cheapest ({ex.model_names[cheapest]})", np.full(n, cheapest), ex),
        _row(f"always-best ({ex.model_names[best]})", np.full(n, best), ex),
        _row("random (uniform)", np.random.default_rng(0).integers(0, len(ex.model_names), n), ex),
    ]
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
        PolicyEstimate(
            float(ex.cost.mean()) if n else float("nan"),
            float(ex.cost.mean()) if n else float("nan"),
            n,
            n,
            float(n),
            kind="on-policy (observed)",
        ),
    )
    return [*rows, logged]


def markdown_table(rows: list[EvaluationRow]) -> str:
    lines = [
        "| policy | quality | cost / query (USD) | matched / usable | ESS | estimate |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.policy} | {r.quality.snips:.4f} | {r.cost.snips:.6f} | "
            f"{r.quality.matched} / {r.quality.usable} | {r.quality.effective_sample_size:.1f} | "
            f"{r.quality.kind} |"
        )
    return "\n".join(lines)
