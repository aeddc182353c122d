"""The raw store is the source of truth: a lost warehouse is ingested again, `routeiq ingest
--rebuild` re-creates it from the raw store alone, and a damaged file is found (its blocks'
checksums) with a message that names the fix."""

import json
import os
import shutil

import duckdb
import pytest

from routeiq_assets.telemetry.simulator import simulate_requests, write_gateway_files
from tests.test_cli_ingest import _cli, cli_env  # noqa: F401 (fixture)

# ruff: noqa: F811  (the imported fixture is a parameter below)

pytestmark = pytest.mark.slow
TABLES = ("raw_files", "ingest_log", "router_decisions", "llm_calls", "quarantine")


def _counts(db):
    con = duckdb.connect(str(db), read_only=True)
    try:
        return {t: con.execute(f"SELECT count(*) FROM {t}").fetchall()[0][0] for t in TABLES}
    finally:
        con.close()


def _ok(done):
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_a_lost_warehouse_is_ingested_again_and_rebuilt_from_the_raw_store(cli_env, tmp_path):
    home = tmp_path / "home"
    landing = home / "landing"
    write_gateway_files(simulate_requests(400, seed=8), landing, "w", requests_per_file=200)
    _ok(_cli("ingest", str(landing), env=cli_env))
    db = home / "warehouse" / "routeiq.duckdb"
    before = _counts(db)
    assert before["router_decisions"] == 392 and before["raw_files"] == 4

    db.unlink()  # Dagster still records every batch as ingested
    again = _ok(_cli("ingest", str(landing), env=cli_env))
    assert "4 batches Dagster recorded as ingested are not in the warehouse" in again.stderr
    assert _counts(db) == before

    db.unlink()
    shutil.rmtree(landing)  # the raw store alone
    rebuilt = _ok(_cli("ingest", "--rebuild", env=cli_env))
    assert "rebuilding the warehouse from 4 raw store files" in rebuilt.stderr
    assert json.loads(rebuilt.stdout)["quarantined"] == before["quarantine"]
    assert _counts(db) == before
    assert _cli("ingest", "--rebuild", str(landing), env=cli_env).returncode == 2


def test_a_damaged_warehouse_is_detected_and_names_the_fix(cli_env, tmp_path):
    home = tmp_path / "home"
    write_gateway_files(simulate_requests(3000, seed=9), home / "landing", "d")
    _ok(_cli("ingest", str(home / "landing"), env=cli_env))
    ok = json.loads(_ok(_cli("verify-warehouse", env=cli_env)).stdout)
    assert ok["ok"] and ok["rows"] > 3000

    db = home / "warehouse" / "routeiq.duckdb"
    con = duckdb.connect(str(db), read_only=True)
    block = con.execute(
        "SELECT max(block_id) FROM pragma_storage_info('llm_calls') WHERE block_id >= 0"
    ).fetchall()[0][0]
    block_size = con.execute("SELECT block_size FROM pragma_database_size()").fetchall()[0][0]
    con.close()
    # 8 KiB of random bytes in a block the warehouse uses (after the three 4 KiB headers)
    with db.open("r+b") as handle:
        handle.seek(3 * 4096 + block * block_size + 1024)
        handle.write(os.urandom(8192))
    damaged = _cli("verify-warehouse", env=cli_env)
    assert damaged.returncode == 2 and "Traceback" not in damaged.stderr
    assert f"warehouse {db} is damaged" in damaged.stderr
    assert "routeiq ingest --rebuild" in damaged.stderr

    db.rename(db.with_suffix(".damaged"))
    _ok(_cli("ingest", "--rebuild", env=cli_env))
    assert json.loads(_ok(_cli("verify-warehouse", env=cli_env)).stdout)["rows"] == ok["rows"]


def test_a_full_disk_at_commit_ends_in_a_clear_error_and_a_rerun_finishes(cli_env, tmp_path):
    """The warehouse cannot grow past 2 MiB (RLIMIT_FSIZE: writes fail as on a full disk): the
    CLI names each file it could not ingest and why, and says what to do; run again with room,
    it ingests what is left."""
    import resource
    import signal
    import subprocess
    import sys

    from routeiq_assets.telemetry.simulator import write_otlp_files
    from tests.conftest import REPO_ROOT

    home = tmp_path / "home"
    write_otlp_files(simulate_requests(6000, seed=3), home / "landing", "f", 300)

    def small_files():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (2 * 2**20, 2 * 2**20))

    full = subprocess.run(
        [sys.executable, "-m", "routeiq_assets.cli", "ingest", str(home / "landing")],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO_ROOT,
        preexec_fn=small_files,
    )
    assert full.returncode == 1
    last = full.stderr.strip().splitlines()[-1]
    assert last.startswith("routeiq ingest: error: ") and "File too large" in last
    assert "free disk space where the warehouse lives" in last
    assert json.loads(full.stdout)["failed"]
    again = _ok(_cli("ingest", str(home / "landing"), env=cli_env))
    assert _counts(home / "warehouse" / "routeiq.duckdb")["router_decisions"] == 6000
    assert "Traceback" not in again.stderr
