"""Ensemble router: the weighted mean of the predicted quality of several zoo members.

Each member (knn, mlp, linear or mf: routers that read the query embedding) is fitted on the
same data; the ensemble predicts ``sum_i w_i * member_i(x) / sum_i w_i``. Averaging members
that err differently (a neighbourhood vote and a smooth regression) steadies the ranking of
``quality - lambda * cost`` that the decision rule reads.

Saved like every router, without pickle: ``router.json`` lists the members (type,
hyperparameters, weight) and ``weights.npz`` holds every member's arrays under the prefix
``m<i>.`` (``m0.keys``, ``m1.w0``, ...).
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import numpy as np

from routeiq_assets.routers.base import Router

# members must read the embedding and keep all their state in arrays (no extra files)
MEMBER_TYPES = ("knn", "mlp", "linear", "mf")


def _member_types() -> dict[str, type[Router]]:
    from routeiq_assets.routers import ROUTER_TYPES

    return {kind: ROUTER_TYPES[kind] for kind in MEMBER_TYPES}


class EnsembleRouter(Router):
    router_type = "ensemble"

    def __init__(
        self,
        members: list[dict[str, Any]] | None = None,
        seed: int = 42,
        device: str = "auto",
    ):
        """``members``: ``{"router_type": ..., "hparams": {...}, "weight": 1.0}`` each;
        ``seed`` is the default of the members that take one; ``device``, unless ``auto``,
        overrides every member's."""
        members = (
            list(members)
            if members
            else [
                {"router_type": "knn", "hparams": {"k": 100, "prior_weight": 3.0}},
                {"router_type": "linear", "hparams": {"alpha": 30.0}},
            ]
        )
        types = _member_types()
        self.seed, self.device = seed, device
        self.members: list[dict[str, Any]] = []
        for i, spec in enumerate(members):
            kind = spec.get("router_type")
            if kind not in types:
                raise ValueError(
                    f"ensemble member {i}: router_type {kind!r} is not one of {list(types)}"
                )
            weight = float(spec.get("weight", 1.0))
            if not np.isfinite(weight) or weight <= 0:
                raise ValueError(f"ensemble member {i}: weight must be > 0, got {weight}")
            self.members.append(
                {"router_type": kind, "hparams": dict(spec.get("hparams") or {}), "weight": weight}
            )
        self.routers_ = [self._build(spec) for spec in self.members]

    def _build(self, spec: dict[str, Any]) -> Router:
        cls = _member_types()[spec["router_type"]]
        hparams = dict(spec["hparams"])
        accepted = inspect.signature(cls.__init__).parameters
        if "seed" in accepted:
            hparams.setdefault("seed", self.seed)
        if "device" in accepted and self.device != "auto":
            hparams["device"] = self.device
        return cls(**hparams)

    def fit(self, embeddings, quality, mask, model_names, cost, progress=None):
        for i, router in enumerate(self.routers_):
            if progress:
                progress(f"ensemble member {i}: {router.router_type}")
            router.fit(embeddings, quality, mask, model_names, cost, progress)
        self.model_names_ = list(model_names)
        self.cost_ = np.asarray(cost, np.float64)
        return self

    def predict_quality(self, embeddings: np.ndarray) -> np.ndarray:
        weights = np.array([spec["weight"] for spec in self.members], np.float64)
        total = sum(
            w * np.asarray(r.predict_quality(embeddings), np.float64)
            for w, r in zip(weights, self.routers_, strict=True)
        )
        return (total / weights.sum()).astype(np.float32)

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "members": [
                {
                    "router_type": r.router_type,
                    "hparams": r.hyperparameters(),
                    "weight": s["weight"],
                }
                for s, r in zip(self.members, self.routers_, strict=True)
            ],
            "seed": self.seed,
            "device": self.device,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            f"m{i}.{key}": value
            for i, router in enumerate(self.routers_)
            for key, value in router.arrays().items()
        }

    @classmethod
    def from_arrays(cls, hparams, arrays):
        router = cls(**hparams)
        types = _member_types()
        for i, spec in enumerate(router.members):
            prefix = f"m{i}."
            own = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
            member = types[spec["router_type"]].from_arrays(spec["hparams"], own)
            member.cost_ = arrays["cost"]
            router.routers_[i] = member
        return router

    def load_extra(self, folder: Path) -> None:
        for member in self.routers_:  # load_router sets these on the ensemble only
            member.model_names_, member.cost_ = list(self.model_names_), self.cost_
