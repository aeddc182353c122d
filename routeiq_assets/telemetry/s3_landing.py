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

from routeiq_assets.telemetry.raw_store import display_name


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
    # objects that could not be mirrored this call, with the reason: not in `seen`, so tried
    # again, after the new objects, in a later call
    failed: list[tuple[str, str]] = field(default_factory=list)
    # key -> ETag of every object that failed and is still to be tried again (the cursor's)
    retry: dict[str, str] = field(default_factory=dict)

    def cursor_json(self) -> str:
        return json.dumps({"objects": self.seen, "failed": self.retry}, sort_keys=True)


def load_s3_cursor(text: str | None, part: str = "objects") -> dict[str, str]:
    """The mirrored objects (``part="objects"``) or those to try again (``"failed"``) of a
    cursor, key -> ETag."""
    try:
        data = json.loads(text) if text else {}
    except json.JSONDecodeError:
        return {}
    objects = data.get(part, {}) if isinstance(data, dict) else {}
    return {str(k): str(v) for k, v in objects.items()} if isinstance(objects, dict) else {}


def _unsafe(key: str) -> bool:
    """A key that would name a file outside the mirror's folder."""
    return key.startswith("/") or ".." in key.split("/")


def _folder_below(root: Path, folder: Path) -> None:
    """Create ``folder`` (below ``root``) one level at a time, refusing any level that is a
    symbolic link or not a folder: the mirror writes only below its own folder."""
    root.mkdir(parents=True, exist_ok=True)
    current = root
    for part in folder.relative_to(root).parts:
        current = current / part
        if current.is_symlink():
            raise ValueError(
                f"{current} is a symbolic link: the mirror writes only below {root}, never "
                "through a link (remove the link)"
            )
        if not current.exists():
            current.mkdir()
        elif not current.is_dir():
            raise ValueError(f"{current} is in the way: not a folder")


def mirror_prefix(
    client: Any,
    uri: str,
    landing_dir: Path,
    seen: dict[str, str],
    max_objects: int = 1000,
    failed_before: dict[str, str] | None = None,
) -> MirrorResult:
    """Download objects under ``uri`` whose (key, ETag) is not in ``seen`` into
    ``landing_dir/s3/<bucket>/<key>``, at most ``max_objects`` tries a call (the rest next
    tick). An object that cannot be mirrored is reported in ``failed`` and does not stop the
    others; those that failed before (``failed_before``, from the cursor) are tried again after
    the new ones, so a pile of them never holds the new ones back or makes a call long."""
    bucket, prefix = parse_s3_uri(uri)
    failed_before = failed_before or {}
    result = MirrorResult(seen=dict(seen))
    target_root = Path(landing_dir) / "s3" / bucket
    try:
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        objects = [obj for page in pages for obj in page.get("Contents", [])]
    except Exception as exc:  # botocore raises many types; all mean the listing failed
        raise S3LandingError(f"could not list s3://{bucket}/{prefix}: {exc}") from exc
    fresh, again = [], []
    for obj in sorted(objects, key=lambda o: o["Key"]):
        key, etag = obj["Key"], obj.get("ETag", "").strip('"')
        if key.endswith("/") or any(p.startswith(".") for p in key.split("/")):
            continue  # folder markers and hidden names are not telemetry
        if result.seen.get(key) == etag:
            result.skipped += 1
        elif failed_before.get(key) == etag:
            again.append((key, etag))
        else:
            fresh.append((key, etag))
    tries = 0
    for key, etag in fresh + again:
        if tries >= max_objects:
            if failed_before.get(key) == etag:
                result.retry[key] = etag  # still to be tried again, not tried this call
            continue
        tries += 1
        target = target_root / key
        part = target.with_name(f"{target.name}.{os.getpid()}.part")
        try:
            if _unsafe(key):
                raise ValueError("the key names a path outside the landing folder")
            _folder_below(Path(landing_dir), target.parent)
            part.unlink(missing_ok=True)  # (a link planted under this name is removed)
            client.download_file(bucket, key, str(part))
            part.replace(target)  # (a link at the target is replaced, not written through)
        except Exception as exc:  # access denied, a key this file system cannot name, ...
            with contextlib.suppress(OSError):
                part.unlink(missing_ok=True)
            shown = display_name(f"s3://{bucket}/{key}")
            result.failed.append((key, f"could not mirror {shown}: {exc}"))
            result.retry[key] = etag
            continue
        result.downloaded.append(target)
        result.seen[key] = etag
    return result
