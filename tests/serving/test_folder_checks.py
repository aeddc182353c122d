"""Hostile router folders through the real CLI (``routeiq route --model-dir``): a manifest that
names a file outside the folder, a link, a FIFO, a device or an oversized file is refused
before anything is read; a corrupt weights.npz and a manifest that is not JSON are errors that
name the file. A normal folder still loads and routes."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from routeiq_assets.deployment.manifest import (
    MAX_ARTIFACT_BYTES,
    ManifestError,
    build_manifest,
    read_artifact,
    sha256_bytes,
)
from tests.deployment.conftest import MODELS, train_router

ROUTEIQ = [sys.executable, "-m", "routeiq_assets.cli", "route"]
MEMORY_LIMIT = 4 << 30  # a loader that read /dev/zero fails here, not by exhausting the machine
SECRET = "hmac-secret-for-tests-0123456789"


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def route(folder: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LLMROUTER_", "ROUTEIQ_"))}
    return subprocess.run(
        [*ROUTEIQ, "--model-dir", str(folder), "--query", "Prove there are infinitely many primes"],
        env={**clean, "HF_HUB_OFFLINE": "1", **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,  # a loader that opened a FIFO for reading would block here
        preexec_fn=_limit_memory,
    )


def router_folder(root: Path, **manifest_args) -> Path:
    """A trained knn router folder with its manifest (unsigned unless given keys)."""
    folder = train_router(root / "router")
    manifest = build_manifest(folder, version="1", **manifest_args)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def assert_refused(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stdout == ""  # no decision
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.fixture
def outside(tmp_path) -> Path:
    """A readable file beside (not in) the router folder; the manifests give its true hash, so
    only the path check stands between it and the loader."""
    path = tmp_path / "outside.json"
    path.write_text('{"secret": "not a router file"}')
    return path


def _parent(folder: Path, outside: Path) -> str:
    return "../outside.json"


def _absolute(folder: Path, outside: Path) -> str:
    return str(outside)


def _dev_zero(folder: Path, outside: Path) -> str:
    return "/dev/zero"


def _link_out(folder: Path, outside: Path) -> str:
    (folder / "extra.json").symlink_to(outside)
    return "extra.json"


def _link_dir_out(folder: Path, outside: Path) -> str:
    (folder / "sub").symlink_to(outside.parent, target_is_directory=True)
    return "sub/outside.json"


def _link_dev_zero(folder: Path, outside: Path) -> str:
    (folder / "zeros.bin").symlink_to("/dev/zero")
    return "zeros.bin"


def _link_inside(folder: Path, outside: Path) -> str:
    (folder / "alias.json").symlink_to(folder / "router.json")
    return "alias.json"


def _fifo(folder: Path, outside: Path) -> str:
    os.mkfifo(folder / "queue.bin")
    return "queue.bin"


def _too_big(folder: Path, outside: Path) -> str:
    with open(folder / "huge.bin", "wb") as handle:
        handle.truncate(MAX_ARTIFACT_BYTES + 1)  # sparse: no disk used
    return "huge.bin"


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        pytest.param(_parent, "points outside the version folder", id="parent"),
        pytest.param(_absolute, "points outside the version folder", id="absolute"),
        pytest.param(_dev_zero, "points outside the version folder", id="dev-zero"),
        pytest.param(_link_out, "extra.json is a symbolic link", id="link-out"),
        pytest.param(_link_dir_out, "sub is a symbolic link", id="link-dir-out"),
        pytest.param(_link_dev_zero, "zeros.bin is a symbolic link", id="link-dev-zero"),
        pytest.param(_link_inside, "alias.json is a symbolic link", id="link-inside"),
        pytest.param(_fifo, "queue.bin is a FIFO", id="fifo"),
        pytest.param(_too_big, f"a file of {MAX_ARTIFACT_BYTES + 1} bytes", id="too-big"),
    ],
)
def test_a_manifest_naming_a_file_that_is_not_a_regular_file_inside_is_refused(
    tmp_path, outside, make, reason
):
    folder = train_router(tmp_path / "router")
    path = make(folder, outside)
    manifest = build_manifest(folder, version="1")
    manifest["artifacts"] = [a for a in manifest["artifacts"] if a["path"] != path]
    manifest["artifacts"].append({"path": path, "sha256": sha256_bytes(outside.read_bytes())})
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert_refused(route(folder), path, reason)


@pytest.mark.parametrize("kind", ["fifo", "link"])
def test_a_file_the_loader_reads_but_the_manifest_leaves_out_is_refused(tmp_path, kind):
    folder = train_router(tmp_path / "router")
    (folder / "weights.npz").rename(tmp_path / "weights.npz")
    (folder / "manifest.json").write_text(json.dumps(build_manifest(folder, version="1")))
    if kind == "fifo":
        os.mkfifo(folder / "weights.npz")  # opened for reading, it would block the loader
    else:
        (folder / "weights.npz").symlink_to(tmp_path / "weights.npz")
    assert_refused(route(folder), "files not in the manifest: weights.npz")


def test_the_size_limit_is_checked_before_reading(tmp_path):
    folder = train_router(tmp_path / "router")
    size = (folder / "router.json").stat().st_size
    assert (
        read_artifact(folder, "router.json", max_bytes=size)
        == (folder / "router.json").read_bytes()
    )
    with pytest.raises(ManifestError, match=f"router.json: refused, a file of {size} bytes"):
        read_artifact(folder, "router.json", max_bytes=size - 1)


def test_a_normal_folder_loads_and_routes(tmp_path):
    from routeiq_assets.deployment.manifest import ManifestKeys

    folder = router_folder(tmp_path, keys=ManifestKeys(hmac_secret=SECRET))
    result = route(folder, {"LLMROUTER_MODEL_HMAC_SECRET": SECRET})
    assert result.returncode == 0, result.stderr
    decision = json.loads(result.stdout)
    assert decision["model"] in MODELS and decision["version"] == "1"
    assert set(decision["scores"]) == set(MODELS)


@pytest.mark.parametrize("damage", ["random", "damaged-zip"])
def test_a_corrupt_weights_npz_is_an_error_naming_it(tmp_path, damage):
    folder = train_router(tmp_path / "router")
    weights = folder / "weights.npz"
    if damage == "random":
        weights.write_bytes(os.urandom(4096))
    else:  # a zip whose directory is intact and whose array bytes are not
        data = bytearray(weights.read_bytes())
        data[64:-200] = os.urandom(len(data) - 264)
        weights.write_bytes(bytes(data))
    (folder / "manifest.json").write_text(json.dumps(build_manifest(folder, version="1")))
    result = route(folder)
    assert_refused(result, str(weights), "corrupt")
    assert "allow_pickle" not in result.stderr  # numpy's advice to unpickle it is not ours


@pytest.mark.parametrize("content", [b"not json {", b"\xff\xfe\x00garbage", b"[]"])
def test_a_manifest_that_is_not_a_manifest_object_is_an_error_naming_it(tmp_path, content):
    folder = router_folder(tmp_path)
    (folder / "manifest.json").write_bytes(content)
    assert_refused(route(folder), str(folder / "manifest.json"))
