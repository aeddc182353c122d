"""The whole graph through the real CLIs (`routeiq ingest`, `dagster asset materialize`) on
temporary homes."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from tests.conftest import REPO_ROOT, gate_without_baselines

pytestmark = pytest.mark.slow
PY = sys.executable


def _run(cmd, env, timeout=600):
    result = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT
    )
    assert result.returncode == 0, f"{cmd}:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return result


@pytest.fixture
def graph_env(routeiq_home, tmp_path):
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", dagster_home / "dagster.yaml")
    env = dict(os.environ, DAGSTER_HOME=str(dagster_home), ROUTEIQ_HOME=str(routeiq_home))
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env, routeiq_home


def _materialize(env):
    """New landing files through `routeiq ingest` (the landing sensor's job and run config, one
    partition a file), then the real `dagster asset materialize` CLI on the rest of the graph."""
    landing = env["ROUTEIQ_HOME"] + "/landing"
    ingest = _run([PY, "-m", "routeiq_assets.cli", "ingest", landing], env)
    select = ["--select", "full_information*"]
    _run(
        [PY, "-m", "dagster", "asset", "materialize", "-m", "routeiq_assets.definitions", *select],
        env,
    )
    return json.loads(ingest.stdout)


def _strict(constant):
    raise ValueError(f"{constant} is not JSON")


def assert_every_json_is_strict(root):
    """Every JSON file the platform wrote under ``root`` (not the telemetry it was given in
    landing/ and raw/) parses strictly: no NaN or Infinity anywhere."""
    given = (root / "landing", root / "raw")
    paths = sorted(p for p in root.rglob("*.json") if not any(p.is_relative_to(g) for g in given))
    assert paths
    for path in paths:
        try:
            json.loads(path.read_text(), parse_constant=_strict)
        except ValueError as err:
            raise AssertionError(f"{path}: {err}") from None


def _count(con, table):
    return con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]


def test_whole_graph_materializes_and_deploys(graph_env, tmp_path):
    """On the simulator's default, what RouteIQ sends: no propensities, decisions without trace
    context, legacy lines with non-hex ids, one model without a price (mistral-7b).

    The first run's gate is told to check no baselines (a copy of configs/ whose gate.yaml says
    `baselines: []`), so that the first version deploys and the deployment path is exercised;
    the second run has the default gate, which compares the challenger with every baseline and
    with that production version."""
    env, home = graph_env
    configs = tmp_path / "configs"
    shutil.copytree(REPO_ROOT / "configs", configs)
    gate_without_baselines(configs)
    bert = configs / "routers" / "bert.yaml"  # a smaller CPU sample: the suite's time budget
    bert.write_text(bert.read_text().replace("max_train_queries: 512", "max_train_queries: 128"))
    env = dict(env, ROUTEIQ_CONFIGS_DIR=str(configs))
    _run(
        [PY, "-m", "dagster", "definitions", "validate", "-w", str(REPO_ROOT / "workspace.yaml")],
        env,
    )
    simulate = ["simulate", "--out", str(home / "landing"), "--requests", "3000", "--seed", "3"]
    _run([PY, "-m", "routeiq_assets.cli", *simulate, "--requests-per-file", "1000"], env)
    ingested = _materialize(env)
    # 2,880 requests as OTLP (3 files), 60 decisions without trace context in a decision JSONL,
    # 60 legacy generator lines: nothing valid is quarantined, counts in equal counts out
    assert ingested["batches"] == 5 and ingested["decisions"] == 2940
    assert ingested["records_in"] == 5880 and ingested["quarantined"] == 0
    assert ingested["llm_calls"] == 2940

    con = duckdb.connect(str(home / "warehouse" / "routeiq.duckdb"), read_only=True)
    counts = {
        t: _count(con, t)
        for t in (
            "raw_files",
            "router_decisions",
            "llm_calls",
            "quarantine",
            "routing_examples",
            "query_embeddings",
        )
    }
    splits = dict(
        con.execute(
            "SELECT split, count(DISTINCT query_sha256) FROM training_set GROUP BY 1"
        ).fetchall()
    )
    unpriced = con.execute(
        "SELECT count(*) FROM routing_examples WHERE model_name = 'mistral-7b' AND cost_usd IS NULL"
    ).fetchall()[0][0]
    con.close()
    assert counts["raw_files"] == 5
    assert counts["router_decisions"] == counts["llm_calls"] == 2940
    # the decisions without a call are not labelled; the legacy calls with a score are
    assert counts["routing_examples"] == 2880 + 60
    assert unpriced > 0
    assert counts["quarantine"] == 0
    assert counts["query_embeddings"] == sum(splits.values())
    assert set(splits) == {"train", "validation", "test"}

    router_dir = home / "work" / "routers" / "knn"
    assert (router_dir / "weights.npz").stat().st_size > 0
    meta = json.loads((router_dir / "router.json").read_text())
    assert meta["unpriced_excluded"] == ["mistral-7b"] and "mistral-7b" not in meta["model_names"]
    report = (home / "work" / "evaluation" / "report.md").read_text()
    assert "router_knn" in report and "always-cheapest" in report and "router_bert" in report
    assert (home / "work" / "evaluation" / "quality_vs_cost.png").read_bytes()[:4] == b"\x89PNG"

    gate = json.loads((home / "work" / "evaluation" / "gate.json").read_text())
    assert gate["passed"] and "no baselines configured" in gate["reason"]
    assert "nothing in production yet" in gate["reason"]
    assert gate["estimate"] == "off-policy DR (estimated propensities)"
    assert_every_json_is_strict(home)
    assert "Deployment gate PASSED" in report
    pointer = json.loads((home / "artifacts/models/knn-router/current.json").read_text())
    version_dir = home / "artifacts" / pointer["manifest"].rsplit("/", 1)[0]
    manifest = json.loads((version_dir / "manifest.json").read_text())
    assert {a["path"] for a in manifest["artifacts"]} >= {"router.json", "weights.npz"}
    for artifact in manifest["artifacts"]:
        data = (version_dir / artifact["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == artifact["sha256"]

    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(f"sqlite:///{home}/mlflow/mlflow.db")
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("knn-router", "production")
    assert str(version.version) == pointer["version"] == "1"
    # the registered model loads with mlflow.pyfunc and routes
    model = mlflow.pyfunc.load_model("models:/knn-router@production")
    out = model.predict(pd.DataFrame({"query": ["Write a Python function that parses a CSV."]}))
    assert (
        out.loc[0, "model"] in json.loads((version_dir / "router.json").read_text())["model_names"]
    )

    # the seed's conversion over our own tables
    export = home / "export"
    _run(
        [
            PY,
            "-m",
            "routeiq_assets.cli",
            "convert",
            "--input",
            "warehouse",
            "--output-dir",
            str(export),
        ],
        env,
    )
    exported = json.loads((export / "conversion_metadata.json").read_text())
    assert (
        exported["rows"] == counts["routing_examples"]
        and exported["unique_queries"] == counts["query_embeddings"]
    )

    # a second run over the same landing folder ingests nothing and retrains the same routers:
    # the deployment gate (a blocking check) holds, deployed_router does not run, production stays
    # at version 1, and `routeiq materialize` says why and exits 0
    shutil.copy(REPO_ROOT / "configs" / "gate.yaml", configs / "gate.yaml")  # the default gate
    second = _run([PY, "-m", "routeiq_assets.cli", "materialize"], env)
    assert "deployment gate held, production unchanged" in second.stderr
    # a short summary a person reads; Dagster's events and MLflow's bars go to the log file
    summary = second.stdout
    assert summary.startswith("RouteIQ materialize: finished in")
    assert "telemetry   no new files in the landing folder" in summary
    assert "router      knn" in summary and "match_best" in summary
    # the default gate: the same knn against the baselines and production v1; it holds and
    # says which baselines won and by how much
    assert "gate        HELD: hold; production stays: knn, the closest challenger, loses to" in (
        summary
    )
    assert "headline    knn at its operating point (lambda " in summary
    assert "report      " in summary and "dagster dev -w workspace.yaml" in summary
    assert "  done    router_knn (" in second.stderr and " - DEBUG - " not in second.stderr
    log = summary.split("log         ")[1].splitlines()[0]
    assert "STEP_SUCCESS" in Path(log).read_text()
    gate = json.loads((home / "work" / "evaluation" / "gate.json").read_text())
    assert gate["passed"] is False and gate["production_version"] == "1"
    assert gate["difference"] == 0
    lost = [c["baseline"] for c in gate["comparisons"] if not c["passed"]]
    assert lost and "production v1" in lost and f"loses to {', '.join(lost)}" in gate["reason"]
    assert [c["baseline"].split(" ")[0] for c in gate["comparisons"]] == [
        "logging",
        "always-best",
        "always-cheapest",
        "production",
    ]
    assert gate["headline"] and gate["curves"]["knn"] and set(gate["points"]) >= {"knn", "mlp"}
    con = duckdb.connect(str(home / "warehouse" / "routeiq.duckdb"), read_only=True)
    assert _count(con, "router_decisions") == 2940
    con.close()
    assert_every_json_is_strict(home)
    assert str(client.get_model_version_by_alias("knn-router", "production").version) == "1"
    assert "Deployment gate FAILED" in (home / "work" / "evaluation" / "report.md").read_text()
    # the report (and its gate check) alone, strictly: exit 3
    strict = subprocess.run(
        [
            PY,
            "-m",
            "routeiq_assets.cli",
            "materialize",
            "--skip-ingest",
            "--select",
            "evaluation_report",
            "--fail-on-gate",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO_ROOT,
    )
    assert strict.returncode == 3, strict.stderr[-3000:]
    assert "deployment gate held" in strict.stderr
