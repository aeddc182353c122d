"""One entry point over every supported telemetry format."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from routeiq_assets.telemetry.jaeger import read_jaeger_json
from routeiq_assets.telemetry.jsonl import (
    read_decision_jsonl,
    read_feedback_jsonl,
    read_legacy_traces_jsonl,
)
from routeiq_assets.telemetry.otlp import read_otlp_json
from routeiq_assets.telemetry.records import TelemetryRecord, excerpt

READERS: dict[str, Callable[[Path], Iterator[TelemetryRecord]]] = {
    "otlp_json": read_otlp_json,
    "jaeger_json": read_jaeger_json,
    "decision_jsonl": read_decision_jsonl,
    "legacy_traces_jsonl": read_legacy_traces_jsonl,
    "feedback_jsonl": read_feedback_jsonl,
    "empty": lambda _path: iter(()),
}


def read_records(path: Path, fmt: str) -> Iterator[TelemetryRecord]:
    """Records of one raw file; a file of an unsupported format is one quarantined record."""
    reader = READERS.get(fmt)
    if reader is not None:
        yield from reader(Path(path))
        return
    with Path(path).open("rb") as handle:
        head = handle.read(4000).decode("utf-8", "replace")
    yield TelemetryRecord(
        "bad",
        Path(path).name,
        raw=excerpt(head),
        reason=f"unsupported telemetry format {fmt!r}; supported: {', '.join(sorted(READERS))}",
    )
