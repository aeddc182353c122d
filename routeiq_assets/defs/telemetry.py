"""Telemetry stage: landing folder -> raw store -> DuckDB tables, one batch a partition."""

from pathlib import Path

import dagster as dg

from routeiq_assets.defs.resources import RouteIQResource
from routeiq_assets.telemetry.raw_store import describe_raw_file, find_raw_file, land_file
from routeiq_assets.warehouse.ingest import ingest_registered, register_raw_file
from routeiq_assets.warehouse.store import (
    TELEMETRY_TABLES,
    batch_row_counts,
    decision_call_join_counts,
)

GROUP = "telemetry"
telemetry_batches = dg.DynamicPartitionsDefinition(name="telemetry_batches")


class LandingFileConfig(dg.Config):
    """Where the batch's file is; empty when it is already in the raw store."""

    source_path: str = ""


@dg.asset(
    group_name=GROUP, partitions_def=telemetry_batches, pool="duckdb", kinds={"duckdb", "file"}
)
def raw_traces(
    context: dg.AssetExecutionContext, config: LandingFileConfig, routeiq: RouteIQResource
) -> dg.MaterializeResult:
    """Telemetry files as received. A partition is one file, keyed by the first 16 hex digits of
    its SHA-256: the bytes are copied into the immutable raw store and registered in `raw_files`.
    New partitions are added by the landing sensor or `routeiq ingest`."""
    key = context.partition_key
    raw_dir = routeiq.settings().resolved.raw_dir
    existing = find_raw_file(raw_dir, key)
    if existing is not None:
        raw = describe_raw_file(existing, Path(config.source_path).name or None)
    elif config.source_path:
        raw = land_file(Path(config.source_path), raw_dir)
        if raw.batch_id != key:
            raise dg.Failure(
                f"{config.source_path} changed after it was scanned: its content is now batch "
                f"{raw.batch_id}, not {key}. The landing sensor will pick up the new content."
            )
    else:
        raise dg.Failure(
            f"batch {key} is not in the raw store {raw_dir} and no source_path was given: drop "
            "the file into the landing folder or run `routeiq ingest FILE`."
        )
    with routeiq.warehouse() as con:
        new = register_raw_file(con, raw)
    return dg.MaterializeResult(
        metadata={
            "original_name": raw.original_name,
            "format": raw.format,
            "size_bytes": raw.size_bytes,
            "sha256": raw.sha256,
            "raw_path": dg.MetadataValue.path(str(raw.raw_path)),
            "newly_registered": new,
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
            "batch by batch (delete-then-insert per batch in one transaction).",
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
)
def telemetry_tables(context: dg.AssetExecutionContext, routeiq: RouteIQResource):
    """Normalise one batch into router_decisions, decision_candidates, llm_calls and quarantine."""
    key = context.partition_key
    settings = routeiq.settings()
    with routeiq.warehouse() as con:
        counts = ingest_registered(con, key, settings.prompt_text, context.log.info)
        stored = batch_row_counts(con, key)
        pairing = decision_call_join_counts(con)
    context.log.info(
        f"batch {key}: {counts.records_in} records -> {counts.decisions} decisions, "
        f"{counts.llm_calls} llm calls, {counts.duplicates} duplicates, "
        f"{counts.quarantined} quarantined"
    )
    for name in TELEMETRY_TABLES:
        meta = {"batch_rows": stored[name], **(pairing if name == "router_decisions" else {})}
        if name == "quarantine":
            meta.update(
                records_in=counts.records_in,
                decisions=counts.decisions,
                llm_calls=counts.llm_calls,
                duplicates=counts.duplicates,
                quarantined=counts.quarantined,
                feedback=counts.feedback,
                prompt_text_mode=settings.prompt_text,
            )
        yield dg.MaterializeResult(asset_key=name, metadata=meta)
    stored_match = (stored["router_decisions"], stored["llm_calls"], stored["quarantine"]) == (
        counts.decisions,
        counts.llm_calls,
        counts.quarantined,
    ) and stored["feedback"] == counts.feedback
    yield dg.AssetCheckResult(
        check_name="nothing_lost",
        asset_key="quarantine",
        passed=bool(counts.balanced and stored_match),
        metadata={
            "records_in": counts.records_in,
            "stored_match": stored_match,
            "accounted": counts.decisions
            + counts.llm_calls
            + counts.duplicates
            + counts.quarantined,
        },
    )
