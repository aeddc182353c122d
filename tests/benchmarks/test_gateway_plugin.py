"""Gateway plugin decision latency: p50/p99 of one ``select_deployment(context)`` call, made as
RouteIQ's routing pipeline makes it (tests/serving/routeiq_fakes.py), with the query's embedding
given, for a knn router over 50,000 training queries (384-d, its inverted-file index built).

Three rows from the same process: the bare ``RouterRuntime.route()`` (baseline), the plugin
greedy with no telemetry sink, and the plugin exploring (epsilon-greedy, 10%) with every
decision's ``routeiq.router_decision.v1`` payload built, serialised and appended to a JSONL
decision log. Each row has wall-clock and thread CPU-time percentiles: on a shared machine the
wall-clock tail is mostly the time other processes held the cores (the load is printed beside).
numpy's BLAS is limited to one thread, as the plugin does at startup. The issue's target: p99 at
most 2 ms with the embedding given; the assertion is on CPU time, the wall clock is reported.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from routeiq_assets.routers import ROUTER_TYPES, save_router
from routeiq_assets.serving.gateway_plugin import (
    EMBEDDING_KEY,
    PluginConfig,
    RouterStrategy,
    limit_blas_threads,
)
from routeiq_assets.serving.runtime import RouterRuntime
from routeiq_assets.settings import DEFAULT_EMBEDDING_MODEL
from tests.serving.routeiq_fakes import LiteLLMRouter, Registry, RoutingContext, deployments

pytestmark = pytest.mark.benchmark
TRAINING = int(os.environ.get("ROUTEIQ_BENCH_KNN_QUERIES", "50000"))
DIM = 384
MODELS = ["gpt-4o-mini", "gpt-4o", "claude-haiku", "deepseek-coder"]
DECISIONS = 5000


def clustered(n: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    x = centres[rng.integers(0, len(centres), n)] + rng.normal(0, 0.6, (n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    p50, p99 = np.percentile(samples_ms, [50, 99])
    return float(p50), float(p99)


def timed(call, items) -> tuple[list[float], list[float]]:
    """Wall-clock and thread CPU milliseconds of ``call(item)`` per item."""
    wall, cpu = [], []
    for item in items:
        w, c = time.perf_counter(), time.thread_time()
        call(item)
        cpu.append((time.thread_time() - c) * 1000)
        wall.append((time.perf_counter() - w) * 1000)
    return wall, cpu


def test_plugin_decision_latency(tmp_path, machine_load):
    blas = limit_blas_threads(1)
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 1, (64, DIM)) / np.sqrt(DIM) * 3
    x = clustered(TRAINING, rng, centres)
    quality = rng.random((TRAINING, len(MODELS))).astype(np.float32)
    mask = rng.random(quality.shape) < 0.3
    started = time.perf_counter()
    router = ROUTER_TYPES["knn"](k=10).fit(x, quality, mask, MODELS, np.array([1, 10, 3, 2]) * 1e-3)
    fit_s = time.perf_counter() - started
    extra = {"embedding_model": DEFAULT_EMBEDDING_MODEL, "embedding_dim": DIM}
    save_router(router, tmp_path / "knn", extra={**extra, "default_lambda": 2.0})
    runtime = RouterRuntime.from_folder(tmp_path / "knn")
    queries = clustered(DECISIONS, rng, centres)
    gateway = LiteLLMRouter(deployments("auto", MODELS))

    def plugin_timings(config: PluginConfig) -> tuple[list[float], list[float]]:
        registry = Registry()
        strategy = RouterStrategy(config, runtime)
        registry.register_strategy(strategy.name, strategy)
        contexts = [RoutingContext(gateway, "auto", metadata={EMBEDDING_KEY: q}) for q in queries]
        routed = []
        out = timed(lambda context: routed.append(registry.route(context)), contexts)
        assert all(deployment is not None for deployment, _ in routed)
        assert strategy.metrics()["fallbacks"] == 0
        strategy.close()
        return out

    def bare() -> tuple[list[float], list[float]]:
        return timed(lambda q: runtime.route(embedding=q, candidates=MODELS), queries)

    log_path = tmp_path / "decisions.jsonl"
    greedy = PluginConfig(folder="bench", span_events=False)
    exploring = PluginConfig(
        folder="bench", exploration=0.1, seed=0, span_events=False, decision_log=str(log_path)
    )
    bare()  # warm up
    rows = {
        "RouterRuntime.route() (baseline)": bare(),
        "plugin, greedy, no telemetry sink": plugin_timings(greedy),
        "plugin, 10% exploration, JSONL decision log": plugin_timings(exploring),
    }
    assert len(log_path.read_text().splitlines()) == DECISIONS
    print(f"\n[gateway plugin, knn over {TRAINING} queries, fit {fit_s:.1f} s] {machine_load}")
    print(f"  {'':45s} {'wall p50':>9s} {'wall p99':>9s} {'CPU p50':>9s} {'CPU p99':>9s}")
    for name, (wall, cpu) in rows.items():
        figures = (*percentiles(wall), *percentiles(cpu))
        print(f"  {name:45s} " + " ".join(f"{f:6.3f} ms" for f in figures))
    blas.restore_original_limits()
    assert percentiles(rows["plugin, 10% exploration, JSONL decision log"][1])[1] <= 2.0
