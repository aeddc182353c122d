"""``routeiq``: the seed guide's commands over the same core as the Dagster assets."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from routeiq_assets.settings import REPO_ROOT, RouteIQSettings, load_settings


def _cmd_info(args: argparse.Namespace) -> int:
    settings = RouteIQSettings()
    described = settings.describe()
    described["dagster_home"] = os.environ.get("DAGSTER_HOME", str(REPO_ROOT / "dagster_home"))
    if args.json:
        print(json.dumps(described, indent=2, sort_keys=True))
    else:
        width = max(map(len, described))
        for key, value in described.items():
            print(f"{key:<{width}}  {value}")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from routeiq_assets.telemetry.simulator import (
        load_table,
        replay_table,
        simulate_requests,
        with_distinct_prompts,
        write_gateway_files,
        write_otlp_files,
    )

    log = args.log_propensities
    if args.from_table:
        if not args.prices:
            raise SystemExit("--from-table needs --prices (an llm_candidates.json)")
        records, catalog = load_table(Path(args.from_table), Path(args.prices))
        requests = replay_table(
            records,
            catalog,
            args.seed,
            args.epsilon,
            limit=args.requests or None,
            log_propensities=log,
        )
        prefix = f"replay-s{args.seed}"
    else:
        requests = simulate_requests(
            args.requests, args.seed, epsilon=args.epsilon, log_propensities=log
        )
        prefix = f"sim-s{args.seed}"
    if args.distinct_prompts:
        requests = with_distinct_prompts(requests)
    write = write_otlp_files if args.otlp_only else write_gateway_files
    files = write(requests, Path(args.out), prefix, args.requests_per_file)
    print(json.dumps({"files": [str(f) for f in files], "out": str(args.out)}, indent=2))
    return 0


DOWNSTREAM_SELECTION = "full_information*"
INGEST_COUNTS = ("records_in", "decisions", "llm_calls", "feedback", "duplicates", "quarantined")


def _ensure_dagster_home() -> None:
    os.environ.setdefault("DAGSTER_HOME", str(REPO_ROOT / "dagster_home"))
    Path(os.environ["DAGSTER_HOME"]).mkdir(parents=True, exist_ok=True)


def ingest_paths(paths: list[Path], rebuild: bool = False) -> list[dict]:
    """Land files/folders as telemetry batches and materialise raw_traces + the telemetry tables
    for each new one, through the same job and run config as the landing sensor. A file counts
    as ingested when Dagster recorded it and the warehouse holds it (a lost or replaced warehouse
    gets it again); ``rebuild``: every file again, whatever was recorded."""
    from concurrent.futures import ThreadPoolExecutor

    from routeiq_assets.telemetry.landing import land_paths

    # the files are landed (hashed and copied) while Dagster and the definitions load
    with ThreadPoolExecutor(1, thread_name_prefix="routeiq-land") as pool:
        landing = pool.submit(land_paths, paths, RouteIQSettings().resolved.raw_dir)
        return _ingest_landed(landing.result, rebuild)


def raw_store_files(raw_dir: Path) -> list[Path]:
    """Every batch file of the raw store, in the order they were landed."""
    files = [
        p
        for p in Path(raw_dir).glob("*/*")
        if p.is_file() and not p.is_symlink() and not p.name.startswith(".")
    ]
    return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))


def _ingest_landed(
    landed: Callable[[], list[tuple[Path, str]]], rebuild: bool = False
) -> list[dict]:
    import dagster as dg

    from routeiq_assets.definitions import defs
    from routeiq_assets.defs.ingestion import (
        batch_run_config,
        in_process_run_tags,
        ingested_batches,
        range_run_config,
        range_run_tags,
        release_dead_runs,
        telemetry_batches,
    )
    from routeiq_assets.telemetry.landing import plan_files
    from routeiq_assets.telemetry.raw_store import display_name
    from routeiq_assets.warehouse.store import ingested_batch_ids

    _ensure_dagster_home()
    instance = dg.DagsterInstance.get()
    release_dead_runs(instance, lambda msg: print(msg, file=sys.stderr))
    # landed while hashed: the run's raw_traces step finds the files in the raw store
    done = set() if rebuild else ingested_batches(instance)
    held = ingested_batch_ids(RouteIQSettings().resolved.duckdb_path)
    if held is not None and done - held:
        print(
            f"{len(done - held)} batches Dagster recorded as ingested are not in the warehouse "
            "(lost or replaced): their files are ingested again",
            file=sys.stderr,
        )
        done &= held
    scan = plan_files(landed(), done)
    for path in scan.known:
        print(f"{display_name(path)}: already ingested (same content), skipped", file=sys.stderr)
    new_keys = [k for k, _ in scan.ready]
    registered = set(instance.get_dynamic_partitions(telemetry_batches.name))
    if any(k not in registered for k in new_keys):
        instance.add_dynamic_partitions(
            telemetry_batches.name, [k for k in new_keys if k not in registered]
        )
    job = defs.resolve_job_def("ingest_telemetry")
    ready = dict(scan.ready)
    order = {k: i for i, k in enumerate(instance.get_dynamic_partitions(telemetry_batches.name))}

    def run_batches(batch_keys: list[str]) -> Any:
        if len(batch_keys) == 1:
            return job.execute_in_process(
                partition_key=batch_keys[0],
                run_config={**batch_run_config(ready[batch_keys[0]]), **CLI_LOGGING},
                instance=instance,
                tags={
                    "routeiq/source": display_name(ready[batch_keys[0]].name)[:200],
                    **in_process_run_tags(),
                },
                raise_on_error=False,
            )
        return job.execute_in_process(
            run_config={**range_run_config({k: ready[k] for k in batch_keys}), **CLI_LOGGING},
            instance=instance,
            tags={
                **range_run_tags(batch_keys[0], batch_keys[-1]),
                "routeiq/source": f"{len(batch_keys)} files",
                **in_process_run_tags(),
            },
            raise_on_error=False,
        )

    results: dict[str, dict] = {}
    for batch_keys in _neighbour_groups(sorted(ready, key=order.__getitem__), order):
        run = run_batches(batch_keys)
        retry = []
        if not run.success and len(batch_keys) > 1:
            # one bad batch must not hold back its neighbours: what the range run did not
            # finish gets a run each (a batch it committed is simply replaced, same counts)
            done = ingested_batches(instance)
            retry = [k for k in batch_keys if k not in done]
            print(
                f"the run over {len(batch_keys)} batches failed ({run.run_id}: "
                f"{run_error(run)}); {len(retry)} of them again, one run each",
                file=sys.stderr,
            )
        runs = [(run, [k for k in batch_keys if k not in retry])]
        runs += [(run_batches([k]), [k]) for k in retry]
        for each, keys in runs:
            per_batch = _batch_counts(each, keys)
            for key in keys:
                results[key] = {
                    "file": str(ready[key]),
                    "batch": key,
                    "run_id": each.run_id,
                    "success": each.success,
                    **per_batch.get(key, {}),
                }
                if not each.success:
                    results[key]["error"] = run_error(each)
                if key in retry:  # its range run failed first: say so even when this one did not
                    results[key]["failed_range_run_id"] = run.run_id
                print(f"[{len(results)}/{len(ready)}] " + json.dumps(results[key]), file=sys.stderr)
    return [results[key] for key, _ in scan.ready]


# the CLI's runs log warnings and errors to the console (their whole log stays in the run storage)
CLI_LOGGING = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
DISK_FULL = ("No space left on device", "File too large", "Disk quota exceeded")


def run_error(run: Any) -> str:
    """What failed a run, in one line: the first failed step's own error (not Dagster's
    wrapper), with its notes."""
    for event in run.all_events:
        if event.event_type_value != "STEP_FAILURE":
            continue
        error = event.step_failure_data.error
        while error.cause is not None and error.cls_name.startswith("Dagster"):
            error = error.cause
        text = " ".join(error.message.split())
        if any(sign in text for sign in DISK_FULL):
            text += (
                " (free disk space where the warehouse lives, then run routeiq ingest again: "
                "the batches committed before are kept)"
            )
        return text
    return "the run failed before any step ran (see the run in the UI)"


def _neighbour_groups(keys: list[str], order: dict[str, int]) -> list[list[str]]:
    """Keys (sorted by partition order) cut into runs of neighbours: each becomes one run over
    its range, so a range never covers a batch that this call did not land."""
    groups: list[list[str]] = []
    for key in keys:
        if groups and order[key] == order[groups[-1][-1]] + 1:
            groups[-1].append(key)
        else:
            groups.append([key])
    return groups


def _batch_counts(run: Any, keys: list[str]) -> dict[str, dict]:
    """Each batch's counts from the quarantine materialisation of an ingest run."""
    for event in run.get_asset_materialization_events():
        mat = event.step_materialization_data.materialization
        if mat.asset_key.to_user_string() != "quarantine":
            continue
        if "batches" in mat.metadata:
            return {k: dict(v) for k, v in mat.metadata["batches"].value.items()}
        return {keys[0]: {k: mat.metadata[k].value for k in INGEST_COUNTS}}
    return {}


def _cmd_ingest(args: argparse.Namespace) -> int:
    if args.rebuild == bool(args.paths):
        raise ValueError("give files or folders to ingest, or --rebuild alone")
    if args.rebuild:
        paths = raw_store_files(RouteIQSettings().resolved.raw_dir)
        print(f"rebuilding the warehouse from {len(paths)} raw store files", file=sys.stderr)
        results = ingest_paths(paths, rebuild=True) if paths else []
    else:
        results = ingest_paths([Path(p) for p in args.paths])
    totals = {k: sum(r.get(k, 0) for r in results) for k in INGEST_COUNTS}
    from routeiq_assets.telemetry.raw_store import display_name

    failed = [r["file"] for r in results if not r["success"]]
    for result in results:
        if not result["success"]:
            shown = display_name(result["file"])
            print(f"routeiq ingest: error: {shown}: {result['error']}", file=sys.stderr)
    # a range run that failed and whose batches then went through one run each: all ingested,
    # but what failed it (a setting that breaks only runs of several batches) must show here
    range_failed = sorted({r["failed_range_run_id"] for r in results if "failed_range_run_id" in r})
    summary = {"batches": len(results), **totals, "failed": failed}
    if range_failed:
        summary["failed_range_runs"] = range_failed
    print(json.dumps(summary, indent=2))
    return 1 if failed else 0


def _cmd_verify_warehouse(_args: argparse.Namespace) -> int:
    from routeiq_assets.warehouse.store import verify_warehouse

    path = RouteIQSettings().resolved.duckdb_path
    print(json.dumps({"warehouse": str(path), **verify_warehouse(path), "ok": True}))
    return 0


def _cmd_extract_jaeger(args: argparse.Namespace) -> int:
    """The seed's extract script: pull a window from the Jaeger query API into its two files."""
    from routeiq_assets.telemetry.jaeger import (
        JaegerError,
        JaegerStats,
        extract_records,
        write_seed_outputs,
    )

    stats = JaegerStats()
    limit = args.limit if args.limit is not None else load_settings().jaeger_limit
    records = extract_records(
        args.jaeger_url, args.service_name, args.hours_back, stats=stats, limit=limit
    )
    try:
        counts = write_seed_outputs(records, Path(args.output), args.routing_decisions_output)
    except JaegerError as exc:
        print(f"routeiq extract-jaeger: error: {exc}", file=sys.stderr)
        return 1
    print(
        json.dumps(
            {
                **counts,
                "output": args.output,
                "routing_decisions_output": args.routing_decisions_output,
                "skipped_spans": stats.skipped_spans,
                "requests": stats.requests,
                "windows": stats.windows,
                "split_windows": stats.split_windows,
                "duplicate_traces": stats.duplicate_traces,
            },
            indent=2,
        )
    )
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    """The seed's convert script: telemetry to LLMRouter's format."""
    from routeiq_assets.settings import RouteIQSettings
    from routeiq_assets.training import llmrouter_export as export
    from routeiq_assets.training.embeddings import minilm_encoder
    from routeiq_assets.training.labels import load_policy, load_prices

    settings = RouteIQSettings()
    model = args.embedding_model or settings.embedding_model
    if args.input == "warehouse":
        from routeiq_assets.warehouse.store import connect

        with connect(settings.resolved.duckdb_path, read_only=True) as con:
            rows, skipped = export.rows_from_warehouse(con)
    else:
        rows, skipped = export.rows_from_legacy_traces(Path(args.input))
    prices_file = (
        Path(args.prices)
        if args.prices
        else settings.prices_file or load_policy(settings.labeling_path).prices_file
    )
    metadata = export.write_llmrouter_export(
        rows,
        Path(args.output_dir),
        minilm_encoder(model, settings.device),
        model,
        load_prices(prices_file),
        args.test_split,
        args.include_routing_metadata,
        source=args.input,
        skipped=skipped,
    )
    print(json.dumps(metadata, indent=2))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    """Train one router from a config, on our training set or on files in the seed's formats."""
    from routeiq_assets.routers.config import load_router_config
    from routeiq_assets.settings import RouteIQSettings
    from routeiq_assets.training.embeddings import minilm_encoder
    from routeiq_assets.training.train import fit_and_save, load_training_data
    from routeiq_assets.warehouse.store import connect

    settings = RouteIQSettings()
    config_path = Path(args.config)
    config = load_router_config(config_path, args.router_type)
    out_dir = Path(args.output_dir) if args.output_dir else settings.resolved.work_dir / "routers"
    encoder = minilm_encoder(config.hparam.embedding_model, config.hparam.device)

    def warehouse():
        return connect(settings.resolved.duckdb_path, read_only=True)

    def log(message: str) -> None:
        print(message, file=sys.stderr)

    data = load_training_data(config, config_path, warehouse, encoder, log)
    result = fit_and_save(args.name or config_path.stem, config, data, out_dir, log)
    print(
        json.dumps(
            {
                "router_dir": str(result.folder),
                "router_type": config.router_type,
                "train_queries": result.n_train,
                "validation_queries": result.n_validation,
                "metrics": result.metrics,
                "seconds": round(result.seconds, 2),
            },
            indent=2,
        )
    )
    return 0


def _cmd_materialize(args: argparse.Namespace) -> int:
    """Ingest the landing folder, then `dagster asset materialize` the rest of the graph: a line
    a finished step, the whole log to a file, and a summary a person reads at the end."""
    from routeiq_assets.settings import RouteIQSettings

    _ensure_dagster_home()
    loc = RouteIQSettings().resolved
    started = time.time()
    results: list[dict] = []
    if not args.skip_ingest:
        results = ingest_paths([loc.landing_dir]) if loc.landing_dir.exists() else []
        if not all(r["success"] for r in results):
            return 1
    cmd = [
        sys.executable,
        "-m",
        "dagster",
        "asset",
        "materialize",
        "-m",
        "routeiq_assets.definitions",
        "--select",
        args.select,
    ]
    log_path = loc.work_dir / "logs" / f"materialize-{time.strftime('%Y%m%dT%H%M%S')}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "TQDM_DISABLE": "1"}
    print(f"materialising {args.select} (the whole log: {log_path})", file=sys.stderr)
    failures: list[str] = []
    last_error: str | None = None
    with (
        log_path.open("w") as log,
        subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        ) as proc,
    ):
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if error := _DAGSTER_ERROR.match(line):
                last_error = f"{error[1]}: {error[2].strip()}"
            shown = step_progress(line)
            if shown:
                print(shown, file=sys.stderr, flush=True)
                if "FAILED" in shown:
                    failures.append(shown.strip())
    code = _gate_outcome(proc.returncode, started, args.fail_on_gate)
    print(materialize_summary(loc, results, time.time() - started, started, log_path))
    if code not in (0, 3):
        print(
            f"routeiq materialize: error: {_run_error(failures, last_error)}; the whole log: "
            f"{log_path}",
            file=sys.stderr,
        )
    return code


# the exception line a Python traceback ends with (`package.module.SomeError: message`)
_DAGSTER_ERROR = re.compile(r"^((?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception)): (.*)$")
SELECT_HINT = (
    "--select takes Dagster's asset selection syntax, for example 'full_information*', "
    "'router_knn+', 'key:router_* or group:evaluation'; the asset keys: dagster asset list "
    "-m routeiq_assets.definitions"
)


def _run_error(failures: list[str], last_error: str | None) -> str:
    """One line for a failed `dagster asset materialize`: the steps that failed, else the error
    Dagster ended with (a selection it cannot read gets the syntax's hint)."""
    if failures:
        return f"the run failed ({'; '.join(failures)})"
    if last_error is None:
        return "the run failed (see the log)"
    name, _, message = last_error.partition(": ")
    short = name.rsplit(".", 1)[-1]
    if short in ("DagsterInvalidAssetSelectionError", "DagsterInvalidSubsetError"):
        return f"{message.split(' Make sure')[0]} ({short}). {SELECT_HINT}"
    return f"{short}: {message}"


_STEP_DONE = re.compile(r'STEP_SUCCESS - Finished execution of step "([^"]+)" in ([0-9.]+\s*m?s)')
_STEP_FAILED = re.compile(r'STEP_FAILURE - Execution of step "([^"]+)" failed')
_CHECK_FAILED = re.compile(r"ASSET_CHECK_EVALUATION - Asset check '([^']+)' on '([^']+)' failed")


def step_progress(line: str) -> str | None:
    """One line of `dagster asset materialize`'s log as a progress line, or None."""
    if match := _STEP_DONE.search(line):
        return f"  done    {match.group(1)} ({match.group(2)})"
    if match := _STEP_FAILED.search(line):
        return f"  FAILED  {match.group(1)}"
    if match := _CHECK_FAILED.search(line):
        return f"  check   {match.group(1)} on {match.group(2)} did not pass"
    return None


def materialize_summary(
    loc: Any, ingested: list[dict], seconds: float, started: float, log_path: Path
) -> str:
    """What a person wants to know after `routeiq materialize`: telemetry taken in, where each
    router runs, the verdict, and where to look next."""
    from routeiq_assets.evaluation.gate import GATE_JSON

    lines = [f"RouteIQ materialize: finished in {seconds:.0f} s"]
    if ingested:
        totals = {k: sum(r.get(k, 0) for r in ingested) for k in INGEST_COUNTS}
        lines.append(
            f"  telemetry   {len(ingested)} new files, {totals['records_in']:,} records, "
            f"{totals['quarantined']:,} quarantined, {totals['duplicates']:,} duplicates"
        )
    else:
        lines.append("  telemetry   no new files in the landing folder")
    for meta_path in sorted((loc.work_dir / "routers").glob("*/router.json")):
        if meta_path.stat().st_mtime < started:
            continue
        meta = json.loads(meta_path.read_text())
        point = meta.get("operating_point") or {}
        quality, cost = point.get("quality"), point.get("cost")
        interval = point.get("quality_interval")
        where = (
            f"quality {quality:.3f}"
            + (f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else "")
            + f" at ${cost:.6f} a query (validation)"
            if quality is not None and cost is not None
            else "no validated point"
        )
        lam = float(meta.get("default_lambda", 0.0))
        lines.append(
            f"  router      {meta_path.parent.name:<8} lambda {lam:<10.4g}"
            f" {where}; {point.get('objective', '-')}"
            + ("" if point.get("met", True) else " (objective not met)")
        )
    gate_path = loc.work_dir / "evaluation" / GATE_JSON
    if gate_path.exists() and gate_path.stat().st_mtime >= started:
        gate = json.loads(gate_path.read_text())
        verdict = "DEPLOYED" if gate.get("passed") else "HELD"
        lines.append(f"  gate        {verdict}: {gate.get('reason', '')}")
        if gate.get("headline"):
            lines.append(f"  headline    {gate['headline']}")
        lines.append(f"  report      {loc.work_dir / 'evaluation' / 'report.md'}")
    lines.append(f"  log         {log_path}")
    lines.append("  UI          dagster dev -w workspace.yaml, then http://127.0.0.1:3000")
    return "\n".join(lines)


def _gate_outcome(code: int, started: float, fail_on_gate: bool) -> int:
    """A run that failed only because the deployment gate held is a normal outcome: the graph is
    up to date and production stays. Say so, and exit 0 (3 with --fail-on-gate)."""
    from routeiq_assets.evaluation.gate import GATE_JSON
    from routeiq_assets.settings import RouteIQSettings

    gate_path = RouteIQSettings().resolved.work_dir / "evaluation" / GATE_JSON
    if code == 0 or not gate_path.exists() or gate_path.stat().st_mtime < started:
        return code
    gate = json.loads(gate_path.read_text())
    if gate.get("passed"):
        return code
    print(f"deployment gate held, production unchanged: {gate['reason']}", file=sys.stderr)
    return 3 if fail_on_gate else 0


def _deploy_store(args: argparse.Namespace):
    """``--s3-bucket`` (through dagster-aws's S3Resource), else ROUTEIQ_ARTIFACT_STORE."""
    from routeiq_assets.deployment.store import S3ArtifactStore, store_from_uri

    settings = RouteIQSettings()
    if args.s3_bucket:
        from routeiq_assets.defs.resources import s3_client

        return S3ArtifactStore(s3_client(settings.s3_endpoint_url), args.s3_bucket)
    return store_from_uri(settings.resolved.artifact_store, endpoint_url=settings.s3_endpoint_url)


def _cmd_deploy(args: argparse.Namespace) -> int:
    """The seed's deploy script: a registered version to the store, pointer last, then alias."""
    from routeiq_assets.deployment.deploy import deploy_registered
    from routeiq_assets.deployment.gateway import gateway_lines
    from routeiq_assets.deployment.manifest import ManifestKeys
    from routeiq_assets.deployment.registry import RegistryError
    from routeiq_assets.deployment.store import ArtifactStoreError

    settings = RouteIQSettings()
    try:
        deployment = deploy_registered(
            args.tracking_uri or settings.resolved.mlflow_tracking_uri,
            args.model_name,
            _deploy_store(args),
            stage=args.model_stage,
            version=args.version,
            keys=ManifestKeys.from_env(),
            prefix=args.s3_prefix,
            gateway_dir=Path(args.gateway_dir) if args.gateway_dir else None,
            torch_export=args.gateway_torch_export or settings.gateway_torch_export,
        )
    except (RegistryError, ArtifactStoreError) as exc:
        print(f"routeiq deploy: error: {exc}", file=sys.stderr)
        return 1
    print(gateway_lines(deployment.gateway), file=sys.stderr)
    summary = deployment.summary()
    print(json.dumps(summary, indent=2))
    return 0


def _cmd_rollback(args: argparse.Namespace) -> int:
    """Move the pointer back to the previous (or a named) version, after verifying it."""
    from routeiq_assets.deployment.manifest import ManifestKeys
    from routeiq_assets.deployment.publish import rollback
    from routeiq_assets.deployment.store import ArtifactStoreError

    try:
        pointer = rollback(
            _deploy_store(args), args.model_name, args.to, ManifestKeys.from_env(), args.s3_prefix
        )
    except ArtifactStoreError as exc:
        print(f"routeiq rollback: error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(pointer, indent=2))
    return 0


def _cmd_route(args: argparse.Namespace) -> int:
    """Route one query or a JSONL file of queries with a deployed (verified) router."""
    from routeiq_assets.serving.batch import route_command

    return route_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="routeiq", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="print every location and service in use")
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=_cmd_info)

    sim = sub.add_parser("simulate", help="write simulated gateway telemetry as OTLP JSON files")
    sim.add_argument("--out", required=True, help="output folder (e.g. the landing folder)")
    sim.add_argument(
        "--requests",
        type=int,
        default=2000,
        help="requests to simulate (with --from-table: at most this many rows; 0 = all)",
    )
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--epsilon", type=float, default=0.2, help="the gateway's exploration rate")
    sim.add_argument(
        "--log-propensities",
        action="store_true",
        help="record the logging policy and each choice's probability in the decision events"
        " (RouteIQ records none)",
    )
    sim.add_argument(
        "--otlp-only",
        action="store_true",
        help="every request as OTLP with trace context (by default one in 50 goes to a decision"
        " JSONL without trace context and one in 50 to a legacy traces.jsonl, as from RouteIQ)",
    )
    sim.add_argument("--from-table", help="replay a full-information table (LLMRouter train.json)")
    sim.add_argument(
        "--prices", help="llm_candidates.json with per-model prices (for --from-table)"
    )
    sim.add_argument("--requests-per-file", type=int, default=5000)
    sim.add_argument(
        "--distinct-prompts",
        action="store_true",
        help="make every prompt distinct, as a gateway's mostly are (the generator repeats some)",
    )
    sim.set_defaults(func=_cmd_simulate)

    ing = sub.add_parser("ingest", help="land telemetry files or folders and normalise them")
    ing.add_argument("paths", nargs="*", help="files or folders of any supported format")
    ing.add_argument(
        "--rebuild",
        action="store_true",
        help="ingest every batch of the raw store again (a lost or damaged warehouse; then "
        "routeiq materialize --skip-ingest)",
    )
    ing.set_defaults(func=_cmd_ingest)

    ver = sub.add_parser(
        "verify-warehouse", help="read every value of the warehouse, checking its checksums"
    )
    ver.set_defaults(func=_cmd_verify_warehouse)

    jae = sub.add_parser("extract-jaeger", help="pull routing telemetry from the Jaeger query API")
    jae.add_argument("--jaeger-url", required=True, help="e.g. http://localhost:16686")
    jae.add_argument("--service-name", default="litellm-gateway")
    jae.add_argument("--hours-back", type=float, default=168)
    jae.add_argument("--output", default="traces.jsonl", help="legacy traces.jsonl (LLM calls)")
    jae.add_argument("--routing-decisions-output", help="routing_decisions.jsonl (payloads)")
    jae.add_argument(
        "--limit",
        type=int,
        help="traces per API request; a window answered with this many is split until every "
        "answer is below it (default: ROUTEIQ_JAEGER_LIMIT, 1000)",
    )
    jae.set_defaults(func=_cmd_extract_jaeger)

    train = sub.add_parser("train", help="train one router from a config (the seed's command)")
    train.add_argument(
        "--router-type", help="knn | mlp | linear | mf | bert (default: from config)"
    )
    train.add_argument("--config", required=True, help="configs/routers/<type>.yaml")
    train.add_argument("--output-dir", help="default: $ROUTEIQ_HOME/work/routers")
    train.add_argument("--name", help="artifact folder name (default: the config file's name)")
    train.set_defaults(func=_cmd_train)

    conv = sub.add_parser("convert", help="write LLMRouter training files from telemetry")
    conv.add_argument(
        "--input",
        required=True,
        help="the seed's traces.jsonl, or 'warehouse' for our routing_examples",
    )
    conv.add_argument("--output-dir", required=True)
    conv.add_argument("--include-routing-metadata", action="store_true")
    conv.add_argument("--embedding-model", help="default: ROUTEIQ_EMBEDDING_MODEL")
    conv.add_argument("--test-split", type=float, default=0.2)
    conv.add_argument(
        "--prices",
        help="model prices for llm_data.json: our prices YAML or LLMRouter's llm_candidates.json "
        "(default: ROUTEIQ_PRICES_FILE, else the label policy's); a model without one gets "
        "null prices, which routeiq train reads as unpriced",
    )
    conv.set_defaults(func=_cmd_convert)

    mat = sub.add_parser(
        "materialize", help="ingest the landing folder, then materialise the rest of the graph"
    )
    mat.add_argument(
        "--select",
        default=DOWNSTREAM_SELECTION,
        help=f"Dagster selection after ingestion (default {DOWNSTREAM_SELECTION!r})",
    )
    mat.add_argument("--skip-ingest", action="store_true", help="do not ingest the landing folder")
    mat.add_argument(
        "--fail-on-gate",
        action="store_true",
        help="exit 3 when the deployment gate holds (default: exit 0, production unchanged)",
    )
    mat.set_defaults(func=_cmd_materialize)

    dep = sub.add_parser("deploy", help="publish a registered router version (the seed's command)")
    dep.add_argument("--model-name", required=True, help="registered model, e.g. knn-router")
    dep.add_argument(
        "--model-stage", default="Production", help="Production or Staging (alias, or legacy stage)"
    )
    dep.add_argument("--version", help="deploy this version (and move the stage's alias to it)")
    dep.add_argument("--s3-bucket", help="default: ROUTEIQ_ARTIFACT_STORE (a folder or s3://...)")
    dep.add_argument("--s3-prefix", default="models/", help="key prefix (default models/)")
    dep.add_argument("--tracking-uri", help="default: ROUTEIQ_MLFLOW_TRACKING_URI")
    dep.add_argument("--gateway-dir", help="also install a local copy the gateway loader reads")
    dep.add_argument(
        "--gateway-torch-export",
        action="store_true",
        help="mlp: also write gateway/model.pt (a torch state_dict, pickle-based) + model.json for "
        "RouteIQ's current mlp loader (default: ROUTEIQ_GATEWAY_TORCH_EXPORT, off)",
    )
    dep.set_defaults(func=_cmd_deploy)

    rol = sub.add_parser("rollback", help="point a deployed model back to an earlier version")
    rol.add_argument("--model-name", required=True)
    rol.add_argument("--to", help="version to serve (default: the one current before)")
    rol.add_argument("--s3-bucket", help="default: ROUTEIQ_ARTIFACT_STORE")
    rol.add_argument("--s3-prefix", default="models/")
    rol.set_defaults(func=_cmd_rollback)

    rte = sub.add_parser("route", help="route queries with a deployed router (smoke test)")
    src = rte.add_mutually_exclusive_group(required=True)
    src.add_argument("--model-dir", help="a router folder (verified when it has a manifest)")
    src.add_argument("--model-s3-bucket", help="bucket of a deployed model (with --model-s3-key)")
    rte.add_argument("--model-s3-key", help="models/<name>/ or models/<name>/current.json")
    qry = rte.add_mutually_exclusive_group(required=True)
    qry.add_argument("--query", help="one query text")
    qry.add_argument("--queries", help='JSONL file, {"query": ...} a line')
    rte.add_argument("--output", help="decisions JSONL (default: stdout)")
    rte.add_argument("--candidates", help="comma-separated models to choose from")
    budget = rte.add_mutually_exclusive_group()
    budget.add_argument("--lambda", dest="lam", type=float, help="cost weight (default: router's)")
    budget.add_argument("--max-cost", type=float, help="best quality with expected cost <= this")
    rte.add_argument(
        "--watch",
        type=float,
        metavar="SECONDS",
        help="with --query and an S3 model: poll the deployed pointer every SECONDS and print "
        "each version switch (with the query's decision) or refused version, until Ctrl-C",
    )
    rte.set_defaults(func=_cmd_route)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, OSError) as exc:  # OSError: a file missing or unreadable, a refused port
        notes = "".join(f" ({note})" for note in getattr(exc, "__notes__", ()))
        print(f"routeiq {args.command}: error: {exc}{notes}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
