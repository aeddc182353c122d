import duckdb
import pyarrow as pa
import pytest

from routeiq_assets.telemetry.raw_store import land_file
from routeiq_assets.telemetry.simulator import request_spans, simulate_requests, write_otlp_files
from routeiq_assets.warehouse.ingest import ingest_batch, ingest_pending, register_raw_file
from routeiq_assets.warehouse.normalize import NormalisedBatch
from routeiq_assets.warehouse.store import bulk_load, connect, ingest_totals, write_batch
from tests.warehouse.test_otlp_fast import _contents, _line, _payload, _set_payload


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


def test_landing_many_files_on_threads_keeps_each_under_the_hash_of_its_bytes(tmp_path):
    import hashlib

    from routeiq_assets.telemetry.raw_store import COPY_CHUNK, land_files

    sources = []
    for i in range(6):  # three contents, each twice; some larger than one copy chunk
        path = tmp_path / "in" / f"f{i}.jsonl"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(bytes([i % 3]) * (COPY_CHUNK * (i % 3) + 1000))
        sources.append(path)
    raws = land_files(sources, tmp_path / "raw")
    assert [r.original_name for r in raws] == [s.name for s in sources]
    stored = sorted(p for p in (tmp_path / "raw").rglob("*") if p.is_file())
    assert len(stored) == 3  # no temporary copy left behind
    for raw, source in zip(raws, sources, strict=True):
        assert raw.raw_path.read_bytes() == source.read_bytes()
        assert raw.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
        assert raw.raw_path.name.startswith(raw.sha256) and raw.batch_id == raw.sha256[:16]
        assert not raw.raw_path.stat().st_mode & 0o222  # read-only


@pytest.mark.parametrize("refusal", ["at once", "part-way"])
def test_landing_where_the_kernel_copy_is_refused_copies_by_reads_and_writes(
    tmp_path, monkeypatch, refusal
):
    """copy_file_range is refused on some file systems (across mounts before Linux 5.3, some
    network and FUSE file systems): the copy starts again with reads and writes."""
    import errno
    import hashlib
    import os

    from routeiq_assets.telemetry.raw_store import COPY_CHUNK, land_file

    source = tmp_path / "in.jsonl"
    source.write_bytes(bytes(range(256)) * (COPY_CHUNK // 128 + 7))
    kernel_copy = os.copy_file_range
    calls = []

    def refusing(src, dst, count, *args):
        calls.append(count)
        if refusal == "part-way" and len(calls) == 1:
            return kernel_copy(src, dst, 12345)  # some bytes copied, then refused
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "copy_file_range", refusing)
    raw = land_file(source, tmp_path / "raw")
    assert len(calls) == (2 if refusal == "part-way" else 1)
    assert raw.raw_path.read_bytes() == source.read_bytes()
    assert raw.sha256 == hashlib.sha256(source.read_bytes()).hexdigest()
    assert [p.name for p in (tmp_path / "raw").rglob("*.tmp")] == []


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
    from routeiq_assets.warehouse.store import decision_call_join_counts
    from tests.warehouse.test_pairing import calls_jsonl, decisions_jsonl

    requests = list(simulate_requests(30, seed=4))
    decisions = decisions_jsonl(tmp_path / "routing_decisions.jsonl", requests[:10])
    legacy = calls_jsonl(tmp_path / "traces.jsonl", requests[20:30])
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


def _settings(con):
    return con.execute(
        "SELECT current_setting('checkpoint_threshold'), current_setting('memory_limit')"
    ).fetchall()[0]


def test_bulk_load_defers_checkpoints_caps_memory_and_restores_the_settings(tmp_path):
    with connect(tmp_path / "w.duckdb") as con:
        before = _settings(con)
        with bulk_load(con):
            # 256 MB and 768 MB as DuckDB shows them, in MiB
            assert _settings(con) == ("244.1 MiB", "732.4 MiB") != before
        assert _settings(con) == before
        with pytest.raises(RuntimeError, match="inside"), bulk_load(con):
            raise RuntimeError("inside")
        assert _settings(con) == before
        con.execute("SET memory_limit = '3GB'").fetchall()
        with bulk_load(con):  # a limit of the connection's own is kept
            assert _settings(con) == ("244.1 MiB", "2.7 GiB")
        assert _settings(con) == (before[0], "2.7 GiB")


def test_the_cap_never_raises_the_limit(tmp_path, monkeypatch):
    # more than this machine's default (80% of its memory): a small box keeps its smaller one
    monkeypatch.setenv("ROUTEIQ_INGEST_DUCKDB_MEMORY", "100TB")
    with connect(tmp_path / "w.duckdb") as con:
        before = _settings(con)
        with bulk_load(con):
            assert _settings(con) == ("244.1 MiB", before[1])
        assert _settings(con) == before


def test_a_cap_that_cannot_be_set_now_is_skipped_with_a_warning(monkeypatch, caplog):
    monkeypatch.setenv("ROUTEIQ_INGEST_DUCKDB_MEMORY", "64MB")
    con = duckdb.connect()  # in memory, with nowhere to spill: what it holds cannot go
    con.execute("SET temp_directory = ''").fetchall()
    con.execute("CREATE TABLE big AS SELECT range i, repeat('x', 100) s FROM range(2000000)")
    before = _settings(con)
    with caplog.at_level("WARNING", logger="routeiq_assets.warehouse.store"), bulk_load(con):
        assert _settings(con) == ("244.1 MiB", before[1])  # the write goes on, uncapped
    assert "without ROUTEIQ_INGEST_DUCKDB_MEMORY's cap" in caplog.text
    assert _settings(con) == before


def test_a_bad_memory_cap_is_refused_by_name(tmp_path, monkeypatch):
    from routeiq_assets.settings import load_settings

    monkeypatch.setenv("ROUTEIQ_INGEST_DUCKDB_MEMORY", "lots")
    with pytest.raises(ValueError, match="ingest_duckdb_memory must be a size.*'lots'"):
        load_settings()
    with connect(tmp_path / "w.duckdb") as con:
        before = _settings(con)
        refused = pytest.raises(ValueError, match="ROUTEIQ_INGEST_DUCKDB_MEMORY='lots'")
        with refused, bulk_load(con, "lots"):
            pytest.fail("the block must not run")
        assert _settings(con) == before


@pytest.fixture(scope="module")
def four_files(tmp_path_factory):
    """20,000 requests in four OTLP files: more than DuckDB's pool holds while writing them
    uncapped (~48 MB here)."""
    tmp = tmp_path_factory.mktemp("cap")
    return write_otlp_files(
        simulate_requests(20_000, seed=3), tmp / "landing", "x", requests_per_file=5000
    )


def _ingest_under(tmp, files, monkeypatch, cap):
    """Ingest the files under this memory cap; DuckDB's pool after each batch is written."""
    monkeypatch.setenv("ROUTEIQ_INGEST_DUCKDB_MEMORY", cap)
    pool = []
    with connect(tmp / f"{cap}.duckdb") as con:
        for f in files:
            register_raw_file(con, land_file(f, tmp / "raw"))

        def log(msg):
            if msg.startswith("["):
                query = "SELECT sum(memory_usage_bytes) FROM duckdb_memory()"
                pool.append(con.execute(query).fetchall()[0][0])

        done = ingest_pending(con, log=log)
        return done, pool, _contents(con)


def test_a_bulk_load_holds_duckdb_to_its_memory_cap(tmp_path, four_files, monkeypatch):
    done, pool, contents = _ingest_under(tmp_path, four_files, monkeypatch, "1GB")
    assert len(pool) == 4 and max(pool) > 40 * 2**20  # uncapped it would hold more
    capped, capped_pool, capped_contents = _ingest_under(tmp_path, four_files, monkeypatch, "32MB")
    assert capped_pool and max(capped_pool) <= 32 * 2**20
    assert [c for _, c in capped] == [c for _, c in done] and all(c.balanced for _, c in done)
    assert sum(c.decisions for _, c in done) == 20_000
    assert capped_contents == contents


def test_running_out_of_the_memory_cap_says_which_setting(tmp_path, four_files, monkeypatch):
    with pytest.raises(duckdb.OutOfMemoryException) as raised:
        _ingest_under(tmp_path, four_files, monkeypatch, "4MB")
    # the insert's own error, not the aborted transaction's refusal to drop its input view
    assert "Out of Memory" in str(raised.value)
    assert "ROUTEIQ_INGEST_DUCKDB_MEMORY=4MB" in "".join(raised.value.__notes__)


def _group_files(tmp):
    """Three OTLP files that repeat each other's events (and one bad line), a feedback file, and
    a file stored before them that repeats some of the second's."""
    import json

    reqs = list(simulate_requests(300, seed=9))
    parts = {
        "before": reqs[150:170],
        "a": reqs[:120],
        "b": reqs[100:220],
        "c": reqs[200:300] + reqs[:10],
    }
    files = {
        name: _edited_file(tmp / "in" / f"{name}.otlp.json", part) for name, part in parts.items()
    }
    with files["c"].open("a") as f:
        f.write('{"resourceSpans": [{"scopeSpans": [\n')  # truncated
    feedback = tmp / "in" / "scores.jsonl"
    feedback.write_text(
        "".join(
            json.dumps({"event_id": f"e{i}", "score": i / 10, "source": "judge"}) + "\n"
            for i in range(5)
        )
    )
    files["feedback"] = feedback
    return files


@pytest.mark.parametrize("with_feedback", [False, True])
def test_a_group_of_batches_stores_what_writing_them_in_turn_stores(tmp_path, with_feedback):
    from routeiq_assets.warehouse.ingest import normalise_file
    from routeiq_assets.warehouse.store import write_batches

    files = _group_files(tmp_path)
    names = ["a", "b", *(["feedback"] if with_feedback else []), "c"]
    raws = {n: land_file(files[n], tmp_path / "raw") for n in ["before", *names]}

    def batch(name):
        raw = raws[name]
        return raw.batch_id, normalise_file(raw.raw_path, raw.format, raw.batch_id, name)

    results = {}
    for grouped in (False, True):
        with connect(tmp_path / f"{grouped}.duckdb") as con:
            write_batch(con, *batch("before"))
            items = [batch(n) for n in names]
            if grouped:
                counts = write_batches(con, items)
                assert write_batches(con, items) == counts  # a rerun replaces, same counts
            else:
                counts = [write_batch(con, *item) for item in items]
            results[grouped] = (counts, _contents(con))
    assert results[True] == results[False]
    counts, tables = results[True]
    by_name = dict(zip(names, counts, strict=True))
    assert all(c.balanced for c in counts)
    # b repeats 20 events of a and 20 of `before`; c repeats 10 of a (and b's last 20)
    assert by_name["b"].duplicates == 2 * 40 and by_name["b"].decisions == 80
    assert by_name["c"].duplicates == 2 * 30 and by_name["c"].quarantined == 1
    assert len(tables["router_decisions"]) == 300
    if with_feedback:
        assert by_name["feedback"].feedback == 5


def test_a_failed_group_write_leaves_none_of_its_batches(tmp_path):
    from routeiq_assets.warehouse.ingest import normalise_file
    from routeiq_assets.warehouse.store import write_batches

    files = _group_files(tmp_path)
    raws = {n: land_file(files[n], tmp_path / "raw") for n in ("before", "a")}
    with connect(tmp_path / "w.duckdb") as con:
        before = raws["before"]
        write_batch(
            con, before.batch_id, normalise_file(before.raw_path, "otlp_json", before.batch_id, "x")
        )
        good = raws["a"]
        bad = NormalisedBatch(
            decisions=[{"event_id": "e1", "batch_id": "bad", "contract_version": "v1"}],
            records_in=1,
        )  # no trace_id: violates NOT NULL
        with pytest.raises(duckdb.Error):
            write_batches(
                con,
                [
                    (good.batch_id, normalise_file(good.raw_path, "otlp_json", good.batch_id, "a")),
                    ("bad", bad),
                ],
            )
        assert _count(con, "router_decisions") == 20 and _count(con, "ingest_log") == 1
        with pytest.raises(ValueError, match="twice"):
            write_batches(con, [("x", bad), ("x", bad)])


def _die_on_gone(job):
    """In a worker process: dies (as the OOM killer would end it) on the file named gone."""
    import os

    from routeiq_assets.warehouse.ingest import normalise_file

    if job[3] == "gone":
        os._exit(3)
    return normalise_file(*job)


@pytest.mark.parametrize("failure", ["in this process", "in a worker", "a worker dies"])
def test_batches_normalised_before_a_failure_are_written(tmp_path, monkeypatch, failure):
    from routeiq_assets.warehouse import ingest
    from routeiq_assets.warehouse.ingest import ingest_batches

    monkeypatch.setattr(
        ingest, "PARALLEL_MIN_BYTES", 1 << 60 if failure == "in this process" else 0
    )
    if failure == "a worker dies":
        monkeypatch.setattr(ingest, "normalise_job", _die_on_gone)
    files = _group_files(tmp_path)
    with connect(tmp_path / "w.duckdb") as con:
        pending = []
        for name in ("a", "b", "c"):
            raw = land_file(files[name], tmp_path / "raw")
            register_raw_file(con, raw)
            pending.append((raw.batch_id, str(raw.raw_path), raw.format, name))
        gone = tmp_path / "gone.otlp.json"
        pending.insert(2, ("0123456789abcdef", str(gone), "otlp_json", "gone"))
        logged = []
        with pytest.raises(Exception) as failed:  # noqa: B017 (what is raised, asserted below)
            ingest_batches(con, pending, log=logged.append)
        if failure == "a worker dies":
            # the pool breaks: batches still in flight with it are lost (not written, ingested
            # by the next run); those written before are whole
            assert "terminated" in str(failed.value)
            [note] = failed.value.__notes__
            assert note.startswith("a worker died while normalising one of ") and str(gone) in note
        else:
            assert isinstance(failed.value, FileNotFoundError)
            assert f"while normalising {gone} (gone)" in failed.value.__notes__
        written = {r[0] for r in con.execute("SELECT batch_id FROM ingest_log").fetchall()}
        if failure == "a worker dies":
            assert written in ({pending[0][0], pending[1][0]}, {pending[0][0]}, set())
        else:
            assert written == {pending[0][0], pending[1][0]}
            assert any(line.startswith("[2/4] b") for line in logged)
        stored = con.execute("SELECT DISTINCT batch_id FROM router_decisions").fetchall()
        assert {r[0] for r in stored} == written


def _edited_file(path, reqs, edit=None):
    """An OTLP file of these requests, each request's spans passed through ``edit``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for req in reqs:
        spans = request_spans(req)
        if edit:
            edit(*spans)
        lines.append(_line(spans))
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _task(value):
    def edit(_decision, call):
        for attribute in call["attributes"]:
            if attribute["key"] == "litellm.task":
                attribute["value"] = value

    return edit


def _offset_timestamp(decision, _call):
    payload = _payload(decision)
    payload["timestamp_utc"] = "2026-11-01T02:00:00+02:00"
    _set_payload(decision, payload)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        # an int in one file and a float in the next: grouped, Arrow would store 7 as '7.0'
        (_task({"intValue": "7"}), _task({"doubleValue": 2.5})),
        # timestamps with another offset than UTC: Arrow cannot join the two columns
        (None, _offset_timestamp),
        (None, None),  # grouped, unless b is stored already
    ],
    ids=["int-then-float", "utc-then-offset", "same-types"],
)
@pytest.mark.parametrize("stored_before", [False, True])
def test_grouping_never_changes_what_is_stored(tmp_path, first, second, stored_before):
    """Batches whose inferred column types differ, or that are already stored, are written in
    turn: the same rows and counts as one write_batch after another."""
    from routeiq_assets.warehouse.ingest import normalise_file
    from routeiq_assets.warehouse.store import write_batches

    reqs = list(simulate_requests(30, seed=3))
    a = land_file(_edited_file(tmp_path / "a.otlp.json", reqs[:15], first), tmp_path / "raw")
    b = land_file(_edited_file(tmp_path / "b.otlp.json", reqs[10:], second), tmp_path / "raw")

    def batch(raw):
        return raw.batch_id, normalise_file(
            raw.raw_path, raw.format, raw.batch_id, raw.original_name
        )

    results = {}
    for grouped in (False, True):
        with connect(tmp_path / f"{grouped}.duckdb") as con:
            if stored_before:  # b first: rewritten in turn, a's copies of shared events go
                write_batch(con, *batch(b))
            items = [batch(a), batch(b)]
            if grouped:
                counts = write_batches(con, items)
            else:
                counts = [write_batch(con, *item) for item in items]
            results[grouped] = (counts, _contents(con))
    assert results[True] == results[False]
    assert "7.0" not in {row[17] for row in results[True][1]["llm_calls"]}  # the task column


def test_rows_of_another_batch_are_refused(tmp_path):
    from routeiq_assets.warehouse.store import write_batches

    rows = NormalisedBatch(
        decisions=[
            {
                "event_id": "e1",
                "batch_id": "other",
                "contract_version": "v1",
                "trace_id": "t",
                "outcome_status": "success",
            }
        ],
        records_in=1,
    )
    with connect(tmp_path / "w.duckdb") as con:
        with pytest.raises(ValueError, match="carry batch_id"):
            write_batches(con, [("mine", rows)])
        assert _count(con, "router_decisions") == 0


def _recording(events, name, fn):
    """``fn`` of a file descriptor, appending (name, the path it is open on) to ``events``."""
    import os

    def call(fd, *args):
        events.append((name, os.path.realpath(f"/proc/self/fd/{fd}")))
        return fn(fd, *args)

    return call


def test_a_landed_file_is_on_disk_before_it_is_named_and_its_name_after(tmp_path, monkeypatch):
    """fsync of the copy before the rename that names it, then of its folder (a crash must never
    leave a registered batch whose raw file is empty or short)."""
    import os
    from pathlib import Path

    from routeiq_assets.telemetry.raw_store import land_file

    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"a": 1}\n' * 1000)
    events = []
    replace = Path.replace

    def recording_replace(self, target):
        events.append(("rename", str(target)))
        return replace(self, target)

    monkeypatch.setattr(os, "fsync", _recording(events, "fsync", os.fsync))
    monkeypatch.setattr(Path, "replace", recording_replace)
    raw = land_file(source, tmp_path / "raw")
    assert [kind for kind, _ in events] == ["fsync", "fsync", "rename", "fsync"]
    assert ".landing." in events[0][1]  # the copy, under its temporary name
    assert events[1][1] == str(tmp_path / "raw")  # the new shard folder's name in it
    assert events[2][1] == str(raw.raw_path)
    assert events[3][1] == str(raw.raw_path.parent)


def test_landing_starts_the_copys_writeback_before_hashing_and_flushing_it(tmp_path, monkeypatch):
    """The kernel is asked to write the copy out as soon as it is made (sync_file_range on
    Linux), then the copy is hashed and flushed; elsewhere nothing is asked."""
    import os
    import sys

    from routeiq_assets.telemetry import raw_store

    if raw_store._SYNC_FILE_RANGE is None:
        assert not sys.platform.startswith("linux")
        pytest.skip("no sync_file_range on this platform")
    # the binding itself: accepted on a file with unwritten data, refused on a closed descriptor
    probe = tmp_path / "probe"
    fd = os.open(probe, os.O_RDWR | os.O_CREAT)
    os.write(fd, b"x" * 100_000)
    assert raw_store._start_writeback(fd)
    os.close(fd)
    assert not raw_store._start_writeback(fd)

    events = []
    writeback = _recording(events, "writeback", raw_store._SYNC_FILE_RANGE)
    monkeypatch.setattr(raw_store, "_SYNC_FILE_RANGE", writeback)
    monkeypatch.setattr(raw_store, "_fd_sha256", _recording(events, "hash", raw_store._fd_sha256))
    monkeypatch.setattr(os, "fsync", _recording(events, "fsync", os.fsync))
    source = tmp_path / "in.jsonl"
    source.write_bytes(b'{"a": 1}\n' * 1000)
    raw_store.land_file(source, tmp_path / "raw")
    assert [kind for kind, _ in events[:3]] == ["writeback", "hash", "fsync"]
    assert len({path for _, path in events[:3]}) == 1 and ".landing." in events[0][1]


def test_a_file_whose_name_is_not_utf8_lands_and_registers(tmp_path):
    import os

    from routeiq_assets.telemetry.raw_store import land_file

    source = tmp_path / os.fsdecode(b"caf\xe9.jsonl")  # Latin-1 bytes: not UTF-8
    source.write_bytes(b'{"a": 1}\n')
    with connect(tmp_path / "w.duckdb") as con:
        raw = land_file(source, tmp_path / "raw")
        assert raw.original_name == "caf\\xe9.jsonl"
        assert register_raw_file(con, raw)
        assert con.execute("SELECT original_name FROM raw_files").fetchall() == [
            (raw.original_name,)
        ]


def test_landing_from_a_pipe_and_a_name_whose_suffix_is_not_utf8(tmp_path):
    """`routeiq ingest <(zcat f.gz)` lands a pipe (no kernel copy, no seeking); a suffix with
    bytes that are not UTF-8 must not reach the raw file's name (found by review)."""
    import os
    import threading
    from pathlib import Path

    from routeiq_assets.telemetry.raw_store import land_file

    body = b'{"a": 1}\n' * 200_000  # more than a pipe holds at once
    read_end, write_end = os.pipe()
    writer = threading.Thread(target=lambda: (os.write(write_end, body), os.close(write_end)))
    writer.start()
    try:
        raw = land_file(Path(f"/dev/fd/{read_end}"), tmp_path / "raw")
    finally:
        os.close(read_end)  # a writer still blocked gets EPIPE instead of waiting forever
        writer.join(timeout=30)
    assert raw.raw_path.read_bytes() == body
    odd = tmp_path / os.fsdecode(b"export.caf\xe9.json")
    odd.write_bytes(b'{"b": 2}\n')
    with connect(tmp_path / "w.duckdb") as con:
        raw = land_file(odd, tmp_path / "raw")
        assert raw.raw_path.name.endswith(".caf.json") and raw.raw_path.name.isascii()
        assert register_raw_file(con, raw)


def test_a_failed_rollback_does_not_hide_why_the_transaction_failed():
    from routeiq_assets.warehouse.store import transaction

    con = duckdb.connect()
    con.execute("CREATE TABLE t (a INTEGER PRIMARY KEY)").fetchall()
    with pytest.raises(duckdb.ConstraintException), transaction(con):
        con.execute("INSERT INTO t VALUES (1)").fetchall()
        con.execute("INSERT INTO t VALUES (1)").fetchall()
    assert con.execute("SELECT count(*) FROM t").fetchall() == [(0,)]  # rolled back
    con.register("rows", pa.table({"a": [1]}))
    with pytest.raises(ValueError, match="the block's own") as raised, transaction(con, "rows"):
        con.close()  # the connection is gone: ROLLBACK and unregister fail too
        raise ValueError("the block's own error")
    assert "ROLLBACK after it failed" in "".join(raised.value.__notes__)


def test_a_warehouse_whose_decisions_needed_a_trace_is_migrated(tmp_path):
    """A warehouse made when router_decisions.trace_id was NOT NULL takes decisions without
    trace context once opened."""
    path = tmp_path / "old.duckdb"
    with connect(path) as con:
        con.execute("DROP TABLE router_decisions").fetchall()
        con.execute(
            "CREATE TABLE router_decisions (event_id VARCHAR NOT NULL, batch_id VARCHAR NOT NULL,"
            " contract_version VARCHAR NOT NULL, trace_id VARCHAR NOT NULL)"
        ).fetchall()
    nullable = (
        "SELECT is_nullable FROM duckdb_columns()"
        " WHERE table_name = 'router_decisions' AND column_name = 'trace_id'"
    )
    with duckdb.connect(str(path)) as raw:
        assert raw.execute(nullable).fetchall() == [(False,)]
    with connect(path) as con:
        assert con.execute(nullable).fetchall() == [(True,)]
        con.execute("INSERT INTO router_decisions VALUES ('e', 'b', 'v1', NULL)").fetchall()
