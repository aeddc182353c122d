"""Evaluation stage: every trained router against baselines on the held-out split."""

import dagster as dg

from routeiq_assets.defs.resources import RouteIQResource
from routeiq_assets.evaluation.run import evaluate_router_folder, write_report
from routeiq_assets.routers.config import discover_router_configs

GROUP = "evaluation"


def evaluation_asset(router_names: list[str]) -> dg.AssetsDefinition:
    @dg.asset(
        group_name=GROUP,
        deps=[f"router_{n}" for n in router_names],
        pool="duckdb",
        kinds={"duckdb"},
    )
    def router_evaluation(
        context: dg.AssetExecutionContext, routeiq: RouteIQResource
    ) -> dg.MaterializeResult:
        """Held-out quality and cost of each router at its default lambda, beside always-cheapest,
        always-best and the logging policy, estimated off-policy (SNIPS) from test-split telemetry.
        Writes report.md and evaluation.json to the work folder."""
        loc = routeiq.settings().resolved
        with routeiq.warehouse() as con:
            evaluations = [
                evaluate_router_folder(con, loc.work_dir / "routers" / n, routeiq.encoder())
                for n in router_names
            ]
        json_path, md_path = write_report(evaluations, loc.work_dir / "evaluation")
        return dg.MaterializeResult(
            metadata={
                "report": dg.MetadataValue.md(md_path.read_text()),
                "report_path": dg.MetadataValue.path(str(md_path)),
                "evaluation_json": dg.MetadataValue.path(str(json_path)),
                "test_examples": evaluations[0]["test_examples"] if evaluations else 0,
            }
        )

    return router_evaluation


def evaluation_assets(configs_dir) -> list[dg.AssetsDefinition]:
    names = list(discover_router_configs(configs_dir))
    return [evaluation_asset(names)] if names else []
