"""Serving benchmarks: ``RouterRuntime.route()`` latency and the hot-reload swap time.

route(): p50/p99 of one call for knn (5,000 training queries) and mlp, with the embedding given
(baseline: the router's bare ``predict_quality`` + ``decide`` on the same input) and with the
MiniLM embedding computed inside route() (baseline: the bare encoder call on the same text).
Hot reload: ``refresh()`` of a runtime over a moto S3 server on 127.0.0.1 when the pointer moves
to a new version (conditional GET of the pointer, download, SHA-256 + HMAC verification, load),
and a refresh with the pointer unchanged (a 304). Routing never pauses during a reload: the swap
itself is one reference assignment. Check the printed load: these machines are shared.
"""

import time

import numpy as np
import pytest

from routeiq_assets.deployment.manifest import ManifestKeys, build_manifest
from routeiq_assets.deployment.publish import pointer_key, publish_version
from routeiq_assets.deployment.store import S3ArtifactStore, s3_client_for
from routeiq_assets.routers import decide
from routeiq_assets.serving.runtime import RouterRuntime
from tests.deployment.conftest import (  # noqa: F401
    bucket,
    s3_server,
    train_router,
    two_cluster_embeddings,
)

pytestmark = pytest.mark.benchmark
TEXTS = [
    "Write a Python function that merges two sorted lists",
    "What is the capital of Australia?",
    "Summarise the causes of the French revolution in three sentences",
    "Prove that there are infinitely many primes",
]


def percentiles(samples_ms: list[float]) -> str:
    p50, p99 = np.percentile(samples_ms, [50, 99])
    return f"p50 {p50:8.3f} ms  p99 {p99:8.3f} ms"


def timed(call, n: int) -> list[float]:
    out = []
    for i in range(n):
        start = time.perf_counter()
        call(i)
        out.append((time.perf_counter() - start) * 1000)
    return out


@pytest.mark.parametrize("kind", ["knn", "mlp"])
def test_route_latency(kind, tmp_path, machine_load):
    folder = train_router(tmp_path / kind, kind=kind, n=5000)
    runtime = RouterRuntime.from_folder(folder)
    x, _ = two_cluster_embeddings(n=2000, seed=1)
    router = runtime.router

    def bare(i):
        decide(router.predict_quality(x[i][None, :]), router.cost_, 0.0)

    given = timed(lambda i: runtime.route(embedding=x[i]), 2000)
    baseline = timed(bare, 2000)
    runtime.route(query=TEXTS[0])  # load MiniLM once
    encoder_only = timed(lambda i: runtime.embed([TEXTS[i % len(TEXTS)]]), 200)
    computed = timed(lambda i: runtime.route(query=TEXTS[i % len(TEXTS)]), 200)
    print(f"\n[{kind}] {machine_load}")
    print(f"  route(embedding given)     {percentiles(given)}")
    print(f"  bare predict + decide      {percentiles(baseline)}")
    print(f"  route(query, MiniLM)       {percentiles(computed)}")
    print(f"  bare MiniLM encode         {percentiles(encoder_only)}")
    assert np.percentile(given, 50) < 5.0


def test_hot_reload_swap_time(s3_server, bucket, tmp_path, machine_load):  # noqa: F811
    keys = ManifestKeys(hmac_secret="bench-secret")
    store = S3ArtifactStore(s3_client_for(s3_server["endpoint"]), bucket)
    folders = [train_router(tmp_path / f"r{i}", flip=bool(i % 2), n=5000) for i in range(2)]

    def publish(version: int) -> None:
        folder = folders[version % 2]
        manifest = build_manifest(folder, version=str(version), keys=keys)
        publish_version(store, "bench-router", str(version), folder, manifest)

    publish(0)
    runtime = RouterRuntime.from_store(store, pointer_key("bench-router"), keys=keys)
    size_kb = sum(p.stat().st_size for p in folders[0].iterdir()) / 1024
    swaps, unchanged = [], []
    for version in range(1, 11):
        publish(version)
        start = time.perf_counter()
        assert runtime.refresh() is True and runtime.version == str(version)
        swaps.append((time.perf_counter() - start) * 1000)
        unchanged += timed(lambda _i: runtime.refresh(), 5)
    runtime.close()
    print(f"\n[hot reload, {size_kb:.0f} KiB version over moto S3] {machine_load}")
    print(f"  refresh to a new version   {percentiles(swaps)}  (fetch + verify + load)")
    print(f"  refresh, pointer unchanged {percentiles(unchanged)}  (conditional GET, 304)")
