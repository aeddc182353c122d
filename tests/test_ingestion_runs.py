"""The landing sensor with a real Dagster instance, and a run killed mid-batch."""

import hashlib
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

from routeiq_assets.definitions import defs
from routeiq_assets.defs.ingestion import landing_sensor
from routeiq_assets.defs.resources import RouteIQResource
from routeiq_assets.telemetry.raw_store import batch_key, file_sha256, find_raw_file
from routeiq_assets.telemetry.simulator import simulate_requests, write_otlp_files
from tests.conftest import REPO_ROOT, run_failure_context


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


def _bad_lines(path):
    with path.open("a", encoding="utf-8") as f:
        f.write('{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 12\n')  # truncated
        f.write("not json at all\n")


def test_ingest_of_several_files_is_one_run_over_their_range(routeiq_home, tmp_path, monkeypatch):
    from routeiq_assets.cli import ingest_paths

    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    files = write_otlp_files(simulate_requests(90, seed=5), tmp_path / "in", "r", 30)
    _bad_lines(files[1])
    results = ingest_paths(files)

    assert [r["file"] for r in results] == [str(f) for f in files]
    assert len({r["run_id"] for r in results}) == 1 and all(r["success"] for r in results)
    assert [(r["decisions"], r["llm_calls"], r["quarantined"]) for r in results] == [
        (30, 30, 0),
        (30, 30, 2),
        (30, 30, 0),
    ]
    instance = dg.DagsterInstance.get()
    keys = {r["batch"] for r in results}
    assert set(instance.get_materialized_partitions(dg.AssetKey("quarantine"))) == keys
    assert set(instance.get_materialized_partitions(dg.AssetKey("raw_traces"))) == keys
    # every partition of the range carries the range's sums under range_* and each batch's own
    # counts under `batches`, never another batch's counts under the plain names
    event = instance.get_latest_materialization_event(dg.AssetKey("quarantine"))
    meta = event.asset_materialization.metadata
    assert "records_in" not in meta and meta["range_records_in"].value == 180 + 2
    assert {k: v["quarantined"] for k, v in meta["batches"].value.items()} == {
        r["batch"]: r["quarantined"] for r in results
    }
    check = instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(dg.AssetKey("quarantine"), "nothing_lost")
    )
    assert check.event.dagster_event.event_specific_data.passed
    con = duckdb.connect(str(routeiq_home / "warehouse" / "routeiq.duckdb"), read_only=True)
    logged = dict(
        con.execute(
            "SELECT batch_id, records_in - decisions - llm_calls FROM ingest_log"
        ).fetchall()
    )
    con.close()
    assert logged == {r["batch"]: r["quarantined"] for r in results}


def test_files_whose_names_are_not_utf8_are_ingested(routeiq_home, tmp_path, monkeypatch):
    """A name with bytes that are not UTF-8 (Python keeps them as lone surrogates) is stored and
    tagged with those bytes shown as \\xff; it failed the registration and the CLI before."""
    import os

    from routeiq_assets.cli import ingest_paths

    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    made = write_otlp_files(simulate_requests(60, seed=9), tmp_path / "in", "u", 20)
    files = [
        f.with_name(os.fsdecode(os.fsencode(f.name).replace(b"-", b"\xff-"))) for f in made[:2]
    ]
    for made_file, odd in zip(made, files, strict=False):
        made_file.rename(odd)
    alone = ingest_paths([files[0]])  # a run of its own
    ranged = ingest_paths([files[1], made[2]])  # one run over a range
    assert all(r["success"] for r in alone + ranged)
    assert [r["decisions"] for r in alone + ranged] == [20, 20, 20]
    con = duckdb.connect(str(routeiq_home / "warehouse" / "routeiq.duckdb"), read_only=True)
    names = sorted(row[0] for row in con.execute("SELECT original_name FROM raw_files").fetchall())
    con.close()
    assert names == sorted([f.name.replace("\udcff", "\\xff") for f in files] + [made[2].name])
    runs = dg.DagsterInstance.get().get_runs()
    assert any("\\xff" in run.tags.get("routeiq/source", "") for run in runs)


def test_batches_that_are_not_neighbours_get_a_run_each(routeiq_home, tmp_path, monkeypatch):
    from routeiq_assets.cli import ingest_paths

    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    a, b = write_otlp_files(simulate_requests(40, seed=6), tmp_path / "in", "n", 20)
    instance = dg.DagsterInstance.get()
    # a's batch was registered, then another one (whose run never happened), before this call:
    # a range from a to b would cover that other batch, so each gets its own run
    key_a = hashlib.sha256(a.read_bytes()).hexdigest()[:16]
    instance.add_dynamic_partitions("telemetry_batches", [key_a, "0123456789abcdef"])
    results = ingest_paths([a, b])
    assert [r["batch"] == key_a for r in results] == [True, False]
    assert len({r["run_id"] for r in results}) == 2
    assert [(r["success"], r["decisions"]) for r in results] == [(True, 20), (True, 20)]
    materialized = instance.get_materialized_partitions(dg.AssetKey("quarantine"))
    assert "0123456789abcdef" not in materialized and len(materialized) == 2


def test_a_failed_range_run_leaves_no_batch_behind(routeiq_home, tmp_path, monkeypatch):
    from routeiq_assets.cli import ingest_paths
    from routeiq_assets.defs import ingestion

    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    files = write_otlp_files(simulate_requests(60, seed=9), tmp_path / "in", "f", 20)
    real_config = ingestion.range_run_config
    gone = batch_key(file_sha256(files[1]))

    def file_vanishes_after_the_scan(paths):  # the race, made certain: fails the range run
        # `routeiq ingest` landed the files while it hashed them: the copy goes too
        files[1].unlink()
        for landed in (routeiq_home / "raw").rglob(f"{gone}*"):
            landed.unlink()
        return real_config(paths)

    monkeypatch.setattr(ingestion, "range_run_config", file_vanishes_after_the_scan)
    results = ingest_paths(files)

    assert [r["success"] for r in results] == [True, False, True]
    assert len({r["run_id"] for r in results}) == 3  # the range run failed: then one run each
    assert [r.get("decisions") for r in results] == [20, None, 20]
    instance = dg.DagsterInstance.get()
    done = set(instance.get_materialized_partitions(dg.AssetKey("quarantine")))
    assert done == {results[0]["batch"], results[2]["batch"]}
    con = duckdb.connect(str(routeiq_home / "warehouse" / "routeiq.duckdb"), read_only=True)
    logged = {r[0] for r in con.execute("SELECT batch_id FROM ingest_log").fetchall()}
    con.close()
    assert logged == done


def test_a_file_removed_after_routeiq_ingest_read_it_is_ingested(
    routeiq_home, tmp_path, monkeypatch
):
    """`routeiq ingest` lands files as it hashes them: the run reads the raw store's copy."""
    from routeiq_assets.cli import ingest_paths
    from routeiq_assets.defs import ingestion

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    (tmp_path / "dagster_home").mkdir()
    files = write_otlp_files(simulate_requests(40, seed=10), tmp_path / "in", "f", 20)
    real_config = ingestion.range_run_config

    def source_removed(paths):
        files[0].unlink()
        return real_config(paths)

    monkeypatch.setattr(ingestion, "range_run_config", source_removed)
    results = ingest_paths(files)
    assert [r["success"] for r in results] == [True, True]
    assert [r["decisions"] for r in results] == [20, 20]
    assert len({r["run_id"] for r in results}) == 1  # one range run, nothing retried


def test_a_landing_backlog_is_one_range_run_and_its_failure_is_split(routeiq_home, monkeypatch):
    from routeiq_assets.defs.ingestion import ingest_range_splitter

    monkeypatch.setenv("ROUTEIQ_LANDING_SETTLE_SECONDS", "3600")  # only "unchanged since last tick"
    landing = routeiq_home / "landing"
    files = write_otlp_files(simulate_requests(100, seed=12), landing, "g", requests_per_file=20)
    instance = dg.DagsterInstance.ephemeral()
    job = defs.resolve_job_def("ingest_telemetry")

    first = _tick(instance, routeiq_home, None)
    (request,) = _tick(instance, routeiq_home, first.cursor).run_requests  # 5 files >= 4
    keys = instance.get_dynamic_partitions("telemetry_batches")
    assert request.partition_key is None and request.partition_key_range == dg.PartitionKeyRange(
        keys[0], keys[-1]
    )
    assert len(request.run_config["ops"]["raw_traces"]["config"]["source_paths"]) == 5

    # gone before the run starts, from the landing folder and the raw store the tick landed it
    # in: the range run fails as a whole
    gone = batch_key(file_sha256(files[2]))
    files[2].unlink()
    find_raw_file(routeiq_home / "raw", gone).unlink()
    failed = job.execute_in_process(
        run_config=request.run_config, tags=request.tags, instance=instance, raise_on_error=False
    )
    assert not failed.success
    assert not instance.get_materialized_partitions(dg.AssetKey("quarantine"))
    context = run_failure_context(instance, failed.run_id, "ingest_range_splitter")
    retries = ingest_range_splitter(context)
    assert sorted(r.partition_key for r in retries) == sorted(keys)
    results = {
        r.partition_key: job.execute_in_process(
            partition_key=r.partition_key,
            run_config=r.run_config,
            tags=r.tags,
            instance=instance,
            raise_on_error=False,
        ).success
        for r in retries
    }
    assert sum(results.values()) == 4
    assert set(instance.get_materialized_partitions(dg.AssetKey("quarantine"))) == {
        k for k, ok in results.items() if ok
    }
    # a second failure report of the same run asks again only for what is still missing
    assert [r.partition_key for r in ingest_range_splitter(context)] == [
        k for k, ok in results.items() if not ok
    ]


def test_a_backlog_range_that_no_longer_matches_its_files_is_refused_and_split(
    routeiq_home, monkeypatch
):
    from routeiq_assets.defs.ingestion import ingest_range_splitter

    monkeypatch.setenv("ROUTEIQ_LANDING_SETTLE_SECONDS", "3600")
    landing = routeiq_home / "landing"
    write_otlp_files(simulate_requests(100, seed=13), landing, "c", requests_per_file=20)
    instance = dg.DagsterInstance.ephemeral()
    job = defs.resolve_job_def("ingest_telemetry")
    first = _tick(instance, routeiq_home, None)
    context = dg.build_sensor_context(
        instance=instance,
        cursor=first.cursor,
        resources={"routeiq": RouteIQResource(home=str(routeiq_home))},
    )
    second = landing_sensor(context)
    (request,) = second.run_requests
    (add,) = second.dynamic_partitions_requests
    keys = list(add.partition_keys)
    # a concurrent `routeiq ingest` registers the tick's last file before the daemon adds the
    # tick's partitions: the range first..last now resolves to nothing
    instance.add_dynamic_partitions("telemetry_batches", [keys[-1]])
    instance.add_dynamic_partitions("telemetry_batches", [k for k in keys if k != keys[-1]])
    refused = job.execute_in_process(
        run_config=request.run_config, tags=request.tags, instance=instance, raise_on_error=False
    )
    assert not refused.success
    assert not instance.get_materialized_partitions(dg.AssetKey("quarantine"))
    retries = ingest_range_splitter(
        run_failure_context(instance, refused.run_id, "ingest_range_splitter")
    )
    assert sorted(r.partition_key for r in retries) == sorted(keys)  # every file, alone
    for r in retries:
        job.execute_in_process(
            partition_key=r.partition_key, run_config=r.run_config, tags=r.tags, instance=instance
        )
    assert set(instance.get_materialized_partitions(dg.AssetKey("quarantine"))) == set(keys)
    # nothing left: the splitter has nothing to say (None, so the daemon reads on)
    again = run_failure_context(instance, refused.run_id, "ingest_range_splitter")
    assert ingest_range_splitter(again) is None


def test_an_unreadable_landing_file_does_not_hold_back_the_others(routeiq_home, monkeypatch, capfd):
    monkeypatch.setenv("ROUTEIQ_LANDING_SETTLE_SECONDS", "0")
    landing = routeiq_home / "landing"
    files = write_otlp_files(simulate_requests(40, seed=2), landing, "a", requests_per_file=20)
    # a link (to a file every read of which fails with an I/O error): refused, never read
    (landing / "b.otlp.json").symlink_to("/proc/self/mem")
    instance = dg.DagsterInstance.ephemeral()
    first = _tick(instance, routeiq_home, None)
    logged = capfd.readouterr().err  # the sensor's log
    assert len(first.run_requests) == len(files) == 2
    assert json.loads(first.cursor)["files"]["b.otlp.json"][2] is None  # read again next tick
    assert "1 landing files cannot be read or landed" in logged
    assert "b.otlp.json: OSError: [Errno 40] a symbolic link, refused" in logged
    # once readable, it is taken
    (landing / "b.otlp.json").unlink()
    (landing / "b.otlp.json").write_text(files[0].read_text() + "\n")  # new content
    second = _tick(instance, routeiq_home, first.cursor)
    assert [
        r.run_config["ops"]["raw_traces"]["config"]["source_path"] for r in second.run_requests
    ] == [str(landing / "b.otlp.json")]


def test_a_backlog_is_landed_by_the_ticks_in_turns_and_the_runs_find_it_landed(
    routeiq_home, monkeypatch, capfd
):
    monkeypatch.setenv("ROUTEIQ_LANDING_SETTLE_SECONDS", "0")
    monkeypatch.setenv("ROUTEIQ_LANDING_TICK_SECONDS", "0")  # a file a tick: the least a tick takes
    landing, raw_dir = routeiq_home / "landing", routeiq_home / "raw"
    files = write_otlp_files(simulate_requests(60, seed=3), landing, "a", requests_per_file=20)
    instance = dg.DagsterInstance.ephemeral()
    taken, cursor = [], None
    for file in files:
        result = _tick(instance, routeiq_home, cursor)
        cursor = result.cursor
        [request] = result.run_requests
        assert request.run_config["ops"]["raw_traces"]["config"]["source_path"] == str(file)
        raw = find_raw_file(raw_dir, request.partition_key)  # landed by the tick
        assert raw is not None and raw.read_bytes() == file.read_bytes()
        taken.append(request)
    assert "new files left for the next ticks" in capfd.readouterr().err
    assert _tick(instance, routeiq_home, cursor).run_requests == []
    assert {r.partition_key for r in taken} == {file_sha256(f)[:16] for f in files}
    # the run normalises the landed copy: the landing file may already be gone
    files[0].unlink()
    run = defs.resolve_job_def("ingest_telemetry").execute_in_process(
        partition_key=taken[0].partition_key,
        run_config=taken[0].run_config,
        instance=instance,
    )
    assert run.success
    with duckdb.connect(str(routeiq_home / "warehouse" / "routeiq.duckdb"), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM router_decisions").fetchall() == [(20,)]
    # the next run advances the warehouse-wide pairing counts by what its batch changed
    second = defs.resolve_job_def("ingest_telemetry").execute_in_process(
        partition_key=taken[1].partition_key, run_config=taken[1].run_config, instance=instance
    )
    [meta] = [
        e.step_materialization_data.materialization.metadata
        for e in second.get_asset_materialization_events()
        if e.step_materialization_data.materialization.asset_key.to_user_string()
        == "router_decisions"
    ]
    assert meta["decisions_with_call"].value == 40 and meta["calls_without_decision"].value == 0
    with duckdb.connect(str(routeiq_home / "warehouse" / "routeiq.duckdb"), read_only=True) as con:
        assert con.execute("SELECT ingest_log_rows FROM trace_pairing").fetchall() == [(2,)]


def test_a_large_file_is_a_warning_in_the_runs_log(routeiq_home, monkeypatch):
    import logging

    from routeiq_assets.warehouse import ingest

    monkeypatch.setenv("ROUTEIQ_LANDING_SETTLE_SECONDS", "0")
    [file] = write_otlp_files(simulate_requests(20, seed=4), routeiq_home / "landing", "big")
    monkeypatch.setattr(ingest, "LARGE_FILE_BYTES", file.stat().st_size)
    instance = dg.DagsterInstance.ephemeral()
    [request] = _tick(instance, routeiq_home, None).run_requests
    run = defs.resolve_job_def("ingest_telemetry").execute_in_process(
        partition_key=request.partition_key, run_config=request.run_config, instance=instance
    )
    assert run.success
    said = [(e.level, e.user_message) for e in instance.all_logs(run.run_id)]
    warned = [m for level, m in said if "large file:" in m]
    assert len(warned) == 1 and file.name in warned[0]
    assert (logging.WARNING, warned[0]) in said
