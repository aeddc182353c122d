"""The deployed_router asset, invoked directly: S3 through dagster-aws's S3Resource (moto
server), MLflow on the embedded SQLite store, the gateway snippet in its metadata, the local
gateway folder, and a second materialisation publishing the next version."""

from __future__ import annotations

import json

import boto3
import dagster as dg
import mlflow
import pytest

from routeiq_assets.defs.deployment import deployed_router
from routeiq_assets.defs.resources import RouteIQResource
from routeiq_assets.deployment.registry import log_router_run
from routeiq_assets.evaluation.gate import GateResult, write_gate
from routeiq_assets.training.train import write_run_pointer
from tests.deployment.conftest import train_router

pytestmark = pytest.mark.slow


def test_deployed_router_publishes_to_s3_with_gateway_config(
    routeiq_home, monkeypatch, s3_server, bucket
):
    monkeypatch.setenv("ROUTEIQ_ARTIFACT_STORE", f"s3://{bucket}")
    monkeypatch.setenv("ROUTEIQ_S3_ENDPOINT_URL", s3_server["endpoint"])
    monkeypatch.setenv("LLMROUTER_MODEL_HMAC_SECRET", "asset-test-secret")
    resource = RouteIQResource()
    loc = resource.settings().resolved
    folder = train_router(loc.work_dir / "routers" / "knn")
    gate_dir = loc.work_dir / "evaluation"
    gate_dir.mkdir(parents=True)
    write_gate(GateResult(False, "the improvement is not larger", "knn", "utility", "x"), gate_dir)
    with pytest.raises(dg.Failure, match="the deployment gate did not pass"):
        deployed_router(dg.build_asset_context(), routeiq=resource)
    write_gate(GateResult(True, "no production router yet", "knn", "utility", "x"), gate_dir)
    for expected in ("1", "2"):
        run_id = log_router_run(
            loc.mlflow_tracking_uri,
            "routeiq-routers",
            loc.mlflow_artifact_root,
            "knn",
            folder,
            {},
            {},
        )
        write_run_pointer(folder, run_id)
        result = deployed_router(dg.build_asset_context(), routeiq=resource)
        metadata = {k: getattr(v, "value", v) for k, v in result.metadata.items()}
        assert metadata["version"] == expected and metadata["signature_type"] == "hmac-sha256"
    assert metadata["artifact_uri"] == f"s3://{bucket}/models/knn-router/2"
    env = metadata["gateway_config"]["environment"]
    assert env["ROUTEIQ_PLUGIN_ROUTER_STORE"] == f"s3://{bucket}"
    assert env["ROUTEIQ_PLUGIN_ROUTER_MODEL"] == "knn-router"
    assert env["LLMROUTER_PLUGINS"].endswith("gateway_plugin.RouteIQRouterPlugin")
    local = loc.work_dir / "gateway" / "knn-router" / "current"
    assert json.loads((local / "manifest.json").read_text())["version"] == "2"

    s3 = boto3.client("s3", endpoint_url=s3_server["endpoint"])
    pointer = json.loads(
        s3.get_object(Bucket=bucket, Key="models/knn-router/current.json")["Body"].read()
    )
    assert pointer["version"] == "2" and pointer["previous"] == ["1"]
    mlflow.set_tracking_uri(loc.mlflow_tracking_uri)
    alias = mlflow.MlflowClient().get_model_version_by_alias("knn-router", "production")
    assert str(alias.version) == "2"


def test_best_slot_deploys_the_gates_router_as_routeiq_router(routeiq_home, monkeypatch):
    """With ROUTEIQ_DEPLOY_ROUTER=best the gate's winner (here mlp) fills the `routeiq-router`
    slot, in the embedded local store."""
    monkeypatch.setenv("ROUTEIQ_DEPLOY_ROUTER", "best")
    resource = RouteIQResource()
    loc = resource.settings().resolved
    folder = train_router(loc.work_dir / "routers" / "mlp", kind="mlp")
    run_id = log_router_run(
        loc.mlflow_tracking_uri, "routeiq-routers", loc.mlflow_artifact_root, "mlp", folder, {}, {}
    )
    write_run_pointer(folder, run_id)
    gate_dir = loc.work_dir / "evaluation"
    gate_dir.mkdir(parents=True)
    write_gate(GateResult(True, "no production router yet", "mlp", "utility", "x"), gate_dir)
    result = deployed_router(dg.build_asset_context(), routeiq=resource)
    metadata = {k: getattr(v, "value", v) for k, v in result.metadata.items()}
    assert metadata["registered_model"] == "routeiq-router" and metadata["version"] == "1"
    strategy = metadata["gateway_config"]["router_settings"]["routing_strategy"]
    assert strategy == "llmrouter-routeiq-runtime"
    assert metadata["gateway_config"]["environment"]["ROUTEIQ_PLUGIN_ROUTER_MODEL"] == (
        "routeiq-router"
    )
    pointer = json.loads(
        (routeiq_home / "artifacts" / "models" / "routeiq-router" / "current.json").read_text()
    )
    assert pointer["version"] == "1"
