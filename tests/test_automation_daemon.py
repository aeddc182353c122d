"""The loop by itself: a real `dagster-daemon` on a temporary DAGSTER_HOME takes telemetry files
dropped into the landing folder through ingestion (two runs launched together, serialised by the
DuckDB tag limit), labels, embeddings, the training set, the retraining trigger, a router, its
evaluation, the gate and the deployment; the same content dropped again is not processed; a
backlog of files is one run over the range of their batches."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from routeiq_assets.telemetry.simulator import simulate_requests, write_otlp_files
from tests.conftest import REPO_ROOT, gate_without_baselines

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent
INTERVAL = 3


def _wait(predicate, timeout, what, log_path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(2)
    tail = log_path.read_text(errors="replace")[-4000:] if log_path.exists() else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tail}")


@pytest.fixture
def loop_env(routeiq_home, tmp_path):
    configs = tmp_path / "configs"
    shutil.copytree(REPO_ROOT / "configs", configs)
    gate_without_baselines(configs)  # the loop deploys its first version
    for path in (configs / "routers").glob("*.yaml"):
        if path.stem != "knn":
            path.unlink()
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", dagster_home / "dagster.yaml")
    env = dict(
        os.environ,
        DAGSTER_HOME=str(dagster_home),
        ROUTEIQ_HOME=str(routeiq_home),
        ROUTEIQ_CONFIGS_DIR=str(configs),
        ROUTEIQ_LANDING_SETTLE_SECONDS="1",
        ROUTEIQ_LANDING_POLL_SECONDS=str(INTERVAL),
        ROUTEIQ_LANDING_RANGE_MIN_FILES="3",
        ROUTEIQ_AUTOMATION_INTERVAL_SECONDS=str(INTERVAL),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    return env, routeiq_home, dagster_home


def _open_read_only(path):
    try:
        return duckdb.connect(str(path), read_only=True)
    except duckdb.IOException as exc:
        if "lock" not in str(exc):
            raise
        return None


def _runs(instance, job=None):
    filters = dg.RunsFilter(job_name=job) if job else None
    return instance.get_run_records(filters=filters)


def _materialized(instance, key):
    return instance.get_latest_materialization_event(dg.AssetKey(key)) is not None


def test_daemon_runs_the_loop_by_itself(loop_env, tmp_path):
    env, home, dagster_home = loop_env
    log_path = tmp_path / "daemon.log"
    log = log_path.open("wb")
    # create the instance's SQLite storage first: the daemon and its code server would otherwise
    # race to create it (two alembic heads)
    instance = dg.DagsterInstance.from_config(str(dagster_home))
    instance.get_runs(limit=1)
    daemon = subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", str(REPO_ROOT / "workspace.yaml")],
        env=env,
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        # two files land at once (written elsewhere, then renamed in: complete on arrival)
        staged = write_otlp_files(
            simulate_requests(600, seed=5), tmp_path / "staged", "t", requests_per_file=300
        )
        landing = home / "landing"
        landing.mkdir(parents=True, exist_ok=True)
        for path in staged:
            path.rename(landing / path.name)

        _wait(
            lambda: _materialized(instance, "deployed_router"),
            360,
            "the automation to deploy a router",
            log_path,
        )

        ingest = _runs(instance, "ingest_telemetry")
        assert len(ingest) == 2
        assert all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in ingest)
        # launched together, never overlapping: the routeiq/duckdb tag limit is 1
        first, second = sorted(ingest, key=lambda r: r.start_time)
        assert first.end_time <= second.start_time

        def automation_runs():
            return [
                r
                for r in _runs(instance)
                if r.dagster_run.tags.get("routeiq/origin") == "automation"
            ]

        # the last asset is stored a moment before its run's end is: wait for the runs to end
        automation = _wait(
            lambda: (
                (runs := automation_runs())
                and all(r.dagster_run.is_finished for r in runs)
                and runs
            ),
            60,
            "the automation runs to finish",
            log_path,
        )
        assert automation and all(
            r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in automation
        )
        for key in (
            "routing_examples",
            "query_embeddings",
            "training_set",
            "retraining_trigger",
            "router_knn",
            "evaluation_report",
        ):
            assert _materialized(instance, key), key
        trigger = instance.get_latest_materialization_event(dg.AssetKey("retraining_trigger"))
        reason = trigger.asset_materialization.metadata["reason"].value
        assert reason == "no routers trained yet"
        assert (home / "artifacts" / "models" / "knn-router" / "current.json").exists()

        # the same content under a new name: no new partition, no new run
        runs_before = len(_runs(instance))
        shutil.copy(landing / staged[0].name, landing / "again.otlp.json")
        time.sleep(INTERVAL * 5)
        assert len(_runs(instance, "ingest_telemetry")) == 2
        assert len(instance.get_dynamic_partitions("telemetry_batches")) == 2
        assert len(_runs(instance)) == runs_before

        # a backlog (three files at once, >= ROUTEIQ_LANDING_RANGE_MIN_FILES): one run over
        # the range of their batches, and the loop takes the new rows on from there
        before = instance.get_latest_materialization_event(dg.AssetKey("routing_examples"))
        staged = write_otlp_files(
            simulate_requests(60, seed=6), tmp_path / "staged2", "b", requests_per_file=20
        )
        for path in staged:
            path.rename(landing / path.name)
        ranged = _wait(
            lambda: [
                r
                for r in _runs(instance, "ingest_telemetry")
                if r.dagster_run.status == dg.DagsterRunStatus.SUCCESS
                and "dagster/asset_partition_range_start" in r.dagster_run.tags
            ],
            180,
            "one ingest run over the backlog's range",
            log_path,
        )
        assert len(ranged) == 1 and len(_runs(instance, "ingest_telemetry")) == 3
        assert len(instance.get_materialized_partitions(dg.AssetKey("quarantine"))) == 5
        _wait(
            lambda: (
                instance.get_latest_materialization_event(dg.AssetKey("routing_examples")).timestamp
                > before.timestamp
            ),
            180,
            "routing_examples to take the backlog on",
            log_path,
        )
    finally:
        os.killpg(daemon.pid, signal.SIGINT)
        try:
            daemon.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
        log.close()

    # a run the daemon launched (the automation's next step) may still be finishing in its own
    # process after the daemon stopped: wait for it to let go of the warehouse
    con = _wait(
        lambda: _open_read_only(home / "warehouse" / "routeiq.duckdb"),
        120,
        "the last launched run to release the warehouse",
        log_path,
    )
    decisions = con.execute("SELECT count(*) FROM router_decisions").fetchall()[0][0]
    examples = con.execute("SELECT count(*) FROM routing_examples").fetchall()[0][0]
    con.close()
    assert decisions == 660 and examples == 660
