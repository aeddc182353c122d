"""The gateway plugin driven as RouteIQ drives it (tests/serving/routeiq_fakes.py) while new
versions are published to a moto S3 server: every decision served, the switch to the new
version observed, a tampered version refused while the old one keeps serving."""

from __future__ import annotations

import threading
import time

import boto3
import pytest

from routeiq_assets.contract import parse_decision_payload
from routeiq_assets.deployment.manifest import ManifestKeys
from routeiq_assets.deployment.store import S3ArtifactStore, s3_client_for
from routeiq_assets.serving.gateway_plugin import EMBEDDING_KEY, PLUGIN_PATH
from routeiq_assets.warehouse.normalize import custom_fields
from tests.deployment.conftest import PROBE
from tests.serving.routeiq_fakes import (
    LiteLLMRouter,
    PluginManager,
    Registry,
    RoutingContext,
    deployments,
)
from tests.serving.test_runtime import NAME, publish

pytestmark = pytest.mark.slow
SECRET = "plugin-test-secret"


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_plugin_serves_through_a_hot_reload_and_refuses_a_tampered_version(
    s3_server, bucket, tmp_path, monkeypatch
):
    keys = ManifestKeys(hmac_secret=SECRET)
    store = S3ArtifactStore(s3_client_for(s3_server["endpoint"]), bucket)
    publish(store, tmp_path, "1", keys=keys)
    for var, value in {
        "LLMROUTER_MODEL_HMAC_SECRET": SECRET,
        "ROUTEIQ_PLUGIN_ROUTER_STORE": f"s3://{bucket}",
        "ROUTEIQ_PLUGIN_ROUTER_MODEL": NAME,
        "ROUTEIQ_PLUGIN_ROUTER_S3_ENDPOINT_URL": s3_server["endpoint"],
        "ROUTEIQ_PLUGIN_ROUTER_POLL_SECONDS": "0.2",
        "ROUTEIQ_PLUGIN_ROUTER_WARM_UP": "false",  # the test gives embeddings: no MiniLM
        "ROUTEIQ_PLUGIN_ROUTER_MODEL_MAP": "openai/small=small-model,openai/large=large-model",
    }.items():
        monkeypatch.setenv(var, value)
    registry = Registry()
    manager = PluginManager(PLUGIN_PATH, registry)
    manager.startup()
    strategy = manager.plugin.strategy
    assert registry.get_active_strategy() == strategy.name == "llmrouter-routeiq-runtime"
    assert registry.strategies[strategy.name][1] == "1"  # the registry read strategy.version
    assert manager.health()["status"] == "ok"
    payloads: list[dict] = []
    strategy.listeners.append(payloads.append)

    gateway = LiteLLMRouter(deployments("auto", ["small", "large"]))
    seen: list[tuple[str, str]] = []
    failed: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            context = RoutingContext(gateway, "auto", metadata={EMBEDDING_KEY: PROBE})
            deployment, error = registry.route(context)
            if deployment is None:
                failed.append(error or "no deployment")
            else:
                seen.append((strategy.version, deployment["litellm_params"]["model"]))

    worker = threading.Thread(target=serve)
    worker.start()
    try:
        wait_for(lambda: len(seen) > 20)
        publish(store, tmp_path, "2", flip=True, keys=keys)
        wait_for(lambda: strategy.version == "2")
        wait_for(lambda: seen[-1] == ("2", "openai/large"))
        publish(store, tmp_path, "3", keys=keys)
        s3 = boto3.client("s3", endpoint_url=s3_server["endpoint"])
        s3.put_object(Bucket=bucket, Key=f"models/{NAME}/3/weights.npz", Body=b"tampered")
        wait_for(lambda: strategy.metrics()["reload_failures"] >= 2)
        time.sleep(0.2)
    finally:
        stop.set()
        worker.join()

    assert not failed, failed[:3]
    metrics = strategy.metrics()
    assert metrics["router_version"] == "2" and metrics["reloads"] == 1
    assert "weights.npz: sha256" in metrics["last_reload_error"]
    assert metrics["fallbacks"] == 0 and metrics["decisions"] >= len(seen)
    models = [m for _, m in seen]
    switch = models.index("openai/large")
    assert set(models[:switch]) == {"openai/small"} and set(models[switch:]) == {"openai/large"}
    assert seen[-1] == ("2", "openai/large")  # after the tampered version 3: still version 2

    decision = parse_decision_payload(payloads[-1])
    assert decision.strategy_name == strategy.name and decision.strategy_version == "2"
    assert decision.selected_deployment == "large-model"
    _, propensity, policy, _ = custom_fields(decision.custom_attributes)
    assert propensity == 1.0 and policy == "greedy"

    manager.shutdown()
    assert registry.list_strategies() == [] and manager.plugin.strategy is None


def test_plugin_starts_before_its_store_has_a_version(tmp_path, monkeypatch):
    """A folder store with nothing published yet: startup does not fail, requests fall back
    (not_loaded) and are counted, the first version published is picked up and served."""
    from routeiq_assets.deployment.store import LocalArtifactStore

    store = LocalArtifactStore(tmp_path / "store")
    for var, value in {
        "ROUTEIQ_PLUGIN_ROUTER_STORE": str(tmp_path / "store"),
        "ROUTEIQ_PLUGIN_ROUTER_MODEL": NAME,
        "ROUTEIQ_PLUGIN_ROUTER_POLL_SECONDS": "0.2",
        "ROUTEIQ_PLUGIN_ROUTER_STARTUP_WAIT_SECONDS": "0.5",
        "ROUTEIQ_PLUGIN_ROUTER_WARM_UP": "false",
        "ROUTEIQ_PLUGIN_ROUTER_FALLBACK": "first",
    }.items():
        monkeypatch.setenv(var, value)
    monkeypatch.delenv("LLMROUTER_MODEL_HMAC_SECRET", raising=False)
    registry = Registry()
    manager = PluginManager(PLUGIN_PATH, registry)
    manager.startup()
    strategy = manager.plugin.strategy
    assert manager.health()["status"] == "degraded" and strategy.version is None
    gateway = LiteLLMRouter(deployments("auto", ["small-model", "large-model"]))

    def route():
        return registry.route(RoutingContext(gateway, "auto", metadata={EMBEDDING_KEY: PROBE}))

    assert route()[0]["litellm_params"]["model"] == "openai/small-model"  # the group's first
    metrics = strategy.metrics()
    assert metrics["fallback_reasons"]["not_loaded"] == 1 and metrics["load_failures"] >= 1
    publish(store, tmp_path, "1", flip=True)
    wait_for(lambda: strategy.version == "1")
    assert route()[0]["litellm_params"]["model"] == "openai/large-model"  # the router's choice
    assert manager.health()["status"] == "ok"
    manager.shutdown()
