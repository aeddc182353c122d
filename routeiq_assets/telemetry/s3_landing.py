"""Mirror new telemetry objects from an S3 prefix (MinIO or AWS) into the landing folder.

S3 objects appear whole, so an object is new when its (key, ETag) was not mirrored before; it is
downloaded under a ``.part`` name and renamed, so the landing scan never sees half a file. From
there the landing folder's own rules apply: identity by content hash, so an object copied to a
second key, or mirrored again after a lost cursor, never becomes a second batch.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


class S3LandingError(RuntimeError):
    """The prefix could not be listed; the message says which."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"expected s3://bucket/prefix, got {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


@dataclass
class MirrorResult:
    downloaded: list[Path] = field(default_factory=list)
    seen: dict[str, str] = field(default_factory=dict)  # key -> ETag, the next cursor
    skipped: int = 0  # already mirrored
    # objects that could not be downloaded, with the reason: not in `seen`, so tried again next
    # tick, while the objects after them are mirrored
    failed: list[tuple[str, str]] = field(default_factory=list)

    def cursor_json(self) -> str:
        return json.dumps({"objects": self.seen}, sort_keys=True)


def load_s3_cursor(text: str | None) -> dict[str, str]:
    try:
        data = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}
    objects = data.get("objects", {}) if isinstance(data, dict) else {}
    return {str(k): str(v) for k, v in objects.items()} if isinstance(objects, dict) else {}


def mirror_prefix(
    client: Any, uri: str, landing_dir: Path, seen: dict[str, str], max_objects: int = 1000
) -> MirrorResult:
    """Download objects under ``uri`` whose (key, ETag) is not in ``seen`` into
    ``landing_dir/s3/<bucket>/<key>``; at most ``max_objects`` a call (the rest next tick). An
    object that cannot be downloaded is reported in ``failed`` and does not stop the others."""
    bucket, prefix = parse_s3_uri(uri)
    result = MirrorResult(seen=dict(seen))
    target_root = Path(landing_dir) / "s3" / bucket
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        objects = [obj for page in pages for obj in page.get("Contents", [])]
    except Exception as exc:  # botocore raises many types; all mean the listing failed
        raise S3LandingError(f"could not list s3://{bucket}/{prefix}: {exc}") from exc
    for obj in sorted(objects, key=lambda o: o["Key"]):
        key, etag = obj["Key"], obj.get("ETag", "").strip('"')
        if key.endswith("/") or any(p.startswith(".") for p in key.split("/")):
            continue  # folder markers and hidden names are not telemetry
        if result.seen.get(key) == etag:
            result.skipped += 1
            continue
        if len(result.downloaded) >= max_objects:
            break
        target = target_root / key
        part = target.with_name(f"{target.name}.{os.getpid()}.part")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, key, str(part))
            part.replace(target)
        except Exception as exc:  # access denied, a key this file system cannot name, ...
            with contextlib.suppress(OSError):
                part.unlink(missing_ok=True)
            result.failed.append((key, f"could not mirror s3://{bucket}/{key}: {exc}"))
            continue
        result.downloaded.append(target)
        result.seen[key] = etag
    return result
