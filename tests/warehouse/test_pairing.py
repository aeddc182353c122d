"""Warehouse-wide pairing counts of decisions and LLM calls, advanced run by run
(store.advance_pairing) instead of joining the whole tables after every ingest run: always equal
to the full join, through decisions and calls arriving in any order, duplicates and reruns."""

import json
import random

from routeiq_assets.telemetry.raw_store import land_file
from routeiq_assets.telemetry.simulator import decision_payload, simulate_requests
from routeiq_assets.warehouse.ingest import ingest_registered_batches, register_raw_file
from routeiq_assets.warehouse.store import (
    PAIRING_FIELDS,
    advance_pairing,
    already_ingested,
    connect,
    current_pairing,
    decision_call_join_counts,
)


def calls_jsonl(path, requests):
    """The seed's legacy traces.jsonl: LLM calls without decisions."""
    lines = [
        {
            "query": r.query,
            "model_name": r.selected.name,
            "response": "ok",
            "response_time": 1.5,
            "token_num": 30,
            "input_tokens": 10,
            "output_tokens": 20,
            "task_name": r.task,
            "trace_id": r.trace_id,
            "span_id": r.llm_span_id,
            "timestamp": "2026-11-01T00:00:00Z",
            "performance": 0.5,
            "ground_truth": None,
        }
        for r in requests
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def decisions_jsonl(path, requests):
    path.write_text("".join(json.dumps(decision_payload(r)) + "\n" for r in requests))
    return path


def _run(con, tmp_path, files):
    """What the telemetry_tables asset does for a run over these files' batches."""
    keys = []
    for path in files:
        raw = land_file(path, tmp_path / "raw")
        register_raw_file(con, raw)
        keys.append(raw.batch_id)
    before = None if already_ingested(con, keys) else current_pairing(con)
    ingest_registered_batches(con, keys)
    return advance_pairing(con, keys, before), before


def test_advanced_pairing_counts_always_equal_the_full_join(tmp_path):
    requests = list(simulate_requests(120, seed=21))
    for seed in range(3):
        rng = random.Random(seed)
        folder = tmp_path / f"s{seed}"
        folder.mkdir()
        advanced = 0
        with connect(folder / "w.duckdb") as con:
            for step in range(14):
                files = []
                for part in range(rng.choice([1, 1, 2])):
                    picked = rng.sample(requests, rng.randint(0, 25))  # repeats: duplicates
                    kind = rng.choice([decisions_jsonl, calls_jsonl])
                    files.append(kind(folder / f"{step}-{part}.jsonl", picked))
                if rng.random() < 0.2 and step:  # a rerun of an earlier file's batch
                    files = [folder / f"{rng.randrange(step)}-0.jsonl"]
                counts, before = _run(con, folder, files)
                advanced += before is not None
                assert counts == decision_call_join_counts(con), (seed, step)
                assert current_pairing(con) == counts
        assert advanced >= 8  # most runs counted only the traces their batches touched


def test_a_batch_written_outside_a_run_makes_the_next_run_join_everything(tmp_path):
    requests = list(simulate_requests(40, seed=22))
    with connect(tmp_path / "w.duckdb") as con:
        _run(con, tmp_path, [decisions_jsonl(tmp_path / "a.jsonl", requests[:20])])
        assert current_pairing(con) is not None
        # written by the library alone (as a script would), the stored counts not advanced
        raw = land_file(calls_jsonl(tmp_path / "b.jsonl", requests[10:30]), tmp_path / "raw")
        register_raw_file(con, raw)
        ingest_registered_batches(con, [raw.batch_id])
        assert current_pairing(con) is None  # stale: of the ingest log as it was
        counts, before = _run(con, tmp_path, [calls_jsonl(tmp_path / "c.jsonl", requests[30:])])
        assert before is None and counts == decision_call_join_counts(con)
        assert counts == {
            "decisions_with_call": 10,
            "decisions_without_call": 10,
            "calls_without_decision": 20,
        }


def test_a_run_counts_only_what_its_batches_changed(tmp_path):
    """The stored counts are advanced, not recomputed: an offset planted in them survives a run
    over new batches that hold a small share of the rows; a run whose batches hold more than a
    quarter of them (a backfill), or a rerun, joins everything and removes it."""
    requests = list(simulate_requests(80, seed=23))
    offset = {"decisions_with_call": 0, "decisions_without_call": 1000, "calls_without_decision": 0}

    def plant(con):
        con.execute(
            "UPDATE trace_pairing SET decisions_without_call = decisions_without_call + 1000"
        )

    def off(con, counts):
        full = decision_call_join_counts(con)
        return {f: counts[f] - full[f] for f in PAIRING_FIELDS}

    with connect(tmp_path / "w.duckdb") as con:
        _run(con, tmp_path, [decisions_jsonl(tmp_path / "a.jsonl", requests[:40])])
        plant(con)
        counts, before = _run(con, tmp_path, [calls_jsonl(tmp_path / "b.jsonl", requests[35:45])])
        assert before is not None and off(con, counts) == offset  # 10 of 50 rows: advanced
        # 35 of 85 rows: joined, though the counts it found were current
        counts, before = _run(con, tmp_path, [calls_jsonl(tmp_path / "c.jsonl", requests[45:])])
        assert before is not None and off(con, counts) == dict.fromkeys(PAIRING_FIELDS, 0)
        plant(con)
        counts, before = _run(con, tmp_path, [tmp_path / "b.jsonl"])  # a rerun: joined
        assert before is None and off(con, counts) == dict.fromkeys(PAIRING_FIELDS, 0)
