"""Normalisation throughput and memory (issue: telemetry ingestion).

Our path (OTLP JSON -> validated rows -> DuckDB, consecutive batches in one transaction)
against the seed script's approach in the same run: a plain per-record ``json.loads`` loop in
Python that pulls the same fields into dicts and writes nothing. Plus the incremental cost: one
new batch of 1% of the volume after the full run (ours, and the product's: a second `routeiq
ingest`). Each measurement runs in a fresh process (peak
RSS is its own). Volume: ROUTEIQ_BENCH_EVENTS decision events (default 200,000; the issue's
figure is 1,000,000).

Also in the same run: our path without the compiled normaliser (ROUTEIQ_NATIVE_OTLP=0: the
msgspec fast path, as before it was built), the product's own path (`routeiq ingest` on the
folder: one Dagster run over the range of new batches, CLI start-up included), and floors that
bound what this design can reach on this machine: the compiled scan alone (lines to column
buffers, one process), msgspec decoding alone (the Python path's floor), and writing already
normalised batches (the first four files) into DuckDB, and writing as many bytes as the files
hold to this disk and flushing them (landing's floor). And how much of our path is landing the
files in the raw store (kernel copy, hash, flush to disk).
"""

import json
import os
import shutil
import subprocess
import sys

from tests.conftest import REPO_ROOT

EVENTS = int(os.environ.get("ROUTEIQ_BENCH_EVENTS", "200000"))
PER_FILE = 50_000

OURS = """
import sys, time
from pathlib import Path
from routeiq_assets.telemetry.raw_store import land_files
from routeiq_assets.warehouse.ingest import ingest_pending, register_raw_file
from routeiq_assets.warehouse.store import connect
files = sorted(Path(sys.argv[1]).glob("*.json"))
started = time.perf_counter()
with connect(Path(sys.argv[2])) as con:
    for raw in land_files(files, Path(sys.argv[3])):
        register_raw_file(con, raw)
    done = ingest_pending(con)
print(time.perf_counter() - started, sum(c.decisions for _, c in done))
"""

# Only landing: copy into a fresh raw store, hash, flush to disk (the first step of OURS).
LAND = """
import sys, time
from pathlib import Path
from routeiq_assets.telemetry.raw_store import land_files
files = sorted(Path(sys.argv[1]).glob("*.json"))
started = time.perf_counter()
landed = land_files(files, Path(sys.argv[2]))
print(time.perf_counter() - started, 50_000 * len(landed))
"""

# Only the disk: as many bytes as the files hold written to one new file and flushed, the least
# time landing them durably can take on this disk (whatever the CPU does meanwhile).
FLOOR_DISK = """
import os, sys, time
from pathlib import Path
total = sum(f.stat().st_size for f in Path(sys.argv[1]).glob("*.json"))
block = os.urandom(1 << 24)  # not zeros: a virtual disk may store those for free
started = time.perf_counter()
fd = os.open(sys.argv[2], os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
written = 0
while written < total:
    written += os.write(fd, block[: min(len(block), total - written)])
os.fsync(fd)
os.close(fd)
elapsed = time.perf_counter() - started
os.unlink(sys.argv[2])
print(elapsed, 50_000 * len(list(Path(sys.argv[1]).glob("*.json"))))
"""

# Only decoding: the envelope and each decision payload into the fast path's msgspec structs.
FLOOR_DECODE = """
import sys, time
from pathlib import Path
from routeiq_assets.warehouse.otlp_fast import _DECISION, _EXPORT
started = time.perf_counter()
events = 0
for f in sorted(Path(sys.argv[1]).glob("*.json")):
    for line in open(f, "rb"):
        for rs in _EXPORT.decode(line).resourceSpans:
            for ss in rs.scopeSpans:
                for span in ss.spans:
                    for event in span.events or ():
                        _DECISION.decode(event.attributes[0].value.stringValue)
                        events += 1
print(time.perf_counter() - started, events)
"""

# Only the compiled scan: every line of every file into column buffers, nothing after.
FLOOR_SCAN = """
import mmap, sys, time
from pathlib import Path
from routeiq_assets.warehouse import _otlp_native as native
started = time.perf_counter()
events = 0
for f in sorted(Path(sys.argv[1]).glob("*.json")):
    with f.open("rb") as h, mmap.mmap(h.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        start, line, names = 0, 1, [n for n, _ in native.columns()]
        while start < len(mm):
            cols, start, line, stopped = native.parse(mm, start, len(mm), line, b"f", 16384)
            assert not stopped
            events += cols[names.index("d.event_id")][0]
print(time.perf_counter() - started, events)
"""

# Only writing: normalised batches (built before the clock starts) into a fresh warehouse, as
# ingest_batches writes them (argv[3] "group": one transaction for the four) or one transaction a
# batch ("each", how they were written before grouping).
FLOOR_WRITE = """
import sys, time
from pathlib import Path
from routeiq_assets.warehouse.ingest import normalise_file
from routeiq_assets.warehouse.store import bulk_load, connect, write_batches
files = sorted(Path(sys.argv[1]).glob("*.json"))[:4]
batches = [(f"b{i}", normalise_file(f, "otlp_json", f"b{i}", f.name)) for i, f in enumerate(files)]
groups = [batches] if sys.argv[3] == "group" else [[b] for b in batches]
with connect(Path(sys.argv[2])) as con:
    started = time.perf_counter()
    with bulk_load(con):
        done = [c for g in groups for c in write_batches(con, g)]
    elapsed = time.perf_counter() - started
print(elapsed, sum(c.decisions for c in done))
"""

# The product's path: `routeiq ingest DIR` (fresh DAGSTER_HOME and ROUTEIQ_HOME in argv).
PRODUCT = """
import json, os, subprocess, sys, time
env = dict(os.environ, DAGSTER_HOME=sys.argv[2], ROUTEIQ_HOME=sys.argv[3])
os.makedirs(sys.argv[2], exist_ok=True)
started = time.perf_counter()
out = subprocess.run([sys.executable, "-m", "routeiq_assets.cli", "ingest", sys.argv[1]],
                     env=env, check=True, capture_output=True, text=True).stdout
print(time.perf_counter() - started, json.loads(out)["decisions"])
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


def _measure(code, *args, env=None):
    # flush what earlier steps left for the kernel to write back (the full run copies 3.5 GB
    # into the raw store): otherwise that writeback lands in the next measurement's fsyncs
    os.sync()
    out = subprocess.run(
        [sys.executable, "-c", WRAPPER, sys.executable, "-c", code, *args],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=None if env is None else {**os.environ, **env},
    ).stdout
    fields = out.strip().splitlines()[-1].split()  # DuckDB may draw progress bars above it
    assert len(fields) == 4, f"unexpected output from the measured script: {out!r}"
    seconds, events, rss_kb, tree_kb = fields
    return float(seconds), int(events), int(rss_kb) / 1024, int(tree_kb) / 1024


# Disk the run fills, an event: the OTLP JSON (~3.7 KB), four raw-store copies of it (ours, ours
# without the compiled normaliser, the product, landing alone), the disk floor's file and the
# warehouses. 1,000,000 events: ~22 GB.
DISK_PER_EVENT = 22_000


def test_normalisation_throughput(tmp_path, machine_load):
    free = shutil.disk_usage(tmp_path).free
    assert free > EVENTS * DISK_PER_EVENT, (
        f"{EVENTS} events need about {EVENTS * DISK_PER_EVENT / 1e9:.0f} GB free in {tmp_path}, "
        f"there are {free / 1e9:.0f} GB"
    )
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
    py_s, py_n, py_mb, py_tree = _measure(
        OURS,
        str(full),
        str(tmp_path / "py.duckdb"),
        str(tmp_path / "raw_py"),
        env={"ROUTEIQ_NATIVE_OTLP": "0"},
    )
    home = tmp_path / "product"
    prod_s, prod_n, prod_mb, prod_tree = _measure(
        PRODUCT, str(full), str(home / "dagster"), str(home / "routeiq")
    )
    # the product's +1%: a second `routeiq ingest` of the new batch in the same homes (its
    # start-up, Dagster's run bookkeeping and the warehouse-wide pairing counts included)
    prod_inc_s, prod_inc_n, _, _ = _measure(
        PRODUCT, str(extra), str(home / "dagster"), str(home / "routeiq")
    )
    land_s, land_n, _, _ = _measure(LAND, str(full), str(tmp_path / "raw_land"))
    disk_s, disk_n, _, _ = _measure(FLOOR_DISK, str(full), str(tmp_path / "disk.bin"))
    scan_s, scan_n, scan_mb, _ = _measure(FLOOR_SCAN, str(full))
    dec_s, dec_n, dec_mb, _ = _measure(FLOOR_DECODE, str(full))
    wr_s, wr_n, _, _ = _measure(FLOOR_WRITE, str(full), str(tmp_path / "floor.duckdb"), "group")
    each_s, each_n, _, _ = _measure(FLOOR_WRITE, str(full), str(tmp_path / "each.duckdb"), "each")
    assert prod_n == dec_n == scan_n == py_n == EVENTS and prod_inc_n == inc_n
    assert wr_n == each_n == min(EVENTS, 4 * PER_FILE)

    nan = float("nan")
    rows = [
        ("baseline: per-record json.loads loop", base_s, base_n / base_s, base_mb, base_tree),
        ("ours: validate + normalise + DuckDB write", ours_s, ours_n / ours_s, ours_mb, ours_tree),
        ("  of which landing (copy, hash, flush)", land_s, land_n / land_s, nan, nan),
        ("ours: +1% new batch after the full run", inc_s, inc_n / inc_s, nan, nan),
        ("ours without the compiled normaliser", py_s, py_n / py_s, py_mb, py_tree),
        ("product: `routeiq ingest` (Dagster runs)", prod_s, prod_n / prod_s, prod_mb, prod_tree),
        (
            "product: +1% new batch after its full run",
            prod_inc_s,
            prod_inc_n / prod_inc_s,
            nan,
            nan,
        ),
        ("floor: the files' bytes written + flushed", disk_s, disk_n / disk_s, nan, nan),
        ("floor: compiled scan only (1 process)", scan_s, scan_n / scan_s, scan_mb, nan),
        ("floor: msgspec decode only (1 process)", dec_s, dec_n / dec_s, dec_mb, nan),
        ("floor: DuckDB write only (4 batches, 1 tx)", wr_s, wr_n / wr_s, nan, nan),
        ("  (the same, one transaction a batch)", each_s, each_n / each_s, nan, nan),
    ]
    cores = os.cpu_count() or 1
    # with every core busy and nothing but scanning and writing, no overheads at all
    ceiling = cores / (scan_s / scan_n + wr_s / wr_n)
    from routeiq_assets.telemetry.raw_store import DURABLE
    from routeiq_assets.warehouse import otlp_native

    simd = getattr(otlp_native._native, "SIMD", None)
    print(
        f"\n{EVENTS} decision events (+ as many LLM-call spans), {size_mb:.0f} MB OTLP JSON; "
        f"{machine_load}; compiled scanner: "
        f"{ {None: 'not built', 0: 'portable', 1: 'AVX2', 2: 'AVX2 + AVX-512'}[simd] }; "
        f"raw files flushed to disk: {DURABLE}"
    )
    print(f"{'path':<44}{'seconds':>9}{'events/s':>11}{'peak RSS MB':>13}{'all processes MB':>18}")
    for name, s, rate, mb, tree_mb in rows:
        print(f"{name:<44}{s:>9.1f}{rate:>11.0f}{mb:>13.0f}{tree_mb:>18.0f}")
    print(
        f"ceiling for the compiled scan + DuckDB writes on {cores} cores, nothing else: "
        f"{ceiling:,.0f} events/s = {ceiling / (base_n / base_s):.1f}x the baseline"
    )
    # landing is flushed before its batches are registered and normalised: its disk time adds
    landed_ceiling = 1 / (disk_s / disk_n + 1 / ceiling)
    print(
        f"the same after landing durably (the disk floor first): {landed_ceiling:,.0f} "
        f"events/s = {landed_ceiling / (base_n / base_s):.1f}x the baseline"
    )
    print(
        json.dumps(
            {
                "ours_vs_baseline_speed": round(base_s / ours_s, 3),
                "product_vs_baseline_speed": round(base_s / prod_s, 3),
                "without_compiled_normaliser_vs_baseline_speed": round(base_s / py_s, 3),
                "incremental_cost_vs_full": round(inc_s / ours_s, 4),
                "product_incremental_cost_vs_full": round(prod_inc_s / prod_s, 4),
                "ours_peak_rss_all_processes_mb": round(ours_tree),
                "ceiling_vs_baseline_speed": round(ceiling / (base_n / base_s), 3),
                "landed_ceiling_vs_baseline_speed": round(landed_ceiling / (base_n / base_s), 3),
            }
        )
    )
