"""Landing: the raw store's source index (`routeiq ingest` of a folder that keeps growing reads
only what is new: landing.land_paths, SourceIndex) and the landing scan's budget a tick. Whether
a file was read is seen from the process's own I/O counters (/proc/self/io: every byte read by a
read call, all threads)."""

import hashlib
import json
import os
import time
from pathlib import Path

import pytest

from routeiq_assets.telemetry.landing import (
    SOURCE_INDEX,
    SourceIndex,
    land_paths,
    load_cursor,
    scan_landing,
)
from routeiq_assets.telemetry.raw_store import find_raw_file, land_file

SIZE = 4 * 2**20

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/io").exists(), reason="needs Linux's per-process I/O counters"
)


def _bytes_read() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/self/io")


def _jsonl(path: Path, tag: str) -> str:
    """A JSONL file of decision payloads of SIZE bytes; its SHA-256."""
    line = json.dumps({"event_id": tag, "pad": "x" * 200}).encode() + b"\n"
    data = (line * (SIZE // len(line) + 1))[:SIZE]
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _land(paths, raw_dir, **kw):
    before = _bytes_read()
    landed = land_paths(paths, raw_dir, **kw)
    return landed, _bytes_read() - before


def test_a_file_landed_before_and_unchanged_is_not_read_again(tmp_path):
    folder, raw = tmp_path / "exports", tmp_path / "raw"
    folder.mkdir()
    first = _jsonl(folder / "day1.jsonl", "a")
    landed, one_file = _land([folder], raw, settle_seconds=0)  # copied and hashed: >= 2x
    assert landed == [(folder / "day1.jsonl", first)] and one_file >= SIZE
    second = _jsonl(folder / "day2.jsonl", "b")  # the folder grows
    landed, read = _land([folder], raw, settle_seconds=0)
    assert landed == [(folder / "day1.jsonl", first), (folder / "day2.jsonl", second)]
    assert SIZE <= read < one_file + SIZE // 4  # day2 landed; day1 not even opened
    landed, read = _land([folder], raw, settle_seconds=0)
    assert [sha for _, sha in landed] == [first, second] and read < SIZE // 4
    index = json.loads((raw / SOURCE_INDEX).read_text())
    assert sorted(e[3] for e in index["files"].values()) == sorted([first, second])


def test_a_changed_file_is_landed_again_even_with_its_times_put_back(tmp_path):
    raw, path = tmp_path / "raw", tmp_path / "calls.jsonl"
    old = _jsonl(path, "a")
    times = os.stat(path)
    land_paths([path], raw, settle_seconds=0)
    new = _jsonl(path, "b")  # the same size, other bytes, and the old times set back
    os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))
    assert os.stat(path).st_mtime_ns == times.st_mtime_ns
    landed, read = _land([path], raw, settle_seconds=0)
    assert landed == [(path, new)] and new != old and read >= SIZE  # its change time moved
    assert find_raw_file(raw, new[:16]) is not None


def test_a_file_changed_moments_before_it_was_landed_is_read_again(tmp_path):
    raw, path = tmp_path / "raw", tmp_path / "calls.jsonl"
    sha = _jsonl(path, "a")
    land_paths([path], raw)  # written just now: its times may not tell a next change apart
    landed, read = _land([path], raw)
    assert landed == [(path, sha)] and read >= SIZE
    assert not (raw / SOURCE_INDEX).exists()


def test_a_file_whose_raw_copy_is_gone_is_landed_again(tmp_path):
    raw, path = tmp_path / "raw", tmp_path / "calls.jsonl"
    sha = _jsonl(path, "a")
    land_paths([path], raw, settle_seconds=0)
    find_raw_file(raw, sha[:16]).unlink()
    landed, read = _land([path], raw, settle_seconds=0)
    assert landed == [(path, sha)] and read >= SIZE
    assert find_raw_file(raw, sha[:16]).read_bytes() == path.read_bytes()


@pytest.mark.parametrize("damage", [b"{not json", b"[1, 2]", b'{"files": {"1:2": "x"}}'])
def test_a_damaged_index_is_ignored_and_rewritten(tmp_path, caplog, damage):
    raw, path = tmp_path / "raw", tmp_path / "calls.jsonl"
    sha = _jsonl(path, "a")
    raw.mkdir()
    (raw / SOURCE_INDEX).write_bytes(damage)
    with caplog.at_level("WARNING", logger="routeiq_assets.telemetry.landing"):
        assert land_paths([path], raw, settle_seconds=0) == [(path, sha)]
    if damage != b'{"files": {"1:2": "x"}}':  # a well-formed index with a bad entry: dropped
        assert "ignoring the raw store's source index" in caplog.text
    index = json.loads((raw / SOURCE_INDEX).read_text())
    assert [e[3] for e in index["files"].values()] == [sha]
    _, read = _land([path], raw, settle_seconds=0)
    assert read < SIZE // 4


def test_a_file_that_changed_while_it_was_landed_is_not_remembered(tmp_path):
    raw_dir, path = tmp_path / "raw", tmp_path / "calls.jsonl"
    _jsonl(path, "a")
    before, read_at = os.stat(path), time.time_ns()
    raw = land_file(path, raw_dir)
    (index := SourceIndex(raw_dir, settle_seconds=0)).remember(path, before, read_at, raw)
    assert index.changed  # unchanged since `before`: remembered
    index = SourceIndex(raw_dir, settle_seconds=0)
    with path.open("ab") as more:  # written to between its stat and the end of its landing
        more.write(b"\n")
    index.remember(path, before, read_at, raw)
    assert not index.changed and index.entries == {}


def test_a_file_is_remembered_only_when_it_had_settled_when_it_was_read(tmp_path):
    raw_dir, path = tmp_path / "raw", tmp_path / "calls.jsonl"
    _jsonl(path, "a")
    before = os.stat(path)
    raw = land_file(path, raw_dir)
    changed = max(before.st_mtime_ns, before.st_ctime_ns)
    index = SourceIndex(raw_dir, settle_seconds=2)
    index.remember(path, before, changed + 1_900_000_000, raw)  # read 1.9 s after its change
    assert not index.changed  # however long after it this is called
    index.remember(path, before, changed + 2_000_000_000, raw)
    assert index.changed


def test_a_file_whose_size_says_nothing_of_its_content_is_not_remembered(tmp_path):
    raw_dir, path = tmp_path / "raw", Path("/proc/self/status")  # size 0, text that changes
    (landed, sha), (again, sha2) = (land_paths([path], raw_dir, settle_seconds=0)[0] for _ in "ab")
    assert landed == again == path and sha != sha2  # read again: its VmRSS, ... moved
    assert not (raw_dir / SOURCE_INDEX).exists()


def test_an_index_entry_that_is_not_a_hash_is_dropped(tmp_path):
    raw_dir, path = tmp_path / "raw", tmp_path / "calls.jsonl"
    sha = _jsonl(path, "a")
    land_paths([path], raw_dir, settle_seconds=0)
    index = json.loads((raw_dir / SOURCE_INDEX).read_text())
    [key] = index["files"]
    index["files"][key][3] = sha[:16]  # would match the raw file through its batch key
    (raw_dir / SOURCE_INDEX).write_text(json.dumps(index))
    assert SourceIndex(raw_dir).entries == {}


def test_a_landing_scan_takes_files_in_order_while_its_time_lasts_and_defers_the_rest(tmp_path):
    landing, raw = tmp_path / "landing", tmp_path / "raw"
    landing.mkdir()
    names = ["a.jsonl", "b.jsonl", "c.jsonl"]
    for name in names:  # each its own bytes
        (landing / name).write_bytes(name.encode()[:1] * 300)
    everything = scan_landing(landing, {}, set(), settle_seconds=0)  # no limit: all, hashed
    assert [p.name for _, p in everything.ready] == names and not everything.deferred
    assert not raw.exists()
    known, cursor = set(), {}
    for name in names:  # no time: one file a scan (the first always starts), in name order
        scan = scan_landing(
            landing, cursor, known, settle_seconds=3600 if cursor else 0, raw_dir=raw, max_seconds=0
        )
        [(key, path)] = scan.ready
        assert path.name == name and find_raw_file(raw, key).read_bytes() == path.read_bytes()
        assert [p.name for p in scan.deferred] == names[names.index(name) + 1 :]
        assert all(scan.cursor["files"][p.name][2] is None for p in scan.deferred)
        known.add(key)  # the partition the sensor added
        cursor = scan.cursor
    last = scan_landing(landing, cursor, known, settle_seconds=3600, raw_dir=raw, max_seconds=0)
    assert not last.ready and not last.deferred and len(last.known) == 3


def test_a_file_that_keeps_failing_holds_back_no_other_and_deferred_files_go_first(tmp_path):
    landing, raw = tmp_path / "landing", tmp_path / "raw"
    landing.mkdir()
    (landing / "a_bad.jsonl").symlink_to("/proc/self/mem")  # refused, every time
    for name in ("b.jsonl", "c.jsonl"):
        (landing / name).write_text(json.dumps({"event_id": name}) + "\n")
    cursor, known, taken = {}, set(), []

    def tick():
        nonlocal cursor
        scan = scan_landing(landing, cursor, known, settle_seconds=0, raw_dir=raw, max_seconds=0)
        known.update(key for key, _ in scan.ready)
        taken.extend(p.name for _, p in scan.ready)
        cursor = json.loads(json.dumps(scan.cursor))  # as the sensor stores it
        return scan

    first = tick()  # no time: one file a tick; a_bad first by name, and it fails
    assert [p.name for p, _ in first.unreadable] == ["a_bad.jsonl"] and taken == []
    assert "a symbolic link, refused" in first.unreadable[0][1]
    assert "while landing" in first.unreadable[0][1]  # the error's note: which file, where to
    assert cursor["failed"] == ["a_bad.jsonl"]
    tick()  # a_bad goes last now: b
    (landing / "a_new.jsonl").write_text('{"event_id": "new"}\n')  # sorts before c
    tick()  # c was deferred before a_new arrived: it goes first
    tick()
    assert taken == ["b.jsonl", "c.jsonl", "a_new.jsonl"]
    last = tick()  # only the failing file left: tried again
    assert [p.name for p, _ in last.unreadable] == ["a_bad.jsonl"]


def test_a_tick_starts_a_file_only_when_it_should_end_in_time(tmp_path):
    from routeiq_assets.telemetry.landing import _within

    ends = []

    def slow(path):  # 0.3 s a file of 300 MB: 1 GB/s
        time.sleep(0.3)
        ends.append(time.monotonic())
        return path.name

    items = [(tmp_path / f"{i}.jsonl", 300_000_000) for i in range(6)]
    started = time.monotonic()
    done = _within(slow, items, 1, max_seconds=1.1)
    # the old rule (start while time is left) started a 4th at 0.9 s, ending at 1.2 s
    assert list(done) == [p for p, _ in items[:3]]
    assert ends[-1] - started <= 1.1
    assert list(_within(slow, items[:2], 1, max_seconds=0)) == [items[0][0]]  # first: always
    assert len(_within(slow, items[:4], 2, max_seconds=None)) == 4


def test_a_ticks_rate_is_measured_on_enough_bytes_landed_and_never_on_failures(tmp_path):
    from routeiq_assets.telemetry.landing import _within

    def land(path):  # 20 ms a file and 1 GB/s; "bad" fails at once
        if path.name.startswith("bad"):
            return OSError(5, "Input/output error")
        time.sleep(0.02 + sizes[path] / 1e9)
        return path.name

    small = [(tmp_path / f"small{i}", 10_000) for i in range(4)]
    big = (tmp_path / "big", 200_000_000)
    sizes = dict([*small, big])
    # four small files measure their fixed costs (500 kB/s), not the rate: the big one still
    # starts (it takes 0.22 s; at 500 kB/s it would seem to take 400 s)
    assert list(_within(land, [*small, big], 1, max_seconds=5)) == [p for p, _ in [*small, big]]
    # a large file that fails at once is no measure of the rate: the others are not all started
    bad = (tmp_path / "bad", 50 * 10**9)
    rest = [(tmp_path / f"f{i}", 100_000_000) for i in range(8)]  # 0.12 s each
    sizes |= dict([bad, *rest])
    started = time.monotonic()
    done = _within(land, [bad, *rest], 1, max_seconds=0.5)
    # nothing landed: the assumed 50 MB/s, at which no 100 MB file ends within 0.5 s
    assert list(done) == [bad[0]] and time.monotonic() - started < 0.5


def test_a_file_deferred_is_not_overtaken_by_one_that_was_still_being_written(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    for name in ("z1.jsonl", "z2.jsonl", "z3.jsonl"):
        (landing / name).write_text(json.dumps({"event_id": name}) + "\n")
    known: set[str] = set()

    def tick(cursor):  # complete only when unchanged since the tick before (settle: 1 h)
        scan = scan_landing(landing, cursor, known, settle_seconds=3600, max_seconds=0)
        known.update(key for key, _ in scan.ready)
        return [p.name for _, p in scan.ready], json.loads(scan.cursor_json())

    taken, cursor = tick({})
    assert taken == []  # all being written, as far as it knows
    taken, cursor = tick(cursor)
    assert taken == ["z1.jsonl"]  # one a tick (no time): z2 and z3 deferred
    (landing / "a.jsonl").write_text('{"event_id": "a"}\n')  # sorts first
    taken, cursor = tick(cursor)
    assert taken == ["z2.jsonl"]  # a: being written
    taken, cursor = tick(cursor)
    assert taken == ["z3.jsonl"]  # a is complete now, and was seen before: z3 still goes first
    taken, cursor = tick(cursor)
    assert taken == ["a.jsonl"]


@pytest.mark.parametrize(
    "text",
    [
        '{"files": [], "failed": 5}',
        '{"files": {"a.jsonl": 5}, "failed": null}',
        '{"files": {"a.jsonl": [1]}, "failed": [[1]]}',
        '{"files": {"a.jsonl": [1, 2, 7]}, "deferred": {"x": 1}}',
        '{"files": {"a.jsonl": [1, 2, "zz"]}}',
        "[1, 2]",
        "{not json",
        '{"files": {"a.jsonl": [' + "1" * 5000 + ", 2, null]}}",  # past Python's digit limit
    ],
)
def test_a_damaged_cursor_costs_a_read_never_a_failed_tick(tmp_path, text):
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "a.jsonl").write_text('{"event_id": "a"}\n')
    scan = scan_landing(landing, load_cursor(text), set(), settle_seconds=0)
    assert [p.name for _, p in scan.ready] == ["a.jsonl"]


def test_a_rewrite_of_the_same_size_with_its_time_put_back_is_a_new_file(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    path = landing / "a.jsonl"
    path.write_text('{"event_id": "1"}\n')
    first = scan_landing(landing, {}, set(), settle_seconds=0)
    [(old, _)] = first.ready
    times = os.stat(path)
    path.write_text('{"event_id": "2"}\n')  # cp -p, rsync -t: same size, the old mtime
    os.utime(path, ns=(times.st_atime_ns, times.st_mtime_ns))
    cursor, ready, known = json.loads(first.cursor_json()), [], {old}
    for _ in range(3):  # changed: waits until unchanged for a tick, then is read again
        scan = scan_landing(landing, cursor, known, settle_seconds=3600)
        cursor, ready = json.loads(scan.cursor_json()), ready + scan.ready
        known.update(key for key, _ in scan.ready)
    assert [key for key, _ in ready] == [hashlib.sha256(path.read_bytes()).hexdigest()[:16]]


def test_a_scan_that_finds_another_landing_takes_nothing_and_keeps_its_cursor(tmp_path):
    import fcntl

    from routeiq_assets.telemetry.landing import LANDING_LOCK

    landing, raw = tmp_path / "landing", tmp_path / "raw"
    landing.mkdir()
    raw.mkdir()
    (landing / "a.jsonl").write_text('{"event_id": "a"}\n')
    cursor = {"files": {"old.jsonl": [1, 2, None]}}
    with open(raw / LANDING_LOCK, "a+b") as held:  # another tick, still landing
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.truncate(0)
        held.write(f"4242 {time.time() - 30}".encode())
        held.flush()
        busy = scan_landing(landing, cursor, set(), settle_seconds=0, raw_dir=raw)
        assert busy.busy and busy.ready == [] and busy.cursor == cursor
        assert busy.busy_with in ("pid 4242, for 30 s", "pid 4242, for 31 s")
    done = scan_landing(landing, cursor, set(), settle_seconds=0, raw_dir=raw)
    assert not done.busy and [p.name for _, p in done.ready] == ["a.jsonl"]


def test_files_landed_beside_one_that_failed_are_remembered(tmp_path):
    raw, good = tmp_path / "raw", tmp_path / "good.jsonl"
    sha = _jsonl(good, "a")
    bad = tmp_path / "bad.jsonl"
    bad.symlink_to("/proc/self/mem")  # every read: EIO
    with pytest.raises(OSError, match="Input/output error"):
        land_paths([bad, good], raw, settle_seconds=0)
    index = json.loads((raw / SOURCE_INDEX).read_text())
    assert [e[3] for e in index["files"].values()] == [sha]


def test_two_processes_saving_the_index_keep_both_their_files(tmp_path):
    raw_dir = tmp_path / "raw"
    ours, theirs = SourceIndex(raw_dir, settle_seconds=0), SourceIndex(raw_dir, settle_seconds=0)
    shas = []
    for index, name in ((ours, "a.jsonl"), (theirs, "b.jsonl")):
        path = tmp_path / name
        shas.append(_jsonl(path, name))
        before, read_at = os.stat(path), time.time_ns()
        index.remember(path, before, read_at, land_file(path, raw_dir))
    theirs.save()
    ours.save()  # read theirs before writing
    saved = json.loads((raw_dir / SOURCE_INDEX).read_text())["files"]
    assert sorted(e[3] for e in saved.values()) == sorted(shas)


def test_a_fifo_swapped_in_for_a_landing_file_is_refused_not_waited_on(tmp_path):
    import threading

    fifo = tmp_path / "calls.jsonl"
    os.mkfifo(fifo)
    outcome = []

    def land():
        try:
            land_file(fifo, tmp_path / "raw", regular_only=True)
        except OSError as exc:
            outcome.append(exc)

    worker = threading.Thread(target=land, daemon=True)
    worker.start()
    worker.join(5)
    if worker.is_alive():  # waiting for a writer: give it one, so the test process can end
        with open(fifo, "wb"):
            pass
        worker.join(5)
        pytest.fail("landing a FIFO waited for a writer")
    [error] = outcome
    assert "not a regular file" in str(error) and "while landing" in str(error.__notes__)


def test_a_failing_file_stays_last_while_it_is_being_rewritten(tmp_path):
    landing = tmp_path / "landing"
    landing.mkdir()
    (landing / "a_bad.jsonl").symlink_to("/proc/self/mem")  # every read: EIO
    cursor = load_cursor(None)
    first = scan_landing(landing, cursor, set(), settle_seconds=0, raw_dir=tmp_path / "raw")
    assert first.cursor["failed"] == ["a_bad.jsonl"]
    later = time.time() + 3600  # its mtime looks new to a long settle: it waits, still failed
    cursor = {"files": {}, "failed": ["a_bad.jsonl"]}
    waiting = scan_landing(landing, cursor, set(), settle_seconds=10**9, now=later)
    assert [p.name for p in waiting.waiting] == ["a_bad.jsonl"]
    assert waiting.cursor["failed"] == ["a_bad.jsonl"]
