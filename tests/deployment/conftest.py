"""Real services for deployment and serving tests: a moto S3 server over HTTP and an MLflow
server process, each on a free 127.0.0.1 port, stopped (process group) by the fixture that
started it; plus small routers trained on synthetic 384-d embeddings (MiniLM's size)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import boto3
import numpy as np
import pytest

from routeiq_assets.deployment.registry import log_router_run, register_version
from routeiq_assets.routers import ROUTER_TYPES, save_router
from routeiq_assets.settings import DEFAULT_EMBEDDING_MODEL

BIN = Path(sys.executable).parent
DIM = 384
MODELS = ["small-model", "large-model"]
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
FAST = {
    "knn": {"k": 15},
    "mlp": {"hidden_sizes": (32,), "epochs": 40, "lr": 1e-2, "batch_size": 32, "device": "cpu"},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def service(cmd: list[str], probe_url: str, env: dict[str, str], timeout: float = 90.0):
    """Start ``cmd`` in its own process group, wait until ``probe_url`` answers 200, yield the
    process, and kill the whole group afterwards."""
    log = open(os.devnull, "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        cmd, env={**os.environ, **env}, stdout=log, stderr=log, start_new_session=True
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{cmd[0]} exited with {proc.returncode} before answering")
            try:
                with urllib.request.urlopen(probe_url, timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{cmd[0]} did not answer {probe_url} within {timeout}s")
            time.sleep(0.3)
        yield proc
    finally:
        try:
            os.killpg(proc.pid, signal.SIGCONT)
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def s3_server() -> Iterator[dict]:
    """A moto S3 server; AWS_* test credentials are set in this process while it runs."""
    port = free_port()
    saved = {k: os.environ.get(k) for k in AWS_ENV}
    os.environ.update(AWS_ENV)
    url = f"http://127.0.0.1:{port}"
    try:
        with service(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
            f"{url}/moto-api/",
            AWS_ENV,
        ) as proc:
            yield {"endpoint": url, "pid": proc.pid}
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def bucket(s3_server) -> str:
    name = f"models-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=s3_server["endpoint"]).create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory) -> Iterator[str]:
    """An ``mlflow server`` on SQLite, serving artifacts itself (mlflow-artifacts:/)."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with service(cmd, f"{url}/health", env, timeout=120):
        yield url


def two_cluster_embeddings(n: int = 300, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors near +e0 or -e0 and which side each is on."""
    rng = np.random.default_rng(seed)
    side = rng.integers(0, 2, n)
    x = rng.normal(0, 0.05, (n, DIM))
    x[:, 0] += np.where(side == 0, 1.0, -1.0)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), side


PROBE = np.eye(DIM, dtype=np.float32)[0]  # the +e0 cluster


def train_router(folder: Path, kind: str = "knn", flip: bool = False, n: int = 300) -> Path:
    """A router for which the +e0 cluster belongs to small-model (large-model with ``flip``)."""
    x, side = two_cluster_embeddings(n)
    winner = side if not flip else 1 - side
    quality = np.stack([winner == 0, winner == 1], axis=1).astype(np.float32)
    mask = np.ones_like(quality, dtype=bool)
    router = ROUTER_TYPES[kind](**FAST[kind]).fit(x, quality, mask, MODELS, np.array([0.001, 0.01]))
    save_router(
        router,
        folder,
        extra={"embedding_model": DEFAULT_EMBEDDING_MODEL, "embedding_dim": DIM},
    )
    return folder


def register_router(
    tracking_uri: str, folder: Path, name: str, alias: str | None = None
) -> tuple[str, str]:
    """Log ``folder`` as a RouteIQ router run and register it; return (version, run_id)."""
    run_id = log_router_run(
        tracking_uri, "routeiq-test", None, folder.name, folder, {"kind": "test"}, {}
    )
    return register_version(tracking_uri, run_id, name, alias=alias), run_id
