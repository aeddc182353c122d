"""Evaluation stage: one evaluation per router, and one report comparing them all."""

import base64
import json

import dagster as dg

from routeiq_assets.defs.resources import RouteIQResource
from routeiq_assets.deployment.registry import log_report_run
from routeiq_assets.evaluation.render import write_report
from routeiq_assets.evaluation.run import evaluate_router_folder
from routeiq_assets.routers.config import discover_router_configs

GROUP = "evaluation"


def evaluation_asset(name: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"evaluation_{name}",
        group_name=GROUP,
        deps=[f"router_{name}"],
        pool="duckdb",
        kinds={"duckdb"},
    )
    def _evaluation(context: dg.AssetExecutionContext, routeiq: RouteIQResource):
        """Held-out evaluation of one router at its default lambda beside always-cheapest,
        always-best, random and the logging policy: off-policy SNIPS/IPS/DR with bootstrap
        intervals on logged test telemetry, full-information curve/AIQ/APGR when the test split
        has full-information rows, and route() latency through the serving runtime."""
        loc = routeiq.settings().resolved
        with routeiq.warehouse() as con:
            ev = evaluate_router_folder(con, loc.work_dir / "routers" / name, routeiq.encoder())
        out = loc.work_dir / "evaluation" / f"{name}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(ev, indent=2, sort_keys=True, default=float))
        router_row = ev["rows"][0]
        return dg.MaterializeResult(
            metadata={
                "table": dg.MetadataValue.md(ev["markdown"]),
                "quality_snips": router_row["quality"]["snips"],
                "cost_snips": router_row["cost"]["snips"],
                "test_examples": ev["test_examples"],
                "evaluation_json": dg.MetadataValue.path(str(out)),
                "full_information": bool(ev["full_information"]),
                **{k: round(v, 4) for k, v in (ev["latency"] or {}).items()},
            }
        )

    return _evaluation


def report_asset(names: list[str]) -> dg.AssetsDefinition:
    @dg.asset(group_name=GROUP, deps=[f"evaluation_{n}" for n in names], kinds={"mlflow"})
    def evaluation_report(context: dg.AssetExecutionContext, routeiq: RouteIQResource):
        """Every router and baseline side by side: a markdown table and a quality-against-cost
        PNG (off-policy points, full-information curves when available), in this metadata and
        logged to MLflow as run `evaluation_report`."""
        settings = routeiq.settings()
        loc = settings.resolved
        folder = loc.work_dir / "evaluation"
        evaluations = [json.loads((folder / f"{n}.json").read_text()) for n in names]
        paths = write_report(evaluations, folder)
        run_id = log_report_run(
            loc.mlflow_tracking_uri,
            settings.mlflow_experiment,
            loc.mlflow_artifact_root,
            [paths["markdown"], paths["png"], paths["json"]],
        )
        png = base64.b64encode(paths["png"].read_bytes()).decode()
        return dg.MaterializeResult(
            metadata={
                "report": dg.MetadataValue.md(
                    paths["markdown"]
                    .read_text()
                    .replace("](quality_vs_cost.png)", f"](data:image/png;base64,{png})")
                ),
                "report_path": dg.MetadataValue.path(str(paths["markdown"])),
                "plot_path": dg.MetadataValue.path(str(paths["png"])),
                "mlflow_run_id": run_id,
                "routers": names,
            }
        )

    return evaluation_report


def evaluation_assets(configs_dir) -> list[dg.AssetsDefinition]:
    names = list(discover_router_configs(configs_dir))
    if not names:
        return []
    return [*(evaluation_asset(n) for n in names), report_asset(names)]
