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
        first = handle.read(4000)
    head = first.decode("utf-8", "replace")
    reason = f"unsupported telemetry format {fmt!r}; supported: {', '.join(sorted(READERS))}"
    for magic, what in _NOT_TEXT:
        if first.startswith(magic):
            reason = f"{what}; {reason}"
            break
    else:
        if b'"resource_spans"' in first:
            reason = (
                "OTLP JSON with proto field names (resource_spans: protobuf's JSON printer with "
                "preserving_proto_field_name); the OTLP/JSON specification wants lowerCamelCase "
                f"keys (resourceSpans); {reason}"
            )
    yield TelemetryRecord("bad", Path(path).name, raw=excerpt(head), reason=reason)


# What a file that is not UTF-8 JSON text often is instead, by its first bytes.
_NOT_TEXT = (
    (b"\x1f\x8b", "the file is gzip-compressed: land it decompressed"),
    (b"\x28\xb5\x2f\xfd", "the file is zstd-compressed: land it decompressed"),
    (b"\xff\xfe", "the file is UTF-16 text (little-endian byte-order mark): save it as UTF-8"),
    (b"\xfe\xff", "the file is UTF-16 text (big-endian byte-order mark): save it as UTF-8"),
)
