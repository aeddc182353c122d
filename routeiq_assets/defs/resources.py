"""Resources: the one place that decides local versus production."""

from contextlib import contextmanager

import dagster as dg

from routeiq_assets.deployment.store import ArtifactStore, store_from_uri
from routeiq_assets.settings import RouteIQSettings
from routeiq_assets.training.embeddings import Encoder, minilm_encoder
from routeiq_assets.warehouse.store import connect


class RouteIQResource(dg.ConfigurableResource):
    """Settings from the environment (ROUTEIQ_*), with an optional home override for tests."""

    home: str | None = None

    def settings(self) -> RouteIQSettings:
        return RouteIQSettings(home=self.home) if self.home else RouteIQSettings()

    @contextmanager
    def warehouse(self, read_only: bool = False):
        with connect(self.settings().resolved.duckdb_path, read_only=read_only) as con:
            yield con

    def encoder(self, model_name: str | None = None) -> Encoder:
        s = self.settings()
        return minilm_encoder(model_name or s.embedding_model, s.device, s.embedding_batch_size)

    def artifact_store(self) -> ArtifactStore:
        """The deployment store: a local folder, or S3 through dagster-aws's S3Resource
        (``ROUTEIQ_S3_ENDPOINT_URL`` for MinIO; credentials from the AWS environment)."""
        s = self.settings()
        uri = s.resolved.artifact_store
        client = s3_client(s.s3_endpoint_url) if uri.startswith("s3://") else None
        return store_from_uri(uri, s3_client=client)


def s3_client(endpoint_url: str | None = None, max_attempts: int = 3):
    """A boto3 S3 client from dagster-aws's S3Resource (MinIO when ``endpoint_url`` is set)."""
    # imported here: dagster-aws (boto3) adds start-up time to every process that loads the
    # definitions (each run, `routeiq ingest`, the daemon) while most never touch S3
    from dagster_aws.s3 import S3Resource

    return S3Resource(endpoint_url=endpoint_url, max_attempts=max_attempts).get_client()
