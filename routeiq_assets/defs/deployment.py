"""Deployment stage: MLflow registry alias + artifact store + manifest + pointer."""

import dagster as dg

from routeiq_assets.defs.resources import RouteIQResource
from routeiq_assets.deployment.deploy import deploy_router_folder
from routeiq_assets.training.train import read_run_pointer

GROUP = "deployment"


@dg.asset(group_name=GROUP, deps=["evaluation_report"], kinds={"mlflow", "s3"})
def deployed_router(
    context: dg.AssetExecutionContext, routeiq: RouteIQResource
) -> dg.MaterializeResult:
    """The router named by ROUTEIQ_DEPLOY_ROUTER (default knn), registered in MLflow with alias
    `production` and published to the artifact store as
    `models/<name>-router/<version>/` with a SHA-256 manifest; `current.json` is written last."""
    settings = routeiq.settings()
    loc = settings.resolved
    folder = loc.work_dir / "routers" / settings.deploy_router
    secret = settings.manifest_hmac_secret
    deployment = deploy_router_folder(
        folder,
        settings.deploy_router,
        read_run_pointer(folder),
        loc.mlflow_tracking_uri,
        routeiq.artifact_store(),
        hmac_secret=secret.get_secret_value() if secret else None,
    )
    context.log.info(
        f"deployed {deployment.registered_name} v{deployment.version} to {deployment.keys['uri']}"
    )
    return dg.MaterializeResult(
        metadata={
            "registered_model": deployment.registered_name,
            "version": deployment.version,
            "alias": deployment.alias,
            "mlflow_run_id": deployment.run_id,
            "artifact_uri": deployment.keys["uri"],
            "pointer": deployment.keys["pointer"],
            "files": len(deployment.manifest["artifacts"]),
            "signature_type": deployment.manifest["signature_type"],
        }
    )
