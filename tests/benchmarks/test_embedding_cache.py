"""Embedding throughput through the DuckDB cache against SentenceTransformer.encode directly,
in the same process and run: cold cache (every text new) and warm cache (every text cached).
Targets (issue: labels, embeddings and training sets): cold >= 0.9x, warm >= 50x."""

import json
import time

import numpy as np

from routeiq_assets.telemetry.simulator import simulate_requests
from routeiq_assets.training.embeddings import embed_with_cache, load_encoder, minilm_encoder
from routeiq_assets.warehouse.store import connect
from tests.conftest import SHARED_DATA

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
BATCH = 64


def _texts(n: int) -> list[str]:
    texts = list(dict.fromkeys(r.query for r in simulate_requests(4 * n, seed=5)))
    table = SHARED_DATA / "train.json"
    if table.exists():
        texts += [r["question"] for r in json.loads(table.read_text())]
    return list(dict.fromkeys(texts))[:n]


def test_embedding_cache_throughput(tmp_path, machine_load):
    texts = _texts(2000)
    model = load_encoder(MODEL, "cpu")
    encoder = minilm_encoder(MODEL, "cpu", BATCH)
    model.encode(texts[:64], batch_size=BATCH)  # warm up the model itself

    def direct() -> float:
        started = time.perf_counter()
        model.encode(texts, batch_size=BATCH, convert_to_numpy=True, normalize_embeddings=True)
        return time.perf_counter() - started

    direct_before = direct()
    with connect(tmp_path / "cache.duckdb") as con:
        started = time.perf_counter()
        cold_x, cold = embed_with_cache(con, texts, MODEL, encoder)
        cold_s = time.perf_counter() - started
        started = time.perf_counter()
        warm_x, warm = embed_with_cache(con, texts, MODEL, encoder)
        warm_s = time.perf_counter() - started
    direct_after = direct()
    direct_s = (direct_before + direct_after) / 2
    assert cold.embedded == len(texts) and warm.cache_hits == len(texts)
    assert np.allclose(cold_x, warm_x, atol=1e-6)

    n = len(texts)
    print(f"\n{n} distinct texts, batch {BATCH}; {machine_load}")
    print(f"{'path':<34}{'seconds':>9}{'texts/s':>10}{'vs direct':>11}")
    for name, s in (
        ("direct encode (mean of 2)", direct_s),
        ("cache, cold", cold_s),
        ("cache, warm", warm_s),
    ):
        print(f"{name:<34}{s:>9.3f}{n / s:>10.0f}{direct_s / s:>10.2f}x")
    print(f"direct runs: {direct_before:.2f}s, {direct_after:.2f}s")
