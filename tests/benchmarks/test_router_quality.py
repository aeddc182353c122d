"""Router quality on the LLMRouter benchmark (full information, 20% held out by query hash) and
decision latency (issue: the router zoo). Both print tables; the machine's load is printed too.

Quality: every router type trained from its shipped config (device cpu; bert on its CPU sample),
its lambda sweep scored with the true quality and cost of every candidate: quality and cost at
its best lambda, AIQ, APGR, CPT(50%), CPT(80%); the best single model, the cheapest and the
oracle; and the peer, a plain LLMRouter-style KNN (scikit-learn KNeighborsClassifier on the
argmax-performance label, no cost), in the same run.
Latency: predict + decide for one query with its embedding given, 50,000 training examples,
against KNeighborsClassifier.predict on one sample. Check the printed load: a busy machine
moves p99 by milliseconds.
"""

import json
import time

import numpy as np
import pytest

from routeiq_assets.evaluation.metrics import (
    Reference,
    aiq,
    apgr,
    cpt,
    default_lambdas,
    sweep,
)
from routeiq_assets.routers import ROUTER_TYPES, decide
from routeiq_assets.routers.base import router_inputs
from routeiq_assets.routers.config import load_router_config
from routeiq_assets.telemetry.simulator import CHARS_PER_TOKEN, TABLE_OUTPUT_TOKENS
from routeiq_assets.training.embeddings import embed_with_cache, minilm_encoder
from routeiq_assets.training.labels import load_prices
from routeiq_assets.training.splits import split_for
from routeiq_assets.warehouse.store import connect
from tests.conftest import REPO_ROOT, SHARED_DATA

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def _table(tmp_path):
    records = json.loads((SHARED_DATA / "train.json").read_text())
    prices = load_prices(SHARED_DATA / "llm_candidates.json")
    names = sorted({m for r in records for m in r["scores"]})
    texts = [r["question"] for r in records]
    quality = np.array([[r["scores"].get(m, 0.0) for m in names] for r in records])
    tokens_in = np.array([len(t) // CHARS_PER_TOKEN for t in texts])[:, None]
    price_in = np.array([prices[m].input_price for m in names])[None, :]
    price_out = np.array([prices[m].output_price for m in names])[None, :]
    cost = (tokens_in * price_in + TABLE_OUTPUT_TOKENS * price_out) / 1e6
    with connect(tmp_path / "emb.duckdb") as con:
        emb, _ = embed_with_cache(con, texts, MODEL, minilm_encoder(MODEL, "cpu"))
    test = np.array([split_for(t, 0.0, 0.2) == "test" for t in texts])
    return names, texts, quality, cost, emb, test


def test_router_quality_on_the_benchmark(tmp_path, machine_load):
    if not (SHARED_DATA / "train.json").exists():
        pytest.skip("benchmark data not found")
    names, texts, quality, cost, emb, test = _table(tmp_path)
    tr, te = ~test, test
    train_texts = [t for t, keep in zip(texts, tr, strict=True) if keep]
    test_texts = [t for t, keep in zip(texts, te, strict=True) if keep]
    q_te, c_te = quality[te], cost[te]
    mean_cost = cost[tr].mean(axis=0)
    single = [(float(c_te[:, j].mean()), float(q_te[:, j].mean())) for j in range(len(names))]
    weak = min(single)  # cheapest model
    strong = max(single, key=lambda p: (p[1], -p[0]))  # best single model
    ref = Reference(weak=weak, strong=strong)
    c_min, c_max = min(p[0] for p in single), max(p[0] for p in single)
    oracle = (float(c_te[np.arange(len(q_te)), q_te.argmax(1)].mean()), float(q_te.max(1).mean()))

    rows = []
    for kind in ("knn", "mlp", "linear", "mf", "bert"):
        cfg = load_router_config(REPO_ROOT / "configs" / "routers" / f"{kind}.yaml")
        kwargs = cfg.hparam.router_kwargs()
        if "device" in kwargs:
            kwargs["device"] = "cpu"
        router = ROUTER_TYPES[kind](**kwargs)
        started = time.perf_counter()
        router.fit(
            router_inputs(router, train_texts, emb[tr]),
            quality[tr].astype(np.float32),
            np.ones_like(quality[tr], bool),
            names,
            mean_cost,
        )
        fit_s = time.perf_counter() - started
        predicted = router.predict_quality(router_inputs(router, test_texts, emb[te]))
        points = sweep(predicted, mean_cost, q_te, c_te, default_lambdas(mean_cost))
        best = max(points, key=lambda p: (p[1], -p[0]))
        rows.append(
            (
                kind,
                best,
                aiq(points, c_min, c_max),
                apgr(points, ref),
                cpt(points, ref, 0.5),
                cpt(points, ref, 0.8),
                fit_s,
                points,
            )
        )

    from sklearn.neighbors import KNeighborsClassifier

    peer = KNeighborsClassifier(n_neighbors=5).fit(emb[tr], quality[tr].argmax(1))
    chosen = peer.predict(emb[te])
    peer_point = (
        float(c_te[np.arange(len(chosen)), chosen].mean()),
        float(q_te[np.arange(len(chosen)), chosen].mean()),
    )
    random_point = (float(c_te.mean()), float(q_te.mean()))  # expected value of uniform random
    rows.append(
        (
            "baseline: random (uniform)",
            random_point,
            aiq([random_point], c_min, c_max),
            apgr([random_point], ref),
            cpt([random_point], ref, 0.5),
            cpt([random_point], ref, 0.8),
            float("nan"),
            [random_point],
        )
    )
    rows.append(
        (
            "peer: sklearn KNN on argmax",
            peer_point,
            aiq([peer_point], c_min, c_max),
            apgr([peer_point], ref),
            cpt([peer_point], ref, 0.5),
            cpt([peer_point], ref, 0.8),
            float("nan"),
            [peer_point],
        )
    )

    print(
        f"\nLLMRouter benchmark: {tr.sum()} train / {te.sum()} test queries, {len(names)} "
        f"models; {machine_load}"
    )
    print(
        f"best single model {names[single.index(strong)]}: quality {strong[1]:.4f} cost "
        f"{strong[0]:.6f}; cheapest {names[single.index(weak)]}: {weak[1]:.4f} / {weak[0]:.6f};"
        f" oracle {oracle[1]:.4f} / {oracle[0]:.6f}"
    )
    print(
        f"{'router':<30}{'quality':>9}{'cost':>11}{'AIQ':>8}{'APGR':>8}{'CPT50':>8}"
        f"{'CPT80':>8}{'fit s':>8}"
    )
    for kind, best, a, g, c50, c80, fit_s, _ in rows:
        print(
            f"{kind:<30}{best[1]:>9.4f}{best[0]:>11.6f}{a:>8.4f}{g:>8.4f}{c50:>8.3f}"
            f"{c80:>8.3f}{fit_s:>8.1f}"
        )
    ours = rows[:-2]
    beats_single = [
        k for k, *_, pts in ours if any(q > strong[1] and c < strong[0] for c, q in pts)
    ]
    best_apgr = max(ours, key=lambda r: r[3])
    print(
        json.dumps(
            {
                "routers_beating_best_single_at_lower_cost": beats_single,
                "best_apgr_router": best_apgr[0],
                "best_apgr_vs_peer": round(best_apgr[3] - rows[-1][3], 4),
            }
        )
    )


def test_decision_latency(machine_load):
    # Query embeddings cluster by topic; isotropic noise is the worst case for the knn index
    # (k-means cells degenerate), so the synthetic set is 500 topics with noise around each.
    rng = np.random.default_rng(0)
    n, dim, models = 50_000, 384, 9
    topics = rng.normal(size=(500, dim))
    x = (topics[rng.integers(0, 500, n)] + rng.normal(0, 0.6, (n, dim))).astype(np.float32)
    q = (rng.random((n, models)) < 0.5).astype(np.float32)
    mask = np.ones_like(q, bool)
    cost = np.linspace(0.1, 1.0, models)
    queries = (topics[rng.integers(0, 500, 2000)] + rng.normal(0, 0.6, (2000, dim))).astype(
        np.float32
    )

    def timings(fn) -> tuple[float, float]:
        for qv in queries[:20]:
            fn(qv)
        samples = []
        for qv in queries:
            started = time.perf_counter()
            fn(qv)
            samples.append((time.perf_counter() - started) * 1000)
        return float(np.percentile(samples, 50)), float(np.percentile(samples, 99))

    from sklearn.neighbors import KNeighborsClassifier

    peer = KNeighborsClassifier(n_neighbors=5).fit(x, q.argmax(1))
    results = {"sklearn KNeighborsClassifier.predict": timings(lambda v: peer.predict(v[None]))}
    fast = {
        "knn": {"k": 10},
        "linear": {"alpha": 1.0},
        "mlp": {"epochs": 1, "device": "cpu"},
        "mf": {"epochs": 1, "device": "cpu"},
    }
    for kind, kwargs in fast.items():
        router = ROUTER_TYPES[kind](**kwargs).fit(
            x, q, mask, [f"m{i}" for i in range(models)], cost
        )
        results[kind] = timings(
            lambda v, r=router: decide(r.predict_quality(v[None]), r.cost_, 0.0)
        )
    print(f"\ndecision latency, one query, embedding given, {n} training examples; {machine_load}")
    print(f"{'router':<40}{'p50 ms':>9}{'p99 ms':>9}")
    for name, (p50, p99) in results.items():
        print(f"{name:<40}{p50:>9.3f}{p99:>9.3f}")
