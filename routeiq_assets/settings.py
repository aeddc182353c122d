"""Where things live: the one settings object.

Every runtime location derives from ``ROUTEIQ_HOME`` (default: the repository's
``dagster_home/``) and each can be overridden by its own environment variable. With no
environment set, everything is embedded: a DuckDB file, MLflow on a SQLite file, a local
folder as the artifact store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from urllib.parse import urlparse

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from routeiq_assets.redact import mask_url
from routeiq_assets.telemetry.pii import PromptTextMode

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def _default_home() -> Path:
    return REPO_ROOT / "dagster_home"


class RouteIQSettings(BaseSettings):
    """All locations and services the platform uses. Env vars are ``ROUTEIQ_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="ROUTEIQ_", extra="ignore")

    home: Path = Field(default_factory=_default_home, description="Root of all runtime data")
    landing_dir: Path | None = Field(
        None, description="Where new telemetry files are dropped (default `$ROUTEIQ_HOME/landing`)"
    )
    landing_s3_uri: str | None = Field(
        None, description="s3://bucket/prefix mirrored into the landing folder by a sensor"
    )
    raw_dir: Path | None = Field(
        None, description="Immutable, content-addressed raw store (default `$ROUTEIQ_HOME/raw`)"
    )
    duckdb_path: Path | None = Field(
        None, description="The warehouse file (default `$ROUTEIQ_HOME/warehouse/routeiq.duckdb`)"
    )
    work_dir: Path | None = Field(
        None,
        description="Trained models and reports before deployment (default `$ROUTEIQ_HOME/work`)",
    )
    mlflow_tracking_uri: str | None = Field(
        None, description="MLflow tracking URI (default SQLite under `$ROUTEIQ_HOME/mlflow`)"
    )
    mlflow_experiment: str = Field(
        "routeiq-routers", description="MLflow experiment the pipeline's training runs log to"
    )
    artifact_store: str | None = Field(
        None,
        description="Deployed artifacts: a local folder or s3://bucket/prefix (default "
        "`$ROUTEIQ_HOME/artifacts`)",
    )
    s3_endpoint_url: str | None = Field(None, description="MinIO or other S3 endpoint")
    configs_dir: Path = Field(
        default_factory=lambda: REPO_ROOT / "configs",
        description="Router configs (routers/*.yaml), labelling policy and prices",
    )
    labeling_file: Path | None = Field(
        None, description="Label policy (default configs/labeling.yaml)"
    )
    prices_file: Path | None = Field(
        None, description="Model prices (default: the label policy's prices_file)"
    )
    validation_fraction: float = Field(
        0.1, ge=0, lt=1, description="share of distinct queries held out for validation"
    )
    test_fraction: float = Field(
        0.1, ge=0, lt=1, description="share of distinct queries held out for the test split"
    )
    jaeger_url: str | None = Field(None, description="Jaeger query service, for hourly pulls")
    jaeger_service: str = Field("litellm-gateway", description="service name to pull")
    jaeger_limit: int = Field(
        1000,
        ge=1,
        description="traces a Jaeger API request asks for; a window answered with this many is "
        "split until every answer is below it (the hourly pull and extract-jaeger's default)",
    )
    embedding_model: str = Field(
        DEFAULT_EMBEDDING_MODEL, description="sentence-transformers model that embeds queries"
    )
    embedding_batch_size: int = Field(64, ge=1, description="texts embedded per batch")
    device: str = Field("auto", description="auto | cpu | cuda")
    prompt_text: PromptTextMode = Field(
        "scrub",
        description="keep | hash | scrub: every free-text column leaving the raw zone (prompts, "
        "completions, ground truth, ids, metadata, errors, quarantine excerpts)",
    )
    landing_poll_seconds: int = Field(15, ge=1, description="landing sensor interval")
    landing_range_min_files: int = Field(
        4,
        ge=2,
        description="a landing sensor tick that finds at least this many new files requests one "
        "run over their range of batches (a backlog); fewer get one run a file",
    )
    automation_interval_seconds: int = Field(
        30, ge=1, description="how often declarative automation evaluates its conditions"
    )
    landing_settle_seconds: float = Field(
        5.0,
        ge=0,
        description="a landing file is complete once unchanged this long, or unchanged since "
        "the sensor's previous tick (whichever comes first: writers that pause longer than a "
        "tick must use a temporary name, .tmp/.part or hidden, and rename when done)",
    )
    landing_tick_seconds: float = Field(
        20.0,
        ge=0,
        description="a landing sensor tick starts landing new files for this long (at least "
        "one): a larger backlog is taken over several ticks, each within Dagster's 60 s sensor "
        "timeout",
    )
    ingest_duckdb_memory: str = Field(
        "768MB",
        description="DuckDB's memory cap while an ingest writes many batches (a DuckDB size such "
        "as 768MB or 2GB); written blocks are on disk, so evicting them costs little",
    )
    raw_fsync: bool = Field(
        True,
        description="flush each landed raw file to disk before its batch is registered (false "
        "only for scratch stores whose loss does not matter)",
    )
    gateway_torch_export: bool = Field(
        False, description="also export mlp routers as torch model.pt for the gateway's loader"
    )
    deploy_router: str = Field("knn", description="Which configs/routers/<name>.yaml to deploy")
    manifest_hmac_secret: SecretStr | None = Field(
        None,
        validation_alias="LLMROUTER_MODEL_HMAC_SECRET",
        description="HMAC key that signs deployed manifests (the gateway's variable name)",
    )

    @field_validator("device")
    @classmethod
    def _check_device(cls, value: str) -> str:
        if value not in {"auto", "cpu", "cuda"}:
            raise ValueError(f"device must be auto, cpu or cuda, got {value!r}")
        return value

    @field_validator("ingest_duckdb_memory")
    @classmethod
    def _check_memory(cls, value: str) -> str:
        if not re.fullmatch(r"\s*[0-9]+(\.[0-9]+)?\s*([KMGT]i?B|B|bytes)?\s*", value, re.I):
            raise ValueError(
                f"ingest_duckdb_memory must be a size such as 768MB or 2GB, got {value!r}"
            )
        return value

    @field_validator("artifact_store")
    @classmethod
    def _check_store(cls, value: str | None) -> str | None:
        if value and "://" in value and urlparse(value).scheme not in {"s3", "file"}:
            raise ValueError(
                f"artifact_store must be a folder or s3://bucket/prefix, got {value!r}"
            )
        return value

    @property
    def labeling_path(self) -> Path:
        return self.labeling_file or self.configs_dir / "labeling.yaml"

    @cached_property
    def resolved(self) -> ResolvedLocations:
        home = self.home.expanduser().resolve()
        store = self.artifact_store or str(home / "artifacts")
        return ResolvedLocations(
            home=home,
            landing_dir=(self.landing_dir or home / "landing").expanduser(),
            raw_dir=(self.raw_dir or home / "raw").expanduser(),
            duckdb_path=(self.duckdb_path or home / "warehouse" / "routeiq.duckdb").expanduser(),
            work_dir=(self.work_dir or home / "work").expanduser(),
            mlflow_tracking_uri=self.mlflow_tracking_uri
            or f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
            mlflow_artifact_root=str(home / "mlflow" / "artifacts"),
            artifact_store=store,
        )

    def describe(self) -> dict[str, object]:
        """Every location and service in use, for ``routeiq info``: no secrets, credentials in
        URLs masked."""
        from routeiq_assets.deployment.manifest import signing_kind

        loc = self.resolved
        return {
            "home": str(loc.home),
            "landing_dir": str(loc.landing_dir),
            "raw_dir": str(loc.raw_dir),
            "duckdb_path": str(loc.duckdb_path),
            "work_dir": str(loc.work_dir),
            "mlflow_tracking_uri": mask_url(loc.mlflow_tracking_uri),
            "mlflow_artifact_root": loc.mlflow_artifact_root,
            "mlflow_experiment": self.mlflow_experiment,
            "artifact_store": mask_url(loc.artifact_store),
            "artifact_store_kind": "s3" if loc.artifact_store.startswith("s3://") else "local",
            "s3_endpoint_url": self.s3_endpoint_url and mask_url(self.s3_endpoint_url),
            "configs_dir": str(self.configs_dir),
            "labeling_file": str(self.labeling_path),
            "prices_file": str(self.prices_file) if self.prices_file else "(from labeling file)",
            "landing_s3_uri": self.landing_s3_uri and mask_url(self.landing_s3_uri),
            "jaeger_url": self.jaeger_url and mask_url(self.jaeger_url),
            "jaeger_service": self.jaeger_service,
            "embedding_model": self.embedding_model,
            "device": self.device,
            "prompt_text": self.prompt_text,
            "deploy_router": self.deploy_router,
            "manifest_signing": signing_kind()
            if signing_kind() == "ed25519"
            else ("hmac-sha256" if self.manifest_hmac_secret else "none"),
        }


@dataclass(frozen=True)
class ResolvedLocations:
    """Concrete paths and URIs after defaults are applied."""

    home: Path
    landing_dir: Path
    raw_dir: Path
    duckdb_path: Path
    work_dir: Path
    mlflow_tracking_uri: str
    mlflow_artifact_root: str
    artifact_store: str


def environment_name(name: str) -> str:
    """The environment variable that sets a field of :class:`RouteIQSettings`."""
    alias = RouteIQSettings.model_fields[name].validation_alias
    return alias if isinstance(alias, str) else f"ROUTEIQ_{name.upper()}"


def settings_reference() -> str:
    """Every setting as a Markdown table (the README's settings reference is this text)."""
    lines = ["| variable | default | what it sets |", "| --- | --- | --- |"]
    for name, info in RouteIQSettings.model_fields.items():
        if info.default_factory is not None:
            default = "(derived)" if name != "home" else "the repository's `dagster_home/`"
            if name == "configs_dir":
                default = "the repository's `configs/`"
        elif info.default is None:
            default = "-"
        else:
            default = (
                f"`{str(info.default).lower() if isinstance(info.default, bool) else info.default}`"
            )
        what = (info.description or "").replace("|", "\\|")
        lines.append(f"| `{environment_name(name)}` | {default} | {what} |")
    return "\n".join(lines) + "\n"


def load_settings() -> RouteIQSettings:
    """Read settings from the environment (fresh each call, so tests can change env vars)."""
    return RouteIQSettings()
