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
        s = self.settings()
        return store_from_uri(s.resolved.artifact_store, endpoint_url=s.s3_endpoint_url)
