"""Mutated OTLP, Jaeger and JSONL lines (a seeded fuzz, bounded in time): ingest never fails
a file for what one line holds, counts in equal counts out, the fast and the general OTLP paths
store the same rows, and no stored number is NaN or infinite."""

import json
import math
import os
import random
import time

import pytest

from routeiq_assets.telemetry.raw_store import land_file
from routeiq_assets.telemetry.simulator import (
    decision_payload,
    legacy_trace_line,
    request_spans,
    simulate_requests,
)
from routeiq_assets.warehouse.ingest import ingest_batch
from routeiq_assets.warehouse.store import connect
from tests.telemetry.test_jaeger import jaeger_doc, jaeger_trace
from tests.warehouse.test_otlp_fast import _contents, _line

SECONDS = float(os.environ.get("ROUTEIQ_FUZZ_SECONDS", "10"))
LINES_PER_FILE = 40
HOSTILE_VALUES = [
    None,
    True,
    -1,
    0,
    2**63,
    -(2**70),
    1e300,
    -1e-300,
    0.5,
    "",
    "x" * 300,
    "NaN",
    "Infinity",
    "-Infinity",
    "\u0000",
    "\ud800x",
    "e\u0301",
    "1e999",
    [],
    {},
    [[[[[]]]]],
    {"a": {"b": {}}},
    "trace_000001",
    "0" * 32,
    "F" * 16,
    "not-hex-id",
    "2026-13-45T99:00:00Z",
    "\n\x1b[31m",
]
HOSTILE_BYTES = [
    b"\xff",
    b"\xc3",
    b"\x00",
    b"NaN",
    b"Infinity",
    b"-1",
    b"1e999",
    b"[" * 60,
    b"]" * 3,
    b'"',
    b"\\",
    b"\\ud800",
    b"}",
    b"{",
    b",",
    b":",
    b"null",
    b"9" * 400,
    b"\r",
    b"\t",
]


def _mutate_value(doc, rng):
    """Replace one value anywhere in a JSON document (or delete a key) with a hostile one."""
    paths = []

    def walk(node, path):
        if isinstance(node, dict):
            for k, v in node.items():
                paths.append((node, k))
                walk(v, path + [k])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                paths.append((node, i))
                walk(v, path + [i])

    walk(doc, [])
    if not paths:
        return doc
    parent, key = rng.choice(paths)
    if isinstance(parent, dict) and rng.random() < 0.2:
        del parent[key]
    else:
        parent[key] = rng.choice(HOSTILE_VALUES)
    return doc


def _mutate_bytes(line, rng):
    data = bytearray(line)
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(data) + 1)
        kind = rng.random()
        if kind < 0.4:
            data[at:at] = rng.choice(HOSTILE_BYTES)
        elif kind < 0.7 and data:
            del data[at : at + rng.randint(1, 20)]
        elif data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
    return bytes(data).replace(b"\n", b" ")


def _json_bytes(doc):
    return json.dumps(doc, separators=(",", ":"), allow_nan=True).encode()


def _seed_lines(kind, reqs, rng):
    """A valid line of ``kind`` for each request, a third of them mutated as JSON and a third as
    bytes."""
    lines = []
    for i, req in enumerate(reqs):
        if kind == "otlp":
            spans = request_spans(req)
            if rng.random() < 0.5:  # a payload mutated inside its string
                payload = _mutate_value(decision_payload(req), rng)
                spans[0]["events"][0]["attributes"][0]["value"]["stringValue"] = json.dumps(payload)
            doc = json.loads(_line(spans))
        elif kind == "decisions":
            doc = decision_payload(req, trace_context=rng.random() < 0.5)
        else:
            doc = legacy_trace_line(req, f"trace_{i:06d}", f"span_{i:06d}")
        roll = rng.random()
        if roll < 0.33:
            lines.append(_json_bytes(_mutate_value(doc, rng)))
        elif roll < 0.66:
            lines.append(_mutate_bytes(_json_bytes(doc), rng))
        else:
            lines.append(_json_bytes(doc))
    return lines


def _finite(tables):
    for table, rows in tables.items():
        for row in rows:
            for value in row:
                if isinstance(value, float):
                    assert math.isfinite(value), (table, row)


@pytest.mark.slow
def test_mutated_lines_of_every_format(tmp_path):
    rng = random.Random(int(os.environ.get("ROUTEIQ_FUZZ_SEED", "2026")))
    suffix = {"otlp": ".otlp.json", "jaeger": ".json", "decisions": ".jsonl", "legacy": ".jsonl"}
    deadline = time.monotonic() + SECONDS
    files = records = 0
    while time.monotonic() < deadline or files < 8:
        kind = ("otlp", "jaeger", "decisions", "legacy")[files % 4]
        reqs = list(simulate_requests(LINES_PER_FILE, seed=rng.randrange(10**6)))
        path = tmp_path / f"f{files}{suffix[kind]}"
        if kind == "jaeger":  # one API document a file: its traces mutated as JSON
            traces = [jaeger_trace(r) for r in reqs]
            for trace in traces[1:]:
                if rng.random() < 0.66:
                    _mutate_value(trace, rng)
            path.write_bytes(_json_bytes(jaeger_doc(traces)))
        else:
            lines = _seed_lines(kind, reqs, rng)
            if kind != "otlp":  # a valid first line: the file is sniffed as its format
                lines[0] = _seed_lines(kind, reqs[:1], random.Random(0))[0]
                lines[0] = _json_bytes(json.loads(lines[0]))
            path.write_bytes(b"\n".join(lines) + b"\n")
        raw = land_file(path, tmp_path / "raw")
        stored = {}
        for fast in (True, False) if kind == "otlp" else (True,):
            with connect(tmp_path / f"w{files}{fast}.duckdb") as con:
                counts = ingest_batch(
                    con, raw.batch_id, raw.raw_path, raw.format, path.name, fast=fast
                )
                assert counts.balanced, (path, counts)
                stored[fast] = (counts, _contents(con))
        if kind == "otlp":
            assert stored[True] == stored[False], path
        counts, tables = stored[True]
        _finite(tables)
        records += counts.records_in
        files += 1
    assert records > 8 * LINES_PER_FILE  # every format ran, more than once
