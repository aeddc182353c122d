"""RouteIQ's model manifest: SHA-256 per file, optionally HMAC-SHA256 signed.

The signature covers the canonical JSON (sorted keys, separators ',' and ':', UTF-8) of
``{version, artifacts: [{path, sha256}] sorted by path, created_at, description}``, the last two
only when set. The key comes from the environment and is never logged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MANIFEST_NAME = "manifest.json"


class ManifestError(ValueError):
    """A manifest that does not match its files or its signature."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def canonical_signing_bytes(manifest: dict[str, Any]) -> bytes:
    body: dict[str, Any] = {
        "version": manifest["version"],
        "artifacts": sorted(
            ({"path": a["path"], "sha256": a["sha256"]} for a in manifest["artifacts"]),
            key=lambda a: a["path"],
        ),
    }
    for optional in ("created_at", "description"):
        if manifest.get(optional):
            body[optional] = manifest[optional]
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def build_manifest(
    folder: Path,
    version: str,
    description: str = "",
    metadata: dict[str, Any] | None = None,
    hmac_secret: str | None = None,
) -> dict[str, Any]:
    """A manifest for every file under ``folder`` (paths relative, '/'-separated)."""
    folder = Path(folder)
    created = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    artifacts = [
        {
            "path": p.relative_to(folder).as_posix(),
            "sha256": sha256_bytes(p.read_bytes()),
            "description": "",
            "created_at": created,
            "tags": [],
            "metadata": {},
        }
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name != MANIFEST_NAME
    ]
    manifest = {
        "version": version,
        "created_at": created,
        "signature_type": "none",
        "signature": None,
        "description": description,
        "artifacts": artifacts,
        "metadata": metadata or {},
    }
    if hmac_secret:
        digest = hmac.new(hmac_secret.encode(), canonical_signing_bytes(manifest), hashlib.sha256)
        manifest["signature_type"] = "hmac-sha256"
        manifest["signature"] = base64.b64encode(digest.digest()).decode()
    return manifest


def verify_manifest(manifest: dict[str, Any], read: Any, hmac_secret: str | None = None) -> None:
    """Check every file's SHA-256 (``read(path) -> bytes``) and the signature when configured."""
    for artifact in manifest.get("artifacts", []):
        actual = sha256_bytes(read(artifact["path"]))
        if actual != artifact["sha256"]:
            raise ManifestError(
                f"{artifact['path']}: sha256 {actual} does not match the manifest's "
                f"{artifact['sha256']}"
            )
    kind = manifest.get("signature_type", "none")
    if hmac_secret:
        if kind != "hmac-sha256":
            raise ManifestError(f"a signing secret is configured but the manifest is {kind!r}")
        expected = hmac.new(hmac_secret.encode(), canonical_signing_bytes(manifest), hashlib.sha256)
        given = base64.b64decode(manifest.get("signature") or "")
        if not hmac.compare_digest(expected.digest(), given):
            raise ManifestError("manifest signature does not verify")
