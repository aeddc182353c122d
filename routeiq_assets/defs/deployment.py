"""Deployment stage: MLflow registry alias + artifact store + manifest + pointer."""

import dagster as dg

from routeiq_assets.defs.resources import RouteIQResource
from routeiq_assets.deployment.deploy import deploy_router_run
from routeiq_assets.deployment.manifest import ManifestKeys
from routeiq_assets.evaluation.gate import deployment_slot, read_gate
from routeiq_assets.training.train import read_run_pointer

GROUP = "deployment"


@dg.asset(group_name=GROUP, deps=["evaluation_report"], kinds={"mlflow", "s3"})
def deployed_router(
    context: dg.AssetExecutionContext, routeiq: RouteIQResource
) -> dg.MaterializeResult:
    """The router the deployment gate passed (ROUTEIQ_DEPLOY_ROUTER, default knn; or with `best`
    the best challenger, registered as `routeiq-router`), registered in MLflow as
    `<name>-router` and published to the artifact store as `models/<name>-router/<version>/`
    with a SHA-256 manifest (HMAC or Ed25519 signed when a key is set); `current.json` is written
    last, then the alias `production` moves. `work/gateway/<name>-router/current` is a local
    copy RouteIQ's gateway loader reads; the metadata holds its router_settings snippet."""
    settings = routeiq.settings()
    loc = settings.resolved
    # the gate's verdict from this evaluation_report; its blocking check already stopped a run
    # whose gate failed, this guards a run that selects deployed_router alone
    gate = read_gate(loc.work_dir / "evaluation")
    if not gate["passed"]:
        raise dg.Failure(f"the deployment gate did not pass: {gate['reason']}")
    router = gate["router"]
    registered, _ = deployment_slot(settings.deploy_router, [router])
    folder = loc.work_dir / "routers" / router
    deployment = deploy_router_run(
        router,
        read_run_pointer(folder),
        loc.mlflow_tracking_uri,
        routeiq.artifact_store(),
        keys=ManifestKeys.from_env(),
        gateway_dir=loc.work_dir / "gateway" / registered,
        registered_name=registered,
        torch_export=settings.gateway_torch_export,
    )
    context.log.info(
        f"deployed {deployment.registered_name} v{deployment.version} to {deployment.keys['uri']}"
    )
    metadata = deployment.summary()
    metadata.pop("router_type")
    metadata.update(
        files=len(deployment.manifest["artifacts"]),
        gateway_folder=dg.MetadataValue.path(deployment.local_folder),
        gateway_config=dg.MetadataValue.json(deployment.gateway),
    )
    return dg.MaterializeResult(metadata=metadata)
