"""Jaeger pulls: one hourly partition a time window, written into the landing folder, so the
landing sensor ingests it like any other telemetry file (one ingestion path)."""

import dagster as dg

from routeiq_assets.defs.resources import RouteIQResource
from routeiq_assets.settings import load_settings
from routeiq_assets.telemetry.jaeger import pull_window_to_file

hourly = dg.HourlyPartitionsDefinition(start_date="2026-01-01-00:00", end_offset=0)


@dg.asset(group_name="telemetry", partitions_def=hourly, kinds={"jaeger", "file"})
def jaeger_pull(
    context: dg.AssetExecutionContext, routeiq: RouteIQResource
) -> dg.MaterializeResult:
    """One hour of the gateway's traces from the Jaeger query API (ROUTEIQ_JAEGER_URL,
    ROUTEIQ_JAEGER_SERVICE), written to the landing folder as a Jaeger JSON file. A window answered
    with ROUTEIQ_JAEGER_LIMIT traces is split until every answer is below it; where one
    microsecond still holds that many, the run fails naming the window and nothing is written.
    The file name carries the window, and re-pulling a window with late spans lands a new file
    whose already-seen events count as duplicates."""
    settings = routeiq.settings()
    if not settings.jaeger_url:
        raise dg.Failure("no Jaeger query service configured: set ROUTEIQ_JAEGER_URL")
    window = context.partition_time_window
    start_us, end_us = int(window.start.timestamp() * 1e6), int(window.end.timestamp() * 1e6) - 1
    name = f"jaeger-{settings.jaeger_service}-{window.start:%Y%m%dT%H}.json"
    out = settings.resolved.landing_dir / "jaeger" / name
    stats = pull_window_to_file(
        settings.jaeger_url,
        settings.jaeger_service,
        start_us,
        end_us,
        out,
        limit=settings.jaeger_limit,
    )
    context.log.info(f"{stats.traces} traces in {window.start}..{window.end} -> {out}")
    return dg.MaterializeResult(
        metadata={
            "file": dg.MetadataValue.path(str(out)),
            "traces": stats.traces,
            "requests": stats.requests,
            "windows": stats.windows,
            "split_windows": stats.split_windows,
            "duplicate_traces": stats.duplicate_traces,
        }
    )


jaeger_pull_job = dg.define_asset_job("jaeger_pull_job", selection=[jaeger_pull])
jaeger_pull_schedule = dg.build_schedule_from_partitioned_job(
    jaeger_pull_job,
    minute_of_hour=5,
    default_status=(
        dg.DefaultScheduleStatus.RUNNING
        if load_settings().jaeger_url
        else dg.DefaultScheduleStatus.STOPPED
    ),
)
