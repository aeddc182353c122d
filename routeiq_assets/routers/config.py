"""Router configs in the seed guide's shape: ``data_path`` and ``hparam``, validated.

``configs/routers/<type>.yaml``; the file name (without .yaml) names the Dagster asset
``router_<name>``. An unknown key or a bad value is an error that names the file and the key.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    ValidationError,
    model_validator,
)

from routeiq_assets.settings import DEFAULT_EMBEDDING_MODEL


class DataPath(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # "warehouse" means our training_set table; a path means a file in the seed's formats.
    train_data: str = "warehouse"
    llm_data: str | None = None


class CommonHparams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    seed: int = 42
    device: Literal["auto", "cpu", "cuda"] = "auto"

    # hyperparameters that are settings of the pipeline, not of the router's constructor
    _pipeline_only: ClassVar[set[str]] = {"embedding_model"}

    def router_kwargs(self) -> dict:
        return {k: v for k, v in self.model_dump().items() if k not in self._pipeline_only}


class KNNHparams(CommonHparams):
    _pipeline_only: ClassVar[set[str]] = {"embedding_model", "seed", "device"}
    k: int = Field(10, ge=1)
    weighting: Literal["uniform", "similarity"] = "similarity"
    prior_weight: float = Field(1.0, ge=0)
    index_min_examples: int = Field(20000, ge=1)
    nprobe: int = Field(16, ge=1)


class MLPHparams(CommonHparams):
    hidden_sizes: list[int] = Field(default_factory=lambda: [256, 128])
    epochs: int = Field(30, ge=1)
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(128, ge=1)
    weight_decay: float = Field(1e-4, ge=0)
    dropout: float = Field(0.1, ge=0, lt=1)


class LinearHparams(CommonHparams):
    _pipeline_only: ClassVar[set[str]] = {"embedding_model", "seed", "device"}
    alpha: float = Field(1.0, gt=0)


class MFHparams(CommonHparams):
    dim: int = Field(64, ge=1)
    epochs: int = Field(30, ge=1)
    lr: float = Field(3e-3, gt=0)
    batch_size: int = Field(128, ge=1)
    weight_decay: float = Field(1e-4, ge=0)


class BertHparams(CommonHparams):
    """``embedding_model`` is the encoder that is fine-tuned."""

    epochs: int = Field(1, ge=1)
    lr: float = Field(3e-5, gt=0)
    head_lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(32, ge=1)
    max_seq_length: int = Field(64, ge=8)
    max_train_queries: int | None = Field(None, ge=1)

    def router_kwargs(self) -> dict:
        kwargs = super().router_kwargs()
        kwargs["base_model"] = self.embedding_model
        return kwargs


MEMBER_HPARAMS: dict[str, type[CommonHparams]] = {
    "knn": KNNHparams,
    "mlp": MLPHparams,
    "linear": LinearHparams,
    "mf": MFHparams,
}


class EnsembleMember(BaseModel):
    model_config = ConfigDict(extra="forbid")
    router_type: Literal["knn", "mlp", "linear", "mf"]
    hparam: dict = Field(default_factory=dict)
    weight: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _valid_hparam(self) -> EnsembleMember:
        # the member's own hyperparameters, validated as its config would be
        MEMBER_HPARAMS[self.router_type].model_validate(self.hparam)
        return self

    def router_spec(self, seed: int, device: str) -> dict:
        hparams = MEMBER_HPARAMS[self.router_type].model_validate(self.hparam)
        kwargs = hparams.router_kwargs()
        if "seed" in kwargs and "seed" not in self.hparam:
            kwargs["seed"] = seed
        if "device" in kwargs and "device" not in self.hparam:
            kwargs["device"] = device
        return {"router_type": self.router_type, "hparams": kwargs, "weight": self.weight}


def _default_members() -> list[EnsembleMember]:
    return [
        EnsembleMember(router_type="knn", hparam={"k": 100, "prior_weight": 3.0}),
        EnsembleMember(router_type="linear", hparam={"alpha": 30.0}),
    ]


class EnsembleHparams(CommonHparams):
    """The weighted mean of members' predicted quality; every member reads the embedding."""

    members: list[EnsembleMember] = Field(default_factory=_default_members, min_length=1)

    def router_kwargs(self) -> dict:
        return {
            "members": [m.router_spec(self.seed, self.device) for m in self.members],
            "seed": self.seed,
            "device": self.device,
        }


HPARAMS: dict[str, type[CommonHparams]] = {
    **MEMBER_HPARAMS,
    "bert": BertHparams,
    "ensemble": EnsembleHparams,
}


Objective = Literal["match_best", "budget", "quality_floor", "fixed_lambda"]


class OperatingPointConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    objective: Objective = "match_best"
    budget_usd: float | None = Field(None, gt=0, description="mean USD per query (budget)")
    quality_floor: float | None = Field(None, ge=0, le=1, description="quality (quality_floor)")

    @model_validator(mode="after")
    def _needs(self) -> OperatingPointConfig:
        if self.objective == "budget" and self.budget_usd is None:
            raise ValueError("operating_point: objective budget needs budget_usd")
        if self.objective == "quality_floor" and self.quality_floor is None:
            raise ValueError("operating_point: objective quality_floor needs quality_floor")
        return self


class RouterConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    router_type: str
    data_path: DataPath = Field(default_factory=DataPath)
    hparam: SerializeAsAny[CommonHparams]
    # where the router runs: the lambda chosen on validation data for this objective (see
    # training/operating_point.py); the gateway may override it per request
    operating_point: OperatingPointConfig = Field(default_factory=OperatingPointConfig)
    # the lambda (quality per USD) of objective fixed_lambda
    default_lambda: float = Field(0.0, ge=0)
    # candidates without a price: training refuses (naming them) unless told to leave them out;
    # an unknown price is never taken as zero. Price them in the prices file instead.
    unpriced_models: Literal["refuse", "exclude"] = "refuse"


def load_router_config(path: Path, router_type: str | None = None) -> RouterConfig:
    """Read and validate one router config; the type comes from the file or the file name."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"router config {path} not found")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping with data_path and hparam")
    kind = router_type or raw.get("router_type") or path.stem
    if kind not in HPARAMS:
        raise ValueError(f"{path}: unknown router type {kind!r}; known: {sorted(HPARAMS)}")
    raw["router_type"] = kind
    problems: list[str] = []
    try:
        raw["hparam"] = HPARAMS[kind].model_validate(raw.get("hparam") or {})
    except ValidationError as exc:
        problems += _describe(exc, prefix="hparam.")
        raw["hparam"] = HPARAMS[kind]()
    try:
        config = RouterConfig.model_validate(raw)
    except ValidationError as exc:
        problems += _describe(exc)
    if problems:
        raise ValueError(f"{path}: invalid router config: {'; '.join(problems)}")
    return config


def _describe(exc: ValidationError, prefix: str = "") -> list[str]:
    return [f"{prefix}{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()]


def discover_router_configs(configs_dir: Path) -> dict[str, Path]:
    """Router name -> config file, for every YAML file in ``configs/routers``."""
    folder = Path(configs_dir) / "routers"
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))} if folder.exists() else {}
