"""Normalisation throughput and memory (issue: telemetry ingestion).

Our path (OTLP JSON -> validated rows -> DuckDB, one transaction a batch) against the seed
script's approach in the same run: a plain per-record ``json.loads`` loop in Python that pulls
the same fields into dicts and writes nothing. Plus the incremental cost: one new batch of 1% of
the volume after the full run. Each measurement runs in a fresh process (peak RSS is its own).
Volume: ROUTEIQ_BENCH_EVENTS decision events (default 200,000; the issue's figure is 1,000,000).
"""

import json
import os
import subprocess
import sys

from tests.conftest import REPO_ROOT

EVENTS = int(os.environ.get("ROUTEIQ_BENCH_EVENTS", "200000"))
PER_FILE = 50_000

OURS = """
import sys, time
from pathlib import Path
from routeiq_assets.telemetry.raw_store import land_file
from routeiq_assets.warehouse.ingest import ingest_pending, register_raw_file
from routeiq_assets.warehouse.store import connect
files = sorted(Path(sys.argv[1]).glob("*.json"))
started = time.perf_counter()
with connect(Path(sys.argv[2])) as con:
    for f in files:
        register_raw_file(con, land_file(f, Path(sys.argv[3])))
    done = ingest_pending(con)
print(time.perf_counter() - started, sum(c.decisions for _, c in done))
"""

BASELINE = """
import json, sys, time
from pathlib import Path
started = time.perf_counter()
rows, events = [], 0
for f in sorted(Path(sys.argv[1]).glob("*.json")):
    for line in open(f, encoding="utf-8"):
        doc = json.loads(line)
        for rs in doc["resourceSpans"]:
            for ss in rs["scopeSpans"]:
                for span in ss["spans"]:
                    attrs = {a["key"]: next(iter(a["value"].values()), None)
                             for a in span.get("attributes", [])}
                    for event in span.get("events", []):
                        if event["name"] == "routeiq.router_decision.v1":
                            p = json.loads(event["attributes"][0]["value"]["stringValue"])
                            rows.append({"event_id": p["event_id"], "trace_id": p["trace_id"],
                                         "model": p["selected_deployment"],
                                         "status": p["outcome"]["status"],
                                         "tokens": p["outcome"].get("total_tokens"),
                                         "candidates": [c["model_name"]
                                                        for c in p["candidate_deployments"]]})
                            events += 1
                    if "gen_ai.prompt" in attrs:
                        rows.append({"trace_id": span["traceId"], "prompt": attrs["gen_ai.prompt"],
                                     "model": attrs.get("gen_ai.request.model")})
print(time.perf_counter() - started, events)
"""

# Runs the measured script and reports its output, the largest single process's peak RSS
# (getrusage) and the peak of the RSS summed over the script and every process it starts
# (sampled from /proc every 50 ms), so worker processes count too.
WRAPPER = """
import os, resource, subprocess, sys, time

def tree_rss_kb(root):
    parents, rss = {}, {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                parents[int(pid)] = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/statm") as f:
                rss[int(pid)] = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
        except (OSError, ValueError, IndexError):
            continue
    tree, grew = {root}, True
    while grew:
        more = {p for p, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return sum(rss.get(p, 0) for p in tree)

child = subprocess.Popen(sys.argv[1:], stdout=subprocess.PIPE, text=True)
peak = 0
while child.poll() is None:
    peak = max(peak, tree_rss_kb(child.pid))
    time.sleep(0.05)
out = child.stdout.read()
assert child.returncode == 0, child.returncode
print(out.strip(), resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, peak)
"""


def _measure(code, *args):
    out = subprocess.run(
        [sys.executable, "-c", WRAPPER, sys.executable, "-c", code, *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    ).stdout
    fields = out.strip().splitlines()[-1].split()  # DuckDB may draw progress bars above it
    assert len(fields) == 4, f"unexpected output from the measured script: {out!r}"
    seconds, events, rss_kb, tree_kb = fields
    return float(seconds), int(events), int(rss_kb) / 1024, int(tree_kb) / 1024


def test_normalisation_throughput(tmp_path, machine_load):
    full, extra = tmp_path / "full", tmp_path / "extra"
    sim = [
        sys.executable,
        "-m",
        "routeiq_assets.cli",
        "simulate",
        "--requests-per-file",
        str(PER_FILE),
    ]
    subprocess.run(
        [*sim, "--out", str(full), "--requests", str(EVENTS), "--seed", "1"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [*sim, "--out", str(extra), "--requests", str(max(EVENTS // 100, 1)), "--seed", "2"],
        check=True,
        capture_output=True,
    )
    size_mb = sum(f.stat().st_size for f in full.glob("*.json")) / 2**20
    db, raw = tmp_path / "w.duckdb", tmp_path / "raw"

    base_s, base_n, base_mb, base_tree = _measure(BASELINE, str(full))
    ours_s, ours_n, ours_mb, ours_tree = _measure(OURS, str(full), str(db), str(raw))
    inc_s, inc_n, _, _ = _measure(OURS, str(extra), str(db), str(raw))
    assert base_n == ours_n == EVENTS and inc_n == max(EVENTS // 100, 1)

    nan = float("nan")
    rows = [
        ("baseline: per-record json.loads loop", base_s, base_n / base_s, base_mb, base_tree),
        ("ours: validate + normalise + DuckDB write", ours_s, ours_n / ours_s, ours_mb, ours_tree),
        ("ours: +1% new batch after the full run", inc_s, inc_n / inc_s, nan, nan),
    ]
    print(
        f"\n{EVENTS} decision events (+ as many LLM-call spans), {size_mb:.0f} MB OTLP JSON; "
        f"{machine_load}"
    )
    print(f"{'path':<44}{'seconds':>9}{'events/s':>11}{'peak RSS MB':>13}{'all processes MB':>18}")
    for name, s, rate, mb, tree_mb in rows:
        print(f"{name:<44}{s:>9.1f}{rate:>11.0f}{mb:>13.0f}{tree_mb:>18.0f}")
    print(
        json.dumps(
            {
                "ours_vs_baseline_speed": round(base_s / ours_s, 3),
                "incremental_cost_vs_full": round(inc_s / ours_s, 4),
                "ours_peak_rss_all_processes_mb": round(ours_tree),
            }
        )
    )
