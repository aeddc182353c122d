"""Deploy a registered router version: MLflow -> artifact store (manifest, pointer last) -> alias.

One path for the ``deployed_router`` asset and ``routeiq deploy``: resolve the version (explicit,
by alias, or by legacy stage), download its router folder from MLflow, add the gateway loader's
files, write the manifest (signed when keys are configured), publish files then the pointer, and
only then move the alias, so MLflow never names a version the store does not serve.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from routeiq_assets.deployment.gateway import (
    gateway_config,
    install_local,
    model_path_in,
    write_gateway_files,
)
from routeiq_assets.deployment.manifest import ManifestKeys, build_manifest
from routeiq_assets.deployment.publish import (
    MODELS_PREFIX,
    fetch_version,
    publish_version,
)
from routeiq_assets.deployment.registry import (
    alias_for_stage,
    download_router,
    register_version,
    resolve_version,
    set_alias,
)
from routeiq_assets.deployment.store import ArtifactStore, S3ArtifactStore
from routeiq_assets.routers.base import read_router_meta


@dataclass(frozen=True)
class Deployment:
    registered_name: str
    version: str
    alias: str
    run_id: str
    router_type: str
    keys: dict[str, str]
    manifest: dict[str, Any]
    gateway: dict[str, Any] = field(default_factory=dict)
    local_folder: str | None = None

    def summary(self) -> dict[str, Any]:
        """What was deployed, for the CLI's output and the asset's metadata (no secrets)."""
        return {
            "registered_model": self.registered_name,
            "version": self.version,
            "alias": self.alias,
            "mlflow_run_id": self.run_id,
            "router_type": self.router_type,
            "artifact_uri": self.keys["uri"],
            "pointer": self.keys["pointer"],
            "signature_type": self.manifest["signature_type"],
            "files": [a["path"] for a in self.manifest["artifacts"]],
            "gateway_folder": self.local_folder,
            "gateway_config": self.gateway,
        }


def custom_endpoint(store: ArtifactStore) -> str | None:
    """An S3 store's endpoint when it is not AWS's own (MinIO, a test server)."""
    if not isinstance(store, S3ArtifactStore):
        return None
    endpoint = getattr(getattr(store.client, "meta", None), "endpoint_url", None)
    return endpoint if endpoint and "amazonaws.com" not in endpoint else None


def registered_name_for(router_name: str) -> str:
    return f"{router_name}-router"


def deploy_registered(
    tracking_uri: str,
    registered_name: str,
    store: ArtifactStore,
    *,
    stage: str = "Production",
    version: str | None = None,
    keys: ManifestKeys | None = None,
    prefix: str = MODELS_PREFIX,
    gateway_dir: Path | None = None,
    torch_export: bool = False,
) -> Deployment:
    """Publish a registered version to ``store`` under ``<prefix>/<name>/<version>/`` and point
    the stage's alias at it; ``gateway_dir`` also gets a local copy the gateway's loader reads."""
    version, run_id = resolve_version(tracking_uri, registered_name, stage, version)
    alias = alias_for_stage(stage)
    with tempfile.TemporaryDirectory(prefix="routeiq-deploy-") as tmp:
        folder = download_router(tracking_uri, registered_name, version, Path(tmp))
        meta = read_router_meta(folder)
        gateway_files = write_gateway_files(folder, torch_export)
        manifest = build_manifest(
            folder,
            version=version,
            description=f"{registered_name} version {version} ({meta['router_type']} router)",
            metadata={
                "registered_model": registered_name,
                "mlflow_run_id": run_id,
                "alias": alias,
                "router_type": meta["router_type"],
                "embedding_model": meta.get("embedding_model"),
                "model_names": meta["model_names"],
            },
            keys=keys,
            artifact_metadata={
                path: {"description": "for RouteIQ's gateway loader", "tags": ["gateway"]}
                for path in gateway_files
            },
        )
        published = publish_version(store, registered_name, version, folder, manifest, prefix)
        local = None
        if gateway_dir is not None:
            verified, _ = fetch_version(
                store, published["manifest"], Path(tmp) / "v", keys, version
            )
            local = install_local(verified, Path(gateway_dir), version)
    set_alias(tracking_uri, registered_name, alias, version)
    exported = model_path_in(local, meta["router_type"]) if local else None
    config = gateway_config(
        meta["router_type"],
        store_uri=store.uri("").rstrip("/"),
        model_name=registered_name,
        models_prefix=prefix,
        s3_endpoint_url=custom_endpoint(store),
        model_path=str(exported) if exported and exported.is_file() else None,
    )
    return Deployment(
        registered_name,
        version,
        alias,
        run_id,
        meta["router_type"],
        published,
        manifest,
        config,
        str(local) if local else None,
    )


def deploy_router_run(
    router_name: str,
    run_id: str,
    tracking_uri: str,
    store: ArtifactStore,
    keys: ManifestKeys | None = None,
    gateway_dir: Path | None = None,
    registered_name: str | None = None,
    torch_export: bool = False,
) -> Deployment:
    """Register ``runs:/<run_id>/model`` as ``registered_name`` (default ``<router_name>-router``)
    and deploy that version to Production (alias ``production``, set once the store serves it)."""
    name = registered_name or registered_name_for(router_name)
    version = register_version(
        tracking_uri, run_id, name, alias=None, tags={"routeiq.router": router_name}
    )
    return deploy_registered(
        tracking_uri,
        name,
        store,
        version=version,
        keys=keys,
        gateway_dir=gateway_dir,
        torch_export=torch_export,
    )
