"""The router interface and the shared decision rule (ARCHITECTURE.md decision 1).

A router predicts a quality per candidate model (a queries x models matrix); the decision is a
separate rule, ``argmax quality - lambda * cost`` over the available candidates, so one trained
router yields a whole quality/cost curve and the gateway can move lambda at run time.

Artifacts are a folder: ``router.json`` (type, label order, embedding model and dimension,
hyperparameters, cost vector) and ``weights.npz`` (arrays only, loaded with
``allow_pickle=False``).
"""

from __future__ import annotations

import json
import zipfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

ROUTER_JSON = "router.json"
WEIGHTS_NPZ = "weights.npz"
FORMAT_VERSION = 1


class Router(ABC):
    """fit learns, predict_quality answers; learned state ends in an underscore."""

    router_type: ClassVar[str]
    input_kind: ClassVar[str] = "embedding"  # "text" for routers that read the query itself

    model_names_: list[str]
    cost_: np.ndarray  # expected cost per model (USD per query), used by the decision rule

    @abstractmethod
    def fit(
        self,
        embeddings: np.ndarray,
        quality: np.ndarray,
        mask: np.ndarray,
        model_names: list[str],
        cost: np.ndarray,
        progress=None,
    ) -> Router:
        """Learn from the queries' inputs (embeddings, or texts when input_kind is "text"), the
        quality matrix and its mask of observed pairs; ``progress`` receives log lines."""

    @abstractmethod
    def predict_quality(self, embeddings: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def hyperparameters(self) -> dict[str, Any]: ...

    @abstractmethod
    def arrays(self) -> dict[str, np.ndarray]: ...

    @classmethod
    @abstractmethod
    def from_arrays(cls, hparams: dict[str, Any], arrays: dict[str, np.ndarray]) -> Router: ...

    def save_extra(self, folder: Path) -> None:  # noqa: B027 - optional hook, no-op by default
        """Files beyond router.json and weights.npz (safe formats only)."""

    def load_extra(self, folder: Path) -> None:  # noqa: B027 - optional hook, no-op by default
        """Read what :meth:`save_extra` wrote."""

    def route(
        self, embeddings: np.ndarray, lam: float = 0.0, available: np.ndarray | None = None
    ) -> np.ndarray:
        """Index of the chosen model per query."""
        return decide(self.predict_quality(embeddings), self.cost_, lam, available)


def router_inputs(router: Router, texts: list[str], embeddings: np.ndarray | None):
    """What ``router`` reads: the query texts, or their embeddings."""
    return list(texts) if router.input_kind == "text" else embeddings


def expected_cost(cost: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean observed cost per model over the observations with a known cost (nan: unpriced),
    and whether each model has one. A model never observed gets the mean of the others; one
    observed only without a price is unpriced (its cost 0 here, and it must not be used as a
    price: :func:`~routeiq_assets.training.train.apply_pricing`)."""
    known = mask & np.isfinite(cost)
    observed, priced_obs = mask.sum(axis=0), known.sum(axis=0)
    total = np.where(known, cost, 0.0).sum(axis=0)
    mean = np.where(priced_obs > 0, total / np.maximum(priced_obs, 1), np.nan)
    fill = float(np.nanmean(mean)) if np.isfinite(mean).any() else 0.0
    priced = (priced_obs > 0) | ((observed == 0) & np.isfinite(mean).any())
    return np.where(np.isfinite(mean), mean, np.where(priced, fill, 0.0)).astype(np.float64), priced


def decide(
    quality: np.ndarray, cost: np.ndarray, lam: float = 0.0, available: np.ndarray | None = None
) -> np.ndarray:
    """argmax over models of ``quality - lam * cost``, restricted to available models.

    ``cost`` is per model ([n_models]) or per query and model ([n, n_models]). Ties go to the
    cheaper model, so lam = 0 with equal predictions never pays for nothing.
    """
    quality = np.atleast_2d(np.asarray(quality, np.float64))
    cost = np.broadcast_to(np.asarray(cost, np.float64), quality.shape)
    utility = quality - lam * cost
    utility = utility - 1e-12 * cost  # tie-break towards cheaper
    if available is not None:
        utility = np.where(np.broadcast_to(available, quality.shape), utility, -np.inf)
    return np.argmax(utility, axis=1)


def save_router(router: Router, folder: Path, extra: dict[str, Any] | None = None) -> list[Path]:
    """Write ``router.json`` and ``weights.npz``; return the files written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {**router.arrays(), "cost": np.asarray(router.cost_, np.float64)}
    np.savez(folder / WEIGHTS_NPZ, **arrays)
    router.save_extra(folder)
    meta = {
        "format_version": FORMAT_VERSION,
        "router_type": router.router_type,
        "model_names": list(router.model_names_),
        "hyperparameters": router.hyperparameters(),
        **(extra or {}),
    }
    (folder / ROUTER_JSON).write_text(json.dumps(meta, indent=2, sort_keys=True))
    return sorted(p for p in folder.rglob("*") if p.is_file())


def read_router_meta(folder: Path) -> dict[str, Any]:
    path = Path(folder) / ROUTER_JSON
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: not a router artifact folder")
    try:
        meta = json.loads(path.read_bytes())
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
        raise ValueError(f"{path} is not JSON ({exc}): not a router artifact folder") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(meta).__name__}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: unsupported format_version {meta.get('format_version')!r}")
    return meta


def read_weights(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a ``weights.npz`` (never pickle: ``allow_pickle=False``), with its
    ``cost`` vector; a file that is not such an archive raises a ValueError naming it."""
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: not a router artifact folder")
    if not zipfile.is_zipfile(path):  # numpy would call such bytes pickled data
        raise ValueError(f"{path} is not a numpy .npz archive: the router folder is corrupt")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as exc:  # a damaged zip raises zipfile, zlib, OSError, ValueError, ...
        raise ValueError(
            f"{path} cannot be read as a numpy .npz archive ({type(exc).__name__}: {exc}): "
            "the router folder is corrupt"
        ) from None
    if "cost" not in arrays:
        raise ValueError(f"{path}: no 'cost' array: not a router's weights")
    return arrays


def load_router(folder: Path) -> Router:
    """Load a router folder written by :func:`save_router` (no pickle anywhere)."""
    from routeiq_assets.routers import ROUTER_TYPES

    meta = read_router_meta(folder)
    kind = meta["router_type"]
    if kind not in ROUTER_TYPES:
        raise ValueError(f"{folder}: unknown router_type {kind!r}; known: {sorted(ROUTER_TYPES)}")
    weights = Path(folder) / WEIGHTS_NPZ
    arrays, hparams = read_weights(weights), meta["hyperparameters"]
    try:
        router = ROUTER_TYPES[kind].from_arrays(hparams, arrays)
    except KeyError as exc:
        raise ValueError(f"{weights}: no array {exc}, which a {kind} router needs") from None
    router.model_names_ = list(meta["model_names"])
    router.cost_ = arrays["cost"]
    router.load_extra(Path(folder))
    return router
