"""Nesting depth has one limit (MAX_NESTING), the same on every ingest path and at any stack
depth: a text nested deeper is its line's (or its payload's) quarantine row naming the depth;
anything up to the limit is stored."""

import json

import pytest

from routeiq_assets.contract.nesting import MAX_NESTING, TooDeep, bounded, nesting_depth
from routeiq_assets.telemetry.raw_store import land_file
from routeiq_assets.telemetry.simulator import decision_payload, request_spans, simulate_requests
from routeiq_assets.warehouse.ingest import ingest_batch
from routeiq_assets.warehouse.store import connect
from tests.warehouse.test_otlp_fast import _contents, _line

DEPTHS = (MAX_NESTING - 10, MAX_NESTING - 3, MAX_NESTING - 2, MAX_NESTING + 1, 600, 990, 1000)


def _nested(levels):
    """A JSON text ``levels`` deep (counting itself), alternating arrays and objects; built as
    text (json.dumps itself recurses once a level)."""
    opens = "".join('{"k":' if i % 2 else "[" for i in range(levels))
    closes = "".join("}" if i % 2 else "]" for i in reversed(range(levels)))
    return opens + "1" + closes


def _deep_lines(reqs):
    """Per depth: an OTLP line whose export request is that deep (an unknown field of the
    resource), and an OTLP line whose decision payload is (its custom attributes)."""
    lines = []
    for depth, (a, b) in zip(DEPTHS, zip(reqs[::2], reqs[1::2], strict=True), strict=True):
        line = json.loads(_line(request_spans(a)))
        # resourceSpans[0].resource.x: 4 levels above the value
        line["resourceSpans"][0]["resource"]["x"] = "@DEEP@"
        text = json.dumps(line).replace('"@DEEP@"', _nested(depth - 4))
        lines.append(text.encode())
        spans = request_spans(b)
        payload = decision_payload(b)
        payload["custom_attributes"] = {"x": "@DEEP@"}  # payload, custom, value
        deep_payload = json.dumps(payload).replace('"@DEEP@"', _nested(depth - 2))
        spans[0]["events"][0]["attributes"][0]["value"]["stringValue"] = deep_payload
        lines.append(_line(spans))
    return lines


def _at_stack(levels, fn):
    return fn() if levels <= 0 else _at_stack(levels - 1, fn)


def test_the_depth_count():
    assert nesting_depth(_nested(300)) == 300
    assert nesting_depth(b'{"a": "[[[{{\\"]]", "b": [1, [2, {"c": "\\\\"}]]}') == 4
    for depth in (MAX_NESTING, MAX_NESTING + 1):
        text = _nested(depth)
        for stack in (0, 150, 400):
            if depth <= MAX_NESTING:
                assert _at_stack(stack, lambda t=text: bounded(json.loads, t)) is not None
            else:
                with pytest.raises(TooDeep, match=f"nested {depth} levels deep"):
                    _at_stack(stack, lambda t=text: bounded(json.loads, t))


@pytest.mark.parametrize("stack", [0, 300])
def test_every_path_at_any_stack_depth_draws_the_same_line(tmp_path, stack):
    reqs = list(simulate_requests(2 * len(DEPTHS), seed=12))
    path = tmp_path / "deep.otlp.json"
    path.write_bytes(b"\n".join(_deep_lines(reqs)) + b"\n")
    raw = land_file(path, tmp_path / "raw")
    stored = {}
    for fast in (True, False):
        with connect(tmp_path / f"{fast}.duckdb") as con:

            def ingest(con=con, fast=fast):
                return ingest_batch(con, raw.batch_id, raw.raw_path, raw.format, "d", fast=fast)

            counts = _at_stack(stack, ingest)
            assert counts.balanced
            stored[fast] = (counts, _contents(con))
    assert stored[True] == stored[False]
    counts, tables = stored[True]
    shallow = sum(d <= MAX_NESTING for d in DEPTHS)
    deep = len(DEPTHS) - shallow
    # a shallow line stores its request's decision and call; a deep one is its line's row; a
    # deep payload is its decision's row (the call beside it is stored)
    assert counts.decisions == 2 * shallow and counts.llm_calls == 2 * shallow + deep
    reasons = [row[3] for row in tables["quarantine"]]
    assert len(reasons) == 2 * deep
    assert all(f"levels deep, more than the limit of {MAX_NESTING}" in r for r in reasons)
