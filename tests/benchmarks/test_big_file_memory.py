"""One big OTLP JSON file (issue: telemetry ingestion, peak RSS at most 2 GB): the events of the
throughput benchmark in a single file, as a collector's file exporter without rotation writes
them. Normalised in parts and written part by part in the batch's one transaction
(store.write_batch_parts, the default for files of STREAM_MIN_BYTES or more) against the same
file read whole (the baseline: what ingesting a file did before), each in a fresh process, in
the same run: seconds, CPU and peak RSS. Volume: ROUTEIQ_BENCH_EVENTS decision events (default
200,000, ~740 MB; the issue's figure is 1,000,000, one 3.7 GB file)."""

import json
import shutil
import subprocess
import sys

from tests.benchmarks.test_ingest_throughput import CLOCK, EVENTS, _measure

# The file already in the raw store (landed), registered and normalised into a fresh warehouse;
# argv: raw file, warehouse, ingest_batches keyword arguments as JSON.
INGEST_ONE = """
import json, sys
from pathlib import Path
from routeiq_assets.telemetry.raw_store import describe_raw_file
from routeiq_assets.warehouse.ingest import ingest_batches, register_raw_file
from routeiq_assets.warehouse.store import connect, pending_batches
started = start()
with connect(Path(sys.argv[2])) as con:
    register_raw_file(con, describe_raw_file(Path(sys.argv[1])))
    done = ingest_batches(con, pending_batches(con), **json.loads(sys.argv[3]))
report(stop(started), sum(c.decisions for _, c in done))
"""

WHOLE = {"stream_min_bytes": 10**15}
# (the default from 512 MiB on; a smaller file, as ROUTEIQ_BENCH_EVENTS can make it, too)
PARTS = {"stream_min_bytes": 0}


def test_one_big_file_in_parts_against_read_whole(tmp_path, machine_load):
    free = shutil.disk_usage(tmp_path).free
    assert free > EVENTS * 12_000, f"{EVENTS} events need ~{EVENTS * 12_000 / 1e9:.0f} GB free"
    out = tmp_path / "in"
    subprocess.run(
        [sys.executable, "-m", "routeiq_assets.cli", "simulate", "--out", str(out)]
        + ["--requests", str(EVENTS), "--requests-per-file", str(EVENTS), "--seed", "1"],
        check=True,
        capture_output=True,
    )
    [path] = out.glob("*.json")
    raw = tmp_path / "raw"
    raw.mkdir()
    # in the raw store under its hash, as landing leaves it (landing is measured elsewhere)
    landed = subprocess.run(
        [sys.executable, "-c", CLOCK + LAND_ONE, str(path), str(raw)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    size = path.stat().st_size
    runs = {}
    for label, kw in (("whole", WHOLE), ("parts", PARTS), ("whole ", WHOLE), ("parts ", PARTS)):
        db = tmp_path / f"{label.strip()}.duckdb"
        for leftover in (db, db.with_suffix(".duckdb.wal")):
            leftover.unlink(missing_ok=True)
        runs[label] = _measure(INGEST_ONE, landed, str(db), json.dumps(kw))
        assert runs[label].events == EVENTS
    print(
        f"\none OTLP JSON file of {EVENTS} decision events, {size / 2**20:.0f} MB; {machine_load}"
    )
    print(f"{'path':<44}{'seconds':>8}{'CPU s':>8}{'peak RSS MB':>13}")
    for label, m in runs.items():
        name = "read whole (before)" if label.startswith("whole") else "in parts, streamed"
        print(f"{name:<44}{m.seconds:>8.1f}{m.cpu:>8.1f}{m.tree_mb:>13.0f}")
    whole = min(runs["whole"].seconds, runs["whole "].seconds)
    parts = min(runs["parts"].seconds, runs["parts "].seconds)
    whole_mb = min(runs["whole"].tree_mb, runs["whole "].tree_mb)
    parts_mb = max(runs["parts"].tree_mb, runs["parts "].tree_mb)
    print(
        json.dumps(
            {
                "parts_vs_whole_seconds": round(parts / whole, 3),
                "parts_vs_whole_peak_rss": round(parts_mb / whole_mb, 3),
                "parts_peak_rss_mb": round(parts_mb),
            }
        )
    )


LAND_ONE = """
import sys
from pathlib import Path
from routeiq_assets.telemetry.raw_store import land_file
print(land_file(Path(sys.argv[1]), Path(sys.argv[2])).raw_path)
"""
