"""Values have ranges: a score or a probability out of [0, 1], a NaN or an infinity, a negative
count or time is its record's quarantine row, with the field and the value named, on every
ingest path; routers refuse non-finite inputs and never answer with one."""

import dataclasses
import json

import numpy as np
import pytest

from routeiq_assets.telemetry.raw_store import land_file
from routeiq_assets.telemetry.simulator import legacy_trace_line, simulate_requests
from routeiq_assets.warehouse.ingest import ingest_batch
from routeiq_assets.warehouse.store import connect
from tests.warehouse.test_otlp_fast import _contents, _edited, _line

BAD_DECISIONS = {
    "quality_score 1e300": lambda d, c, p: p["custom_attributes"].update(quality_score=1e300),
    "quality_score NaN": lambda d, c, p: p["custom_attributes"].update(quality_score=float("nan")),
    "quality_score -0.5": lambda d, c, p: p["custom_attributes"].update(quality_score=-0.5),
    "selection_propensity 0": lambda d, c, p: p["custom_attributes"].update(selection_propensity=0),
    "selection_propensity 1.5": lambda d, c, p: p["custom_attributes"].update(
        selection_propensity=1.5
    ),
    "total_ms -1": lambda d, c, p: p["timings"].update(total_ms=-1),
    "total_ms Infinity": lambda d, c, p: p["timings"].update(total_ms=float("inf")),
    "strategy_ms text Infinity": lambda d, c, p: p["timings"].update(strategy_ms="Infinity"),
    "input_tokens -5": lambda d, c, p: p["outcome"].update(input_tokens=-5),
    "query_length -1": lambda d, c, p: p["input"].update(query_length=-1),
    "candidate score NaN": lambda d, c, p: p["candidate_deployments"][0].update(score=float("nan")),
}


def _call_attr(key, value):
    return lambda d, c, p: c["attributes"].append({"key": key, "value": value})


BAD_CALLS = {
    "negative tokens": _call_attr("gen_ai.usage.input_tokens", {"intValue": "-3"}),
    "infinite tokens": _call_attr("gen_ai.usage.output_tokens", {"doubleValue": "Infinity"}),
    "fractional tokens": _call_attr("gen_ai.usage.total_tokens", {"doubleValue": 2.5}),
    "quality 7": _call_attr("routeiq.quality_score", {"doubleValue": 7.0}),
    "quality NaN": _call_attr("routeiq.quality_score", {"doubleValue": "NaN"}),
}


def test_out_of_range_values_are_quarantined_on_both_paths(tmp_path):
    reqs = list(simulate_requests(40, seed=31, log_propensities=True))
    edits = {**BAD_DECISIONS, **BAD_CALLS}
    lines = [_line([s for r in reqs[:10] for s in _edited(r, lambda d, c, p: None)])]
    lines += [_line(_edited(r, edit)) for r, edit in zip(reqs[10:], edits.values(), strict=False)]
    path = tmp_path / "values.otlp.json"
    path.write_bytes(b"\n".join(lines) + b"\n")
    raw = land_file(path, tmp_path / "raw")
    stored = {}
    for fast in (False, True):
        with connect(tmp_path / f"{fast}.duckdb") as con:
            counts = ingest_batch(con, raw.batch_id, raw.raw_path, raw.format, "v", fast=fast)
            assert counts.balanced
            stored[fast] = (counts, _contents(con))
    assert stored[True] == stored[False]
    counts, tables = stored[True]
    assert counts.quarantined == len(edits)
    reasons = [row[3] for row in tables["quarantine"]]
    for needle in (
        "quality_score is 1e+300",
        "quality_score is nan",
        "selection_propensity is 0: expected a finite number in (0, 1]",
        "selection_propensity is 1.5",
        "total_ms",
        "input_tokens",
        "query_length",
        "gen_ai.usage.input_tokens is -3: a token count is a whole number",
        "gen_ai.usage.output_tokens is inf",
        "gen_ai.usage.total_tokens is 2.5",
        "routeiq.quality_score is 7.0: expected a finite number in [0, 1]",
        "routeiq.quality_score is nan",
    ):
        assert any(needle in r for r in reasons), (needle, reasons)
    # no stored number is NaN or infinite
    for table, rows in tables.items():
        for row in rows:
            for value in row:
                assert not (isinstance(value, float) and not np.isfinite(value)), (table, row)


def test_legacy_lines_out_of_range_are_quarantined(tmp_path):
    reqs = list(simulate_requests(6, seed=2))
    lines = [legacy_trace_line(r, f"trace_{i}", f"span_{i}") for i, r in enumerate(reqs)]
    lines[1]["performance"] = 1.5
    lines[2]["performance"] = "Infinity"
    lines[3]["response_time"] = -0.3
    lines[4]["input_tokens"] = -1
    path = tmp_path / "traces.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    raw = land_file(path, tmp_path / "raw")
    with connect(tmp_path / "w.duckdb") as con:
        counts = ingest_batch(con, raw.batch_id, raw.raw_path, raw.format, "v")
        assert counts.balanced and (counts.llm_calls, counts.quarantined) == (2, 4)
        reasons = sorted(r for (r,) in con.execute("SELECT reason FROM quarantine").fetchall())
    assert any("performance is 1.5, expected a number from 0 to 1" in r for r in reasons)
    assert any("performance is not a finite number" in r for r in reasons)
    assert any("response_time is -0.3" in r for r in reasons)
    assert any("input_tokens is negative" in r for r in reasons)


def test_routers_refuse_non_finite_labels_and_inputs(tmp_path):
    from routeiq_assets.routers.config import load_router_config
    from routeiq_assets.serving.runtime import RouterRuntime
    from routeiq_assets.training.train import fit_and_save
    from tests.conftest import REPO_ROOT
    from tests.training.test_pricing import _data

    config = load_router_config(REPO_ROOT / "configs" / "routers" / "knn.yaml")
    data = _data(tmp_path, {"cheap-model": 0.1, "strong-model": 10.0, "unpriced-model": 1.0})
    poisoned = data.train.quality.copy()
    row, col = np.argwhere(data.train.mask)[0]
    poisoned[row, col] = np.inf
    bad = dataclasses.replace(data, train=dataclasses.replace(data.train, quality=poisoned))
    with pytest.raises(ValueError, match="1 quality labels"):
        fit_and_save("knn", config, bad, tmp_path / "out")
    assert not (tmp_path / "out" / "knn").exists()

    result = fit_and_save("knn", config, data, tmp_path / "out")
    runtime = RouterRuntime.from_folder(result.folder)
    dim = data.x_train.shape[1]
    with pytest.raises(ValueError, match="NaN or infinite"):
        runtime.route(embedding=np.full(dim, np.nan, np.float32))
    with pytest.raises(ValueError, match="lambda must be a finite number"):
        runtime.route(embedding=data.x_train[0], lam=float("inf"))
    decision = runtime.route(embedding=data.x_train[0])
    assert all(np.isfinite(v) for v in decision.scores.values())
