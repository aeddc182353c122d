import json
import subprocess
import sys

import pytest
from pydantic import ValidationError

from routeiq_assets.settings import RouteIQSettings


def _routeiq(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "routeiq_assets.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_every_location_derives_from_home_and_each_can_be_overridden(
    routeiq_home, monkeypatch, tmp_path
):
    loc = RouteIQSettings().resolved
    for path in (loc.landing_dir, loc.raw_dir, loc.duckdb_path, loc.work_dir):
        assert routeiq_home in path.parents
    assert loc.mlflow_tracking_uri == f"sqlite:///{routeiq_home}/mlflow/mlflow.db"
    monkeypatch.setenv("ROUTEIQ_DUCKDB_PATH", str(tmp_path / "elsewhere.duckdb"))
    monkeypatch.setenv("ROUTEIQ_ARTIFACT_STORE", "s3://models-bucket/routeiq")
    monkeypatch.setenv("ROUTEIQ_S3_ENDPOINT_URL", "http://127.0.0.1:9000")
    s = RouteIQSettings()
    assert s.resolved.duckdb_path == tmp_path / "elsewhere.duckdb"
    assert s.describe()["artifact_store_kind"] == "s3"


def test_bad_settings_are_refused(routeiq_home, monkeypatch):
    monkeypatch.setenv("ROUTEIQ_DEVICE", "tpu")
    with pytest.raises(ValidationError, match="device"):
        RouteIQSettings()


def test_info_json_lists_locations_without_secrets(routeiq_home, monkeypatch):
    import os

    monkeypatch.setenv("LLMROUTER_MODEL_HMAC_SECRET", "do-not-print-me")
    result = _routeiq("info", "--json", env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["home"] == str(routeiq_home)
    assert info["manifest_signing"] == "hmac-sha256"
    assert "do-not-print-me" not in result.stdout
    for key in ("landing_dir", "raw_dir", "duckdb_path", "mlflow_tracking_uri", "artifact_store"):
        assert info[key]


def test_simulate_cli_writes_otlp_files(tmp_path):
    result = _routeiq("simulate", "--out", str(tmp_path), "--requests", "30", "--seed", "1")
    assert result.returncode == 0, result.stderr
    files = json.loads(result.stdout)["files"]
    assert len(files) == 1 and files[0].endswith(".otlp.json")


def test_simulate_from_table_needs_prices(tmp_path, benchmark_table):
    result = _routeiq("simulate", "--out", str(tmp_path), "--from-table", str(benchmark_table[0]))
    assert result.returncode != 0 and "--prices" in result.stderr
