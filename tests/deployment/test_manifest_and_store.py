import json

import pytest

from routeiq_assets.deployment.manifest import (
    ManifestError,
    build_manifest,
    canonical_signing_bytes,
    verify_manifest,
)
from routeiq_assets.deployment.publish import fetch_current, pointer_key, publish_version
from routeiq_assets.deployment.store import ArtifactStoreError, LocalArtifactStore


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "router"
    root.mkdir()
    (root / "router.json").write_text('{"a": 1}')
    (root / "weights.npz").write_bytes(b"\x00\x01" * 100)
    return root


def test_manifest_hashes_every_file_and_detects_tampering(folder):
    manifest = build_manifest(folder, version="3")
    assert sorted(a["path"] for a in manifest["artifacts"]) == ["router.json", "weights.npz"]
    verify_manifest(manifest, lambda p: (folder / p).read_bytes())
    (folder / "weights.npz").write_bytes(b"tampered")
    with pytest.raises(ManifestError, match="weights.npz"):
        verify_manifest(manifest, lambda p: (folder / p).read_bytes())


def test_hmac_signature(folder):
    manifest = build_manifest(folder, version="1", description="d", hmac_secret="s3cret")
    assert manifest["signature_type"] == "hmac-sha256" and manifest["signature"]
    body = json.loads(canonical_signing_bytes(manifest))
    assert list(body) == sorted(body) and set(body) == {
        "artifacts",
        "created_at",
        "description",
        "version",
    }
    verify_manifest(manifest, lambda p: (folder / p).read_bytes(), hmac_secret="s3cret")
    with pytest.raises(ManifestError, match="signature"):
        verify_manifest(manifest, lambda p: (folder / p).read_bytes(), hmac_secret="other")
    unsigned = build_manifest(folder, version="1")
    with pytest.raises(ManifestError, match="'none'"):
        verify_manifest(unsigned, lambda p: (folder / p).read_bytes(), hmac_secret="s3cret")


def test_publish_writes_pointer_last_and_fetch_verifies(folder, tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    with pytest.raises(ArtifactStoreError):
        store.get_bytes(pointer_key("m"))
    keys = publish_version(store, "m", "1", folder, build_manifest(folder, version="1"))
    assert json.loads(store.get_bytes(keys["pointer"]))["version"] == "1"
    fetched, pointer = fetch_current(store, "m", tmp_path / "out")
    assert (fetched / "weights.npz").read_bytes() == (folder / "weights.npz").read_bytes()
    store.put_bytes("models/m/1/weights.npz", b"evil")
    with pytest.raises(ManifestError):
        fetch_current(store, "m", tmp_path / "out2")


def test_local_store_refuses_keys_outside_root(tmp_path):
    with pytest.raises(ArtifactStoreError, match="escapes"):
        LocalArtifactStore(tmp_path / "s").put_bytes("../x", b"1")
