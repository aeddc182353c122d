"""A large OTLP JSON file is normalised in parts and written part by part in its batch's one
transaction (store.write_batch_parts): it stores what the file read whole stores."""

import pyarrow as pa
import pytest

from routeiq_assets.telemetry.raw_store import land_file
from routeiq_assets.telemetry.simulator import request_spans, simulate_requests
from routeiq_assets.warehouse.columnar import ColumnarBatch
from routeiq_assets.warehouse.ingest import (
    ingest_batches,
    normalise_file,
    register_raw_file,
)
from routeiq_assets.warehouse.otlp_fast import split_lines
from routeiq_assets.warehouse.store import (
    CannotStream,
    connect,
    pending_batches,
    write_batch_parts,
)
from tests.warehouse.test_otlp_fast import _contents, _line, _messy_file
from tests.warehouse.test_otlp_native import _decision_line, _review_payload

WHOLE = {"stream_min_bytes": 10**15}


def _files(tmp):
    """A file stored first that repeats some events of the big one, and the big one: events
    repeated across its own lines far apart (so across parts), then every kind of bad line."""
    reqs = list(simulate_requests(160, seed=31))
    before = tmp / "in" / "before.otlp.json"
    before.parent.mkdir(parents=True, exist_ok=True)
    before.write_bytes(b"\n".join(_line(request_spans(r)) for r in reqs[140:150]) + b"\n")
    messy = _messy_file(tmp / "messy.otlp.json").read_bytes()
    lines = [_line(request_spans(r)) for r in reqs[:100] + reqs[40:60] + reqs[100:160]]
    big = tmp / "in" / "big.otlp.json"
    big.write_bytes(b"\n".join(lines) + b"\n" + messy)
    return [before, big]


def _ingest(tmp, files, name, **kw):
    messages: list[str] = []
    with connect(tmp / f"{name}.duckdb") as con:
        for f in files:
            register_raw_file(con, land_file(f, tmp / "raw"))
        done = ingest_batches(con, pending_batches(con), messages.append, **kw)
        return done, _contents(con), messages


@pytest.mark.parametrize(
    ("native", "workers", "chunk"),
    [("1", 2, 10**9), ("1", 2, 150), ("1", 1, 150), ("0", 2, 150)],
)
def test_a_file_written_in_parts_stores_what_it_stores_whole(
    tmp_path, monkeypatch, native, workers, chunk
):
    monkeypatch.setenv("ROUTEIQ_NATIVE_OTLP", native)
    files = _files(tmp_path)
    big = files[1].stat().st_size
    whole = _ingest(tmp_path, files, "whole", workers=workers, parallel_min_bytes=0, **WHOLE)
    streamed = _ingest(
        tmp_path,
        files,
        "streamed",
        workers=workers,
        parallel_min_bytes=0,
        stream_min_bytes=big,  # the big file only
        stream_part_bytes=big // 9,
        group_records=chunk,
    )
    assert streamed[:2] == whole[:2]
    done, tables, messages = streamed
    [n_parts] = [int(m.split(" in ")[1].split()[0]) for m in messages if ") in " in m]
    assert n_parts >= 8  # (parts end at line ends)
    assert sum("big.otlp.json: part" in m for m in messages) == n_parts
    assert not any(") in " in m for m in whole[2])
    # the repeats inside the big file and those of the file stored before it are duplicates
    assert all(c.balanced for _, c in done)
    assert done[1][1].duplicates >= 2 * 20 + 2 * 10
    assert len(tables["quarantine"]) > 10


def test_parts_that_type_a_column_apart_make_the_file_read_whole(tmp_path, monkeypatch):
    """One pass over the file would infer one type for a column that its parts type apart
    (objects in one part, text in the next): the file is read whole instead."""
    trace, span = "a" * 32, "b" * 16
    first = _review_payload("e1", custom_attributes={"logging_policy": {"a": 1}})
    lines = [
        _decision_line(trace, span, [first]),
        _decision_line(trace, "c" * 16, [_review_payload("e2", custom_attributes={"x": 1})]),
        _decision_line(
            trace, "d" * 16, [_review_payload("e3", custom_attributes={"logging_policy": "x"})]
        ),
    ]
    path = tmp_path / "in" / "objects.otlp.json"
    path.parent.mkdir()
    path.write_bytes(b"\n".join(lines) + b"\n")
    size = path.stat().st_size
    from routeiq_assets.warehouse import ingest

    monkeypatch.setattr(ingest, "LARGE_FILE_BYTES", size)  # read whole: warned, even so
    whole = _ingest(tmp_path, [path], "whole", **WHOLE)
    streamed = _ingest(
        tmp_path, [path], "streamed", stream_min_bytes=size, stream_part_bytes=size // 3
    )
    assert streamed[:2] == whole[:2]
    said = streamed[2]
    fallback = [i for i, m in enumerate(said) if "objects.otlp.json is normalised whole" in m]
    warned = [i for i, m in enumerate(said) if m.startswith("large file: objects.otlp.json")]
    assert len(fallback) == len(warned) == 1 and warned[0] > fallback[0]
    assert sum(m.startswith("large file:") for m in whole[2]) == 1
    assert whole[1]["router_decisions"] and len(whole[1]["router_decisions"]) == 3


def _parts(tmp, batch="b1", seed=8, n=4):
    path = tmp / f"{batch}.otlp.json"
    path.write_bytes(
        b"\n".join(_line(request_spans(r)) for r in simulate_requests(40, seed=seed)) + b"\n"
    )
    return [normalise_file(path, "otlp_json", batch, "f", part=p) for p in split_lines(path, n)]


def test_a_batch_whose_parts_fail_midway_leaves_nothing_of_itself(tmp_path):
    parts = _parts(tmp_path)

    def failing(parts):
        yield parts[0]
        yield parts[1]
        raise OSError("the disk went away")

    with connect(tmp_path / "w.duckdb") as con:
        done = write_batch_parts(con, "b1", parts, chunk_records=10)
        assert done.decisions == 40 and done.balanced
        stored = _contents(con)
        with pytest.raises(OSError, match="disk went away"):
            write_batch_parts(con, "b1", failing(parts), chunk_records=10)
        assert _contents(con) == stored  # the rewrite rolled back: the batch as it was
        with pytest.raises(OSError, match="disk went away"):
            write_batch_parts(con, "b2", failing(_parts(tmp_path, "b2", 9)), chunk_records=10)
        assert _contents(con) == stored  # nothing of b2


def test_parts_with_feedback_cannot_be_streamed_and_leave_nothing(tmp_path):
    parts = _parts(tmp_path)
    feedback = pa.table({"batch_id": ["b1"], "event_id": ["e"], "trace_id": [None], "score": [1.0]})
    with_feedback = ColumnarBatch({**parts[1].tables, "feedback": feedback}, parts[1].records_in)
    with connect(tmp_path / "w.duckdb") as con:
        with pytest.raises(CannotStream, match="feedback"):
            write_batch_parts(con, "b1", [parts[0], with_feedback], chunk_records=10)
        assert all(rows == [] for rows in _contents(con).values())


def test_line_numbers_are_the_same_whichever_part_asks_first(tmp_path):
    import threading

    from routeiq_assets.warehouse.otlp_fast import LineCounter, split_bytes

    path = _messy_file(tmp_path / "messy.otlp.json")
    data = path.read_bytes()
    ranges = split_bytes(path, 7)
    expected = [data[:start].count(b"\n") + 1 for start, _ in ranges]
    assert len(ranges) == 7 and expected[-1] > expected[0] == 1
    backwards = LineCounter(path, [start for start, _ in ranges])
    assert [backwards.line_at(s) for s, _ in reversed(ranges)] == expected[::-1]
    racing = LineCounter(path, [start for start, _ in ranges])
    got = {}
    threads = [
        threading.Thread(target=lambda s=s: got.__setitem__(s, racing.line_at(s)))
        for s, _ in ranges[::-1] + ranges
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[s] for s, _ in ranges] == expected
    with pytest.raises(ValueError, match="not one of the starts"):
        racing.line_at(ranges[1][0] + 1)
