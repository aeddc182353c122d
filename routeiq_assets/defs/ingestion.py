"""New telemetry files -> new batch partitions and their runs: one code path for the landing
sensor and for `routeiq ingest`."""

import os
import socket
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from routeiq_assets.defs.resources import RouteIQResource
from routeiq_assets.defs.telemetry import raw_traces, telemetry_batches, telemetry_tables
from routeiq_assets.settings import load_settings
from routeiq_assets.telemetry.landing import LandingScan, load_cursor, scan_landing
from routeiq_assets.telemetry.raw_store import display_name

INGEST_TAGS = {"routeiq/duckdb": "writer"}

ingest_job = dg.define_asset_job(
    "ingest_telemetry",
    selection=dg.AssetSelection.assets(raw_traces, telemetry_tables),
    tags=INGEST_TAGS,
    description="Land telemetry files and normalise them into the warehouse (one partition a "
    "file; a run covers one partition or a range of them).",
)


def batch_run_config(path: Path) -> dict:
    return {"ops": {"raw_traces": {"config": {"source_path": str(path)}}}}


def range_run_config(paths: dict[str, Path]) -> dict:
    """Config of one run over several batches: each batch key's file."""
    sources = {key: str(path) for key, path in paths.items()}
    return {"ops": {"raw_traces": {"config": {"source_paths": sources}}}}


RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def range_run_tags(first: str, last: str) -> dict[str, str]:
    """Tags of a run over the partitions first..last (in the order they were added)."""
    return {RANGE_START_TAG: first, RANGE_END_TAG: last}


def run_requests(scan: LandingScan, range_min_files: int) -> list[dg.RunRequest]:
    """One run a new file; a backlog of at least ``range_min_files`` is one run over the range
    of their batches (added in this order by the same tick, so the range is exactly them unless
    someone registers one of them meanwhile: then raw_traces refuses the run and
    ``ingest_range_splitter`` requests one run a file, as for any failed range run)."""
    # run_key = batch key (or the range's ends): Dagster never launches the same key twice for
    # this sensor, even if the cursor were lost.
    if len(scan.ready) >= range_min_files:
        (first, _), (last, _) = scan.ready[0], scan.ready[-1]
        return [
            dg.RunRequest(
                run_key=f"{first}..{last}",
                run_config=range_run_config(dict(scan.ready)),
                tags={**range_run_tags(first, last), "routeiq/source": f"{len(scan.ready)} files"},
            )
        ]
    return [batch_request(key, key, path) for key, path in scan.ready]


def batch_request(run_key: str, key: str, path: Path | None) -> dg.RunRequest:
    """A run that ingests one batch, from ``path`` (None: it is in the raw store already)."""
    return dg.RunRequest(
        run_key=run_key,
        partition_key=key,
        run_config=batch_run_config(path) if path is not None else {},
        tags={"routeiq/source": (display_name(path.name) if path is not None else key)[:200]},
    )


def unfinished_batches(instance: dg.DagsterInstance, run: dg.DagsterRun) -> list[str]:
    """The batches of a (failed) ingest run over a range that are registered but not ingested:
    the files it was requested for (``source_paths``), else the batches of its range."""
    first = run.tags.get(RANGE_START_TAG)
    last = run.tags.get(RANGE_END_TAG)
    if not first or not last:
        return []
    keys = instance.get_dynamic_partitions(telemetry_batches.name)
    sources = _source_paths(run)
    if sources:
        registered = set(keys)
        wanted = [k for k in sources if k in registered]
    elif first in keys and last in keys:
        wanted = keys[keys.index(first) : keys.index(last) + 1]
    else:
        return []
    done = ingested_batches(instance)
    return [k for k in wanted if k not in done]


def _source_paths(run: dg.DagsterRun) -> dict[str, str]:
    config = run.run_config.get("ops", {}).get("raw_traces", {}).get("config", {})
    return dict(config.get("source_paths") or {})


PID_TAG, HOST_TAG = "routeiq/pid", "routeiq/host"
_UNFINISHED = [
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.CANCELING,
]


def in_process_run_tags() -> dict[str, str]:
    """Tags that let a later CLI call recognise this process's runs if it dies."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def release_dead_runs(instance: dg.DagsterInstance, log: Callable[[str], None] = print) -> int:
    """Fail unfinished in-process runs whose process on this host is gone, freeing their pool
    slots; otherwise a killed `routeiq ingest` would hold the DuckDB pool slot forever and every
    later run would wait on it. Runs launched by the daemon are watched by run monitoring."""
    host = socket.gethostname()
    released = 0
    for run in instance.get_runs(dg.RunsFilter(statuses=_UNFINISHED, tags={HOST_TAG: host})):
        pid = run.tags.get(PID_TAG, "")
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        instance.report_run_failed(run, f"its process {pid} on {host} is gone (killed?)")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        log(f"released run {run.run_id}: process {pid} died without finishing it")
        released += 1
    return released


def known_batches(instance: dg.DagsterInstance) -> set[str]:
    """Batches a run was already requested for (the sensor never requests one twice)."""
    return set(instance.get_dynamic_partitions(telemetry_batches.name))


def ingested_batches(instance: dg.DagsterInstance) -> set[str]:
    """Batches whose normalisation finished (a killed or failed run does not count)."""
    return set(instance.get_materialized_partitions(dg.AssetKey("quarantine")))


@dg.sensor(
    job=ingest_job,
    minimum_interval_seconds=load_settings().landing_poll_seconds,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Lands every complete new file of the landing folder in the raw store and "
    "turns it into a telemetry batch partition and a run that normalises it.",
)
def landing_sensor(context: dg.SensorEvaluationContext, routeiq: RouteIQResource):
    settings = routeiq.settings()
    scan = scan_landing(
        settings.resolved.landing_dir,
        load_cursor(context.cursor),
        known_batches(context.instance),
        settings.landing_settle_seconds,
        raw_dir=settings.resolved.raw_dir,
        max_seconds=settings.landing_tick_seconds,
    )
    if scan.busy:  # a warning: a scan that never ends (a hung network file system) shows
        context.log.warning(
            "another scan is landing files into the raw store (a tick that outlived its "
            f"timeout, or another code server; {scan.busy_with}): this tick took nothing"
        )
    if scan.waiting:
        context.log.info(f"{len(scan.waiting)} files still being written; next tick")
    if scan.deferred:
        context.log.info(
            f"{len(scan.deferred)} new files left for the next ticks "
            f"(ROUTEIQ_LANDING_TICK_SECONDS={settings.landing_tick_seconds} s a tick)"
        )
    if scan.unreadable:
        context.log.warning(
            f"{len(scan.unreadable)} landing files cannot be read or landed, tried again next "
            "tick: "
            + "; ".join(f"{display_name(path)}: {reason}" for path, reason in scan.unreadable[:10])
        )
    keys = [key for key, _ in scan.ready]
    return dg.SensorResult(
        run_requests=run_requests(scan, settings.landing_range_min_files),
        dynamic_partitions_requests=[telemetry_batches.build_add_request(keys)] if keys else [],
        cursor=scan.cursor_json(),
    )


@dg.run_failure_sensor(
    name="ingest_range_splitter",
    monitored_jobs=[ingest_job],
    request_job=ingest_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When an ingest run over a range of batches fails, requests one run for each "
    "of its batches that is not ingested, so one bad file does not hold back the others.",
)
def ingest_range_splitter(context: dg.RunFailureSensorContext):
    run = context.dagster_run
    keys = unfinished_batches(context.instance, run)
    if not keys:
        return None  # (an empty list would end this evaluation before the next failed run)
    sources = _source_paths(run)
    context.log.info(f"ingest run {run.run_id} failed with {len(keys)} batches unfinished")
    return [
        batch_request(
            f"{key}/after/{run.run_id}", key, Path(sources[key]) if key in sources else None
        )
        for key in keys
    ]
