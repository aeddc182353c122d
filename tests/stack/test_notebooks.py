"""The three notebooks run headless against the materialised sample's warehouse (nbclient, a
kernel from this environment); any cell error fails the test."""

from __future__ import annotations

import json

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"
NAMES = ["01_data_exploration", "02_train_knn_router", "03_evaluate_routers"]


def _execute(name: str, env: dict[str, str]) -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    client = NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS)}},
    )
    client.execute(env=env)  # raises CellExecutionError on the first failing cell
    return notebook


def _outputs(notebook: nbformat.NotebookNode) -> tuple[str, set[str]]:
    """All text the cells printed or displayed, and every MIME type they displayed."""
    text, mimetypes = [], set()
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "error":
                text.append(f"{output.ename}: {output.evalue}")
            if output.output_type == "stream":
                text.append(output.text)
            for mimetype, value in output.get("data", {}).items():
                mimetypes.add(mimetype)
                if mimetype.startswith("text/"):
                    text.append(value if isinstance(value, str) else json.dumps(value))
    return "\n".join(text), mimetypes


@pytest.mark.parametrize("name", NAMES)
def test_notebook_is_committed_without_outputs(name):
    notebook = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nbformat.validate(notebook)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert not cell.outputs and cell.execution_count is None, f"{name} has outputs"


@pytest.mark.slow
def test_01_data_exploration(materialised_sample):
    text, mimetypes = _execute_text("01_data_exploration", materialised_sample.env)
    assert str(materialised_sample.home / "warehouse" / "routeiq.duckdb") in text
    for table in ("router_decisions", "decision_candidates", "llm_calls", "quarantine"):
        assert table in text
    assert "gpt-4o-mini" in text  # a model of the simulated catalogue
    assert "image/png" in mimetypes  # the plots


@pytest.mark.slow
def test_02_train_knn_router(materialised_sample):
    text, _ = _execute_text("02_train_knn_router", materialised_sample.env)
    folder = materialised_sample.home / "work" / "notebooks" / "routers" / "knn-notebook"
    meta = json.loads((folder / "router.json").read_text())
    assert meta["router_type"] == "knn" and (folder / "weights.npz").stat().st_size > 0
    assert "hit rate 100.00%" in text  # embeddings from the warehouse's cache
    assert "always-cheapest" in text and "logging policy" in text  # the evaluation table


@pytest.mark.slow
def test_03_evaluate_routers(materialised_sample):
    text, mimetypes = _execute_text("03_evaluate_routers", materialised_sample.env)
    report_dir = materialised_sample.home / "work" / "notebooks" / "evaluation"
    report = (report_dir / "report.md").read_text()
    assert "router_knn" in report and "router_mlp" in report and "always-best" in report
    assert "Deployment gate PASSED" in report  # the sample's first deployment: nothing before it
    assert (report_dir / "quality_vs_cost.png").read_bytes()[:4] == b"\x89PNG"
    assert "# Router evaluation" in text  # the markdown, rendered in the notebook
    assert {"text/markdown", "image/png"} <= mimetypes
    # the asset's own report is left alone
    assert (materialised_sample.home / "work" / "evaluation" / "report.md").exists()


def _execute_text(name: str, env: dict[str, str]) -> tuple[str, set[str]]:
    return _outputs(_execute(name, env))
