"""Router stage: one asset per config file in configs/routers (``router_<name>``)."""

from pathlib import Path

import dagster as dg

from routeiq_assets.defs.resources import RouteIQResource
from routeiq_assets.deployment.registry import check_tracking_server, log_router_run
from routeiq_assets.routers.config import discover_router_configs, load_router_config
from routeiq_assets.training.train import fit_and_save, load_training_data, write_run_pointer

GROUP = "routers"


def router_asset(name: str, config_path: Path) -> dg.AssetsDefinition:
    config = load_router_config(config_path)

    @dg.asset(
        name=f"router_{name}",
        group_name=GROUP,
        deps=["training_set", "query_embeddings", "retraining_trigger"],
        pool="duckdb",
        kinds={"torch", "mlflow"},
        tags={"routeiq/router_type": config.router_type},
        description=f"A `{config.router_type}` router trained on the train split from "
        f"`{config_path.name}`; predicts a quality per candidate model. Logged to MLflow as a "
        "pyfunc at artifact path `model`.",
    )
    def _router(
        context: dg.AssetExecutionContext, routeiq: RouteIQResource
    ) -> dg.MaterializeResult:
        settings = routeiq.settings()
        loc = settings.resolved
        check_tracking_server(loc.mlflow_tracking_uri)  # before training, not after it
        cfg = load_router_config(config_path)  # re-read: the file may have changed since load
        data = load_training_data(
            cfg,
            config_path,
            routeiq.warehouse,
            routeiq.encoder(cfg.hparam.embedding_model),
            context.log.info,
        )
        result = fit_and_save(name, cfg, data, loc.work_dir / "routers", context.log.info)
        run_id = log_router_run(
            loc.mlflow_tracking_uri,
            settings.mlflow_experiment,
            loc.mlflow_artifact_root,
            run_name=f"router_{name}",
            router_dir=result.folder,
            params={
                "router_type": cfg.router_type,
                "cost_aware": result.cost_aware,
                "candidate_models": ",".join(result.router.model_names_),
                "unpriced_excluded": ",".join(result.unpriced_excluded) or "none",
                "operating_objective": cfg.operating_point.objective,
                **cfg.hparam.model_dump(),
            },
            metrics={**result.metrics, "train_seconds": result.seconds},
            tags={"routeiq.router": name, "dagster.run_id": context.run.run_id},
        )
        write_run_pointer(result.folder, run_id)
        return dg.MaterializeResult(
            metadata={
                "router_dir": dg.MetadataValue.path(str(result.folder)),
                "mlflow_run_id": run_id,
                "cost_aware": result.cost_aware,
                "unpriced_excluded": list(result.unpriced_excluded),
                "train_queries": result.n_train,
                "validation_queries": result.n_validation,
                "seconds": round(result.seconds, 2),
                **{k: round(v, 5) for k, v in result.metrics.items()},
            }
        )

    return _router


def router_assets(configs_dir: Path) -> list[dg.AssetsDefinition]:
    return [router_asset(name, path) for name, path in discover_router_configs(configs_dir).items()]
