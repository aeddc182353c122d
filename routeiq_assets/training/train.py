"""Train one router and write its artifact folder (the folder the serving runtime loads).

Training data comes from the warehouse's ``training_set`` or from files in the seed guide's
formats (``data_path.train_data``): the seed's JSON (``{"queries": [{"text", "best_model"}]}``)
or an LLMRouter routing JSONL (``routing_train.jsonl``, with ``query_embeddings.pt`` beside it
when present). ``llm_data`` names the candidates and prices (LLMRouter's llm_candidates JSON or
our prices YAML).
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from routeiq_assets.routers import ROUTER_TYPES, save_router
from routeiq_assets.routers.base import Router, expected_cost, router_inputs
from routeiq_assets.routers.config import RouterConfig
from routeiq_assets.strict_json import finite_json
from routeiq_assets.telemetry.simulator import CHARS_PER_TOKEN
from routeiq_assets.training.embeddings import Encoder, embed_with_cache
from routeiq_assets.training.labels import load_prices
from routeiq_assets.training.operating_point import OperatingPoint, choose_operating_point
from routeiq_assets.training.splits import split_for
from routeiq_assets.training.training_set import QualityMatrix, load_quality_matrix

TRAINING_JSON = "training.json"
Log = Callable[[str], None]


@dataclass
class TrainingData:
    train: QualityMatrix
    validation: QualityMatrix
    x_train: np.ndarray
    x_validation: np.ndarray
    cost: np.ndarray  # expected USD per query, per model (0 where unpriced)
    source: str
    priced: np.ndarray  # bool per model: whether its cost is known
    quality_only: bool = False  # no model has a price: cost-aware routing is refused
    unpriced_excluded: tuple[str, ...] = ()  # left out by ``unpriced_models: exclude``


def apply_pricing(data: TrainingData, config: RouterConfig, log: Log) -> TrainingData:
    """The data a router may be trained on, as far as prices go. An unknown price is never taken
    as zero: with some candidates unpriced, training refuses and names them (the config's
    ``unpriced_models: exclude`` leaves them out instead); with none priced (LLMRouter's own
    convert-then-train flow), the router is quality-only and says so."""
    names = data.train.model_names
    unpriced = [m for m, ok in zip(names, data.priced, strict=True) if not ok]
    if not unpriced:
        return data
    if len(unpriced) == len(names):
        log(
            "no candidate model has a price: training a quality-only router (it routes by "
            "predicted quality; cost-aware routing on it is refused)"
        )
        return replace(data, cost=np.zeros(len(names)), quality_only=True)
    if config.unpriced_models == "refuse":
        raise ValueError(
            f"no price for candidate models {unpriced} (of {names}): an unknown price is never "
            "taken as zero. Price them in the prices file (ROUTEIQ_PRICES_FILE, default "
            "configs/prices.yaml: '<model>: {input_price: USD per million input tokens, "
            "output_price: USD per million output tokens}'; for files, in data_path.llm_data), "
            "or set 'unpriced_models: exclude' in the router config to train without them"
        )
    keep = [j for j, ok in enumerate(data.priced) if ok]
    log(f"left out unpriced candidate models {unpriced} (unpriced_models: exclude)")
    return replace(
        data,
        train=_columns(data.train, keep),
        validation=_columns(data.validation, keep),
        cost=data.cost[keep],
        priced=data.priced[keep],
        unpriced_excluded=tuple(unpriced),
    )


def _columns(matrix: QualityMatrix, keep: list[int]) -> QualityMatrix:
    """The matrix with only these model columns."""
    return replace(
        matrix,
        model_names=[matrix.model_names[j] for j in keep],
        quality=matrix.quality[:, keep],
        cost=matrix.cost[:, keep],
        mask=matrix.mask[:, keep],
        propensity=matrix.propensity[:, keep],
    )


@dataclass
class TrainResult:
    router: Router
    folder: Path
    n_train: int
    n_validation: int
    metrics: dict[str, float]
    seconds: float
    cost_aware: bool = True  # False: trained without any price (quality-only)
    unpriced_excluded: tuple[str, ...] = ()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    import torch

    torch.manual_seed(seed)


def data_from_warehouse(
    con: duckdb.DuckDBPyConnection, embedding_model: str, encoder: Encoder, log: Log
) -> TrainingData:
    train = load_quality_matrix(con, "train")
    if not train.query_sha256:
        raise ValueError(
            "the training split is empty: materialise training_set with more telemetry"
        )
    validation = load_quality_matrix(con, "validation", train.model_names)
    x_train, stats = embed_with_cache(con, train.query_text, embedding_model, encoder, progress=log)
    log(f"train embeddings: {stats.unique} unique texts, hit rate {stats.hit_rate:.2%}")
    x_val, _ = embed_with_cache(con, validation.query_text, embedding_model, encoder)
    cost, priced = expected_cost(train.cost, train.mask)
    return TrainingData(train, validation, x_train, x_val, cost, "warehouse", priced)


def _matrix(pairs: dict[str, dict[str, list[float]]], names: list[str], keep) -> QualityMatrix:
    texts = [t for t in pairs if keep(t)]
    col = {n: j for j, n in enumerate(names)}
    quality = np.zeros((len(texts), len(names)), np.float32)
    mask = np.zeros_like(quality, bool)
    for i, text in enumerate(texts):
        for model, scores in pairs[text].items():
            if model in col:
                quality[i, col[model]], mask[i, col[model]] = np.mean(scores), True
    return QualityMatrix(
        [str(i) for i in range(len(texts))],
        texts,
        names,
        quality,
        np.zeros_like(quality),
        mask,
        np.full(quality.shape, np.nan, np.float32),
    )


def data_from_files(
    train_data: Path,
    llm_data: Path | None,
    encoder: Encoder,
    log: Log,
    output_tokens: int = 256,
) -> TrainingData:
    """The seed's JSON or an LLMRouter routing JSONL; 10% of queries (by hash) validate."""
    train_data = Path(train_data)
    if not train_data.exists():
        raise FileNotFoundError(f"train_data {train_data} not found")
    pairs: dict[str, dict[str, list[float]]] = {}
    stored: dict[str, int] = {}
    if train_data.suffix == ".json":
        doc = json.loads(train_data.read_text())
        if not isinstance(doc, dict) or not isinstance(doc.get("queries"), list):
            raise ValueError(f'{train_data}: expected the seed\'s {{"queries": [...]}} JSON')
        if not llm_data:
            raise ValueError(f"{train_data}: the seed's format needs data_path.llm_data")
        names = sorted(load_prices(llm_data))
        for i, q in enumerate(doc["queries"]):
            if q.get("best_model") not in names or not isinstance(q.get("text"), str):
                raise ValueError(
                    f"{train_data}: query {i} has no text or an unknown best_model "
                    f"{q.get('best_model')!r} (candidates: {names})"
                )
            # the seed's format is full information: the best model is right, the others not
            pairs[q["text"]] = {m: [1.0 if m == q["best_model"] else 0.0] for m in names}
    else:
        for n, line in enumerate(train_data.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            row = json.loads(line)
            if row.get("performance") is None:
                raise ValueError(f"{train_data}:{n}: no performance")
            pairs.setdefault(row["query"], {}).setdefault(row["model_name"], []).append(
                float(row["performance"])
            )
            if row.get("embedding_id") is not None:
                stored[row["query"]] = int(row["embedding_id"])
        names = sorted({m for models in pairs.values() for m in models})
    train = _matrix(pairs, names, lambda t: split_for(t, 0.1, 0.0) == "train")
    validation = _matrix(pairs, names, lambda t: split_for(t, 0.1, 0.0) == "validation")
    tensor_path = train_data.parent / "query_embeddings.pt"

    def embed(texts: list[str]) -> np.ndarray:
        if tensor_path.exists() and all(t in stored for t in texts):
            import torch

            table = torch.load(tensor_path, weights_only=True).numpy()
            return table[[stored[t] for t in texts]].astype(np.float32)
        return np.asarray(encoder(texts), np.float32) if texts else np.zeros((0, 1), np.float32)

    prices = load_prices(llm_data) if llm_data else {}
    # files carry no token counts: estimate the prompt from its length, the answer as fixed
    input_tokens = np.mean([len(t) for t in pairs]) / CHARS_PER_TOKEN if pairs else 0.0
    priced = np.array([m in prices and prices[m].priced for m in names], bool)
    cost = np.array(
        [
            (prices[m].input_price * input_tokens + prices[m].output_price * output_tokens) / 1e6
            if ok
            else 0.0
            for m, ok in zip(names, priced, strict=True)
        ]
    )
    log(
        f"{train_data}: {len(train.query_text)} train, {len(validation.query_text)} validation "
        f"queries over {len(names)} models"
    )
    return TrainingData(
        train,
        validation,
        embed(train.query_text),
        embed(validation.query_text),
        cost,
        str(train_data),
        priced,
    )


def resolve_data_path(value: str, config_path: Path) -> Path:
    """``data_path`` entries are relative to the config file's folder unless absolute."""
    path = Path(value).expanduser()
    return path if path.is_absolute() else (Path(config_path).parent / path).resolve()


def load_training_data(
    config: RouterConfig, config_path: Path, warehouse, encoder: Encoder, log: Log
) -> TrainingData:
    """The config's training data: ``warehouse()`` opens the DuckDB file when it is asked for."""
    if config.data_path.train_data == "warehouse":
        with warehouse() as con:
            return data_from_warehouse(con, config.hparam.embedding_model, encoder, log)
    llm_data = config.data_path.llm_data
    return data_from_files(
        resolve_data_path(config.data_path.train_data, config_path),
        resolve_data_path(llm_data, config_path) if llm_data else None,
        encoder,
        log,
    )


def _validation_metrics(router: Router, data: TrainingData) -> dict[str, float]:
    """Masked error of predicted quality on the observed validation pairs."""
    val = data.validation
    if not val.mask.any():
        return {}
    predicted = router.predict_quality(router_inputs(router, val.query_text, data.x_validation))
    err = (predicted - val.quality)[val.mask]
    return {
        "val_quality_mae": float(np.abs(err).mean()),
        "val_quality_rmse": float(np.sqrt((err**2).mean())),
        "val_observed_pairs": float(val.mask.sum()),
    }


def operating_point(router: Router, data: TrainingData, config: RouterConfig) -> OperatingPoint:
    """The lambda the router runs at, chosen on the validation split for its config's
    objective (:mod:`~routeiq_assets.training.operating_point`)."""
    val = data.validation
    predicted = (
        router.predict_quality(router_inputs(router, val.query_text, data.x_validation))
        if len(val.query_text)
        else np.zeros((0, len(router.model_names_)))
    )
    return choose_operating_point(
        router,
        predicted,
        val,
        np.asarray(data.x_validation),
        config.operating_point,
        config.default_lambda,
        cost_aware=not data.quality_only,
    )


def _check_finite(data: TrainingData) -> None:
    """Routers learn from finite numbers only: a NaN or an infinity in a label, a cost or an
    input is refused, naming where, before any fitting."""
    train = data.train
    quality = train.quality[train.mask.astype(bool)]
    problems = []
    if not np.isfinite(quality).all():
        problems.append(f"{int((~np.isfinite(quality)).sum())} quality labels")
    if not np.isfinite(np.asarray(data.cost, np.float64)).all():
        problems.append("model costs")
    x = data.x_train
    if isinstance(x, np.ndarray) and x.dtype.kind == "f" and not np.isfinite(x).all():
        problems.append("input embeddings")
    if problems:
        raise ValueError(
            f"the training data holds NaN or infinite values ({', '.join(problems)}): routers "
            "train on finite numbers only; find the source in routing_examples and quarantine"
        )


def fit_and_save(
    name: str, config: RouterConfig, data: TrainingData, out_dir: Path, log: Log = lambda _m: None
) -> TrainResult:
    """Fit ``config``'s router on ``data`` (as :func:`apply_pricing` allows) and write
    ``out_dir/<name>`` atomically."""
    data = apply_pricing(data, config, log)
    _check_finite(data)
    started = time.perf_counter()
    seed_everything(config.hparam.seed)
    router = ROUTER_TYPES[config.router_type](**config.hparam.router_kwargs())
    train = data.train
    router.fit(
        router_inputs(router, train.query_text, data.x_train),
        train.quality,
        train.mask,
        train.model_names,
        data.cost,
        progress=log,
    )
    metrics = {"train_queries": float(len(train.query_text)), **_validation_metrics(router, data)}
    point = operating_point(router, data, config)
    log(
        f"operating point ({point.objective}): lambda {point.lam:g}"
        + (
            f", validated quality {point.quality:.4f} at ${point.cost:.6f} a query"
            if point.quality is not None and point.cost is not None
            else ""
        )
        + f"; {point.reason}"
    )
    metrics["operating_lambda"] = point.lam
    if point.quality is not None and point.cost is not None:
        metrics["operating_val_quality"] = point.quality
        metrics["operating_val_cost"] = point.cost
    target, staging = Path(out_dir) / name, Path(out_dir) / f".{name}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    save_router(
        router,
        staging,
        extra={
            "embedding_model": config.hparam.embedding_model,
            "embedding_dim": int(data.x_train.shape[1]),
            "default_lambda": point.lam,
            "operating_point": finite_json(point.as_dict()),
            "cost_aware": not data.quality_only,
            "unpriced_excluded": list(data.unpriced_excluded),
            "config": config.model_dump(mode="json"),
            "training_source": data.source,
        },
    )
    seconds = time.perf_counter() - started
    info: dict[str, Any] = {"name": name, "metrics": metrics, "seconds": seconds}
    (staging / TRAINING_JSON).write_text(json.dumps(info, indent=2, sort_keys=True))
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    log(
        f"trained {config.router_type} router {name!r} on {len(train.query_text)} queries "
        f"in {seconds:.1f}s"
    )
    return TrainResult(
        router,
        target,
        len(train.query_text),
        len(data.validation.query_text),
        metrics,
        seconds,
        not data.quality_only,
        data.unpriced_excluded,
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
