"""k-nearest-neighbour router over query embeddings (cosine similarity).

For each query, the quality of model m is the similarity-weighted mean of m's observed quality
among the k nearest training queries, shrunk towards m's global mean by ``prior_weight``
pseudo-observations. Shrinkage matters for bandit telemetry: most neighbours observed only one
model, so without it a single lucky neighbour decides.

From ``index_min_examples`` training queries on, an inverted-file index (k-means cells over the
unit vectors) keeps one decision well under a millisecond: a query is compared with the cell
centroids, then exactly with the members of its ``nprobe`` nearest cells. Below that size the
search is exact and brute force.
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

    def __init__(
        self,
        k: int = 10,
        weighting: str = "similarity",
        prior_weight: float = 1.0,
        index_min_examples: int = 20000,
        nprobe: int = 16,
    ):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if weighting not in {"uniform", "similarity"}:
            raise ValueError(f"weighting must be uniform or similarity, got {weighting!r}")
        self.k = k
        self.weighting = weighting
        self.prior_weight = prior_weight
        self.index_min_examples, self.nprobe = index_min_examples, nprobe

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
        self.centroids_ = np.zeros((0, self.keys_.shape[1]), np.float32)
        self.order_ = np.zeros(0, np.int64)
        self.offsets_ = np.zeros(1, np.int64)
        if len(self.keys_) >= self.index_min_examples:
            self._build_index(progress)
        return self

    def _build_index(self, progress) -> None:
        from sklearn.cluster import MiniBatchKMeans

        cells = int(4 * np.sqrt(len(self.keys_)))
        kmeans = MiniBatchKMeans(n_clusters=cells, random_state=0, n_init=1, batch_size=4096)
        labels = kmeans.fit_predict(self.keys_)
        self.centroids_ = _unit(kmeans.cluster_centers_)
        self.order_ = np.argsort(labels, kind="stable").astype(np.int64)
        self.offsets_ = np.searchsorted(labels[self.order_], np.arange(cells + 1)).astype(np.int64)
        self._cell_major()
        if progress:
            progress(f"knn index: {cells} cells over {len(self.keys_)} queries")

    def _cell_major(self) -> None:
        """Store the training queries cell by cell (``order_`` becomes the identity), so a query
        reads its cells' keys as contiguous slices rather than gathering rows one by one."""
        if np.array_equal(self.order_, np.arange(len(self.order_))):
            return
        self.keys_ = np.ascontiguousarray(self.keys_[self.order_])
        self.quality_ = self.quality_[self.order_]
        self.mask_ = self.mask_[self.order_]
        self.order_ = np.arange(len(self.order_), dtype=np.int64)

    def _neighbours(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(indices, similarities) of the k nearest training queries of one query via the index."""
        cells = np.argpartition(-(self.centroids_ @ query), self.nprobe - 1)[: self.nprobe]
        starts, ends = self.offsets_[cells], self.offsets_[cells + 1]
        sims = np.concatenate([self.keys_[a:b] @ query for a, b in zip(starts, ends, strict=True)])
        k = min(self.k, len(sims))
        top = np.argpartition(-sims, k - 1)[:k]
        # a position in the concatenated cells -> its training query
        ends_at = np.cumsum(ends - starts)
        cell = np.searchsorted(ends_at, top, side="right")
        return starts[cell] + top - (ends_at[cell] - (ends - starts)[cell]), sims[top]

    def predict_quality(self, embeddings: np.ndarray) -> np.ndarray:
        queries = _unit(np.atleast_2d(np.asarray(embeddings)))
        if len(self.centroids_) and len(self.centroids_) > self.nprobe:
            found = [self._neighbours(q) for q in queries]
            k = min(len(t) for t, _ in found)
            top = np.stack([t[:k] for t, _ in found])
            top_sims = np.stack([s[:k] for _, s in found])
        else:
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
        return {
            "k": self.k,
            "weighting": self.weighting,
            "prior_weight": self.prior_weight,
            "index_min_examples": self.index_min_examples,
            "nprobe": self.nprobe,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "keys": self.keys_,
            "quality": self.quality_,
            "mask": self.mask_,
            "prior": self.prior_,
            "centroids": self.centroids_,
            "order": self.order_,
            "offsets": self.offsets_,
        }

    @classmethod
    def from_arrays(cls, hparams, arrays):
        router = cls(**hparams)
        router.keys_, router.quality_ = arrays["keys"], arrays["quality"]
        router.mask_, router.prior_ = arrays["mask"], arrays["prior"]
        router.centroids_, router.order_ = arrays["centroids"], arrays["order"]
        router.offsets_ = arrays["offsets"]
        if len(router.centroids_):
            router._cell_major()  # versions saved before it stored keys cell by cell
        return router
