"""One entry point over every supported telemetry format."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from routeiq_assets.telemetry.otlp import read_otlp_json
from routeiq_assets.telemetry.records import TelemetryRecord

SUPPORTED_FORMATS = ("otlp_json", "empty")


def read_records(path: Path, fmt: str) -> Iterator[TelemetryRecord]:
    """Records of one raw file; a file of an unsupported format is one quarantined record."""
    if fmt == "otlp_json":
        yield from read_otlp_json(path)
    elif fmt == "empty":
        return
    else:
        head = Path(path).read_bytes()[:2000].decode("utf-8", "replace")
        yield TelemetryRecord(
            "bad",
            f"{Path(path).name}",
            raw=head,
            reason=f"unsupported telemetry format {fmt!r}; "
            f"supported: {', '.join(SUPPORTED_FORMATS)}",
        )
