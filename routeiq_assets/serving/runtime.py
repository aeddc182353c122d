"""A router runtime: a verified router folder plus the embedding model, answering ``route()``."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from routeiq_assets.deployment.manifest import MANIFEST_NAME, verify_manifest
from routeiq_assets.routers.base import Router, decide, load_router, read_router_meta


@dataclass(frozen=True)
class RouteDecision:
    model: str
    scores: dict[str, float]
    latency_ms: float


class RouterRuntime:
    """Routes queries with one loaded router; embeds text with the router's embedding model."""

    def __init__(self, router: Router, embedding_model: str, default_lambda: float = 0.0):
        self.router = router
        self.embedding_model = embedding_model
        self.default_lambda = default_lambda

    @classmethod
    def from_folder(cls, folder: Path, hmac_secret: str | None = None) -> RouterRuntime:
        folder = Path(folder)
        manifest_path = folder / MANIFEST_NAME
        if manifest_path.exists():
            manifest = json.loads(manifest_path.read_text())
            verify_manifest(manifest, lambda p: (folder / p).read_bytes(), hmac_secret)
        meta = read_router_meta(folder)
        return cls(load_router(folder), meta["embedding_model"], meta.get("default_lambda", 0.0))

    def embed(self, texts: list[str]) -> np.ndarray:
        from routeiq_assets.training.embeddings import minilm_encoder

        return minilm_encoder(self.embedding_model, "cpu")(texts)

    def route(
        self,
        query: str | None = None,
        embedding: np.ndarray | None = None,
        lam: float | None = None,
        candidates: list[str] | None = None,
    ) -> RouteDecision:
        started = time.perf_counter()
        if self.router.input_kind == "text":
            if query is None:
                raise ValueError(f"a {self.router.router_type} router reads the query text")
            inputs = [query]
        elif embedding is None:
            if query is None:
                raise ValueError("route() needs a query text or an embedding")
            inputs = self.embed([query])
        else:
            inputs = np.asarray(embedding)[None, :]
        names = self.router.model_names_
        available = None
        if candidates is not None:
            unknown = set(candidates) - set(names)
            if unknown == set(candidates):
                raise ValueError(f"none of the candidates {candidates} is known to this router")
            available = np.array([n in candidates for n in names])
        quality = self.router.predict_quality(inputs)
        idx = int(
            decide(
                quality, self.router.cost_, self.default_lambda if lam is None else lam, available
            )[0]
        )
        return RouteDecision(
            names[idx],
            {n: float(q) for n, q in zip(names, quality[0], strict=True)},
            (time.perf_counter() - started) * 1000,
        )
