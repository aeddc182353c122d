"""The landing sensor with a real Dagster instance, and a run killed mid-batch."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import dagster as dg
import duckdb
import pytest

from routeiq_assets.defs.ingestion import landing_sensor
from routeiq_assets.defs.resources import RouteIQResource
from routeiq_assets.telemetry.simulator import simulate_requests, write_otlp_files
from tests.conftest import REPO_ROOT


def _tick(instance, home, cursor):
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"routeiq": RouteIQResource(home=str(home))}
    )
    result = landing_sensor(context)
    for request in result.dynamic_partitions_requests:  # what the daemon would apply
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def test_sensor_takes_each_new_content_once(routeiq_home, monkeypatch):
    monkeypatch.setenv("ROUTEIQ_LANDING_SETTLE_SECONDS", "3600")  # only "unchanged since last tick"
    landing = routeiq_home / "landing"
    files = write_otlp_files(simulate_requests(60, seed=1), landing, "a", requests_per_file=20)
    instance = dg.DagsterInstance.ephemeral()

    first = _tick(instance, routeiq_home, None)
    assert first.run_requests == []  # just written: wait one tick to know they are complete
    second = _tick(instance, routeiq_home, first.cursor)
    assert len(second.run_requests) == 3
    assert {r.partition_key for r in second.run_requests} == set(
        instance.get_dynamic_partitions("telemetry_batches")
    )
    config = second.run_requests[0].run_config["ops"]["raw_traces"]["config"]
    assert config["source_path"] in {str(f) for f in files}

    # a rename, a copy with the same mtime, and a temp file being written: nothing new
    files[0].rename(landing / "renamed.otlp.json")
    shutil.copy2(files[1], landing / "copy.otlp.json")
    (landing / ".incoming.otlp.json.tmp").write_text("partial")
    growing = landing / "growing.otlp.json"
    growing.write_text(files[2].read_text()[:100])
    third = _tick(instance, routeiq_home, second.cursor)
    assert third.run_requests == []
    growing.write_text(files[2].read_text()[:100] + "more")  # still being written
    fourth = _tick(instance, routeiq_home, third.cursor)
    assert fourth.run_requests == []
    fifth = _tick(instance, routeiq_home, fourth.cursor)  # unchanged for a tick: complete now
    assert len(fifth.run_requests) == 1
    assert json.loads(fifth.cursor)["files"]["growing.otlp.json"][2]  # its hash is cached


@pytest.mark.slow
def test_run_killed_mid_batch_leaves_no_half_batch(routeiq_home, tmp_path):
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", dagster_home)
    env = dict(os.environ, DAGSTER_HOME=str(dagster_home), ROUTEIQ_HOME=str(routeiq_home))
    (big,) = write_otlp_files(
        simulate_requests(40000, seed=2), tmp_path / "in", "big", requests_per_file=40000
    )
    cmd = [sys.executable, "-m", "routeiq_assets.cli", "ingest", str(big)]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT
    )
    deadline = time.monotonic() + 300
    for line in proc.stderr:  # dagster's console log
        if "writing batch" in line or time.monotonic() > deadline:
            break
    time.sleep(0.3)  # inside the write transaction
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)

    db = routeiq_home / "warehouse" / "routeiq.duckdb"
    con = duckdb.connect(str(db))
    rows = con.execute("SELECT count(*) FROM router_decisions").fetchall()[0][0]
    logged = con.execute("SELECT count(*) FROM ingest_log").fetchall()[0][0]
    con.close()
    assert (rows, logged) in {(0, 0), (40000, 1)}, "a half batch was left behind"

    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*) FROM router_decisions").fetchall()[0][0] == 40000
    assert con.execute("SELECT count(*) FROM ingest_log").fetchall()[0][0] == 1
    con.close()
