"""Telemetry stage: landing folder -> raw store -> DuckDB tables, one batch a partition."""

import warnings
from pathlib import Path

import dagster as dg

from routeiq_assets.defs.resources import RouteIQResource
from routeiq_assets.telemetry.raw_store import (
    RawFile,
    describe_raw_file,
    find_raw_file,
    in_threads,
    land_file,
)
from routeiq_assets.warehouse.ingest import ingest_registered_batches, register_raw_file
from routeiq_assets.warehouse.store import (
    TELEMETRY_TABLES,
    advance_pairing,
    already_ingested,
    batch_row_counts,
    current_pairing,
)

GROUP = "telemetry"
telemetry_batches = dg.DynamicPartitionsDefinition(name="telemetry_batches")


class LandingFileConfig(dg.Config):
    """Where each batch's file is; empty for a batch already in the raw store. ``source_path``
    is the file of a one-partition run, ``source_paths`` maps batch keys to files for a run over
    a range of partitions (`routeiq ingest` of several files, a backfill)."""

    source_path: str = ""
    source_paths: dict[str, str] = {}


def _land(key: str, source_path: str, raw_dir: Path) -> RawFile:
    existing = find_raw_file(raw_dir, key)
    if existing is not None:
        return describe_raw_file(existing, Path(source_path).name or None)
    if not source_path:
        raise dg.Failure(
            f"batch {key} is not in the raw store {raw_dir} and no source_path was given: drop "
            "the file into the landing folder or run `routeiq ingest FILE`."
        )
    raw = land_file(Path(source_path), raw_dir)
    if raw.batch_id != key:
        raise dg.Failure(
            f"{source_path} changed after it was scanned: its content is now batch "
            f"{raw.batch_id}, not {key}. The landing sensor will pick up the new content."
        )
    return raw


# One run may cover a range of batches (BackfillPolicy.single_run): a backfill of many batches or
# `routeiq ingest` of many files is then one run that normalises the next batch while it writes
# the current one, instead of one run (and one start-up) a batch.
BATCH_RANGES = dg.BackfillPolicy.single_run()
# The parameter is marked beta in Dagster 1.13 (it works, tested here): say it once, here,
# instead of in every process that loads the definitions.
warnings.filterwarnings("ignore", "Parameter `backfill_policy`", dg.BetaWarning)


@dg.asset(
    group_name=GROUP,
    partitions_def=telemetry_batches,
    pool="duckdb",
    kinds={"duckdb", "file"},
    backfill_policy=BATCH_RANGES,
)
def raw_traces(
    context: dg.AssetExecutionContext, config: LandingFileConfig, routeiq: RouteIQResource
) -> dg.MaterializeResult:
    """Telemetry files as received. A partition is one file, keyed by the first 16 hex digits of
    its SHA-256: the bytes are copied into the immutable raw store and registered in `raw_files`.
    New partitions are added by the landing sensor or `routeiq ingest`."""
    keys = context.partition_keys
    if config.source_paths and set(keys) != set(config.source_paths):
        # the range was resolved against partitions someone else registered meanwhile (a
        # concurrent `routeiq ingest`): refuse, and ingest_range_splitter runs each file alone
        raise dg.Failure(
            f"this run was requested for {len(config.source_paths)} files, but its partition "
            f"range now covers {len(keys)} batches ({len(set(keys) - set(config.source_paths))} "
            f"of them not among its files, {len(set(config.source_paths) - set(keys))} of its "
            "files outside the range)"
        )
    raw_dir = routeiq.settings().resolved.raw_dir
    landed = in_threads(
        lambda key: _land(
            key,
            config.source_paths.get(key, config.source_path if len(keys) == 1 else ""),
            raw_dir,
        ),
        keys,
    )
    with routeiq.warehouse() as con:
        new = [register_raw_file(con, raw) for raw in landed]
    if len(landed) == 1:
        raw = landed[0]
        return dg.MaterializeResult(
            metadata={
                "original_name": raw.original_name,
                "format": raw.format,
                "size_bytes": raw.size_bytes,
                "sha256": raw.sha256,
                "raw_path": dg.MetadataValue.path(str(raw.raw_path)),
                "newly_registered": new[0],
            }
        )
    return dg.MaterializeResult(  # the same for every partition of the range: range_* sums
        metadata={
            "range_batches": len(landed),
            "range_size_bytes": sum(raw.size_bytes for raw in landed),
            "range_newly_registered": sum(new),
            "files": dg.MetadataValue.json(
                {
                    raw.batch_id: {"original_name": raw.original_name, "size_bytes": raw.size_bytes}
                    for raw in landed
                }
            ),
        }
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            name,
            group_name=GROUP,
            deps=[raw_traces],
            kinds={"duckdb"},
            partitions_def=telemetry_batches,
            description=f"`{name}` in the DuckDB warehouse, normalised from the raw store "
            "batch by batch (a batch's rows deleted and inserted in one transaction; a range "
            "run writes consecutive batches together).",
        )
        for name in TELEMETRY_TABLES
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "nothing_lost",
            asset="quarantine",
            description="records in = decisions + llm calls + duplicates + quarantined, "
            "and the stored rows of the batch equal those counts",
        )
    ],
    partitions_def=telemetry_batches,
    pool="duckdb",
    backfill_policy=BATCH_RANGES,
)
def telemetry_tables(context: dg.AssetExecutionContext, routeiq: RouteIQResource):
    """Normalise batches into router_decisions, decision_candidates, llm_calls and quarantine:
    one batch a partition, each replaced whole in a transaction (consecutive batches of a range
    run share one: warehouse.store.write_batches)."""
    keys = context.partition_keys
    settings = routeiq.settings()
    with routeiq.warehouse() as con:
        # the pairing counts advance by what this run's batches changed, when they are new and
        # the stored counts are of the warehouse as this run found it
        before = None if already_ingested(con, keys) else current_pairing(con)
        done = ingest_registered_batches(
            con, keys, settings.prompt_text, context.log.info, warn=context.log.warning
        )
        stored = batch_row_counts(con, keys)
        pairing = advance_pairing(con, keys, before)
    counts = dict(done)  # (each batch's counts were logged as it was written)
    totals = {f: sum(getattr(c, f) for c in counts.values()) for f in _COUNT_FIELDS}
    per_batch = {key: {f: getattr(c, f) for f in _COUNT_FIELDS} for key, c in counts.items()}
    # Dagster gives every partition of a range run the same metadata: a range run's sums are
    # named range_* (so nothing adds them up per partition) and each batch's own counts are in
    # `batches`; a one-batch run keeps the plain names.
    prefix = "range_" if len(keys) > 1 else ""
    for name in TELEMETRY_TABLES:
        meta: dict = {
            f"{prefix}batch_rows": sum(s[name] for s in stored.values()),
            **(pairing if name == "router_decisions" else {}),
        }
        if name == "quarantine":
            meta.update({prefix + f: v for f, v in totals.items()})
            meta["prompt_text_mode"] = settings.prompt_text
        if prefix:
            meta["batches"] = dg.MetadataValue.json(per_batch)
        yield dg.MaterializeResult(asset_key=name, metadata=meta)
    unbalanced = [key for key, c in counts.items() if not c.balanced]
    mismatched = [
        key
        for key, c in counts.items()
        if (
            stored[key]["router_decisions"],
            stored[key]["llm_calls"],
            stored[key]["quarantine"],
            stored[key]["feedback"],
        )
        != (c.decisions, c.llm_calls, c.quarantined, c.feedback)
    ]
    yield dg.AssetCheckResult(
        check_name="nothing_lost",
        asset_key="quarantine",
        passed=not unbalanced and not mismatched,
        metadata={
            "records_in": totals["records_in"],
            "stored_match": not mismatched,
            "accounted": totals["decisions"]
            + totals["llm_calls"]
            + totals["feedback"]
            + totals["duplicates"]
            + totals["quarantined"],
            **({"unbalanced_batches": ", ".join(unbalanced)} if unbalanced else {}),
            **({"mismatched_batches": ", ".join(mismatched)} if mismatched else {}),
        },
    )


_COUNT_FIELDS = ("records_in", "decisions", "llm_calls", "duplicates", "quarantined", "feedback")
