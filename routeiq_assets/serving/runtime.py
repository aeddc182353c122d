"""The runtime a gateway embeds: load a verified router, route queries, hot-reload new versions.

A runtime loads from a folder or from an artifact store (S3 or a local store) through the
version pointer ``<prefix>/<model-name>/current.json``. Every file is checked against the
manifest's SHA-256 (and its signature when signed or when a key is configured) before a model
is built; a new version replaces the active one in a single reference swap, so a concurrent
``route()`` uses either the old or the new model, never a mix. A version that fails to
download, verify or load is logged and skipped: the old model keeps serving.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from routeiq_assets.deployment.manifest import (
    MANIFEST_NAME,
    ManifestError,
    ManifestKeys,
    parse_manifest,
    read_artifact,
    verify_manifest,
)
from routeiq_assets.deployment.publish import POINTER_NAME, fetch_version
from routeiq_assets.deployment.store import ArtifactStore
from routeiq_assets.routers.base import Router, decide, load_router, read_router_meta

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RouteDecision:
    model: str
    scores: dict[str, float]  # predicted quality per known model
    latency_ms: float
    version: str | None = None
    rule: str = "lambda"  # "lambda", "max_cost", or "max_cost_exceeded" (cheapest candidate)
    lam: float | None = None  # the lambda the "lambda" rule used (None under max_cost)
    costs: dict[str, float] | None = None  # expected cost per known model, the rule's cost


@dataclass(frozen=True)
class LoadedModel:
    router: Router
    embedding_model: str
    default_lambda: float
    version: str | None
    folder: Path | None
    cost_aware: bool = True  # False: trained without prices, so lambda > 0 and max_cost refused


def load_model(
    folder: Path, keys: ManifestKeys | None = None, version: str | None = None, verify: bool = True
) -> LoadedModel:
    """Verify ``folder`` against its manifest (when it has one; required when a verification
    key is set) and load its router; a file the manifest does not cover is refused, and so is
    an artifact that is not a regular file inside ``folder`` (a link, a FIFO, a device, a path
    with ``..``) or is over ``MAX_ARTIFACT_BYTES``."""
    folder = Path(folder)
    manifest_path = folder / MANIFEST_NAME
    if verify and (manifest_path.exists() or manifest_path.is_symlink()):
        manifest = parse_manifest(read_artifact(folder, MANIFEST_NAME), str(manifest_path))
        verify_manifest(manifest, lambda path: read_artifact(folder, path), keys=keys)
        covered = {a["path"] for a in manifest.get("artifacts", [])}
        uncovered = sorted(
            rel
            for p in folder.rglob("*")
            if (p.is_symlink() or not p.is_dir())  # a link or FIFO the loader might open
            and p != manifest_path
            and (rel := p.relative_to(folder).as_posix()) not in covered
        )
        if uncovered:
            raise ManifestError(f"{folder}: files not in the manifest: {', '.join(uncovered)}")
        version = version or manifest.get("version")
    elif verify and keys is not None and keys.verifies:
        raise ManifestError(
            f"{folder} has no {MANIFEST_NAME}, but a verification key is configured"
        )
    meta = read_router_meta(folder)
    return LoadedModel(
        load_router(folder),
        meta["embedding_model"],
        float(meta.get("default_lambda", 0.0)),
        version,
        folder,
        bool(meta.get("cost_aware", True)),
    )


class RouterRuntime:
    """Routes queries with the active router; embeds text with the router's embedding model."""

    def __init__(
        self,
        router: Router,
        embedding_model: str,
        default_lambda: float = 0.0,
        version: str | None = None,
    ):
        self._active = LoadedModel(router, embedding_model, default_lambda, version, None)
        self._store: ArtifactStore | None = None
        self._pointer_key: str | None = None
        self._keys: ManifestKeys | None = None
        self._etag: str | None = None
        self._workdir: Path | None = None
        self._kept: deque[Path] = deque()
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None
        self.poll_interval_s = 30.0
        self.last_error: str | None = None
        self.last_swap_ms: float | None = None
        self.swaps = 0
        self.failures = 0  # versions that failed to download, verify or load (each attempt)

    @classmethod
    def _from_loaded(cls, loaded: LoadedModel) -> RouterRuntime:
        runtime = cls(loaded.router, loaded.embedding_model, loaded.default_lambda, loaded.version)
        runtime._active = loaded
        return runtime

    @property
    def router(self) -> Router:
        return self._active.router

    @property
    def embedding_model(self) -> str:
        return self._active.embedding_model

    @property
    def default_lambda(self) -> float:
        return self._active.default_lambda

    @property
    def version(self) -> str | None:
        return self._active.version

    @classmethod
    def from_folder(
        cls, folder: Path, hmac_secret: str | None = None, keys: ManifestKeys | None = None
    ) -> RouterRuntime:
        """A runtime over a router folder, verified first when it holds a manifest."""
        return cls._from_loaded(load_model(folder, keys or ManifestKeys(hmac_secret=hmac_secret)))

    @classmethod
    def from_store(
        cls,
        store: ArtifactStore,
        pointer_key: str,
        keys: ManifestKeys | None = None,
        poll_interval_s: float = 30.0,
        workdir: Path | None = None,
    ) -> RouterRuntime:
        """A runtime over the version ``pointer_key`` (``.../<model-name>/current.json``, or the
        model's prefix) names; raises when the first version cannot be fetched or verified."""
        if not pointer_key.endswith(POINTER_NAME):
            pointer_key = f"{pointer_key.rstrip('/')}/{POINTER_NAME}"
        data, etag = store.get_if_changed(pointer_key)
        pointer = json.loads(data)
        work = Path(workdir or tempfile.mkdtemp(prefix="routeiq-runtime-"))
        try:
            loaded = cls._fetch(store, pointer, keys, work)
        except BaseException:
            if workdir is None:  # ours: nobody else would remove it
                shutil.rmtree(work, ignore_errors=True)
            raise
        runtime = cls._from_loaded(loaded)
        runtime._store, runtime._pointer_key, runtime._keys = store, pointer_key, keys
        runtime._etag, runtime._workdir = etag, work
        runtime._kept.append(loaded.folder)
        runtime.poll_interval_s = poll_interval_s
        return runtime

    @staticmethod
    def _fetch(
        store: ArtifactStore, pointer: dict, keys: ManifestKeys | None, work: Path
    ) -> LoadedModel:
        folder = Path(tempfile.mkdtemp(prefix=f"v{pointer['version']}-", dir=work))
        try:
            fetch_version(store, pointer["manifest"], folder, keys, str(pointer["version"]))
            # fetch_version verified every byte it wrote; loading reads those same files
            return load_model(folder, version=str(pointer["version"]), verify=False)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    def refresh(self) -> bool:
        """Poll the pointer (a conditional GET on its ETag); load, verify and swap in a new
        version. Returns whether the active model changed; failures keep the old model."""
        if self._store is None or self._pointer_key is None or self._workdir is None:
            raise RuntimeError("refresh() needs a runtime made by from_store()")
        with self._refresh_lock:
            try:
                data, etag = self._store.get_if_changed(self._pointer_key, self._etag)
                if data is None:
                    return False
                pointer = json.loads(data)
                if str(pointer["version"]) == self.version:
                    self._etag = etag
                    return False
                started = time.perf_counter()
                loaded = self._fetch(self._store, pointer, self._keys, self._workdir)
                if (
                    loaded.router.input_kind != "text"
                    and loaded.embedding_model != self._active.embedding_model
                ):
                    # the new version's encoder loads here, in the polling thread, before the
                    # swap: no request waits for it (and a version whose encoder cannot load
                    # is refused like any other failure)
                    self.embed(["warm up"], loaded.embedding_model)
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.failures += 1
                log.warning(
                    "router %s: keeping version %s, the new one failed: %s",
                    self._pointer_key,
                    self.version,
                    self.last_error,
                )
                return False
            previous = self.version
            self._active = loaded  # one reference swap: route() sees old or new, never a mix
            self.last_swap_ms = (time.perf_counter() - started) * 1000
            self._etag, self.last_error = etag, None
            self.swaps += 1
            self._kept.append(loaded.folder)
            while len(self._kept) > 2:  # in-flight calls may still hold the previous model
                shutil.rmtree(self._kept.popleft(), ignore_errors=True)
            log.info("router %s: version %s -> %s", self._pointer_key, previous, self.version)
            return True

    def start_polling(self, interval_s: float | None = None) -> RouterRuntime:
        """Refresh every ``interval_s`` seconds in a daemon thread until :meth:`close`."""
        if interval_s is not None:
            self.poll_interval_s = interval_s
        if self._poller is None:
            self._stop.clear()
            self._poller = threading.Thread(
                target=self._poll_loop, name="routeiq-router-poll", daemon=True
            )
            self._poller.start()
        return self

    def _poll_loop(self) -> None:
        while not self._stop.wait(self.poll_interval_s):
            self.refresh()

    def close(self) -> None:
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout=max(5.0, self.poll_interval_s))
            self._poller = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> RouterRuntime:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def embed(self, texts: list[str], embedding_model: str | None = None) -> np.ndarray:
        from routeiq_assets.training.embeddings import minilm_encoder

        return minilm_encoder(embedding_model or self.embedding_model, "cpu")(texts)

    def route(
        self,
        query: str | None = None,
        embedding: np.ndarray | None = None,
        lam: float | None = None,
        candidates: list[str] | None = None,
        max_cost: float | None = None,
    ) -> RouteDecision:
        """The model for one query (text, or its embedding): ``argmax quality - lam * cost``
        over ``candidates`` (all known models by default), or with ``max_cost`` the best
        predicted quality among candidates whose expected cost is within it (the cheapest
        candidate when none is)."""
        started = time.perf_counter()
        active = self._active  # one read: a concurrent swap cannot change the model mid-call
        router = active.router
        if router.input_kind == "text":
            if query is None:
                raise ValueError(f"a {router.router_type} router reads the query text")
            inputs = [query]
        elif embedding is None:
            if query is None:
                raise ValueError("route() needs a query text or an embedding")
            inputs = self.embed([query], active.embedding_model)
        else:
            inputs = np.asarray(embedding, np.float32).reshape(1, -1)
            if not np.isfinite(inputs).all():
                raise ValueError("the embedding holds NaN or infinite values")
        for name, value in (("lambda", lam), ("max_cost", max_cost)):
            if value is not None and not (np.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        names = router.model_names_
        available = np.ones(len(names), bool)
        if candidates is not None:
            available = np.array([n in candidates for n in names])
            if not available.any():
                raise ValueError(
                    f"none of the candidates {candidates} is known to this router ({names})"
                )
        if not active.cost_aware and (max_cost is not None or (lam or 0.0) > 0):
            raise ValueError(
                "this router is quality-only (trained without any model price), so it cannot "
                "route by cost (lambda > 0 or max_cost): price its candidates in the prices file "
                "and retrain it"
            )
        quality = router.predict_quality(inputs)
        if not np.isfinite(quality).all():
            bad = [n for n, q in zip(names, quality[0], strict=True) if not np.isfinite(q)]
            raise ValueError(
                f"router version {active.version} predicts a non-finite quality for {bad}: its "
                "weights are damaged; retrain it, or roll back to an earlier version"
            )
        cost = np.asarray(router.cost_, np.float64)
        rule = "lambda"
        if max_cost is not None:
            within = available & (cost <= max_cost)
            if within.any():
                idx, rule = int(decide(quality, cost, 0.0, within)[0]), "max_cost"
            else:
                idx = int(np.flatnonzero(available)[np.argmin(cost[available])])
                rule = "max_cost_exceeded"
        else:
            lam = active.default_lambda if lam is None else lam
            idx = int(decide(quality, cost, lam, available)[0])
        return RouteDecision(
            names[idx],
            {n: float(q) for n, q in zip(names, quality[0], strict=True)},
            (time.perf_counter() - started) * 1000,
            active.version,
            rule,
            lam if rule == "lambda" else None,
            dict(zip(names, cost.tolist(), strict=True)),
        )
