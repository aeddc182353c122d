"""Training-data stage: labelled examples, cached embeddings, split training set."""

import dagster as dg

from routeiq_assets.defs.resources import RouteIQResource
from routeiq_assets.training.embeddings import embed_with_cache
from routeiq_assets.training.labels import build_routing_examples, load_prices
from routeiq_assets.training.training_set import build_training_set

GROUP = "training_data"


@dg.asset(group_name=GROUP, deps=["router_decisions", "llm_calls"], pool="duckdb", kinds={"duckdb"})
def routing_examples(
    context: dg.AssetExecutionContext, routeiq: RouteIQResource
) -> dg.MaterializeResult:
    """One labelled row per logged decision joined to its LLM call by trace id: the prompt text,
    the logged model, quality (the event's score, else success = 1), cost from tokens x prices,
    latency, and the logging policy's propensity."""
    settings = routeiq.settings()
    prices = load_prices(settings.prices_path)
    with routeiq.warehouse() as con:
        counts = build_routing_examples(con, prices)
        by_status = dict(
            con.execute(
                "SELECT outcome_status, count(*) FROM routing_examples GROUP BY 1 ORDER BY 1"
            ).fetchall()
        )
    context.log.info(f"routing_examples: {counts}")
    return dg.MaterializeResult(
        metadata={
            **counts,
            "by_outcome_status": by_status,
            "prices_file": str(settings.prices_path),
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
