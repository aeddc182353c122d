"""Telemetry stage: landing folder -> raw store -> normalised DuckDB tables."""

import dagster as dg

from routeiq_assets.defs.resources import RouteIQResource
from routeiq_assets.telemetry.raw_store import land_file, landing_files
from routeiq_assets.warehouse.ingest import ingest_pending, register_raw_file
from routeiq_assets.warehouse.store import TELEMETRY_TABLES, ingest_totals

GROUP = "telemetry"


@dg.asset(group_name=GROUP, pool="duckdb", kinds={"duckdb", "file"})
def raw_traces(context: dg.AssetExecutionContext, routeiq: RouteIQResource) -> dg.MaterializeResult:
    """Telemetry files as received: every file in the landing folder is copied, by its SHA-256,
    into the immutable raw store and registered in `raw_files`. Landing the same bytes twice
    changes nothing."""
    loc = routeiq.settings().resolved
    files = landing_files(loc.landing_dir)
    new = 0
    with routeiq.warehouse() as con:
        for path in files:
            new += register_raw_file(con, land_file(path, loc.raw_dir))
        total = con.execute(
            "SELECT count(*), coalesce(sum(size_bytes), 0) FROM raw_files"
        ).fetchall()[0]
    context.log.info(f"{len(files)} files in {loc.landing_dir}, {new} new")
    return dg.MaterializeResult(
        metadata={
            "files_seen": len(files),
            "files_new": new,
            "raw_files_total": total[0],
            "raw_bytes_total": total[1],
            "landing_dir": str(loc.landing_dir),
            "raw_dir": str(loc.raw_dir),
        }
    )


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            name,
            group_name=GROUP,
            deps=[raw_traces],
            kinds={"duckdb"},
            description=f"`{name}` in the DuckDB warehouse, normalised from the raw store "
            "batch by batch "
            "(delete-then-insert per batch in one transaction).",
        )
        for name in TELEMETRY_TABLES
    ],
    check_specs=[
        dg.AssetCheckSpec(
            "nothing_lost",
            asset="quarantine",
            description="records in = decisions + llm calls + duplicates + quarantined",
        )
    ],
    pool="duckdb",
)
def telemetry_tables(context: dg.AssetExecutionContext, routeiq: RouteIQResource):
    """Normalise every raw batch not yet ingested into router_decisions, decision_candidates,
    llm_calls and quarantine."""
    with routeiq.warehouse() as con:
        done = ingest_pending(con, context.log.info)
        totals = ingest_totals(con)
    meta = {"batches_ingested": len(done), **totals}
    for name in TELEMETRY_TABLES:
        yield dg.MaterializeResult(
            asset_key=name,
            metadata={"rows": totals[f"stored_{name}"], **(meta if name == "quarantine" else {})},
        )
    accounted = (
        totals["decisions"] + totals["llm_calls"] + totals["duplicates"] + totals["quarantined"]
    )
    stored_match = (
        totals["stored_router_decisions"] == totals["decisions"]
        and totals["stored_llm_calls"] == totals["llm_calls"]
        and totals["stored_quarantine"] == totals["quarantined"]
    )
    yield dg.AssetCheckResult(
        check_name="nothing_lost",
        asset_key="quarantine",
        passed=bool(accounted == totals["records_in"] and stored_match),
        metadata={
            "records_in": totals["records_in"],
            "accounted": accounted,
            "stored_match": stored_match,
        },
    )
