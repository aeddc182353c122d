"""``routeiq route``: one query, or a JSONL file of queries routed in one process.

Each input line is ``{"query": ...}`` with optional ``id``, ``candidates``, ``lambda`` and
``max_cost`` (overriding the command's); each output line is one decision, or ``{"line",
"error"}`` for an input line that could not be routed (the exit status is then 1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from routeiq_assets.deployment.manifest import ManifestKeys
from routeiq_assets.serving.runtime import RouteDecision, RouterRuntime

EMBED_BATCH = 256


def runtime_for(args: argparse.Namespace) -> RouterRuntime:
    """The runtime over ``--model-dir``, or over S3 ``--model-s3-bucket``/``--model-s3-key``
    (endpoint from ROUTEIQ_S3_ENDPOINT_URL, credentials from the AWS environment)."""
    keys = ManifestKeys.from_env()
    if args.model_dir:
        return RouterRuntime.from_folder(Path(args.model_dir), keys=keys)
    if not args.model_s3_key:
        raise ValueError("--model-s3-bucket needs --model-s3-key (e.g. models/knn-router/)")
    from routeiq_assets.deployment.store import S3ArtifactStore, s3_client_for
    from routeiq_assets.settings import RouteIQSettings

    client = s3_client_for(RouteIQSettings().s3_endpoint_url)
    return RouterRuntime.from_store(
        S3ArtifactStore(client, args.model_s3_bucket), args.model_s3_key, keys
    )


def _decision_row(decision: RouteDecision, extra: dict[str, Any]) -> dict[str, Any]:
    return {
        **extra,
        "model": decision.model,
        "scores": {k: round(v, 6) for k, v in decision.scores.items()},
        "latency_ms": round(decision.latency_ms, 4),
        "version": decision.version,
        "rule": decision.rule,
    }


def _read_queries(path: Path) -> list[tuple[int, dict[str, Any] | str]]:
    """(line number, request or error text) per non-empty line."""
    rows: list[tuple[int, dict[str, Any] | str]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                request = json.loads(line)
            except json.JSONDecodeError as exc:
                rows.append((number, f"not JSON: {exc.msg}"))
                continue
            if not isinstance(request, dict) or not isinstance(request.get("query"), str):
                rows.append((number, 'expected {"query": "<text>", ...}'))
                continue
            rows.append((number, request))
    return rows


def route_file(
    runtime: RouterRuntime,
    path: Path,
    out: TextIO,
    candidates: list[str] | None = None,
    lam: float | None = None,
    max_cost: float | None = None,
) -> dict[str, Any]:
    """Route every line of ``path`` (texts embedded in batches) and write one line per input."""
    rows = _read_queries(path)
    requests = [(n, r) for n, r in rows if isinstance(r, dict)]
    started = time.perf_counter()
    embeddings: dict[int, np.ndarray] = {}
    if runtime.router.input_kind != "text":
        texts = [r["query"] for _, r in requests]
        for start in range(0, len(texts), EMBED_BATCH):
            batch = runtime.embed(texts[start : start + EMBED_BATCH])
            for offset, vector in enumerate(batch):
                embeddings[requests[start + offset][0]] = vector
    embed_s = time.perf_counter() - started
    latencies, errors = [], 0
    for number, request in rows:
        if isinstance(request, str):
            out.write(json.dumps({"line": number, "error": request}) + "\n")
            errors += 1
            continue
        try:
            decision = runtime.route(
                query=request["query"],
                embedding=embeddings.get(number),
                lam=request.get("lambda", lam),
                candidates=request.get("candidates", candidates),
                max_cost=request.get("max_cost", max_cost),
            )
        except (ValueError, TypeError) as exc:
            out.write(json.dumps({"line": number, "error": str(exc)}) + "\n")
            errors += 1
            continue
        extra = {"line": number, **({"id": request["id"]} if "id" in request else {})}
        out.write(json.dumps(_decision_row(decision, extra)) + "\n")
        latencies.append(decision.latency_ms)
    return {
        "file": str(path),
        "decisions": len(latencies),
        "errors": errors,
        "version": runtime.version,
        "embedding_seconds": round(embed_s, 3),
        "route_p50_ms": round(float(np.percentile(latencies, 50)), 4) if latencies else None,
        "route_p99_ms": round(float(np.percentile(latencies, 99)), 4) if latencies else None,
    }


def _timed(fn) -> tuple[Any, float]:
    started = time.perf_counter()
    value = fn()
    return value, round((time.perf_counter() - started) * 1000, 3)


def route_one(
    runtime: RouterRuntime, query: str, candidates, lam, max_cost, load_ms: float | None = None
) -> dict[str, Any]:
    """One decision, with the time of each part apart: loading the router (when given), loading
    the embedding model (0 once loaded), embedding the query, and the decision itself
    (``latency_ms``: with the embedding given, as in a gateway that embeds once)."""
    from routeiq_assets.training.embeddings import load_encoder

    timings: dict[str, float] = {} if load_ms is None else {"router_load_ms": load_ms}
    embedding = None
    if runtime.router.input_kind != "text":
        _, timings["encoder_load_ms"] = _timed(lambda: load_encoder(runtime.embedding_model, "cpu"))
        vectors, timings["embed_ms"] = _timed(lambda: runtime.embed([query]))
        embedding = vectors[0]
    decision = runtime.route(
        query=query if embedding is None else None,
        embedding=embedding,
        lam=lam,
        candidates=candidates,
        max_cost=max_cost,
    )
    timings["decision_ms"] = round(decision.latency_ms, 4)
    return _decision_row(decision, {"timings": timings})


def watch(runtime: RouterRuntime, seconds: float, out: TextIO, decide=None) -> None:
    """Poll the deployed pointer every ``seconds`` and write a line at each version switch (with
    ``decide()``'s decision under the new version) and each version refused, until interrupted
    (the seed guide's hot-reload smoke test)."""
    refused = None
    while True:
        time.sleep(seconds)
        previous = runtime.version
        if runtime.refresh():
            line = {
                "event": "switch",
                "from": previous,
                "to": runtime.version,
                "swap_ms": round(runtime.last_swap_ms, 1),
            }
            if decide is not None:
                line["decision"] = decide()
        elif runtime.last_error and runtime.last_error != refused:
            refused = runtime.last_error
            line = {"event": "refused", "serving": runtime.version, "error": refused}
        else:
            continue
        out.write(json.dumps(line) + "\n")
        out.flush()


def route_command(args: argparse.Namespace) -> int:
    from routeiq_assets.deployment.store import ArtifactStoreError

    if getattr(args, "watch", None) is not None and not args.model_s3_bucket:
        print(
            "routeiq route: error: --watch polls a deployed pointer: give --model-s3-bucket "
            "and --model-s3-key",
            file=sys.stderr,
        )
        return 2
    try:
        runtime, load_ms = _timed(lambda: runtime_for(args))
    except ArtifactStoreError as exc:
        print(f"routeiq route: error: {exc}", file=sys.stderr)
        return 1
    candidates = [c.strip() for c in args.candidates.split(",")] if args.candidates else None
    out = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout  # noqa: SIM115
    try:
        if args.query is not None:

            def decide(load: float | None = None) -> dict[str, Any]:
                return route_one(runtime, args.query, candidates, args.lam, args.max_cost, load)

            out.write(json.dumps(decide(load_ms)) + "\n")
            out.flush()
            if getattr(args, "watch", None) is not None:
                with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends the watch
                    watch(runtime, args.watch, out, decide)
            return 0
        summary = route_file(runtime, Path(args.queries), out, candidates, args.lam, args.max_cost)
    finally:
        if out is not sys.stdout:
            out.close()
        runtime.close()
    print(json.dumps(summary), file=sys.stderr)
    return 1 if summary["errors"] else 0
