import duckdb
import pytest

from routeiq_assets.telemetry.raw_store import land_file
from routeiq_assets.telemetry.simulator import simulate_requests, write_otlp_files
from routeiq_assets.warehouse.ingest import ingest_batch, ingest_pending, register_raw_file
from routeiq_assets.warehouse.normalize import NormalisedBatch
from routeiq_assets.warehouse.store import bulk_load, connect, ingest_totals, write_batch


def _count(con, table):
    return con.execute(f"SELECT count(*) FROM {table}").fetchall()[0][0]


@pytest.fixture
def landed(tmp_path):
    files = write_otlp_files(
        simulate_requests(400, seed=11), tmp_path / "landing", "x", requests_per_file=200
    )
    return tmp_path, files


def test_ingest_counts_balance_and_rows_land(landed):
    tmp, files = landed
    with connect(tmp / "w.duckdb") as con:
        for f in files:
            assert register_raw_file(con, land_file(f, tmp / "raw"))
        done = ingest_pending(con)
        assert len(done) == 2 and all(c.balanced for _, c in done)
        totals = ingest_totals(con)
        assert totals["decisions"] == totals["stored_router_decisions"] == 400
        assert totals["stored_llm_calls"] == 400 and totals["quarantined"] == 0
        assert totals["stored_decision_candidates"] == 400 * 6
        assert _count(con, "decision_candidates WHERE is_selected") == 400
        assert ingest_pending(con) == []  # nothing pending the second time


def test_landing_same_bytes_twice_is_one_batch(landed):
    tmp, files = landed
    with connect(tmp / "w.duckdb") as con:
        assert register_raw_file(con, land_file(files[0], tmp / "raw"))
        copy = tmp / "copy.otlp.json"
        copy.write_bytes(files[0].read_bytes())
        assert not register_raw_file(con, land_file(copy, tmp / "raw"))
        assert _count(con, "raw_files") == 1


def test_rerun_of_a_batch_replaces_it(landed):
    tmp, files = landed
    raw = land_file(files[0], tmp / "raw")
    with connect(tmp / "w.duckdb") as con:
        register_raw_file(con, raw)
        first = ingest_batch(con, raw.batch_id, raw.raw_path, raw.format, "x")
        again = ingest_batch(con, raw.batch_id, raw.raw_path, raw.format, "x")
        assert first == again
        assert _count(con, "router_decisions") == 200 and _count(con, "ingest_log") == 1


def test_same_events_in_another_file_are_counted_duplicates(landed):
    tmp, files = landed
    raw = land_file(files[0], tmp / "raw")
    with connect(tmp / "w.duckdb") as con:
        ingest_batch(con, raw.batch_id, raw.raw_path, raw.format, "a")
        counts = ingest_batch(con, "other-batch", raw.raw_path, raw.format, "b")
        assert counts.decisions == 0 and counts.llm_calls == 0
        assert counts.duplicates == 400 and counts.balanced
        assert _count(con, "router_decisions") == 200


def test_failed_write_leaves_no_half_batch(landed):
    tmp, files = landed
    raw = land_file(files[0], tmp / "raw")
    with connect(tmp / "w.duckdb") as con:
        good = ingest_batch(con, raw.batch_id, raw.raw_path, raw.format, "a")
        assert good.decisions == 200
        bad = NormalisedBatch(
            decisions=[
                {
                    "event_id": "e1",
                    "batch_id": raw.batch_id,
                    "contract_version": "v1",
                    "trace_id": "t",
                    "outcome_status": "success",
                }
            ],
            candidates=[
                {
                    "event_id": "e1",
                    "batch_id": raw.batch_id,
                    "position": 0,
                    "model_name": None,
                    "is_selected": True,
                }
            ],  # violates NOT NULL
            records_in=1,
        )
        with pytest.raises(duckdb.Error):
            write_batch(con, raw.batch_id, bad)
        # the old version of the batch is still there, whole
        assert _count(con, "router_decisions") == 200
        assert _count(con, f"router_decisions WHERE batch_id = '{raw.batch_id}'") == 200
        assert _count(con, "ingest_log") == 1


def test_bad_records_are_quarantined_not_dropped(tmp_path):
    (path,) = write_otlp_files(simulate_requests(20, seed=1), tmp_path, "x", requests_per_line=10)
    lines = path.read_text().splitlines()
    bad_version = lines[0].replace(
        '\\"contract_version\\": \\"v1\\"', '\\"contract_version\\": \\"v9\\"', 1
    )
    assert bad_version != lines[0]
    path.write_text("\n".join([bad_version, lines[1][:-30], ""]))
    raw = land_file(path, tmp_path / "raw")
    with connect(tmp_path / "w.duckdb") as con:
        counts = ingest_batch(con, raw.batch_id, raw.raw_path, raw.format, "x")
        assert counts.balanced
        assert counts.quarantined == 2 and counts.decisions == 9 and counts.llm_calls == 10
        reasons = [
            r[0] for r in con.execute("SELECT reason FROM quarantine ORDER BY location").fetchall()
        ]
        assert any("unknown contract_version 'v9'" in r for r in reasons)
        assert any("not JSON" in r for r in reasons)


def test_every_format_lands_and_unpaired_records_are_kept(tmp_path):
    """Bare decision JSONL (no calls) and legacy traces.jsonl (no decisions) are both kept."""
    import json

    from routeiq_assets.telemetry.simulator import decision_payload
    from routeiq_assets.warehouse.store import decision_call_join_counts

    requests = list(simulate_requests(30, seed=4))
    decisions = tmp_path / "routing_decisions.jsonl"
    decisions.write_text("\n".join(json.dumps(decision_payload(r)) for r in requests[:10]) + "\n")
    legacy = tmp_path / "traces.jsonl"
    legacy.write_text(
        "\n".join(
            json.dumps(
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
            )
            for r in requests[20:30]
        )
        + "\n"
    )
    (otlp,) = write_otlp_files(iter(requests[:20]), tmp_path / "otlp", "x")
    with connect(tmp_path / "w.duckdb") as con:
        for path in (decisions, legacy, otlp):
            raw = land_file(path, tmp_path / "raw")
            assert raw.format in {"decision_jsonl", "legacy_traces_jsonl", "otlp_json"}
            register_raw_file(con, raw)
        done = dict(ingest_pending(con))
        assert all(c.balanced for c in done.values())
        assert _count(con, "router_decisions") == 20  # 10 bare ones duplicated by the OTLP file
        assert _count(con, "llm_calls") == 30
        assert (
            con.execute(
                "SELECT avg(quality_score) FROM llm_calls WHERE quality_score IS NOT NULL"
            ).fetchall()[0][0]
            == 0.5
        )
        assert decision_call_join_counts(con) == {
            "decisions_with_call": 20,
            "decisions_without_call": 0,
            "calls_without_decision": 10,
        }


def test_out_of_order_and_empty_files_are_fine(tmp_path):
    """Arrival order is not event order: reversed timestamps ingest the same; an empty file is a
    batch of zero records, not an error."""
    requests = list(simulate_requests(50, seed=12))
    (forward,) = write_otlp_files(iter(requests), tmp_path / "f", "x", requests_per_line=1)
    backward = tmp_path / "backward.otlp.json"
    backward.write_text("\n".join(reversed(forward.read_text().splitlines())) + "\n")
    empty = tmp_path / "empty.otlp.json"
    empty.write_text("")
    with connect(tmp_path / "w.duckdb") as con:
        for path in (backward, empty):
            register_raw_file(con, land_file(path, tmp_path / "raw"))
        done = dict(ingest_pending(con))
        assert sorted(c.records_in for c in done.values()) == [0, 100]
        stamps = [
            r[0]
            for r in con.execute(
                "SELECT timestamp_utc FROM router_decisions ORDER BY timestamp_utc"
            ).fetchall()
        ]
        assert len(stamps) == 50 and stamps == sorted(r.timestamp for r in requests)


def test_bulk_load_defers_checkpoints_and_restores_the_setting(tmp_path):
    def threshold(con):
        return con.execute("SELECT current_setting('checkpoint_threshold')").fetchall()[0][0]

    with connect(tmp_path / "w.duckdb") as con:
        before = threshold(con)
        with bulk_load(con):
            assert threshold(con) != before and threshold(con).startswith("244")  # 256 MB in MiB
        assert threshold(con) == before
        with pytest.raises(RuntimeError, match="inside"), bulk_load(con):
            raise RuntimeError("inside")
        assert threshold(con) == before
