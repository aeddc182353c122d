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


def test_signed_body_is_the_gateways_canonical_json(folder):
    manifest = build_manifest(folder, version="7", description="routeur für Tests")
    spec = {
        "version": "7",
        "artifacts": sorted(
            ({"path": a["path"], "sha256": a["sha256"]} for a in manifest["artifacts"]),
            key=lambda a: a["path"],
        ),
        "created_at": manifest["created_at"],
        "description": "routeur für Tests",
    }
    assert canonical_signing_bytes(manifest) == json.dumps(
        spec, sort_keys=True, separators=(",", ":")
    ).encode("utf-8")
    assert set(manifest) == {
        "version",
        "created_at",
        "signature_type",
        "signature",
        "description",
        "artifacts",
        "metadata",
    }
    assert set(manifest["artifacts"][0]) == {
        "path",
        "sha256",
        "description",
        "created_at",
        "tags",
        "metadata",
    }


def test_ed25519_from_pem_files(folder, tmp_path):
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from routeiq_assets.deployment.manifest import ManifestKeys

    private = ed25519.Ed25519PrivateKey.generate()
    (tmp_path / "key.pem").write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    (tmp_path / "key.pub").write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    signer = ManifestKeys.from_env({"LLMROUTER_MODEL_PRIVATE_KEY_PATH": str(tmp_path / "key.pem")})
    manifest = build_manifest(folder, version="1", keys=signer)
    assert manifest["signature_type"] == "ed25519"
    private.public_key().verify(
        base64.b64decode(manifest["signature"]), canonical_signing_bytes(manifest)
    )
    verifier = ManifestKeys.from_env({"LLMROUTER_MODEL_PUBLIC_KEY_PATH": str(tmp_path / "key.pub")})
    verify_manifest(manifest, lambda p: (folder / p).read_bytes(), keys=verifier)
    manifest["description"] = "changed after signing"
    with pytest.raises(ManifestError, match="ed25519"):
        verify_manifest(manifest, lambda p: (folder / p).read_bytes(), keys=verifier)
    with pytest.raises(ManifestError, match="LLMROUTER_MODEL_PUBLIC_KEY_PATH"):
        ManifestKeys.from_env({"LLMROUTER_MODEL_PUBLIC_KEY_PATH": str(tmp_path / "key.pem")})


def test_pointer_history_and_rollback(folder, tmp_path):
    from routeiq_assets.deployment.publish import RollbackError, rollback

    store = LocalArtifactStore(tmp_path / "store")
    for version in ("1", "2", "3"):
        publish_version(store, "m", version, folder, build_manifest(folder, version=version))
    assert json.loads(store.get_bytes(pointer_key("m")))["previous"] == ["1", "2"]
    assert rollback(store, "m")["version"] == "2"
    assert rollback(store, "m")["version"] == "1"
    with pytest.raises(RollbackError, match="nothing to roll back"):
        rollback(store, "m")
    assert rollback(store, "m", to="3")["previous"] == ["1"]
    with pytest.raises(RollbackError, match="no such version"):
        rollback(store, "m", to="9")
    assert json.loads(store.get_bytes(pointer_key("m")))["version"] == "3"


@pytest.mark.parametrize("absolute", [False, True])
def test_fetch_refuses_artifact_paths_outside_the_version_folder(tmp_path, absolute):
    from routeiq_assets.deployment.manifest import sha256_bytes

    outside = tmp_path / "outside.txt"
    bad_path = str(outside) if absolute else "../../outside.txt"  # from tmp_path/out/deep
    store = LocalArtifactStore(tmp_path / "store")
    data = b"written outside the version folder"
    store.put_bytes(f"models/m/1/{bad_path}", data)
    manifest = {
        "version": "1",
        "signature_type": "none",
        "signature": None,
        "artifacts": [{"path": bad_path, "sha256": sha256_bytes(data)}],
    }
    store.put_bytes("models/m/1/manifest.json", json.dumps(manifest).encode())
    pointer = {"version": "1", "manifest": "models/m/1/manifest.json"}
    store.put_bytes(pointer_key("m"), json.dumps(pointer).encode())
    with pytest.raises(ManifestError, match="outside"):
        fetch_current(store, "m", tmp_path / "out" / "deep")
    assert not outside.exists()


def test_rollback_refuses_a_manifest_of_another_version(folder, tmp_path):
    from routeiq_assets.deployment.publish import rollback

    store = LocalArtifactStore(tmp_path / "store")
    for version in ("1", "2"):
        publish_version(store, "m", version, folder, build_manifest(folder, version=version))
    for name in ("router.json", "weights.npz", "manifest.json"):  # version 1 copied as "5"
        store.put_bytes(f"models/m/5/{name}", store.get_bytes(f"models/m/1/{name}"))
    with pytest.raises(ManifestError, match="version"):
        rollback(store, "m", to="5")
    assert json.loads(store.get_bytes(pointer_key("m")))["version"] == "2"
