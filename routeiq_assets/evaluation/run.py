"""Evaluate trained router folders on the held-out (test) split of logged telemetry."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from routeiq_assets.evaluation import metrics
from routeiq_assets.evaluation.propensity import estimate_logging_policy
from routeiq_assets.evaluation.report import (
    LoggedExamples,
    evaluate_against_baselines,
    markdown_table,
    per_task,
)
from routeiq_assets.routers.base import load_router, read_router_meta, router_inputs
from routeiq_assets.serving.runtime import RouterRuntime
from routeiq_assets.training.embeddings import Encoder, embed_with_cache

TEST_EXAMPLES_SQL = """
SELECT e.query_text, e.model_name, e.quality, e.cost_usd, e.propensity,
       coalesce(e.task, 'unknown')
FROM routing_examples e
WHERE e.is_logged
  AND e.query_sha256 IN (SELECT query_sha256 FROM training_set WHERE split = 'test')
ORDER BY e.event_id
"""


def load_test_examples(
    con: duckdb.DuckDBPyConnection, model_names: list[str], embedding_model: str, encoder: Encoder
) -> LoggedExamples:
    """The test split's logged decisions. Where the gateway logged no propensity (RouteIQ logs
    none), it is estimated from the logged choices (:mod:`~routeiq_assets.evaluation.propensity`)
    and the examples say so: the logging policy is fitted over every model the log chose, the
    router's candidates or not. A cost is NaN where the model has no price (never zero)."""
    rows = con.execute(TEST_EXAMPLES_SQL).fetchall()
    index = {m: j for j, m in enumerate(model_names)}
    emb, _ = embed_with_cache(con, [r[0] for r in rows], embedding_model, encoder)
    logged = np.array([index.get(r[1], -1) for r in rows], int)
    propensity = np.array([np.nan if r[4] is None else r[4] for r in rows], np.float64)
    source, deterministic = "logged", False
    missing = ~np.isfinite(propensity) & (logged >= 0)
    if missing.any():
        every = dict(index)
        for r in rows:
            every.setdefault(r[1], len(every))
        chosen_any = np.array([every[r[1]] for r in rows], int)
        fit = estimate_logging_policy(emb, chosen_any, len(every))
        propensity = np.where(missing, fit.propensity, propensity)
        source, deterministic = "estimated", fit.deterministic
    return LoggedExamples(
        embeddings=emb,
        texts=[r[0] for r in rows],
        logged_model=logged,
        quality=np.array([r[2] for r in rows], np.float64),
        cost=np.array([np.nan if r[3] is None else r[3] for r in rows], np.float64),
        propensity=propensity,
        model_names=model_names,
        tasks=[r[5] for r in rows],
        propensity_source=source,
        deterministic=deterministic,
    )


def train_quality_by_model(con: duckdb.DuckDBPyConnection, model_names: list[str]) -> np.ndarray:
    means = dict(
        con.execute(
            "SELECT model_name, avg(quality) FROM training_set WHERE split = 'train' GROUP BY 1"
        ).fetchall()
    )
    return np.array([means.get(m, 0.0) for m in model_names], np.float64)


FULL_INFORMATION_TEST_SQL = """
SELECT query_sha256, any_value(query_text), model_name, avg(quality), avg(cost_usd)
FROM routing_examples
WHERE NOT is_logged
  AND query_sha256 IN (SELECT query_sha256 FROM training_set WHERE split = 'test')
GROUP BY query_sha256, model_name
"""


def full_information_matrix(
    con: duckdb.DuckDBPyConnection, names: list[str]
) -> tuple[list[str], np.ndarray, np.ndarray] | None:
    """Test queries where every one of ``names`` has a full-information score: their texts and
    the quality and cost matrices [query, model] (cost NaN where unpriced), in a stable order;
    None when there are none."""
    cells: dict[str, dict[str, tuple[float, float]]] = {}
    texts: dict[str, str] = {}
    for sha, text, model, quality, cost in con.execute(FULL_INFORMATION_TEST_SQL).fetchall():
        cells.setdefault(sha, {})[model] = (quality, cost)
        texts[sha] = text
    complete = sorted(sha for sha, row in cells.items() if all(m in row for m in names))
    if not complete:
        return None
    q = np.array([[cells[s][m][0] for m in names] for s in complete])
    c = np.array([[cells[s][m][1] for m in names] for s in complete], np.float64)
    return [texts[s] for s in complete], q, c


def full_information_metrics(
    con: duckdb.DuckDBPyConnection, router, embedding_model: str, encoder: Encoder
) -> dict[str, Any] | None:
    """Curve, AIQ, APGR and CPT on test queries where every candidate's score is known; None
    without such queries, or when a candidate's price is unknown (no cost axis to draw)."""
    names = router.model_names_
    full = full_information_matrix(con, names)
    if full is None or not np.isfinite(full[2]).all():
        return None
    query_texts, q, c = full
    emb, _ = embed_with_cache(con, query_texts, embedding_model, encoder)
    predicted = router.predict_quality(router_inputs(router, query_texts, emb))
    points = metrics.sweep(predicted, router.cost_, q, c, metrics.default_lambdas(router.cost_))
    single = [(float(c[:, j].mean()), float(q[:, j].mean())) for j in range(len(names))]
    ref = metrics.Reference(weak=min(single), strong=max(single, key=lambda p: (p[1], -p[0])))
    rows = np.arange(len(q))
    c_min, c_max = min(p[0] for p in single), max(p[0] for p in single)
    return {
        "queries": len(query_texts),
        "estimate": "full information (every candidate's score known)",
        "curve": points,
        "best": max(points, key=lambda p: (p[1], -p[0])),
        "aiq": metrics.aiq(points, c_min, c_max) if c_max > c_min else float("nan"),
        "apgr": metrics.apgr(points, ref),
        "cpt50": metrics.cpt(points, ref, 0.5),
        "cpt80": metrics.cpt(points, ref, 0.8),
        "single_models": dict(zip(names, single, strict=True)),
        "oracle": (float(c[rows, q.argmax(1)].mean()), float(q.max(1).mean())),
    }


def serving_latency(folder: Path, embeddings: np.ndarray, texts: list[str], n: int = 200) -> dict:
    """p50/p99 of one ``route()`` through the serving runtime (embedding given, or the text for
    routers that read text)."""
    runtime = RouterRuntime.from_folder(folder)
    text_router = runtime.router.input_kind == "text"
    samples = []
    for i in range(min(n, len(texts))):
        started = time.perf_counter()
        if text_router:
            runtime.route(query=texts[i])
        else:
            runtime.route(embedding=embeddings[i])
        samples.append((time.perf_counter() - started) * 1000)
    if not samples:
        return {}
    return {
        "route_p50_ms": float(np.percentile(samples, 50)),
        "route_p99_ms": float(np.percentile(samples, 99)),
        "route_calls": len(samples),
    }


def evaluate_router_folder(
    con: duckdb.DuckDBPyConnection, folder: Path, encoder: Encoder
) -> dict[str, Any]:
    """The evaluation of one router folder: rows for the router and baselines, and a table."""
    meta = read_router_meta(folder)
    router = load_router(folder)
    examples = load_test_examples(con, router.model_names_, meta["embedding_model"], encoder)
    lam = float(meta.get("default_lambda", 0.0))
    cost_aware = bool(meta.get("cost_aware", True))
    rows = evaluate_against_baselines(
        router, examples, lam, train_quality_by_model(con, router.model_names_), cost_aware
    )
    return {
        "full_information": full_information_metrics(con, router, meta["embedding_model"], encoder),
        "latency": serving_latency(folder, examples.embeddings, examples.texts),
        "per_task": per_task(rows[0].chosen, examples),
        "router": folder.name,
        "router_type": meta["router_type"],
        "lambda": lam,
        "cost_aware": cost_aware,
        "test_examples": len(examples.logged_model),
        "estimate": "off-policy SNIPS on logged test-split telemetry"
        + (
            ""
            if examples.propensity_source == "logged"
            else " (propensities estimated from the logged choices: the gateway logged none"
            + (
                "; its choices follow from the query, so only decisions shared with it count)"
                if examples.deterministic
                else ")"
            )
        ),
        "rows": [
            {
                "policy": r.policy,
                "quality": r.quality.as_dict(),
                "cost": r.cost.as_dict(),
                "share": r.share,
                "quality_intervals": {
                    k: {"value": v.value, "low": v.low, "high": v.high}
                    for k, v in r.intervals.items()
                },
            }
            for r in rows
        ],
        "markdown": markdown_table(rows),
    }
