"""The fast OTLP path stores exactly what the general path stores, bad records included."""

import base64
import json

import pytest

from routeiq_assets.telemetry.raw_store import land_file
from routeiq_assets.telemetry.simulator import (
    _export_request,
    request_spans,
    simulate_requests,
    write_otlp_files,
)
from routeiq_assets.warehouse.ingest import ingest_batch, ingest_pending, register_raw_file
from routeiq_assets.warehouse.otlp_fast import normalise_otlp_file
from routeiq_assets.warehouse.store import TELEMETRY_TABLES, connect

IGNORED = {"quarantine": "quarantined_at"}  # when a row was written, not what it says


def _line(spans):
    return json.dumps(_export_request(spans), separators=(",", ":")).encode()


def _payload(span):
    return json.loads(span["events"][0]["attributes"][0]["value"]["stringValue"])


def _set_payload(span, payload):
    text = payload if isinstance(payload, str) else json.dumps(payload)
    span["events"][0]["attributes"][0]["value"] = {"stringValue": text}


def _edited(req, edit):
    """The request's two spans after ``edit(decision_span, call_span, payload)``."""
    decision, call = request_spans(req)
    payload = _payload(decision)
    result = edit(decision, call, payload)
    _set_payload(decision, payload if result is None else result)
    return [decision, call]


def _base64_ids(decision, call):
    """The protobuf-JSON form of ids on both spans."""
    decision["spanId"] = base64.b64encode(bytes.fromhex(decision["spanId"])).decode()
    call["traceId"] = base64.b64encode(bytes.fromhex(call["traceId"])).decode()


def _messy_file(path):
    """Clean lines and every kind of trouble the general path knows how to handle."""
    reqs = list(simulate_requests(80, seed=21))
    good = [s for r in reqs[:20] for s in request_spans(r)]
    edits = {
        "unknown version": lambda d, c, p: p.update(contract_version="v9"),
        "v1.0": lambda d, c, p: p.update(contract_version="v1.0"),
        "v1.1 with experiment": lambda d, c, p: p.update(
            contract_version="v1.1",
            experiment={"experiment_id": "e", "variant": "b", "weight": 1, "hash_bucket": 7},
        ),
        "lax int (pydantic accepts)": lambda d, c, p: p["input"].update(query_length="24"),
        "lax float": lambda d, c, p: p["timings"].update(total_ms="2.5"),
        "int as float": lambda d, c, p: p["outcome"].update(input_tokens=6.0),
        "wrong type": lambda d, c, p: p["input"].update(query_length="many"),
        "bad status": lambda d, c, p: p["outcome"].update(status="great"),
        "no outcome": lambda d, c, p: p.pop("outcome"),
        "empty event id": lambda d, c, p: p.update(event_id=""),
        "null input": lambda d, c, p: p.update(input=None),
        "payload not JSON": lambda d, c, p: '{"contract_version": "v1", "event_id": ',
        "payload a list": lambda d, c, p: "[1, 2]",
        "other trace": lambda d, c, p: p.update(trace_id="f" * 32),
        "upper-case trace": lambda d, c, p: p.update(trace_id=p["trace_id"].upper()),
        "bool candidate flag": lambda d, c, p: p["candidate_deployments"][0].update(available=1),
        "no timestamp": lambda d, c, p: p.update(timestamp_utc=None),
        "bad timestamp": lambda d, c, p: p.update(timestamp_utc="yesterday"),
        "offset timestamp": lambda d, c, p: p.update(timestamp_utc="2026-11-01T02:00:00+02:00"),
        "big int custom": lambda d, c, p: p["custom_attributes"].update(n=10**30, s="é ✓"),
        "custom propensity text": lambda d, c, p: p["custom_attributes"].update(
            selection_propensity="0.25", logging_policy="x"
        ),
        "extra fields": lambda d, c, p: p.update(new_field={"a": 1}),
        "no ids": lambda d, c, p: d.update(traceId=""),
        "base64 ids": lambda d, c, p: _base64_ids(d, c),
        "bad intValue": lambda d, c, p: c["attributes"].append(
            {"key": "gen_ai.usage.total_tokens", "value": {"intValue": "lots"}}
        ),
        "odd values": lambda d, c, p: c["attributes"].extend(
            [
                {"key": "gen_ai.usage.input_tokens", "value": {"intValue": 7}},
                {"key": "routeiq.quality_score", "value": {"doubleValue": "0.5"}},
                {"key": "x.flag", "value": {"boolValue": True}},
                {"key": "x.list", "value": {"arrayValue": {"values": [{"intValue": "1"}]}}},
                {"key": "x.kv", "value": {"kvlistValue": {"values": []}}},
                {"key": "x.empty", "value": {}},
                {"key": "x.none"},
            ]
        ),
        "numeric span times": lambda d, c, p: c.update(
            startTimeUnixNano=int(c["startTimeUnixNano"]), status={"code": "STATUS_CODE_OK"}
        ),
        # values no warehouse column holds, and spans not shaped like spans: quarantined
        "query_length beyond INTEGER": lambda d, c, p: p["input"].update(query_length=2**40),
        "tokens beyond BIGINT": lambda d, c, p: p["outcome"].update(total_tokens=10**20),
        "start time beyond BIGINT": lambda d, c, p: c.update(startTimeUnixNano="9" * 25),
        "text status on a call": lambda d, c, p: c.update(status="done"),
        "events not objects": lambda d, c, p: c.update(events=["x"]),
        # kept: an int task among text ones (stored as text), an infinite count (no count)
        "int task": lambda d, c, p: c["attributes"].append(
            {"key": "litellm.task", "value": {"intValue": "7"}}
        ),
        "infinite tokens": lambda d, c, p: c["attributes"].append(
            {"key": "gen_ai.usage.input_tokens", "value": {"doubleValue": "Infinity"}}
        ),
        "pii prompt": lambda d, c, p: c["attributes"].append(
            {
                "key": "gen_ai.prompt",
                "value": {"stringValue": "ann@example.com, +44 20 7946 0958, sk-abcdefghijklmnop"},
            }
        ),
    }
    lines = [_line(good[:20]), _line(good[20:])]
    for req, (_name, edit) in zip(reqs[20:], edits.items(), strict=False):
        lines.append(_line(_edited(req, edit)))
    event_without_payload = request_spans(reqs[60])
    event_without_payload[0]["events"][0]["attributes"] = []
    old_exporter = {
        "resourceSpans": [
            {"scopeSpans": [], "instrumentationLibrarySpans": [{"spans": request_spans(reqs[61])}]}
        ]
    }
    with_null_name = request_spans(reqs[62])
    with_null_name[1]["name"] = None
    lines += [
        _line(event_without_payload),
        json.dumps(old_exporter).encode(),
        _line(with_null_name),
        _line(good[:6]),  # duplicates of decisions and calls already in this batch
        _line(good[20:40])[:300],  # truncated JSON
        b"\xff\xfe not utf-8 " + _line(good[:2]),
        b"[1, 2]",
        b'{"resourceSpans": null}',
        b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 5}]}]}]}',
        b"",
        b"   ",
        _line(request_spans(reqs[63]) + request_spans(reqs[64])),
        *_bad_bytes_in_ignored_fields(reqs[65:70]),
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _bad_bytes_in_ignored_fields(reqs):
    """Lines whose trouble is in a field no column takes, each with one span that needs the
    general path (an empty span id): not UTF-8, and an integer json.loads refuses (more digits
    than Python converts). Each is that line's quarantine row on every path."""
    lines = []
    for req, resource in zip(
        reqs, (b'{"note\xff":1}', b'{"n":' + b"9" * 5000 + b"}"), strict=False
    ):
        decision, call = request_spans(req)
        call["spanId"] = ""
        line = _line([decision, call])
        lines.append(line.replace(b'"resource":{', b'"resource":{"x":' + resource + b",", 1))
    return lines


def _contents(con):
    tables = {}
    for table in (*TELEMETRY_TABLES, "ingest_log"):
        exclude = IGNORED.get(table, "ingested_at" if table == "ingest_log" else None)
        cols = f"* EXCLUDE ({exclude})" if exclude else "*"
        tables[table] = con.execute(f"SELECT {cols} FROM {table} ORDER BY ALL").fetchall()
    return tables


@pytest.mark.parametrize("mode", ["scrub", "keep", "hash"])
def test_fast_and_general_paths_store_the_same(tmp_path, mode):
    path = _messy_file(tmp_path / "messy.otlp.json")
    raw = land_file(path, tmp_path / "raw")
    results = {}
    for fast in (False, True):
        with connect(tmp_path / f"{fast}.duckdb") as con:
            counts = ingest_batch(con, raw.batch_id, raw.raw_path, raw.format, "m", mode, fast=fast)
            assert counts.balanced
            results[fast] = (counts, _contents(con))
    assert results[True] == results[False]
    counts, tables = results[True]
    assert counts.quarantined >= 15 and counts.duplicates == 6 and counts.decisions > 30
    reasons = " | ".join(row[3] for row in tables["quarantine"])
    # under hash, what a reason quotes of the input is not stored (the location names the record)
    version = "<REDACTED>" if mode == "hash" else "'v9'"
    for expected in (
        f"unknown contract_version {version}",
        "line is not JSON",
        "line is not UTF-8",
        "no resourceSpans",
        "span has no valid traceId/spanId",
        "event has no routeiq.router_decision.payload",
        "differs from its span's",
        "span has a value of the wrong type",
        "payload is not JSON",
        "violates the contract",
        "span is not shaped like an OTLP span",
        "out of range",
    ):
        assert expected in reasons
    if mode != "keep":
        assert not any("ann@example.com" in str(row) for row in tables["llm_calls"])
    tasks = {row[17] for row in tables["llm_calls"]}
    assert "7" in tasks and len(tasks) > 2  # the int task stored as text beside the others


def test_fast_path_takes_clean_records_itself(tmp_path):
    path = _messy_file(tmp_path / "messy.otlp.json")
    batch = normalise_otlp_file(path, "b", "m")
    # every record of the 20 clean requests (and most of the edited ones) skipped the general path
    assert batch.fast_records >= 2 * 20 + 20
    assert batch.fast_records < batch.records_in - batch.tables["quarantine"].num_rows


@pytest.mark.parametrize("in_workers", [False, True])
def test_an_ingest_of_several_batches_equals_sequential_general_ingest(
    tmp_path, monkeypatch, in_workers
):
    """Several batches (normalised in worker processes, or in this one) written together;
    events repeated across files are duplicates of the first file landed, as in a sequential
    run of the general path."""
    from routeiq_assets.warehouse import ingest

    monkeypatch.setattr(ingest, "PARALLEL_MIN_BYTES", 0 if in_workers else 1 << 60)
    reqs = list(simulate_requests(300, seed=5))
    files = []
    for i, part in enumerate((reqs[:120], reqs[100:220], reqs[200:300] + reqs[:10])):
        path = tmp_path / "landing" / f"f{i}.otlp.json"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"\n".join(_line(request_spans(r)) for r in part) + b"\n")
        files.append(path)
    messy = _messy_file(tmp_path / "landing" / "messy.otlp.json")
    results = {}
    for parallel in (False, True):
        with connect(tmp_path / f"{parallel}.duckdb") as con:
            for f in (*files, messy):
                register_raw_file(con, land_file(f, tmp_path / "raw"))
            if parallel:
                done = ingest_pending(con)
            else:
                done = [
                    (b, ingest_batch(con, b, p, fmt, name, fast=False))
                    for b, p, fmt, name in con.execute(
                        "SELECT batch_id, raw_path, format, original_name FROM raw_files "
                        "ORDER BY landed_at, batch_id"
                    ).fetchall()
                ]
            results[parallel] = (sorted(done), _contents(con))
    assert results[True] == results[False]
    done, tables = results[True]
    assert len(done) == 4 and all(c.balanced for _, c in done)
    assert len(tables["router_decisions"]) >= 300
    assert sum(c.duplicates for _, c in done) >= 2 * (20 + 20 + 10)


def test_a_file_over_the_large_file_size_is_warned_about_before_the_work(tmp_path, monkeypatch):
    """Ingesting a file holds it whole: a file of at least LARGE_FILE_BYTES is named in a
    warning (with its size and what to do) before anything is written; smaller ones are not."""
    from routeiq_assets.warehouse import ingest

    [small] = write_otlp_files(simulate_requests(10, seed=3), tmp_path / "in", "small")
    [large] = write_otlp_files(simulate_requests(50, seed=4), tmp_path / "in", "large")
    sizes = small.stat().st_size, large.stat().st_size
    monkeypatch.setattr(ingest, "LARGE_FILE_BYTES", sum(sizes) // 2)
    messages: list[str] = []
    with connect(tmp_path / "w.duckdb") as con:
        for f in (small, large):
            register_raw_file(con, land_file(f, tmp_path / "raw"))
        done = ingest_pending(con, log=messages.append)
    assert len(done) == 2
    warned = [m for m in messages if m.startswith("large file:")]
    assert len(warned) == 1 and large.name in warned[0] and small.name not in warned[0]
    assert f"{large.stat().st_size / 1e9:.1f} GB" in warned[0] and "rotation" in warned[0]
    assert messages.index(warned[0]) < min(
        i for i, m in enumerate(messages) if m.startswith("writing batch")
    )


def test_a_bad_byte_in_an_ignored_field_costs_its_line_not_the_file(tmp_path):
    reqs = list(simulate_requests(12, seed=4))
    good = [_line([s for r in reqs[:10] for s in request_spans(r)])]
    path = tmp_path / "f.otlp.json"
    path.write_bytes(b"\n".join([*_bad_bytes_in_ignored_fields(reqs[10:]), *good]) + b"\n")
    batch = normalise_otlp_file(path, "b", "m")
    quarantined = batch.tables["quarantine"].to_pylist()
    assert [(q["location"], q["reason"][:18]) for q in quarantined] == [
        ("f.otlp.json:1", "line is not UTF-8:"),
        ("f.otlp.json:2", "line is not JSON: "),
    ]
    assert batch.tables["router_decisions"].num_rows == batch.tables["llm_calls"].num_rows == 10
