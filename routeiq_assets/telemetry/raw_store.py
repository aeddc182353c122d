"""The raw zone: telemetry files as received, content-addressed and never edited."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

SNIFF_BYTES = 4096


@dataclass(frozen=True)
class RawFile:
    batch_id: str  # SHA-256 of the bytes
    original_name: str
    raw_path: Path
    format: str
    size_bytes: int


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def sniff_format(path: Path) -> str:
    """Best guess of a telemetry file's format from its first bytes."""
    with Path(path).open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if not head.strip():
        return "empty"
    if b'"resourceSpans"' in head:
        return "otlp_json"
    return "unknown"


def landing_files(landing_dir: Path) -> list[Path]:
    """Complete files in the landing folder (hidden and temporary names are still being written)."""
    if not landing_dir.exists():
        return []
    return sorted(
        p
        for p in landing_dir.rglob("*")
        if p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(landing_dir).parts)
        and not p.name.endswith((".tmp", ".part"))
    )


def land_file(source: Path, raw_dir: Path) -> RawFile:
    """Copy a file into the raw store under its hash (idempotent; the copy is read-only)."""
    source = Path(source)
    sha = file_sha256(source)
    suffix = "".join(source.suffixes[-2:]) or ".bin"
    target = Path(raw_dir) / sha[:2] / f"{sha}{suffix}"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        shutil.copyfile(source, tmp)
        tmp.chmod(0o444)
        tmp.replace(target)
    return RawFile(sha, source.name, target, sniff_format(target), target.stat().st_size)
