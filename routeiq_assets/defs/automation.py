"""The loop that runs by itself: sensors, the retraining trigger and declarative automation.

- ``landing_sensor`` (defs/ingestion.py): new landing files become telemetry batches.
- ``s3_landing_sensor``: when ROUTEIQ_LANDING_S3_URI is set, new objects under that prefix are
  mirrored into the landing folder (then the landing sensor takes them).
- ``jaeger_pull_schedule`` (defs/jaeger.py): hourly Jaeger API windows when ROUTEIQ_JAEGER_URL
  is set.
- ``routeiq_automation``: an AutomationConditionSensorDefinition, RUNNING by default, evaluating
  the conditions below every ROUTEIQ_AUTOMATION_INTERVAL_SECONDS (default 30): tables -> labels
  -> embeddings -> training set -> retraining_trigger follow their inputs (chained into one run);
  routers retrain only when retraining_trigger materialises (enough new labelled examples or
  drift, configs/retraining.yaml); evaluations, the report and deployed_router follow the
  routers in one run, where the report's blocking deployment gate stops the deployment.
- ``run_failure_recorder``: every failed run is appended to ``<home>/ops/run_failures.jsonl``.

Pause the loop by stopping ``routeiq_automation`` (and the landing sensors) in the UI or with
``dagster sensor stop``; explicit runs (CLI, UI, CI) are unaffected.
"""

import json
import re
from datetime import UTC, datetime

import dagster as dg

from routeiq_assets.defs.resources import RouteIQResource
from routeiq_assets.telemetry.s3_landing import load_s3_cursor, mirror_prefix
from routeiq_assets.training.drift import (
    decide_retraining,
    describe,
    load_retraining_policy,
    read_reference,
    take_snapshot,
    write_reference,
)

AC = dg.AutomationCondition
TRIGGER = "retraining_trigger"
AUTOMATION_TAGS = {"routeiq/duckdb": "writer", "routeiq/origin": "automation"}


def _explicitly_trains(context: dg.AssetExecutionContext) -> bool:
    """A run that selects a router (CLI, UI, CI, the whole train_and_deploy job) trains anyway."""
    selection = context.run.asset_selection
    return selection is None or any(k.path[-1].startswith("router_") for k in selection)


@dg.asset(
    group_name="training_data",
    deps=["training_set", "query_embeddings"],
    pool="duckdb",
    output_required=False,
    kinds={"duckdb"},
)
def retraining_trigger(context: dg.AssetExecutionContext, routeiq: RouteIQResource):
    """Lets the routers retrain: materialises only when no router was trained yet, when enough
    new labelled examples arrived, or when the query-length or embedding PSI passes the
    threshold (configs/retraining.yaml), or when the run itself selects routers. When it
    materialises, the current data becomes the reference for the next decision."""
    settings = routeiq.settings()
    policy = load_retraining_policy(settings.configs_dir / "retraining.yaml")
    folder = settings.resolved.work_dir / "retraining"
    with routeiq.warehouse() as con:
        decision = decide_retraining(con, read_reference(folder), settings.embedding_model, policy)
        explicit = _explicitly_trains(context)
        if not (decision.retrain or explicit):
            context.log.info(f"no retraining: {decision.reason}")
            return
        snapshot = take_snapshot(con, settings.embedding_model, policy)
    write_reference(folder, snapshot)
    reason = decision.reason if decision.retrain else f"requested by this run ({decision.reason})"
    context.log.info(f"retraining: {reason}")
    metadata = {k: v for k, v in describe(decision).items() if v is not None}
    yield dg.MaterializeResult(metadata={**metadata, "reason": reason, "explicit": explicit})


def _not_busy() -> dg.AutomationCondition:
    return ~AC.any_deps_in_progress() & ~AC.in_progress()


def _chained() -> dg.AutomationCondition:
    """Requested in the same tick as an input, so a chain of assets runs as one run."""
    return AC.any_deps_match(AC.will_be_requested())


def _follow_inputs() -> dg.AutomationCondition:
    return ((AC.any_deps_updated().since_last_handled() | _chained()) & _not_busy()).with_label(
        "after its inputs update"
    )


def _retrain() -> dg.AutomationCondition:
    # never chained: retraining_trigger decides alone, in a run that selects no router
    return (
        AC.any_deps_updated().allow(dg.AssetSelection.assets(TRIGGER)).since_last_handled()
        & _not_busy()
    ).with_label("when retraining_trigger fires")


def _deploy() -> dg.AutomationCondition:
    # chained after a new report, the report's blocking gate check runs first in the same run;
    # otherwise the latest gate result must have passed
    return (
        (
            (AC.any_deps_updated().since_last_handled() & AC.all_deps_blocking_checks_passed())
            | _chained()
        )
        & _not_busy()
    ).with_label("after a report whose deployment gate passed")


def condition_for(key: str) -> dg.AutomationCondition | None:
    """The automation policy of every downstream asset, in one place."""
    if key == "full_information":
        return AC.on_missing()
    if key.startswith("router_"):
        return _retrain()
    if key == "deployed_router":
        return _deploy()
    if key in {
        "routing_examples",
        "query_embeddings",
        "training_set",
        TRIGGER,
        "evaluation_report",
    }:
        return _follow_inputs()
    if key.startswith("evaluation_"):
        return _follow_inputs()
    return None


def with_automation(assets: list[dg.AssetsDefinition]) -> list[dg.AssetsDefinition]:
    def apply(spec: dg.AssetSpec) -> dg.AssetSpec:
        condition = condition_for(spec.key.to_user_string())
        return spec.replace_attributes(automation_condition=condition) if condition else spec

    return [a.map_asset_specs(apply) for a in assets]


def automation_sensor(
    assets: list[dg.AssetsDefinition], interval_seconds: int = 30
) -> dg.AutomationConditionSensorDefinition:
    return dg.AutomationConditionSensorDefinition(
        "routeiq_automation",
        target=dg.AssetSelection.assets(*assets),
        run_tags=AUTOMATION_TAGS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        minimum_interval_seconds=interval_seconds,
        description="Telemetry tables -> labels -> embeddings -> training set -> (retraining "
        "trigger) -> routers -> evaluation -> (gate) -> deployment.",
    )


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Mirrors new objects under ROUTEIQ_LANDING_S3_URI into the landing folder "
    "(the landing sensor ingests them); skips when no S3 prefix is configured.",
)
def s3_landing_sensor(context: dg.SensorEvaluationContext, routeiq: RouteIQResource):
    settings = routeiq.settings()
    if not settings.landing_s3_uri:
        return dg.SkipReason("ROUTEIQ_LANDING_S3_URI is not set")
    import boto3

    client = boto3.client("s3", endpoint_url=settings.s3_endpoint_url)
    result = mirror_prefix(
        client,
        settings.landing_s3_uri,
        settings.resolved.landing_dir,
        load_s3_cursor(context.cursor),
        failed_before=load_s3_cursor(context.cursor, "failed"),
    )
    context.update_cursor(result.cursor_json())
    for _key, reason in result.failed[:10]:
        context.log.warning(f"{reason} (tried again next tick)")
    failed = f"; {len(result.failed)} could not be mirrored" if result.failed else ""
    if not result.downloaded:
        return dg.SkipReason(f"no new objects ({result.skipped} already mirrored){failed}")
    context.log.info(f"mirrored {len(result.downloaded)} new objects into the landing folder")
    return dg.SkipReason(
        f"mirrored {len(result.downloaded)} objects; the landing sensor ingests{failed}"
    )


def failure_kind(message: str) -> str:
    """``gate_held`` when the deployment gate's check is the only failed step, else ``failure``."""
    found = re.search(r"Steps failed: \[(.*?)\]", message)
    steps = [s.strip(" '\"") for s in found.group(1).split(",")] if found else []
    return "gate_held" if len(steps) == 1 and steps[0].endswith("deployment_gate") else "failure"


@dg.run_failure_sensor(
    name="run_failure_recorder",
    default_status=dg.DefaultSensorStatus.RUNNING,
    monitor_all_code_locations=False,
    description="Appends every failed run (job, run id, time, error) to "
    "<home>/ops/run_failures.jsonl; a held deployment gate is recorded as kind gate_held.",
)
def run_failure_recorder(context: dg.RunFailureSensorContext, routeiq: RouteIQResource):
    message = context.failure_event.message or ""
    run = context.dagster_run
    record = {
        "run_id": run.run_id,
        "job": run.job_name,
        "recorded_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "kind": failure_kind(message),
        "message": message[:2000],
        "tags": {k: v for k, v in run.tags.items() if k.startswith(("routeiq/", "dagster/"))},
    }
    path = routeiq.settings().resolved.home / "ops" / "run_failures.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(record, sort_keys=True) + "\n")
    context.log.info(f"recorded failed run {run.run_id} ({record['kind']}) in {path}")
