"""Gateway plugin decision latency: p50/p99 of one ``select_deployment(context)`` call, made as
RouteIQ's routing pipeline makes it (tests/serving/routeiq_fakes.py), with the query's embedding
given, for a knn router over 50,000 training queries (384-d, its inverted-file index built).

Three rows from the same process: the bare ``RouterRuntime.route()`` (baseline), the plugin
greedy with no telemetry sink, and the plugin exploring (epsilon-greedy, 10%) with every
decision's ``routeiq.router_decision.v1`` payload built, serialised and appended to a JSONL
decision log. The issue's target: p99 at most 2 ms with the embedding given.
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from routeiq_assets.routers import ROUTER_TYPES, save_router
from routeiq_assets.serving.gateway_plugin import EMBEDDING_KEY, PluginConfig, RouterStrategy
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


def test_plugin_decision_latency(tmp_path, machine_load):
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

    def plugin_timings(config: PluginConfig) -> list[float]:
        registry = Registry()
        strategy = RouterStrategy(config, runtime)
        registry.register_strategy(strategy.name, strategy)
        out = []
        for q in queries:
            context = RoutingContext(gateway, "auto", metadata={EMBEDDING_KEY: q})
            start = time.perf_counter()
            deployment, error = registry.route(context)
            out.append((time.perf_counter() - start) * 1000)
            assert deployment is not None, error
        assert strategy.metrics()["fallbacks"] == 0
        return out

    def bare() -> list[float]:
        out = []
        for q in queries:
            start = time.perf_counter()
            runtime.route(embedding=q, candidates=MODELS)
            out.append((time.perf_counter() - start) * 1000)
        return out

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
    for name, samples in rows.items():
        p50, p99 = percentiles(samples)
        print(f"  {name:45s} p50 {p50:7.3f} ms  p99 {p99:7.3f} ms")
    assert percentiles(rows["plugin, 10% exploration, JSONL decision log"])[1] <= 2.0
