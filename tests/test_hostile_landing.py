"""Landing reads regular files inside the landing folder only: a symbolic link (to a file or a
folder, inside or outside), a FIFO or a device found there is refused with its reason, never
read, in `routeiq ingest`, the landing sensor and the S3 mirror."""

import json
import os
from pathlib import Path

import dagster as dg
import pytest

from routeiq_assets.telemetry.landing import land_paths
from routeiq_assets.telemetry.s3_landing import mirror_prefix
from tests.test_cli_ingest import _cli, cli_env  # noqa: F401 (fixture)
from tests.test_ingestion_runs import _tick

# ruff: noqa: F811  (the imported fixture is a parameter below)

SECRET = "root:$6$hash-of-a-password:19000:0:99999:7:::"
GOOD = '{"event_id": "e1"}\n'


def _hostile_landing(landing: Path, outside: Path) -> dict[str, Path]:
    """A landing folder holding one good file and every kind of entry that must be refused."""
    outside.mkdir(parents=True, exist_ok=True)
    (outside / "shadow").write_text(SECRET + "\n")
    (outside / "dir").mkdir(exist_ok=True)
    (outside / "dir" / "more.jsonl").write_text(SECRET + "\n")
    landing.mkdir(parents=True, exist_ok=True)
    (landing / "good.jsonl").write_text(GOOD)
    refused = {
        "shadow.jsonl": outside / "shadow",  # a link to a file outside
        "env.jsonl": Path("/proc/self/environ"),  # the process environment
        "again.jsonl": landing / "good.jsonl",  # a link to a file inside is a link too
        "linked": outside / "dir",  # a link to a folder
    }
    for name, target in refused.items():
        (landing / name).symlink_to(target)
    os.mkfifo(landing / "pipe.jsonl")  # opening it would wait for a writer
    return {name: landing / name for name in [*refused, "pipe.jsonl"]}


def _nothing_secret_under(*roots: Path) -> None:
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                assert SECRET.encode() not in data, path
                assert b"ROUTEIQ_SECRET_MARKER" not in data, path


def test_routeiq_ingest_refuses_links_and_fifos_in_a_folder(cli_env, tmp_path):
    landing = tmp_path / "home" / "landing"
    refused = _hostile_landing(landing, tmp_path / "outside")
    env = {**cli_env, "ROUTEIQ_SECRET_MARKER": "ROUTEIQ_SECRET_MARKER"}
    done = _cli("ingest", str(landing), env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "a symbolic link, refused" in done.stderr
    assert f"while landing {refused['shadow.jsonl']}" in done.stderr or any(
        f"while landing {p}" in done.stderr for p in refused.values()
    )
    home = Path(cli_env["ROUTEIQ_HOME"])
    raw = sorted(p.name for p in (home / "raw").rglob("*.jsonl"))
    assert len(raw) == 1  # the good file only, landed before the error
    _nothing_secret_under(home / "raw")


def test_land_paths_names_each_refused_entry_and_lands_the_rest(tmp_path):
    landing = tmp_path / "landing"
    refused = _hostile_landing(landing, tmp_path / "outside")
    for name, path in refused.items():
        with pytest.raises(OSError) as err:
            land_paths([landing / "good.jsonl", landing], tmp_path / "raw", settle_seconds=0)
        if name == "pipe.jsonl":
            break
        path.unlink()  # the next one is the error now
        assert "refused" in str(err.value)
    assert "not a regular file (a FIFO), refused" in str(err.value)
    _nothing_secret_under(tmp_path / "raw")
    # a file named on purpose is read as given (a pipe from the shell, a link the user chose)
    (landing / "pipe.jsonl").unlink()
    (link := tmp_path / "chosen.jsonl").symlink_to(landing / "good.jsonl")
    [(path, sha)] = land_paths([link], tmp_path / "raw", settle_seconds=0)
    assert path == link and len(sha) == 64


def test_the_landing_sensor_refuses_links_and_fifos(routeiq_home, monkeypatch, capfd):
    monkeypatch.setenv("ROUTEIQ_LANDING_SETTLE_SECONDS", "0")
    monkeypatch.setenv("ROUTEIQ_SECRET_MARKER", "ROUTEIQ_SECRET_MARKER")
    landing = routeiq_home / "landing"
    refused = _hostile_landing(landing, routeiq_home.parent / "outside")
    result = _tick(dg.DagsterInstance.ephemeral(), routeiq_home, None)
    logged = capfd.readouterr().err
    assert [
        r.run_config["ops"]["raw_traces"]["config"]["source_path"] for r in result.run_requests
    ] == [str(landing / "good.jsonl")]
    assert f"{len(refused)} landing files cannot be read or landed" in logged
    assert "a symbolic link, refused" in logged and "(a FIFO), refused" in logged
    failed = json.loads(result.cursor)["failed"]
    assert sorted(failed) == sorted(refused)  # tried again next tick, and reported again
    _nothing_secret_under(routeiq_home / "raw")


def test_the_s3_mirror_never_writes_through_a_link(tmp_path):
    class Bucket:
        def get_paginator(self, _name):
            return self

        def paginate(self, **_kwargs):
            return [{"Contents": [{"Key": "in/a.jsonl", "ETag": '"e"'}]}]

        def download_file(self, _bucket, _key, path):
            Path(path).write_bytes(b'{"event_id": "e"}\n')

    landing, outside = tmp_path / "landing", tmp_path / "outside"
    outside.mkdir()
    (landing / "s3" / "b").mkdir(parents=True)
    (landing / "s3" / "b" / "in").symlink_to(outside)  # planted below the mirror's folder
    result = mirror_prefix(Bucket(), "s3://b/", landing, {})
    assert result.downloaded == [] and list(outside.iterdir()) == []
    [(key, reason)] = result.failed
    assert key == "in/a.jsonl" and "is a symbolic link" in reason
    (landing / "s3" / "b" / "in").unlink()
    assert [p.name for p in mirror_prefix(Bucket(), "s3://b/", landing, {}).downloaded] == [
        "a.jsonl"
    ]


def test_a_fifo_named_to_the_cli_says_it_waits_for_its_writer(cli_env, tmp_path):
    import subprocess
    import sys
    import time

    from tests.conftest import REPO_ROOT

    fifo = tmp_path / "calls.jsonl"
    os.mkfifo(fifo)
    proc = subprocess.Popen(
        [sys.executable, "-m", "routeiq_assets.cli", "ingest", str(fifo)],
        env=cli_env,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO_ROOT,
    )
    try:
        deadline = time.monotonic() + 120
        line = ""
        while "FIFO" not in line and time.monotonic() < deadline:
            line = proc.stderr.readline()
        assert f"{fifo} is a FIFO: reading it waits for its writer" in line
        with open(fifo, "w") as writer:  # the writer comes: the CLI reads and goes on
            writer.write(GOOD)
        assert proc.wait(120) == 0
    finally:
        proc.kill()


def test_control_characters_in_file_names_reach_no_log_line_raw(cli_env, tmp_path):
    landing = tmp_path / "home" / "landing"
    landing.mkdir(parents=True)
    (landing / "good.jsonl").write_text(GOOD)
    forged = "x\n2026-12-07 routeiq: all files ingested \x1b[32mOK\x1b[0m.jsonl"
    (landing / forged).symlink_to(landing / "good.jsonl")
    done = _cli("ingest", str(landing), env=cli_env)
    assert done.returncode == 2
    assert "\x1b" not in done.stderr and "\nx" not in done.stderr
    assert "x\\n2026-12-07 routeiq: all files ingested \\x1b[32mOK" in done.stderr
