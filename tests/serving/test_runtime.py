"""The serving runtime against a real HTTP S3 endpoint (moto server): hot reload under load,
tampered, unsigned-with-key, wrongly signed and unloadable versions rejected while the old one
keeps serving, Ed25519 verification with the public key only, and the decision rules."""

from __future__ import annotations

import base64
import json
import threading
import time

import boto3
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from routeiq_assets.deployment.manifest import ManifestKeys, build_manifest
from routeiq_assets.deployment.publish import pointer_key, publish_version
from routeiq_assets.deployment.store import S3ArtifactStore, s3_client_for
from routeiq_assets.serving.runtime import RouterRuntime
from tests.deployment.conftest import PROBE, train_router

pytestmark = pytest.mark.slow
NAME = "knn-router"


def publish(store, tmp_path, version: str, flip: bool = False, keys=None, kind="knn"):
    folder = train_router(tmp_path / f"v{version}", kind=kind, flip=flip)
    manifest = build_manifest(folder, version=version, description=f"v{version}", keys=keys)
    return publish_version(store, NAME, version, folder, manifest)


@pytest.fixture
def store(s3_server, bucket) -> S3ArtifactStore:
    return S3ArtifactStore(s3_client_for(s3_server["endpoint"]), bucket)


def test_hot_reload_while_a_thread_routes(store, tmp_path):
    publish(store, tmp_path, "1")
    runtime = RouterRuntime.from_store(store, pointer_key(NAME), poll_interval_s=0.2)
    seen: list[tuple[str, str]] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def keep_routing() -> None:
        while not stop.is_set():
            try:
                decision = runtime.route(embedding=PROBE)
                seen.append((decision.version, decision.model))
            except BaseException as exc:  # any failed call fails the test
                errors.append(exc)

    worker = threading.Thread(target=keep_routing)
    with runtime.start_polling():
        worker.start()
        try:
            time.sleep(0.5)
            publish(store, tmp_path, "2", flip=True)
            deadline = time.monotonic() + 30
            while runtime.version != "2" and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.3)
        finally:
            stop.set()
            worker.join()
        assert runtime.refresh() is False  # unchanged pointer: nothing loaded
    assert not errors, errors[:3]
    assert runtime.version == "2" and runtime.swaps == 1 and runtime.last_swap_ms > 0
    assert set(seen) == {("1", "small-model"), ("2", "large-model")}  # never a mix
    first_v2 = seen.index(("2", "large-model"))
    assert all(v == "2" for v, _ in seen[first_v2:])  # no flapping back
    _, etag = store.get_if_changed(pointer_key(NAME))
    assert store.get_if_changed(pointer_key(NAME), etag)[0] is None  # 304 Not Modified


def test_bad_versions_are_rejected_and_the_old_one_keeps_serving(store, tmp_path, s3_server):
    publish(store, tmp_path, "1")
    runtime = RouterRuntime.from_store(store, pointer_key(NAME))
    s3 = boto3.client("s3", endpoint_url=s3_server["endpoint"])

    publish(store, tmp_path, "2", flip=True)
    s3.put_object(Bucket=store.bucket, Key=f"models/{NAME}/2/weights.npz", Body=b"tampered")
    assert runtime.refresh() is False
    assert "weights.npz: sha256" in runtime.last_error
    assert runtime.route(embedding=PROBE).model == "small-model" and runtime.version == "1"

    broken = tmp_path / "broken"
    train_router(broken, flip=True)
    (broken / "weights.npz").write_bytes(b"not an npz, but hashed in the manifest")
    publish_version(store, NAME, "3", broken, build_manifest(broken, version="3"))
    assert runtime.refresh() is False and runtime.version == "1"
    assert runtime.last_error  # the load failed after verification passed

    publish(store, tmp_path, "4", flip=True)
    assert runtime.refresh() is True and runtime.version == "4" and runtime.last_error is None
    assert runtime.route(embedding=PROBE).model == "large-model"
    runtime.close()


def test_signatures_hmac_and_ed25519(store, tmp_path):
    signer = ManifestKeys(hmac_secret="the-right-secret")
    publish(store, tmp_path, "1", keys=signer)
    with pytest.raises(ValueError, match="LLMROUTER_MODEL_HMAC_SECRET"):
        RouterRuntime.from_store(store, pointer_key(NAME))  # signed, no key: refused
    runtime = RouterRuntime.from_store(store, pointer_key(NAME), keys=signer)

    publish(store, tmp_path, "2", flip=True, keys=ManifestKeys(hmac_secret="a-wrong-secret"))
    assert runtime.refresh() is False and "does not verify" in runtime.last_error
    publish(store, tmp_path, "3", flip=True)  # unsigned while a key is configured
    assert runtime.refresh() is False and "'none'" in runtime.last_error
    assert runtime.version == "1"

    private = ed25519.Ed25519PrivateKey.generate()
    public_b64 = base64.b64encode(private.public_key().public_bytes_raw()).decode()
    private_b64 = base64.b64encode(private.private_bytes_raw()).decode()
    signing = ManifestKeys.from_env({"LLMROUTER_MODEL_PRIVATE_KEY_B64": private_b64})
    assert signing.signature_type == "ed25519"
    publish(store, tmp_path, "4", flip=True, keys=signing)
    verifying = ManifestKeys.from_env({"LLMROUTER_MODEL_PUBLIC_KEY_B64": public_b64})
    gateway_side = RouterRuntime.from_store(store, pointer_key(NAME), keys=verifying)
    assert gateway_side.version == "4"
    manifest = json.loads(store.get_bytes(f"models/{NAME}/4/manifest.json"))
    assert manifest["signature_type"] == "ed25519" and private_b64 not in json.dumps(manifest)
    other = ManifestKeys(public_key=ed25519.Ed25519PrivateKey.generate().public_key())
    with pytest.raises(ValueError, match="ed25519"):
        RouterRuntime.from_store(store, pointer_key(NAME), keys=other)


def test_decision_rules(tmp_path):
    runtime = RouterRuntime.from_folder(train_router(tmp_path / "r", flip=True))
    # +e0 is large-model's cluster; costs are small 0.001, large 0.01
    assert runtime.route(embedding=PROBE).model == "large-model"
    assert runtime.route(embedding=PROBE, lam=1000.0).model == "small-model"
    capped = runtime.route(embedding=PROBE, max_cost=0.005)
    assert (capped.model, capped.rule) == ("small-model", "max_cost")
    roomy = runtime.route(embedding=PROBE, max_cost=1.0)
    assert (roomy.model, roomy.rule) == ("large-model", "max_cost")
    broke = runtime.route(embedding=PROBE, max_cost=0.0001)
    assert (broke.model, broke.rule) == ("small-model", "max_cost_exceeded")
    only = runtime.route(embedding=PROBE, candidates=["small-model", "unknown"])
    assert only.model == "small-model" and set(only.scores) == {"small-model", "large-model"}
    assert only.latency_ms > 0 and np.isfinite(list(only.scores.values())).all()
    with pytest.raises(ValueError, match="none of the candidates"):
        runtime.route(embedding=PROBE, candidates=["unknown"])


def test_from_folder_refuses_files_the_manifest_does_not_cover(tmp_path):
    from routeiq_assets.deployment.manifest import ManifestError

    folder = train_router(tmp_path / "r")
    assert RouterRuntime.from_folder(folder).version is None  # no manifest, no key: MLflow's case
    keys = ManifestKeys(hmac_secret="k")
    with pytest.raises(ManifestError, match="no manifest.json"):
        RouterRuntime.from_folder(folder, keys=keys)  # a key is set: nothing unverified loads
    # a signed manifest that covers router.json only; weights.npz is then added beside it
    (folder / "weights.npz").rename(tmp_path / "weights.npz")
    manifest = build_manifest(folder, version="1", keys=keys)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (tmp_path / "weights.npz").rename(folder / "weights.npz")
    with pytest.raises(ManifestError, match="weights.npz"):
        RouterRuntime.from_folder(folder, keys=keys)


def test_pointer_must_name_the_version_its_manifest_signs(store, tmp_path):
    publish(store, tmp_path, "1")
    publish(store, tmp_path, "2", flip=True)
    runtime = RouterRuntime.from_store(store, pointer_key(NAME))
    assert runtime.version == "2"
    forged = {"version": "3", "manifest": f"models/{NAME}/1/manifest.json", "previous": []}
    store.put_bytes(pointer_key(NAME), json.dumps(forged).encode())
    assert runtime.refresh() is False and "version" in runtime.last_error
    assert runtime.version == "2" and runtime.route(embedding=PROBE).model == "large-model"
    runtime.close()


def test_a_failed_first_load_leaves_no_temp_folder(store, tmp_path, monkeypatch):
    import tempfile

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    publish(store, tmp_path, "1", keys=ManifestKeys(hmac_secret="k"))
    with pytest.raises(ValueError, match="LLMROUTER_MODEL_HMAC_SECRET"):
        RouterRuntime.from_store(store, pointer_key(NAME))
    assert list(scratch.iterdir()) == []


def test_a_new_embedding_model_is_loaded_before_the_swap(store, tmp_path):
    """A version that embeds with another model: its encoder is loaded by refresh(), in the
    polling thread, before the swap, so the first request after it does not wait for it; one
    whose encoder cannot load is refused and the old version keeps serving."""
    from routeiq_assets.deployment.manifest import build_manifest
    from routeiq_assets.training.embeddings import load_encoder

    publish(store, tmp_path, "1")
    runtime = RouterRuntime.from_store(store, pointer_key(NAME))

    def publish_with(version: str, embedding_model: str) -> None:
        folder = train_router(tmp_path / f"v{version}")
        meta = json.loads((folder / "router.json").read_text())
        (folder / "router.json").write_text(
            json.dumps({**meta, "embedding_model": embedding_model})
        )
        publish_version(store, NAME, version, folder, build_manifest(folder, version=version))

    publish_with("2", "all-MiniLM-L6-v2")  # the packaged model under its other name
    load_encoder.cache_clear()
    assert runtime.refresh() is True and runtime.embedding_model == "all-MiniLM-L6-v2"
    assert load_encoder.cache_info().currsize == 1  # loaded before the swap
    publish_with("3", str(tmp_path / "no-such-model"))
    assert runtime.refresh() is False and runtime.version == "2"
    assert "no-such-model" in runtime.last_error and runtime.failures == 1
    runtime.close()


def test_route_watch_prints_each_switch_and_refusal(store, tmp_path, s3_server, bucket):
    """`routeiq route --query ... --watch SECONDS` (the seed guide's hot-reload smoke test):
    the first decision, then a line at each version switch with the decision under the new
    version, and a line for a version refused (tampered) while the old one serves; Ctrl-C ends
    it with exit 0."""
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO_ROOT

    publish(store, tmp_path, "1")
    env = dict(os.environ, ROUTEIQ_S3_ENDPOINT_URL=s3_server["endpoint"], HF_HUB_OFFLINE="1")
    watcher = subprocess.Popen(
        [sys.executable, "-m", "routeiq_assets.cli", "route", "--model-s3-bucket", bucket,
         "--model-s3-key", f"models/{NAME}/", "--query", "Say hello", "--watch", "0.2"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        first = json.loads(watcher.stdout.readline())
        assert first["version"] == "1" and first["latency_ms"] == first["timings"]["decision_ms"]
        publish(store, tmp_path, "2", flip=True)
        switch = json.loads(watcher.stdout.readline())
        assert switch["event"] == "switch" and (switch["from"], switch["to"]) == ("1", "2")
        assert (
            switch["decision"]["version"] == "2"
            and "router_load_ms" not in (switch["decision"]["timings"])
        )
        folder = train_router(tmp_path / "v3")
        manifest = build_manifest(folder, version="3")
        (folder / "weights.npz").write_bytes(b"tampered after the manifest")
        publish_version(store, NAME, "3", folder, manifest)
        refused = json.loads(watcher.stdout.readline())
        assert refused["event"] == "refused" and refused["serving"] == "2"
        assert "weights.npz" in refused["error"]
    finally:
        watcher.send_signal(signal.SIGINT)
        _, stderr = watcher.communicate(timeout=60)
    assert watcher.returncode == 0, stderr[-2000:]
