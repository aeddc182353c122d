"""The loop closed: the gateway plugin, exploring, routes the questions of a full-information
table; its decision events are written as OTLP telemetry with each question's LLM call (the
served model's score for that question is the outcome), ingested, labelled with the logged
propensities, and the off-policy estimate of a second router lands within its 95% interval of
that router's true value on the same questions (known here: the table scores every model).

The decision payload is the plugin's own, unchanged but for its outcome status, which the
gateway only knows once the call is done (RouteIQ's decision events carry the call's outcome);
queries are embedded by a small hashed bag of words instead of MiniLM, to keep the test short.
"""

from __future__ import annotations

import json
import re
import zlib
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from routeiq_assets.evaluation.offpolicy import estimate_with_intervals
from routeiq_assets.routers import ROUTER_TYPES, decide, save_router
from routeiq_assets.serving.gateway_plugin import PluginConfig, RouterStrategy
from routeiq_assets.serving.runtime import RouterRuntime
from routeiq_assets.telemetry import simulator
from routeiq_assets.telemetry.raw_store import land_file
from routeiq_assets.telemetry.simulator import (
    DEFAULT_START,
    TABLE_OUTPUT_TOKENS,
    SimulatedRequest,
    load_table,
    write_otlp_files,
)
from routeiq_assets.training.labels import LabelingPolicy, build_routing_examples, load_prices
from routeiq_assets.warehouse.ingest import ingest_pending, register_raw_file
from routeiq_assets.warehouse.store import connect
from tests.serving.routeiq_fakes import LiteLLMRouter, RoutingContext, deployments

pytestmark = pytest.mark.slow
DIM = 64
LOGGED = 2500  # questions routed by the plugin
TRAIN = 1500  # questions the two routers learn from (others)


def featurize(texts: list[str]) -> np.ndarray:
    """A hashed bag of words, unit length: a stand-in for the sentence embedding."""
    out = np.zeros((len(texts), DIM), np.float32)
    for i, text in enumerate(texts):
        for token in re.findall(r"[a-z0-9]+", text.lower()):
            out[i, zlib.crc32(token.encode()) % DIM] += 1.0
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def fit(kind: str, x, records, names, catalog, folder: Path, **hparams) -> Path:
    quality = np.array([[r["scores"][n] for n in names] for r in records], np.float32)
    price = {m.name: m.input_price + m.output_price for m in catalog}
    cost = np.array([price[n] for n in names]) * 1e-6
    router = ROUTER_TYPES[kind](**hparams).fit(x, quality, np.ones_like(quality, bool), names, cost)
    extra = {"embedding_model": "hashed-bag-of-words", "embedding_dim": DIM, "default_lambda": 0.0}
    save_router(router, folder, extra=extra)
    return folder


def test_plugin_decisions_ingested_and_valued_off_policy(benchmark_table, tmp_path, monkeypatch):
    records, catalog = load_table(*benchmark_table)
    rng = np.random.default_rng(1)
    order = rng.permutation(len(records))
    logged = [records[i] for i in order[:LOGGED]]
    train = [records[i] for i in order[LOGGED : LOGGED + TRAIN]]
    names = sorted(logged[0]["scores"])
    x_train = featurize([r["question"] for r in train])
    x_logged = featurize([r["question"] for r in logged])
    logging_router = fit("knn", x_train, train, names, catalog, tmp_path / "a", k=25)
    target = ROUTER_TYPES["knn"](k=5).fit(
        x_train[::2],
        np.array([[r["scores"][n] for n in names] for r in train[::2]], np.float32),
        np.ones((len(train[::2]), len(names)), bool),
        names,
        np.zeros(len(names)),
    )

    runtime = RouterRuntime.from_folder(logging_router)
    monkeypatch.setattr(runtime, "embed", lambda texts, embedding_model=None: featurize(texts))
    strategy = RouterStrategy(
        PluginConfig(folder="unused", exploration=0.3, seed=1, span_events=False), runtime
    )
    payloads: list[dict] = []
    strategy.listeners.append(payloads.append)
    gateway = LiteLLMRouter(deployments("auto", names, provider="nim"))
    by_name = {m.name: m for m in catalog}
    requests, decided = [], {}
    for i, record in enumerate(logged):
        messages = [{"role": "user", "content": record["question"]}]
        decision = strategy.decide(RoutingContext(gateway, "auto", messages=messages))
        assert decision.model is not None and decision.propensity is not None
        payload = payloads[-1]
        score = float(record["scores"][decision.model])
        status = "success" if score >= 0.5 else "failure"
        ids = rng.integers(0, 2**63, 3)
        req = SimulatedRequest(
            query=record["question"],
            task="benchmark",
            candidates=tuple(by_name[n] for n in names),
            available=(True,) * len(names),
            selected=by_name[decision.model],
            propensity=decision.propensity,
            incumbent=decision.greedy_model,
            quality=score,
            status=status,
            input_tokens=max(1, len(record["question"]) // 4),
            output_tokens=TABLE_OUTPUT_TOKENS,
            duration_ms=500.0,
            timestamp=DEFAULT_START + timedelta(seconds=3 * i),
            trace_id=f"{ids[0]:016x}{ids[1]:016x}",
            decision_span_id=f"{ids[2]:016x}",
            llm_span_id=f"{ids[2] ^ 1:016x}",
            event_id=payload["event_id"],
        )
        payload["outcome"]["status"] = status  # known once the call is done
        payload.update(trace_id=req.trace_id, span_id=req.decision_span_id)
        decided[req.event_id] = payload
        requests.append(req)

    # the telemetry: the simulator's spans for each call, with the plugin's decision event
    monkeypatch.setattr(simulator, "decision_payload", lambda req, **_: decided[req.event_id])
    files = write_otlp_files(iter(requests), tmp_path / "otlp", "plugin")
    db = tmp_path / "loop.duckdb"
    with connect(db) as con:
        for f in files:
            register_raw_file(con, land_file(f, tmp_path / "raw"))
        ingest_pending(con)
        prices = benchmark_table[1]
        build_routing_examples(con, load_prices(prices), LabelingPolicy(prices_file=prices))
        rows = con.execute(
            "SELECT trace_id, model_name, quality, propensity FROM routing_examples"
            " WHERE is_logged ORDER BY timestamp_utc"
        ).fetchall()
    assert len(rows) == LOGGED
    by_trace = {r.trace_id: i for i, r in enumerate(requests)}
    index = np.array([by_trace[t] for t, *_ in rows])
    logged_model = np.array([names.index(m) for _, m, _, _ in rows])
    reward = np.array([q for *_, q, _ in rows], np.float64)
    propensity = np.array([p for *_, p in rows], np.float64)
    # ingestion read back the propensity the plugin logged for each decision
    expected = np.array([requests[i].propensity for i in index])
    assert np.allclose(propensity, expected)
    assert np.isin(propensity, [0.7, 0.3 / (len(names) - 1)]).all()  # 1 - e, or e / (k - 1)

    predicted = target.predict_quality(x_logged[index])
    chosen = decide(predicted, target.cost_, 0.0)
    truth = np.array([[float(logged[i]["scores"][n] >= 0.5) for n in names] for i in index])
    true_value = float(truth[np.arange(len(index)), chosen].mean())
    intervals = estimate_with_intervals(chosen, logged_model, reward, propensity, predicted, 300)
    for name in ("ips", "snips", "dr"):
        found = intervals[name]
        assert found.low <= true_value <= found.high, (name, found, true_value)
    # the target router differs from the logging one often enough for the test to mean something
    greedy = np.array([names.index(requests[i].incumbent) for i in index])
    assert 0.1 < (chosen != greedy).mean() < 0.9
    print(json.dumps({"true": true_value, **{k: v.__dict__ for k, v in intervals.items()}}))
