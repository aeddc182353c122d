"""One artifact-store interface, two implementations: a local folder and S3 (MinIO or AWS).

Keys are '/'-separated paths relative to the store's root (a folder, or s3://bucket/prefix).
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


class ArtifactStoreError(RuntimeError):
    """The store could not be read or written; the message names the location."""


class ArtifactStore(ABC):
    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...

    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def uri(self, key: str) -> str: ...

    def put_file(self, key: str, path: Path) -> None:
        self.put_bytes(key, Path(path).read_bytes())

    def get_if_changed(self, key: str, etag: str | None = None) -> tuple[bytes | None, str]:
        """``(data, etag)``, or ``(None, etag)`` when the object still has ``etag``."""
        data = self.get_bytes(key)
        current = hashlib.sha256(data).hexdigest()
        return (None, current) if current == etag else (data, current)


class LocalArtifactStore(ArtifactStore):
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents and path != self.root.resolve():
            raise ArtifactStoreError(f"key {key!r} escapes the store root {self.root}")
        return path

    def put_bytes(self, key: str, data: bytes) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # atomic: a reader sees the old or the new object, never half

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            raise ArtifactStoreError(f"{self.uri(key)} does not exist") from None

    def exists(self, key: str) -> bool:
        return self._path(key).exists()

    def uri(self, key: str) -> str:
        return str(self.root / key)


class S3ArtifactStore(ArtifactStore):
    """S3 through a boto3 client (dagster-aws's S3Resource gives one with endpoint_url)."""

    def __init__(self, client: Any, bucket: str, prefix: str = "") -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix.strip("/")

    def object_key(self, key: str) -> str:
        """The S3 object key of a store key (the store's prefix in front)."""
        return f"{self.prefix}/{key}" if self.prefix else key

    def put_bytes(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.object_key(key), Body=data)
        except Exception as exc:  # botocore raises many types; all mean the write failed
            raise ArtifactStoreError(f"could not write {self.uri(key)}: {exc}") from exc

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.object_key(key))[
                "Body"
            ].read()
        except Exception as exc:
            raise ArtifactStoreError(f"could not read {self.uri(key)}: {exc}") from exc

    def get_if_changed(self, key: str, etag: str | None = None) -> tuple[bytes | None, str]:
        """A conditional GET (If-None-Match): a poll of an unchanged pointer transfers nothing."""
        from botocore.exceptions import ClientError

        try:
            extra = {"IfNoneMatch": etag} if etag else {}
            answer = self.client.get_object(Bucket=self.bucket, Key=self.object_key(key), **extra)
            return answer["Body"].read(), answer["ETag"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"304", "NotModified"}:
                return None, etag or ""
            raise ArtifactStoreError(f"could not read {self.uri(key)}: {exc}") from exc
        except Exception as exc:
            raise ArtifactStoreError(f"could not read {self.uri(key)}: {exc}") from exc

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise ArtifactStoreError(f"could not check {self.uri(key)}: {exc}") from exc
        except Exception as exc:
            raise ArtifactStoreError(f"could not check {self.uri(key)}: {exc}") from exc

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.object_key(key)}"


def store_from_uri(
    uri: str, s3_client: Any = None, endpoint_url: str | None = None
) -> ArtifactStore:
    """A store for a folder path or ``s3://bucket/prefix``."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if s3_client is None:
            s3_client = s3_client_for(endpoint_url)
        return S3ArtifactStore(s3_client, parsed.netloc, parsed.path)
    return LocalArtifactStore(Path(parsed.path if parsed.scheme == "file" else uri))


def s3_client_for(endpoint_url: str | None = None, max_attempts: int = 3) -> Any:
    """A boto3 S3 client (credentials from the environment) that gives up after a few tries,
    so an unreachable endpoint is a clear error in seconds, not a hang."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": max_attempts, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
    )
    return boto3.client("s3", endpoint_url=endpoint_url, config=config)
