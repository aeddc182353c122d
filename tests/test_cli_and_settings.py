import json
import subprocess
import sys
from pathlib import Path

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


def test_info_masks_credentials_in_service_urls(routeiq_home, monkeypatch):
    import os

    secrets = ("mlflow-pw", "minio-pw", "jaeger-pw", "jaeger-token")
    monkeypatch.setenv("ROUTEIQ_MLFLOW_TRACKING_URI", "http://ops:mlflow-pw@mlflow:5000")
    monkeypatch.setenv("ROUTEIQ_S3_ENDPOINT_URL", "http://minio:minio-pw@minio:9000")
    monkeypatch.setenv("ROUTEIQ_JAEGER_URL", "https://j:jaeger-pw@jaeger/?token=jaeger-token")
    result = _routeiq("info", "--json", env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["mlflow_tracking_uri"] == "http://ops:***@mlflow:5000"
    assert info["s3_endpoint_url"] == "http://minio:***@minio:9000"
    assert info["jaeger_url"] == "https://j:***@jaeger/?token=***"
    text = _routeiq("info", env=dict(os.environ))
    assert text.returncode == 0, text.stderr
    assert "http://ops:***@mlflow:5000" in text.stdout
    for output in (result.stdout + result.stderr, text.stdout + text.stderr):
        assert not [s for s in secrets if s in output], output


def test_simulate_cli_writes_what_routeiq_sends_or_otlp_only(tmp_path):
    args = ("simulate", "--requests", "60", "--seed", "1")
    result = _routeiq(*args, "--out", str(tmp_path / "a"))
    assert result.returncode == 0, result.stderr
    files = [f.rsplit("/", 1)[1] for f in json.loads(result.stdout)["files"]]
    assert files == ["sim-s1-00000.otlp.json", "sim-s1-decisions.jsonl", "sim-s1-traces.jsonl"]
    assert "selection_propensity" not in (tmp_path / "a" / files[0]).read_text()
    result = _routeiq(*args, "--out", str(tmp_path / "b"), "--otlp-only", "--log-propensities")
    [otlp] = json.loads(result.stdout)["files"]
    assert otlp.endswith(".otlp.json") and "selection_propensity" in Path(otlp).read_text()


def test_simulate_from_table_needs_prices(tmp_path, benchmark_table):
    result = _routeiq("simulate", "--out", str(tmp_path), "--from-table", str(benchmark_table[0]))
    assert result.returncode != 0 and "--prices" in result.stderr


def test_the_readme_settings_reference_is_the_settings_objects():
    """README's settings table is generated from the settings fields (regenerate it with
    ``python -c 'from routeiq_assets.settings import settings_reference as r; print(r())'``);
    every field says what it sets."""
    import re

    from routeiq_assets.settings import REPO_ROOT, settings_reference

    for name, info in RouteIQSettings.model_fields.items():
        assert info.description, f"settings field {name} has no description"
    readme = (REPO_ROOT / "README.md").read_text()
    found = re.search(
        r"<!-- settings-reference:start -->\n(.*?)<!-- settings-reference:end -->", readme, re.S
    )
    assert found and found.group(1) == settings_reference()


def test_every_routeiq_variable_is_a_setting_and_only_settings_read_the_environment():
    """A ROUTEIQ_* name in the package, the README, docs/, the compose file or .env.example is
    a settings field's variable (ROUTEIQ_BENCH_*: the benchmarks' own, outside the package), or
    one of the gateway plugin's (RouteIQ's ROUTEIQ_PLUGIN_* namespace, which RouteIQ's plugin
    manager reads into the plugin's context); no module but settings.py reads one from the
    environment."""
    import re

    from routeiq_assets.serving.gateway_plugin import ENV_PREFIX, VARIABLES
    from routeiq_assets.settings import REPO_ROOT, environment_name

    known = {environment_name(name) for name in RouteIQSettings.model_fields}
    known |= {*VARIABLES, ENV_PREFIX.rstrip("_"), "ROUTEIQ_PLUGIN"}  # and the prefixes
    places = [
        *(REPO_ROOT / "routeiq_assets").rglob("*.py"),
        *(REPO_ROOT / "docs").rglob("*.md"),
        REPO_ROOT / "README.md",
        REPO_ROOT / "docker-compose.yml",
        REPO_ROOT / ".env.example",
        REPO_ROOT / "Makefile",
    ]
    for path in places:
        text = path.read_text()
        unknown = set(re.findall(r"ROUTEIQ_[A-Z0-9_]*[A-Z0-9]", text)) - known
        if path.parent.name != "routeiq_assets" and "routeiq_assets" not in path.parts:
            unknown = {name for name in unknown if not name.startswith("ROUTEIQ_BENCH_")}
        assert not unknown, f"{path.relative_to(REPO_ROOT)} names {sorted(unknown)}"
        if path.suffix == ".py" and path.name != "settings.py":
            reads = re.findall(r"(?:environ(?:\.get)?\(|getenv\(|environ\[)\s*[\"']ROUTEIQ_", text)
            assert not reads, f"{path.relative_to(REPO_ROOT)} reads ROUTEIQ_* itself"


def test_materialize_with_a_selection_dagster_cannot_read_says_so_in_one_line(routeiq_home):
    """`routeiq materialize --select "a b"`: no traceback on the terminal, one line naming
    Dagster's error and the selection syntax, exit 1; an unknown key the same."""
    import os

    env = dict(os.environ, ROUTEIQ_HOME=str(routeiq_home), DAGSTER_HOME=str(routeiq_home))
    for select, said in (
        ("a b", "Invalid selection string: a b (DagsterInvalidAssetSelectionError)."),
        ("router_nope", "AssetKey(s) ['router_nope'] were selected"),
    ):
        result = _routeiq("materialize", "--skip-ingest", "--select", select, env=env)
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        last = result.stderr.strip().splitlines()[-1]
        assert last.startswith(f"routeiq materialize: error: {said}")
        assert "--select takes Dagster's asset selection syntax" in last
