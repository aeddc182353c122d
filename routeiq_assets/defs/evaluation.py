"""Evaluation stage: one evaluation per router, and one report comparing them all."""

import base64
import json
import tempfile
from pathlib import Path

import dagster as dg

from routeiq_assets import strict_json
from routeiq_assets.defs.resources import RouteIQResource
from routeiq_assets.deployment.registry import log_report_run
from routeiq_assets.evaluation.gate import (
    deployment_slot,
    evaluate_gate,
    load_gate_policy,
    production_router,
    read_gate,
    write_gate,
)
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
        out.write_text(strict_json.dumps(ev))
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


def report_asset(names: list[str]) -> tuple[dg.AssetsDefinition, dg.AssetChecksDefinition]:
    @dg.asset(group_name=GROUP, deps=[f"evaluation_{n}" for n in names], kinds={"mlflow"})
    def evaluation_report(context: dg.AssetExecutionContext, routeiq: RouteIQResource):
        """Every router and baseline side by side, opening with the operator's question (what
        the router saves against always-best, what it changes against the gateway today): a
        markdown report and a quality-against-cost PNG (each router's lambda sweep with its
        operating point, the baselines as points), in this metadata and logged to MLflow as run
        `evaluation_report`; plus the deployment gate's verdict (configs/gate.yaml): the
        challenger against the logging policy, always-best, always-cheapest and the MLflow
        registry's production router, in gate.json."""
        settings = routeiq.settings()
        loc = settings.resolved
        folder = loc.work_dir / "evaluation"
        evaluations = [json.loads((folder / f"{n}.json").read_text()) for n in names]
        registered, candidates = deployment_slot(settings.deploy_router, names)
        policy = load_gate_policy(settings.configs_dir / "gate.yaml")
        with tempfile.TemporaryDirectory(prefix="routeiq-production-") as tmp:
            production = production_router(loc.mlflow_tracking_uri, registered, Path(tmp))
            context.log.info(
                f"gate: {registered} in production: "
                + (f"v{production[0]}" if production else "none yet")
            )
            with routeiq.warehouse() as con:
                gate = evaluate_gate(
                    con,
                    {n: loc.work_dir / "routers" / n for n in candidates},
                    production,
                    policy,
                    routeiq.encoder(),
                    shown={n: loc.work_dir / "routers" / n for n in names},
                )
        context.log.info(f"gate {'passed' if gate.passed else 'failed'}: {gate.reason}")
        gate_path = write_gate(gate, folder)
        paths = write_report(
            evaluations, folder, gate_markdown=gate.markdown(), gate=gate.as_dict()
        )
        run_id = log_report_run(
            loc.mlflow_tracking_uri,
            settings.mlflow_experiment,
            loc.mlflow_artifact_root,
            [paths["markdown"], paths["png"], paths["json"], gate_path],
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
                "gate_passed": gate.passed,
                "gate_reason": gate.reason,
                "gate_headline": gate.headline,
                "gate_challenger": gate.router or "",
                "gate_estimate": gate.estimate,
                "production_version": gate.production_version or "none",
            }
        )

    @dg.asset_check(asset=evaluation_report, blocking=True, name="deployment_gate")
    def deployment_gate(routeiq: RouteIQResource) -> dg.AssetCheckResult:
        """Passes only when a challenger beats every baseline (the logging policy, always-best,
        always-cheapest, and production when there is one) on its objective beyond the paired
        interval. Blocking: deployed_router does not run when it fails, and the run fails with
        this reason (which baseline won, by how much)."""
        gate = read_gate(routeiq.settings().resolved.work_dir / "evaluation")
        return dg.AssetCheckResult(
            passed=bool(gate["passed"]),
            severity=dg.AssetCheckSeverity.ERROR,
            description=gate["reason"],
            metadata={
                "reason": gate["reason"],
                "challenger": gate["router"] or "",
                "production_version": gate["production_version"] or "none",
                "estimate": gate["estimate"],
                "objective": gate["objective"],
                "lost_to": ", ".join(
                    c["baseline"] for c in gate.get("comparisons", []) if not c["passed"]
                ),
                # against production, when there is one (no NaN in metadata)
                **({"difference": gate["difference"]} if gate["difference"] is not None else {}),
            },
        )

    return evaluation_report, deployment_gate


def evaluation_assets(
    configs_dir,
) -> tuple[list[dg.AssetsDefinition], list[dg.AssetChecksDefinition]]:
    """One evaluation per configs/routers/*.yaml, the report, and the report's gate check."""
    names = list(discover_router_configs(configs_dir))
    if not names:
        return [], []
    report, gate = report_asset(names)
    return [*(evaluation_asset(n) for n in names), report], [gate]
