"""Train one router from the warehouse's training set and write its artifact folder."""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from routeiq_assets.routers import ROUTER_TYPES, save_router
from routeiq_assets.routers.base import Router, expected_cost
from routeiq_assets.routers.config import RouterConfig
from routeiq_assets.training.embeddings import Encoder, embed_with_cache
from routeiq_assets.training.training_set import load_quality_matrix

TRAINING_JSON = "training.json"


@dataclass
class TrainResult:
    router: Router
    folder: Path
    n_train: int
    n_validation: int
    metrics: dict[str, float]
    seconds: float


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass


def _validation_metrics(
    router: Router, emb: np.ndarray, quality: np.ndarray, mask: np.ndarray
) -> dict[str, float]:
    """Masked error of predicted quality on the observed validation pairs."""
    if not mask.any():
        return {}
    predicted = router.predict_quality(emb)
    err = (predicted - quality)[mask]
    return {
        "val_quality_mae": float(np.abs(err).mean()),
        "val_quality_rmse": float(np.sqrt((err**2).mean())),
        "val_observed_pairs": float(mask.sum()),
    }


def train_from_warehouse(
    con: duckdb.DuckDBPyConnection,
    name: str,
    config: RouterConfig,
    encoder: Encoder,
    out_dir: Path,
    log: Callable[[str], None] = lambda _m: None,
) -> TrainResult:
    """Fit ``config``'s router on the train split and write ``out_dir/<name>`` atomically."""
    started = time.perf_counter()
    seed_everything(config.hparam.seed)
    train = load_quality_matrix(con, "train")
    if not train.query_sha256:
        raise ValueError(
            "the training split is empty: materialise training_set with more telemetry"
        )
    validation = load_quality_matrix(con, "validation", train.model_names)
    model_name = config.hparam.embedding_model
    x_train, stats = embed_with_cache(con, train.query_text, model_name, encoder, progress=log)
    log(f"train embeddings: {stats.unique} unique texts, hit rate {stats.hit_rate:.2%}")
    router_cls = ROUTER_TYPES[config.router_type]
    router = router_cls(**config.hparam.router_kwargs())
    router.fit(
        x_train, train.quality, train.mask, train.model_names, expected_cost(train.cost, train.mask)
    )
    metrics: dict[str, float] = {"train_queries": float(len(train.query_sha256))}
    if validation.query_sha256:
        x_val, _ = embed_with_cache(con, validation.query_text, model_name, encoder, progress=log)
        metrics.update(_validation_metrics(router, x_val, validation.quality, validation.mask))
    target = Path(out_dir) / name
    staging = Path(out_dir) / f".{name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    save_router(
        router,
        staging,
        extra={
            "embedding_model": model_name,
            "embedding_dim": int(x_train.shape[1]),
            "default_lambda": config.default_lambda,
            "config": config.model_dump(mode="json"),
        },
    )
    seconds = time.perf_counter() - started
    info: dict[str, Any] = {"name": name, "metrics": metrics, "seconds": seconds}
    (staging / TRAINING_JSON).write_text(json.dumps(info, indent=2, sort_keys=True))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    log(
        f"trained {config.router_type} router {name!r} on {len(train.query_sha256)} queries "
        f"in {seconds:.1f}s"
    )
    return TrainResult(
        router, target, len(train.query_sha256), len(validation.query_sha256), metrics, seconds
    )


def run_pointer_path(router_folder: Path) -> Path:
    return Path(router_folder).with_name(f"{Path(router_folder).name}.mlflow.json")


def write_run_pointer(router_folder: Path, run_id: str) -> None:
    """Record which MLflow run holds this trained router (beside the folder, not inside it)."""
    run_pointer_path(router_folder).write_text(json.dumps({"mlflow_run_id": run_id}))


def read_run_pointer(router_folder: Path) -> str:
    path = run_pointer_path(router_folder)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: materialise the router asset first")
    return json.loads(path.read_text())["mlflow_run_id"]
