"""The deployment tests' real services (moto S3 server) and router helpers."""

from tests.deployment.conftest import bucket, s3_server  # noqa: F401
