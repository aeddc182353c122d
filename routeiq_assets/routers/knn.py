"""k-nearest-neighbour router over query embeddings (cosine similarity).

For each query, the quality of model m is the similarity-weighted mean of m's observed quality
among the k nearest training queries, shrunk towards m's global mean by ``prior_weight``
pseudo-observations. Shrinkage matters for bandit telemetry: most neighbours observed only one
model, so without it a single lucky neighbour decides.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from routeiq_assets.routers.base import Router


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


class KNNRouter(Router):
    router_type = "knn"

    def __init__(self, k: int = 10, weighting: str = "similarity", prior_weight: float = 1.0):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if weighting not in {"uniform", "similarity"}:
            raise ValueError(f"weighting must be uniform or similarity, got {weighting!r}")
        self.k = k
        self.weighting = weighting
        self.prior_weight = prior_weight

    def fit(self, embeddings, quality, mask, model_names, cost, progress=None):
        if len(embeddings) == 0:
            raise ValueError("cannot fit a knn router on an empty training set")
        self.keys_ = _unit(np.asarray(embeddings))
        self.quality_ = np.asarray(quality, np.float32)
        self.mask_ = np.asarray(mask, bool)
        observed = self.mask_.sum(axis=0)
        overall = float(self.quality_[self.mask_].mean()) if self.mask_.any() else 0.0
        self.prior_ = np.where(
            observed > 0,
            (self.quality_ * self.mask_).sum(axis=0) / np.maximum(observed, 1),
            overall,
        ).astype(np.float32)
        self.model_names_ = list(model_names)
        self.cost_ = np.asarray(cost, np.float64)
        return self

    def predict_quality(self, embeddings: np.ndarray) -> np.ndarray:
        queries = _unit(np.atleast_2d(np.asarray(embeddings)))
        sims = queries @ self.keys_.T
        k = min(self.k, self.keys_.shape[0])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top_sims = np.take_along_axis(sims, top, axis=1)
        weights = (
            np.clip(top_sims, 0.0, None)
            if self.weighting == "similarity"
            else np.ones_like(top_sims)
        )
        obs = self.mask_[top].astype(np.float32) * weights[:, :, None]
        num = (obs * self.quality_[top]).sum(axis=1) + self.prior_weight * self.prior_
        den = obs.sum(axis=1) + self.prior_weight
        return num / np.maximum(den, 1e-12)

    def hyperparameters(self) -> dict[str, Any]:
        return {"k": self.k, "weighting": self.weighting, "prior_weight": self.prior_weight}

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "keys": self.keys_,
            "quality": self.quality_,
            "mask": self.mask_,
            "prior": self.prior_,
        }

    @classmethod
    def from_arrays(cls, hparams, arrays):
        router = cls(**hparams)
        router.keys_, router.quality_ = arrays["keys"], arrays["quality"]
        router.mask_, router.prior_ = arrays["mask"], arrays["prior"]
        return router
