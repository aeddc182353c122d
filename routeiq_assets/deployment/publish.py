"""Publish a router version to an artifact store: files first, the pointer last.

Layout under the store root::

    models/<model-name>/<version>/router.json, weights.npz, ..., manifest.json
    models/<model-name>/current.json      {"version", "manifest", "published_at"}

A reader that follows ``current.json`` never sees half a version; rollback is a pointer write.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from routeiq_assets.deployment.manifest import MANIFEST_NAME, verify_manifest
from routeiq_assets.deployment.store import ArtifactStore

MODELS_PREFIX = "models"


def version_prefix(model_name: str, version: str) -> str:
    return f"{MODELS_PREFIX}/{model_name}/{version}"


def pointer_key(model_name: str) -> str:
    return f"{MODELS_PREFIX}/{model_name}/current.json"


def publish_version(
    store: ArtifactStore, model_name: str, version: str, folder: Path, manifest: dict[str, Any]
) -> dict[str, str]:
    """Upload every manifest file and the manifest, then write the pointer; return the keys."""
    prefix = version_prefix(model_name, version)
    for artifact in manifest["artifacts"]:
        store.put_file(f"{prefix}/{artifact['path']}", Path(folder) / artifact["path"])
    manifest_key = f"{prefix}/{MANIFEST_NAME}"
    store.put_bytes(manifest_key, json.dumps(manifest, indent=2, sort_keys=True).encode())
    pointer = {
        "version": version,
        "manifest": manifest_key,
        "published_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    store.put_bytes(pointer_key(model_name), json.dumps(pointer, sort_keys=True).encode())
    return {
        "prefix": prefix,
        "manifest": manifest_key,
        "pointer": pointer_key(model_name),
        "uri": store.uri(prefix),
    }


def fetch_current(
    store: ArtifactStore, model_name: str, into: Path | None = None, hmac_secret: str | None = None
) -> tuple[Path, dict[str, Any]]:
    """Download the current version, verify it, and return (folder, pointer)."""
    pointer = json.loads(store.get_bytes(pointer_key(model_name)))
    manifest = json.loads(store.get_bytes(pointer["manifest"]))
    prefix = pointer["manifest"].rsplit("/", 1)[0]
    blobs = {a["path"]: store.get_bytes(f"{prefix}/{a['path']}") for a in manifest["artifacts"]}
    verify_manifest(manifest, blobs.__getitem__, hmac_secret)
    target = Path(into or tempfile.mkdtemp(prefix=f"routeiq-{model_name}-"))
    for path, data in blobs.items():
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        (target / path).write_bytes(data)
    (target / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return target, pointer
