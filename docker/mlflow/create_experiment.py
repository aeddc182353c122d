"""One-shot (mlflow-init): create the platform's experiment on the tracking server.

Created here, the experiment takes the server's default artifact location
(``mlflow-artifacts:/``, proxied into the MinIO bucket), so runs logged from any container send
their artifacts through the server. Idempotent: an existing experiment is kept.
"""

import os

import mlflow

name = os.environ.get("ROUTEIQ_MLFLOW_EXPERIMENT", "routeiq-routers")
mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
experiment = mlflow.get_experiment_by_name(name)
if experiment is None:
    experiment_id = mlflow.create_experiment(name)
    experiment = mlflow.get_experiment(experiment_id)
print(
    f"experiment {name!r}: id {experiment.experiment_id}, artifacts {experiment.artifact_location}"
)
