"""Deploy against a real HTTP S3 endpoint (moto server) and a real MLflow server process:
the seed's CLI, legacy stages, the gateway's mlp files, S3 down mid-deploy, MLflow down,
rollback."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import boto3
import mlflow
import numpy as np
import pytest
from botocore.config import Config

from routeiq_assets.deployment.deploy import deploy_registered
from routeiq_assets.deployment.manifest import ManifestKeys, verify_manifest
from routeiq_assets.deployment.store import (
    ArtifactStoreError,
    LocalArtifactStore,
    S3ArtifactStore,
    s3_client_for,
)
from routeiq_assets.serving.runtime import RouterRuntime
from tests.deployment.conftest import (
    MODELS,
    PROBE,
    free_port,
    register_router,
    train_router,
)

pytestmark = pytest.mark.slow
ROUTEIQ = [sys.executable, "-m", "routeiq_assets.cli"]
SECRET = "hmac-secret-for-tests-0123456789"


def run_cli(
    args: list[str], env: dict[str, str], timeout: float = 240
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*ROUTEIQ, *args],
        env={**os.environ, "HF_HUB_OFFLINE": "1", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def s3_json(endpoint: str, bucket: str, key: str) -> dict:
    body = boto3.client("s3", endpoint_url=endpoint).get_object(Bucket=bucket, Key=key)["Body"]
    return json.loads(body.read())


def alias_version(tracking_uri: str, name: str, alias: str) -> str:
    mlflow.set_tracking_uri(tracking_uri)
    return str(mlflow.MlflowClient().get_model_version_by_alias(name, alias).version)


def test_cli_deploy_route_and_rollback(routeiq_home, tmp_path, s3_server, bucket, mlflow_server):
    """The seed's commands end to end: deploy (signed), route one query and a JSONL file from
    S3, deploy a second version, roll back and forward, refuse a tampered target."""
    name = "knn-router-production"
    register_router(mlflow_server, train_router(tmp_path / "v1"), name, alias="production")
    env = {
        "ROUTEIQ_MLFLOW_TRACKING_URI": mlflow_server,
        "ROUTEIQ_S3_ENDPOINT_URL": s3_server["endpoint"],
        "LLMROUTER_MODEL_HMAC_SECRET": SECRET,
    }
    deploy = ["deploy", "--model-name", name, "--model-stage", "Production"]
    first = run_cli([*deploy, "--s3-bucket", bucket, "--s3-prefix", "models/"], env)
    assert first.returncode == 0, first.stderr
    assert SECRET not in first.stdout + first.stderr
    summary = json.loads(first.stdout)
    assert summary["version"] == "1" and summary["signature_type"] == "hmac-sha256"
    assert summary["gateway_config"] == {
        "environment": {
            "LLMROUTER_PLUGINS": "routeiq_assets.serving.gateway_plugin.RouteIQRouterPlugin",
            "ROUTEIQ_PLUGIN_ROUTER_STORE": f"s3://{bucket}",
            "ROUTEIQ_PLUGIN_ROUTER_MODEL": name,
            "ROUTEIQ_PLUGIN_ROUTER_S3_ENDPOINT_URL": s3_server["endpoint"],
        },
        "router_settings": {"routing_strategy": "llmrouter-routeiq-runtime"},
    }
    # the lines that load the plugin, and the router_settings snippet naming its strategy
    plugin_line = "LLMROUTER_PLUGINS=routeiq_assets.serving.gateway_plugin.RouteIQRouterPlugin"
    assert plugin_line in first.stderr.splitlines()
    assert f"ROUTEIQ_PLUGIN_ROUTER_STORE=s3://{bucket}" in first.stderr.splitlines()
    assert "router_settings:\n  routing_strategy: llmrouter-routeiq-runtime" in first.stderr
    listed = boto3.client("s3", endpoint_url=s3_server["endpoint"]).list_objects_v2(Bucket=bucket)
    keys = {o["Key"] for o in listed["Contents"]}
    assert {f"models/{name}/1/{f}" for f in ("router.json", "weights.npz", "manifest.json")} <= keys
    pointer = s3_json(s3_server["endpoint"], bucket, f"models/{name}/current.json")
    assert pointer["version"] == "1" and pointer["manifest"] == f"models/{name}/1/manifest.json"

    route = ["route", "--model-s3-bucket", bucket, "--model-s3-key", f"models/{name}/"]
    queries = tmp_path / "queries.jsonl"
    queries.write_text(
        '{"query": "Write a haiku about the sea", "id": "a"}\n'
        "not json\n"
        '{"query": "Prove that the square root of two is irrational", "max_cost": 0.005}\n'
    )
    batch = run_cli(
        [*route, "--queries", str(queries), "--output", str(tmp_path / "out.jsonl")], env
    )
    assert batch.returncode == 1, batch.stderr  # one bad line
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rows] == [1, 2, 3]
    assert rows[0]["id"] == "a" and rows[0]["model"] in MODELS and rows[0]["version"] == "1"
    assert "not JSON" in rows[1]["error"]
    assert rows[2]["model"] == "small-model" and rows[2]["rule"] == "max_cost"
    assert set(rows[0]["scores"]) == set(MODELS) and rows[0]["latency_ms"] > 0
    assert json.loads(batch.stderr.strip().splitlines()[-1])["decisions"] == 2

    register_router(mlflow_server, train_router(tmp_path / "v2", flip=True), name)
    second = run_cli([*deploy, "--version", "2", "--s3-bucket", bucket], env)
    assert second.returncode == 0, second.stderr
    assert alias_version(mlflow_server, name, "production") == "2"

    rollback = ["rollback", "--model-name", name, "--s3-bucket", bucket]
    back = run_cli(rollback, env)
    assert back.returncode == 0, back.stderr
    assert s3_json(s3_server["endpoint"], bucket, f"models/{name}/current.json")["version"] == "1"
    forward = run_cli([*rollback, "--to", "2"], env)
    assert forward.returncode == 0, forward.stderr
    assert json.loads(forward.stdout)["previous"] == ["1"]

    s3 = boto3.client("s3", endpoint_url=s3_server["endpoint"])
    s3.put_object(Bucket=bucket, Key=f"models/{name}/1/weights.npz", Body=b"tampered")
    refused = run_cli([*rollback, "--to", "1"], env)
    assert refused.returncode != 0 and "weights.npz" in refused.stderr
    assert s3_json(s3_server["endpoint"], bucket, f"models/{name}/current.json")["version"] == "2"

    one = run_cli([*route, "--query", "Translate good morning into French"], env)
    assert one.returncode == 0, one.stderr
    decision = json.loads(one.stdout)
    assert decision["version"] == "2" and decision["model"] in MODELS
    # the parts of the time apart: the decision is not charged with loading anything
    timings = decision["timings"]
    assert set(timings) == {"router_load_ms", "encoder_load_ms", "embed_ms", "decision_ms"}
    assert decision["latency_ms"] == timings["decision_ms"] < 50 < timings["router_load_ms"]


def test_legacy_stage_is_resolved_and_alias_follows(routeiq_home, tmp_path, mlflow_server):
    """A version in the legacy stage Staging (no alias) deploys; the alias staging follows."""
    name = "legacy-stage-router"
    version, _ = register_router(mlflow_server, train_router(tmp_path / "v1"), name)
    mlflow.set_tracking_uri(mlflow_server)
    mlflow.MlflowClient().transition_model_version_stage(name, version, "Staging")
    store = LocalArtifactStore(tmp_path / "store")
    deployment = deploy_registered(mlflow_server, name, store, stage="Staging")
    assert deployment.version == version and deployment.alias == "staging"
    assert alias_version(mlflow_server, name, "staging") == version
    assert json.loads(store.get_bytes(f"models/{name}/current.json"))["version"] == version


def test_mlp_gateway_folder_loads_like_routeiqs_loader(routeiq_home, tmp_path, mlflow_server):
    """The local gateway folder holds model.pt (loaded with weights_only=True into the gateway's
    Linear-layers architecture) and its companion JSON; its argmax is our lambda = 0 choice."""
    import torch

    name = "mlp-router"
    register_router(mlflow_server, train_router(tmp_path / "v1", kind="mlp"), name, "production")
    # by default a deployed version holds no pickle-based file at all
    plain = deploy_registered(mlflow_server, name, LocalArtifactStore(tmp_path / "plain"))
    assert not [a for a in plain.manifest["artifacts"] if a["path"].endswith(".pt")]
    assert "legacy_router_settings" not in plain.gateway
    assert plain.gateway["environment"]["ROUTEIQ_PLUGIN_ROUTER_STORE"] == str(tmp_path / "plain")
    deployment = deploy_registered(
        mlflow_server,
        name,
        LocalArtifactStore(tmp_path / "store"),
        gateway_dir=tmp_path / "gateway",
        torch_export=True,
    )
    legacy = deployment.gateway["legacy_router_settings"]  # RouteIQ's own mlp loader, opt-in
    args = legacy["routing_strategy_args"]
    assert legacy["routing_strategy"] == "llmrouter-mlp"
    model_path = Path(args["model_path"])
    assert model_path == tmp_path / "gateway" / "current" / "gateway" / "model.pt"
    companion = json.loads(model_path.with_suffix(".json").read_text())
    assert companion["input_dim"] == 384 and companion["hidden_layer_sizes"] == [32]
    assert companion["num_classes"] == 2 and companion["activation"] == "relu"
    assert companion["idx_to_model"] == {"0": MODELS[0], "1": MODELS[1]}

    state = torch.load(model_path, map_location="cpu", weights_only=True)
    layers = torch.nn.ModuleList(
        [torch.nn.Linear(384, 32), torch.nn.Linear(32, companion["num_classes"])]
    )
    layers.load_state_dict({k.removeprefix("layers."): v for k, v in state.items()})
    folder = tmp_path / "gateway" / "current"
    manifest = json.loads((folder / "manifest.json").read_text())
    verify_manifest(manifest, lambda p: (folder / p).read_bytes())
    runtime = RouterRuntime.from_folder(folder)
    probes = np.stack([PROBE, -PROBE])
    with torch.no_grad():
        logits = layers[1](torch.relu(layers[0](torch.from_numpy(probes))))
    gateway_choice = [companion["idx_to_model"][str(int(i))] for i in logits.argmax(dim=-1)]
    ours = [runtime.route(embedding=p, lam=0.0).model for p in probes]
    assert gateway_choice == ours == ["small-model", "large-model"]


def test_s3_down_mid_deploy_keeps_pointer_and_retry_succeeds(
    routeiq_home, tmp_path, s3_server, bucket, mlflow_server
):
    """The S3 server stops answering after the first object of version 2: the deploy fails with
    an error naming the object, the pointer and the alias stay at 1, a retry publishes 2."""
    name = "s3-down-router"
    register_router(mlflow_server, train_router(tmp_path / "v1"), name, alias="production")
    endpoint = s3_server["endpoint"]
    deploy_registered(mlflow_server, name, S3ArtifactStore(s3_client_for(endpoint), bucket))
    version, _ = register_router(mlflow_server, train_router(tmp_path / "v2", flip=True), name)

    config = Config(retries={"max_attempts": 1}, read_timeout=2, connect_timeout=2)
    flaky = boto3.client("s3", endpoint_url=endpoint, config=config)
    puts = []

    def stop_server_after_first_put(**_kwargs):
        puts.append(1)
        if len(puts) == 1:
            os.kill(s3_server["pid"], signal.SIGSTOP)

    flaky.meta.events.register("after-call.s3.PutObject", stop_server_after_first_put)
    try:
        with pytest.raises(
            ArtifactStoreError, match=f"could not write s3://{bucket}/models/{name}/2/"
        ):
            deploy_registered(mlflow_server, name, S3ArtifactStore(flaky, bucket), version=version)
    finally:
        os.kill(s3_server["pid"], signal.SIGCONT)
    assert len(puts) == 1
    assert s3_json(endpoint, bucket, f"models/{name}/current.json")["version"] == "1"
    assert alias_version(mlflow_server, name, "production") == "1"

    retried = deploy_registered(
        mlflow_server, name, S3ArtifactStore(s3_client_for(endpoint), bucket), version=version
    )
    assert retried.version == "2"
    assert s3_json(endpoint, bucket, f"models/{name}/current.json")["version"] == "2"
    assert alias_version(mlflow_server, name, "production") == "2"


def test_mlflow_down_is_a_clear_error(routeiq_home, tmp_path):
    port = free_port()
    down = f"http://deployer:mlflow-pw@127.0.0.1:{port}"
    started = time.monotonic()
    result = run_cli(
        ["deploy", "--model-name", "knn-router", "--tracking-uri", down], {}, timeout=120
    )
    assert result.returncode == 1
    assert f"MLflow at http://deployer:***@127.0.0.1:{port} cannot be reached" in result.stderr
    assert "mlflow-pw" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert time.monotonic() - started < 15
    assert not (routeiq_home / "artifacts").exists()


def test_a_password_in_the_tracking_uri_is_used_but_not_printed(tmp_path, mlflow_server, capfd):
    """MLflow prints a link to each run it logs; with a password in the URI it would print the
    password, so the link is off."""
    with_password = mlflow_server.replace("http://", "http://trainer:mlflow-pw@")
    version, _ = register_router(with_password, train_router(tmp_path / "knn"), "pw-router")
    assert version == "1"
    out, err = capfd.readouterr()
    assert "mlflow-pw" not in out + err


def test_manifest_keys_never_show_the_secret():
    keys = ManifestKeys.from_env({"LLMROUTER_MODEL_HMAC_SECRET": SECRET})
    assert SECRET not in repr(keys) and keys.signature_type == "hmac-sha256"


def test_a_tracking_server_keeps_its_own_artifact_root(tmp_path, mlflow_server):
    """A local artifact root is for the embedded SQLite store only: against a server, the
    experiment gets the server's root (its --artifacts-destination, MinIO in the stack)."""
    from routeiq_assets.deployment.registry import log_router_run

    folder = train_router(tmp_path / "knn")
    local_root = tmp_path / "never-used"
    run_id = log_router_run(mlflow_server, "server-root", str(local_root), "knn", folder, {}, {})
    mlflow.set_tracking_uri(mlflow_server)
    experiment = mlflow.get_experiment_by_name("server-root")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")
    assert not local_root.exists()
    assert mlflow.get_run(run_id).info.artifact_uri.startswith("mlflow-artifacts:")
