"""The one Definitions object: every stage's assets, checks, jobs and resources."""

import dagster as dg

from routeiq_assets.defs.deployment import deployed_router
from routeiq_assets.defs.evaluation import evaluation_assets
from routeiq_assets.defs.resources import RouteIQResource
from routeiq_assets.defs.routers import router_assets
from routeiq_assets.defs.telemetry import raw_traces, telemetry_tables
from routeiq_assets.defs.training import query_embeddings, routing_examples, training_set
from routeiq_assets.settings import load_settings

_configs = load_settings().configs_dir

all_assets = [
    raw_traces,
    telemetry_tables,
    routing_examples,
    query_embeddings,
    training_set,
    *router_assets(_configs),
    *evaluation_assets(_configs),
    deployed_router,
]

main_job = dg.define_asset_job(
    "routeiq_main_job",
    selection=dg.AssetSelection.all(),
    description="The whole graph: telemetry to deployed router.",
    tags={"routeiq/duckdb": "writer"},
)

defs = dg.Definitions(
    assets=all_assets,
    jobs=[main_job],
    resources={"routeiq": RouteIQResource()},
)
