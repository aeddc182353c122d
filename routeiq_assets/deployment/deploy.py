"""Deploy a trained router: register its MLflow run, set the alias, publish to the store."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from routeiq_assets.deployment.manifest import build_manifest
from routeiq_assets.deployment.publish import publish_version
from routeiq_assets.deployment.registry import register_version
from routeiq_assets.deployment.store import ArtifactStore


@dataclass(frozen=True)
class Deployment:
    registered_name: str
    version: str
    alias: str
    run_id: str
    keys: dict[str, str]
    manifest: dict


def registered_name_for(router_name: str) -> str:
    return f"{router_name}-router"


def deploy_router_folder(
    folder: Path,
    router_name: str,
    run_id: str,
    tracking_uri: str,
    store: ArtifactStore,
    alias: str = "production",
    hmac_secret: str | None = None,
) -> Deployment:
    """Register ``runs:/<run_id>/model``, alias it, then publish the folder (pointer last)."""
    name = registered_name_for(router_name)
    version = register_version(
        tracking_uri, run_id, name, alias, tags={"routeiq.router": router_name}
    )
    manifest = build_manifest(
        folder,
        version=version,
        description=f"{name} version {version}",
        metadata={"registered_model": name, "mlflow_run_id": run_id, "alias": alias},
        hmac_secret=hmac_secret,
    )
    keys = publish_version(store, name, version, folder, manifest)
    return Deployment(name, version, alias, run_id, keys, manifest)
