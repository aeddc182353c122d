"""One materialised sample for the stack tests (the Dagster UI and the notebooks).

The real CLIs in temporary homes: `routeiq simulate` into the landing folder, then
`routeiq materialize` (ingest, then `dagster asset materialize` on the rest), with only the knn
and mlp router configs so the graph stays quick.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, gate_without_baselines

SAMPLE_ROUTERS = ("knn", "mlp")


@dataclass(frozen=True)
class MaterialisedSample:
    env: dict[str, str]  # the environment the graph ran in (ROUTEIQ_*, DAGSTER_HOME)
    home: Path  # ROUTEIQ_HOME
    dagster_home: Path
    configs_dir: Path


def _run(cmd: list[str], env: dict[str, str], timeout: int = 900) -> None:
    result = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT
    )
    assert result.returncode == 0, f"{cmd}:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"


@pytest.fixture(scope="package")
def materialised_sample(tmp_path_factory: pytest.TempPathFactory) -> MaterialisedSample:
    root = tmp_path_factory.mktemp("stack-sample")
    home, dagster_home, configs = root / "home", root / "dagster_home", root / "configs"
    home.mkdir()
    dagster_home.mkdir()
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", dagster_home / "dagster.yaml")
    # the repository's configs (labeling, prices, gate, ...), routers cut down to knn and mlp
    shutil.copytree(REPO_ROOT / "configs", configs)
    gate_without_baselines(configs)  # the sample deploys its first version
    for config in (configs / "routers").glob("*.yaml"):
        if config.stem not in SAMPLE_ROUTERS:
            config.unlink()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROUTEIQ_")}
    env.update(
        ROUTEIQ_HOME=str(home),
        ROUTEIQ_CONFIGS_DIR=str(configs),
        DAGSTER_HOME=str(dagster_home),
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        ROUTEIQ_DEVICE="cpu",
    )
    cli = [sys.executable, "-m", "routeiq_assets.cli"]
    simulate = ["simulate", "--out", str(home / "landing"), "--requests", "1500", "--seed", "3"]
    _run([*cli, *simulate], env)
    _run([*cli, "materialize"], env)
    assert (home / "work" / "evaluation" / "report.md").exists()
    return MaterialisedSample(env=env, home=home, dagster_home=dagster_home, configs_dir=configs)
