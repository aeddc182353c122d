"""Publish a router version to an artifact store: files first, the pointer last.

Layout under the store root (``prefix`` defaults to ``models``, the seed's ``--s3-prefix``)::

    <prefix>/<model-name>/<version>/router.json, weights.npz, ..., manifest.json
    <prefix>/<model-name>/current.json   {"version", "manifest", "published_at", "previous"}

A reader that follows ``current.json`` never sees half a version: every file and the manifest
are written before the one pointer object, and a failed upload leaves the pointer as it was.
Rollback is a pointer write (``previous`` lists the versions that were current before, newest
last).
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from routeiq_assets.deployment.manifest import (
    MANIFEST_NAME,
    ManifestError,
    ManifestKeys,
    parse_manifest,
    verify_manifest,
)
from routeiq_assets.deployment.store import ArtifactStore

MODELS_PREFIX = "models"
POINTER_NAME = "current.json"
HISTORY_LIMIT = 50


class RollbackError(ValueError):
    """No version to roll back to, or the target version is missing or does not verify."""


def model_prefix(model_name: str, prefix: str = MODELS_PREFIX) -> str:
    prefix = prefix.strip("/")
    return f"{prefix}/{model_name}" if prefix else model_name


def version_prefix(model_name: str, version: str, prefix: str = MODELS_PREFIX) -> str:
    return f"{model_prefix(model_name, prefix)}/{version}"


def pointer_key(model_name: str, prefix: str = MODELS_PREFIX) -> str:
    return f"{model_prefix(model_name, prefix)}/{POINTER_NAME}"


def read_pointer(
    store: ArtifactStore, model_name: str, prefix: str = MODELS_PREFIX
) -> dict[str, Any] | None:
    """The current pointer, or None when nothing was published yet."""
    key = pointer_key(model_name, prefix)
    return json.loads(store.get_bytes(key)) if store.exists(key) else None


def _write_pointer(
    store: ArtifactStore,
    model_name: str,
    version: str,
    prefix: str,
    previous: list[str],
    action: str,
) -> dict[str, Any]:
    pointer = {
        "model_name": model_name,
        "version": version,
        "manifest": f"{version_prefix(model_name, version, prefix)}/{MANIFEST_NAME}",
        "published_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "action": action,
        "previous": previous[-HISTORY_LIMIT:],
    }
    store.put_bytes(pointer_key(model_name, prefix), json.dumps(pointer, sort_keys=True).encode())
    return pointer


def publish_version(
    store: ArtifactStore,
    model_name: str,
    version: str,
    folder: Path,
    manifest: dict[str, Any],
    prefix: str = MODELS_PREFIX,
) -> dict[str, str]:
    """Upload every manifest file and the manifest, then write the pointer; return the keys."""
    vprefix = version_prefix(model_name, version, prefix)
    for artifact in manifest["artifacts"]:
        store.put_file(f"{vprefix}/{artifact['path']}", Path(folder) / artifact["path"])
    manifest_key = f"{vprefix}/{MANIFEST_NAME}"
    store.put_bytes(manifest_key, json.dumps(manifest, indent=2, sort_keys=True).encode())
    old = read_pointer(store, model_name, prefix)
    history = list(old.get("previous", [])) if old else []
    if old and old["version"] != version:
        history.append(old["version"])
    _write_pointer(store, model_name, version, prefix, history, "publish")
    return {
        "prefix": vprefix,
        "manifest": manifest_key,
        "pointer": pointer_key(model_name, prefix),
        "uri": store.uri(vprefix),
    }


def fetch_version(
    store: ArtifactStore,
    manifest_key: str,
    into: Path | None = None,
    keys: ManifestKeys | None = None,
    version: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Download one version's files, verify them against its manifest, write them to ``into``
    (a new temporary folder by default) only once all verified; return (folder, manifest).
    With ``version``, the (signed) manifest must be that version's."""
    manifest = parse_manifest(store.get_bytes(manifest_key), store.uri(manifest_key))
    if version is not None and str(manifest.get("version")) != str(version):
        raise ManifestError(
            f"{store.uri(manifest_key)} is the manifest of version {manifest.get('version')!r}, "
            f"not of version {version!r}"
        )
    prefix = manifest_key.rsplit("/", 1)[0]
    blobs = {a["path"]: store.get_bytes(f"{prefix}/{a['path']}") for a in manifest["artifacts"]}
    verify_manifest(manifest, blobs.__getitem__, keys=keys)
    target = Path(into or tempfile.mkdtemp(prefix="routeiq-model-"))
    for path, data in blobs.items():
        (target / path).parent.mkdir(parents=True, exist_ok=True)
        (target / path).write_bytes(data)
    (target / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return target, manifest


def fetch_current(
    store: ArtifactStore,
    model_name: str,
    into: Path | None = None,
    hmac_secret: str | None = None,
    keys: ManifestKeys | None = None,
    prefix: str = MODELS_PREFIX,
) -> tuple[Path, dict[str, Any]]:
    """Download the current version, verify it, and return (folder, pointer)."""
    pointer = json.loads(store.get_bytes(pointer_key(model_name, prefix)))
    folder, _ = fetch_version(
        store,
        pointer["manifest"],
        into,
        keys or ManifestKeys(hmac_secret=hmac_secret),
        str(pointer["version"]),
    )
    return folder, pointer


def rollback(
    store: ArtifactStore,
    model_name: str,
    to: str | None = None,
    keys: ManifestKeys | None = None,
    prefix: str = MODELS_PREFIX,
) -> dict[str, Any]:
    """Point ``current.json`` at ``to`` (default: the version current before this one), after
    checking that version's files against its manifest; return the new pointer."""
    current = read_pointer(store, model_name, prefix)
    if current is None:
        raise RollbackError(f"{store.uri(pointer_key(model_name, prefix))} does not exist")
    previous = list(current.get("previous", []))
    if to is None:
        if not previous:
            raise RollbackError(
                f"{model_name}: version {current['version']} is the only one ever published; "
                "nothing to roll back to"
            )
        target, history = previous[-1], previous[:-1]
    else:
        target, history = str(to), [*previous, current["version"]]
        if target == current["version"]:
            raise RollbackError(f"{model_name}: version {target} is already current")
    manifest_key = f"{version_prefix(model_name, target, prefix)}/{MANIFEST_NAME}"
    if not store.exists(manifest_key):
        raise RollbackError(f"{store.uri(manifest_key)} does not exist: no such version")
    with tempfile.TemporaryDirectory(prefix="routeiq-rollback-") as tmp:
        fetch_version(store, manifest_key, Path(tmp), keys, target)
    return _write_pointer(
        store, model_name, target, prefix, history, f"rollback from {current['version']}"
    )
