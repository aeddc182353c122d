"""Training-data stage: labelled examples, cached embeddings, split training set."""

import dagster as dg

from routeiq_assets.defs.resources import RouteIQResource
from routeiq_assets.training.embeddings import embed_with_cache
from routeiq_assets.training.labels import (
    build_routing_examples,
    load_full_information,
    load_policy,
    load_prices,
)
from routeiq_assets.training.training_set import build_training_set

GROUP = "training_data"


def _policy(routeiq: RouteIQResource):
    settings = routeiq.settings()
    policy = load_policy(settings.labeling_path)
    if settings.prices_file:
        policy = policy.model_copy(update={"prices_file": settings.prices_file})
    return policy


@dg.asset(group_name=GROUP, pool="duckdb", kinds={"duckdb", "json"})
def full_information(
    context: dg.AssetExecutionContext, routeiq: RouteIQResource
) -> dg.MaterializeResult:
    """Full-information tables named in configs/labeling.yaml: every model's score for the same
    question (benchmarks, shadow traffic, offline evals). Labels, not logged traffic."""
    policy = _policy(routeiq)
    with routeiq.warehouse() as con:
        counts = load_full_information(con, policy.full_information)
    return dg.MaterializeResult(
        metadata={**counts, "tables": [str(t.path) for t in policy.full_information]}
    )


@dg.asset(
    group_name=GROUP,
    deps=["router_decisions", "llm_calls", "feedback", full_information],
    pool="duckdb",
    kinds={"duckdb"},
)
def routing_examples(
    context: dg.AssetExecutionContext, routeiq: RouteIQResource
) -> dg.MaterializeResult:
    """Labelled (query, model) outcomes under configs/labeling.yaml: each logged decision joined
    to its LLM call by trace id, with quality (feedback, event score or outcome), cost from tokens
    x prices, latency, utility and the logging policy's propensity; legacy calls with a score;
    and full-information rows (no propensity)."""
    policy = _policy(routeiq)
    prices = load_prices(policy.prices_file)
    with routeiq.warehouse() as con:
        counts = build_routing_examples(con, prices, policy)
    context.log.info(f"routing_examples: {counts}")
    return dg.MaterializeResult(
        metadata={
            **counts,
            "prices_file": str(policy.prices_file),
            "quality_sources": policy.quality_sources,
            "utility": f"quality - {policy.utility_lambda} * cost_usd"
            f" - {policy.utility_mu} * latency_s",
        }
    )


@dg.asset(group_name=GROUP, deps=[routing_examples], pool="duckdb", kinds={"duckdb", "torch"})
def query_embeddings(
    context: dg.AssetExecutionContext, routeiq: RouteIQResource
) -> dg.MaterializeResult:
    """Sentence embeddings (all-MiniLM-L6-v2 by default, loaded offline) of every query text,
    cached by text hash and model: only texts never embedded before are encoded."""
    settings = routeiq.settings()
    with routeiq.warehouse() as con:
        texts = [
            r[0]
            for r in con.execute(
                "SELECT DISTINCT query_text FROM routing_examples ORDER BY 1"
            ).fetchall()
        ]
        _, stats = embed_with_cache(
            con, texts, settings.embedding_model, routeiq.encoder(), progress=context.log.info
        )
    return dg.MaterializeResult(
        metadata={
            "texts": stats.unique,
            "cache_hits": stats.cache_hits,
            "embedded": stats.embedded,
            "hit_rate": round(stats.hit_rate, 4),
            "texts_per_second": round(stats.texts_per_second, 1),
            "embedding_model": settings.embedding_model,
        }
    )


@dg.asset(group_name=GROUP, deps=[routing_examples], pool="duckdb", kinds={"duckdb"})
def training_set(
    context: dg.AssetExecutionContext, routeiq: RouteIQResource
) -> dg.MaterializeResult:
    """(query, model) aggregates of the examples with a deterministic train/validation/test split by
    hash of the normalised query text, so near-duplicates never straddle splits."""
    settings = routeiq.settings()
    with routeiq.warehouse() as con:
        summary = build_training_set(con, settings.validation_fraction, settings.test_fraction)
    context.log.info(f"training_set: {summary}")
    return dg.MaterializeResult(metadata=summary)
