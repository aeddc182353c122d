"""The seed's extract script as `routeiq extract-jaeger` against a real HTTP server, and
`routeiq ingest` of what it wrote, through the real CLIs."""

import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pytest

from routeiq_assets.telemetry.simulator import DEFAULT_START, simulate_requests, write_otlp_files
from tests.conftest import REPO_ROOT
from tests.telemetry.test_jaeger import jaeger, jaeger_trace  # noqa: F401 - fixture

pytestmark = pytest.mark.slow


def _cli(*args, env):
    return subprocess.run(
        [sys.executable, "-m", "routeiq_assets.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )


@pytest.fixture
def cli_env(routeiq_home, tmp_path):
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", dagster_home)
    return dict(os.environ, DAGSTER_HOME=str(dagster_home), ROUTEIQ_HOME=str(routeiq_home))


def test_extract_jaeger_then_ingest(jaeger, cli_env, tmp_path, routeiq_home):  # noqa: F811
    requests = list(simulate_requests(40, seed=21))
    jaeger.traces = [jaeger_trace(r) for r in requests]
    hours_back = (datetime.now(UTC) - DEFAULT_START).total_seconds() / 3600 + 2
    traces, decisions = tmp_path / "out" / "traces.jsonl", tmp_path / "out" / "decisions.jsonl"
    result = _cli(
        "extract-jaeger",
        "--jaeger-url",
        jaeger.url,
        "--service-name",
        "litellm-gateway",
        "--hours-back",
        f"{hours_back:.1f}",
        "--output",
        str(traces),
        "--routing-decisions-output",
        str(decisions),
        "--limit",
        "500",
        env=cli_env,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["traces"] == 40 and summary["routing_decisions"] == 40
    assert len(traces.read_text().splitlines()) == 40

    result = _cli("ingest", str(traces.parent), env=cli_env)
    assert result.returncode == 0, result.stderr
    ingested = json.loads(result.stdout)
    assert ingested["batches"] == 2 and ingested["records_in"] == 80
    assert ingested["decisions"] == 40 and ingested["llm_calls"] == 40

    con = duckdb.connect(str(routeiq_home / "warehouse" / "routeiq.duckdb"), read_only=True)
    paired = con.execute(
        "SELECT count(*) FROM router_decisions d JOIN llm_calls c USING (trace_id)"
    ).fetchall()[0][0]
    formats = sorted(r[0] for r in con.execute("SELECT format FROM raw_files").fetchall())
    con.close()
    assert paired == 40
    assert formats == ["decision_jsonl", "legacy_traces_jsonl"]

    again = _cli("ingest", str(traces), env=cli_env)
    assert json.loads(again.stdout)["batches"] == 0 and "already ingested" in again.stderr


def test_extract_jaeger_reports_a_server_that_stays_down(cli_env, tmp_path):
    import socket

    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = _cli(
        "extract-jaeger",
        "--jaeger-url",
        f"http://127.0.0.1:{port}",
        "--hours-back",
        "1",
        "--output",
        str(tmp_path / "t.jsonl"),
        env=cli_env,
    )
    assert result.returncode == 1
    assert f"127.0.0.1:{port}" in result.stderr and "Jaeger" in result.stderr
    assert not (tmp_path / "t.jsonl").exists()


def test_hourly_jaeger_pull_lands_a_file_the_sensor_path_ingests(
    jaeger,  # noqa: F811 - the fixture imported above
    routeiq_home,
    monkeypatch,
):
    import dagster as dg

    from routeiq_assets.cli import ingest_paths
    from routeiq_assets.defs.jaeger import jaeger_pull
    from routeiq_assets.defs.resources import RouteIQResource

    requests = list(simulate_requests(30, seed=22))  # 3 s apart from DEFAULT_START
    jaeger.traces = [jaeger_trace(r) for r in requests]
    monkeypatch.setenv("ROUTEIQ_JAEGER_URL", jaeger.url)
    monkeypatch.setenv("DAGSTER_HOME", str(routeiq_home / "dagster"))
    (routeiq_home / "dagster").mkdir()
    partition = DEFAULT_START.strftime("%Y-%m-%d-%H:%M")
    result = dg.materialize(
        [jaeger_pull], partition_key=partition, resources={"routeiq": RouteIQResource()}
    )
    meta = result.asset_materializations_for_node("jaeger_pull")[0].metadata
    assert meta["traces"].value == 30
    landed = list((routeiq_home / "landing" / "jaeger").glob("*.json"))
    assert [p.name for p in landed] == [f"jaeger-litellm-gateway-{DEFAULT_START:%Y%m%dT%H}.json"]
    (ingested,) = ingest_paths(landed)
    assert ingested["decisions"] == 30 and ingested["llm_calls"] == 30

    other_hour = DEFAULT_START.replace(hour=5).strftime("%Y-%m-%d-%H:%M")
    empty = dg.materialize(
        [jaeger_pull], partition_key=other_hour, resources={"routeiq": RouteIQResource()}
    )
    assert empty.asset_materializations_for_node("jaeger_pull")[0].metadata["traces"].value == 0


def test_ingest_of_an_unreadable_file_names_it_without_a_traceback(cli_env, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jsonl").write_text('{"event_id": "e1"}\n')
    (folder / "b.jsonl").symlink_to("/proc/self/mem")  # every read fails with an I/O error
    # named on purpose, a file is read as given (in a folder, a link is refused unread)
    done = _cli("ingest", str(folder / "a.jsonl"), str(folder / "b.jsonl"), env=cli_env)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "routeiq ingest: error: [Errno 5] Input/output error" in done.stderr
    assert f"while landing {folder / 'b.jsonl'}" in done.stderr


def test_a_range_run_that_failed_is_in_the_summary_even_when_its_files_went_through(
    cli_env, tmp_path
):
    write_otlp_files(simulate_requests(4000, seed=4), tmp_path / "in", "f", requests_per_file=2000)
    # a setting that only runs of several batches use (DuckDB's memory in bulk loads), too
    # small for their writes: the range run fails, the runs of one batch each go through
    done = _cli(
        "ingest", str(tmp_path / "in"), env={**cli_env, "ROUTEIQ_INGEST_DUCKDB_MEMORY": "1MB"}
    )
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["batches"] == 2 and summary["decisions"] == 4000 and summary["failed"] == []
    assert len(summary["failed_range_runs"]) == 1
    assert "while writing under ROUTEIQ_INGEST_DUCKDB_MEMORY=1MB" in done.stderr


def test_a_bad_setting_is_refused_before_any_work(cli_env, tmp_path):
    write_otlp_files(simulate_requests(40, seed=4), tmp_path / "in", "f", requests_per_file=20)
    done = _cli(
        "ingest", str(tmp_path / "in"), env={**cli_env, "ROUTEIQ_INGEST_DUCKDB_MEMORY": "lots"}
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "ingest_duckdb_memory must be a size such as 768MB or 2GB, got 'lots'" in done.stderr
    assert not (Path(cli_env["ROUTEIQ_HOME"]) / "raw").exists()


def _extract_recent(jaeger, requests, spread_us, tmp_path, env):  # noqa: F811
    """`routeiq extract-jaeger` with default flags over these requests' traces moved into the
    last hour, the k-th ``spread_us * k`` microseconds after the first (0: all in the same
    microsecond); its result and output file."""
    base = int((datetime.now(UTC).timestamp() - 3600) * 1e6)
    jaeger.traces = [jaeger_trace(r) for r in requests]
    for k, trace in enumerate(jaeger.traces):
        for span in trace["spans"]:
            span["startTime"] = base + spread_us * k
    traces = tmp_path / "out" / "traces.jsonl"
    result = _cli("extract-jaeger", "--jaeger-url", jaeger.url, "--output", str(traces), env=env)
    return result, traces


def test_extract_jaeger_with_default_flags_pulls_more_than_one_answer_holds(
    jaeger,  # noqa: F811
    cli_env,
    tmp_path,
):
    """2,500 traces within one second of the default 168 hours, 1,000 an answer: all of them."""
    requests = list(simulate_requests(2500, seed=22))
    result, traces = _extract_recent(jaeger, requests, 7, tmp_path, cli_env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["traces"] == 2500
    assert len(traces.read_text().splitlines()) == 2500
    assert {q["limit"][0] for q in jaeger.requests} == {"1000"}


def test_extract_jaeger_fails_naming_a_window_it_cannot_complete(
    jaeger,  # noqa: F811
    cli_env,
    tmp_path,
):
    requests = list(simulate_requests(30, seed=23))
    env = {**cli_env, "ROUTEIQ_JAEGER_LIMIT": "20"}
    result, traces = _extract_recent(jaeger, requests, 0, tmp_path, env)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "one microsecond (the API's resolution)" in result.stderr
    assert {q["limit"][0] for q in jaeger.requests} == {"20"}
    assert not traces.exists()
