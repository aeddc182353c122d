"""Shared fixtures: an isolated RouteIQ home per test, small simulated telemetry."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data" / "llmrouter-benchmark"


@pytest.fixture
def routeiq_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """ROUTEIQ_HOME (and DAGSTER_HOME) in a temporary folder; no other ROUTEIQ_* leaks in."""
    for key in list(os.environ):
        if key.startswith("ROUTEIQ_"):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("ROUTEIQ_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def benchmark_table() -> tuple[Path, Path]:
    table, prices = SHARED_DATA / "train.json", SHARED_DATA / "llm_candidates.json"
    if not table.exists():
        pytest.skip(f"shared benchmark data not found at {SHARED_DATA}")
    return table, prices


def run_failure_context(instance, run_id: str, sensor_name: str, resources=None):
    """The context a run-failure sensor gets from the daemon for this (failed) run."""
    import dagster as dg

    failure = next(
        e
        for e in instance.all_logs(run_id)
        if e.dagster_event_type == dg.DagsterEventType.RUN_FAILURE
    )
    return dg.build_run_status_sensor_context(
        sensor_name=sensor_name,
        dagster_event=failure.dagster_event,
        dagster_instance=instance,
        dagster_run=instance.get_run_by_id(run_id),
        resources=resources,
    ).for_run_failure()


def gate_without_baselines(configs: Path) -> None:
    """Tell a copy of configs/ to check no baselines at the gate (`baselines: []`): the first
    version deploys whatever it scores, for tests of what happens after a deployment. The
    baselines have their own tests (tests/evaluation/test_gate_baselines.py)."""
    gate = configs / "gate.yaml"
    text = gate.read_text()
    assert "\nbaselines: [" in text
    gate.write_text(text.replace("\nbaselines: [", "\nbaselines: [] # ["))
