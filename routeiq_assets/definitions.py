"""The one Definitions object: every stage's assets, checks, jobs, sensors and resources."""

import dagster as dg

from routeiq_assets.defs.automation import (
    automation_sensor,
    retraining_trigger,
    run_failure_recorder,
    s3_landing_sensor,
    with_automation,
)
from routeiq_assets.defs.deployment import deployed_router
from routeiq_assets.defs.evaluation import evaluation_assets
from routeiq_assets.defs.ingestion import ingest_job, ingest_range_splitter, landing_sensor
from routeiq_assets.defs.jaeger import jaeger_pull, jaeger_pull_job, jaeger_pull_schedule
from routeiq_assets.defs.resources import RouteIQResource
from routeiq_assets.defs.routers import router_assets
from routeiq_assets.defs.telemetry import raw_traces, telemetry_tables
from routeiq_assets.defs.training import (
    full_information,
    query_embeddings,
    routing_examples,
    training_set,
)
from routeiq_assets.settings import load_settings

_settings = load_settings()
_configs = _settings.configs_dir
_evaluation_assets, _evaluation_checks = evaluation_assets(_configs)

telemetry_assets = [jaeger_pull, raw_traces, telemetry_tables]
downstream_assets = with_automation(
    [
        full_information,
        routing_examples,
        query_embeddings,
        training_set,
        retraining_trigger,
        *router_assets(_configs),
        *_evaluation_assets,
        deployed_router,
    ]
)

# Everything after ingestion: unpartitioned, so one run rebuilds it over all batches.
training_job = dg.define_asset_job(
    "train_and_deploy",
    selection=dg.AssetSelection.assets(*downstream_assets),
    description="Labels, embeddings, training set, routers, evaluation and deployment.",
    tags={"routeiq/duckdb": "writer"},
)

defs = dg.Definitions(
    assets=[*telemetry_assets, *downstream_assets],
    asset_checks=_evaluation_checks,
    jobs=[ingest_job, training_job, jaeger_pull_job],
    schedules=[jaeger_pull_schedule],
    sensors=[
        landing_sensor,
        ingest_range_splitter,
        s3_landing_sensor,
        automation_sensor(downstream_assets, _settings.automation_interval_seconds),
        run_failure_recorder,
    ],
    resources={"routeiq": RouteIQResource()},
    # One process per run: steps share the loaded models and the DuckDB pool serialises them
    # anyway; a subprocess per step only re-imports torch and reloads the encoder.
    executor=dg.in_process_executor,
)
