"""The Dagster UI in a real headless Chromium: `dagster dev -w workspace.yaml` on the
materialised sample shows every asset group and the evaluation report's metadata.

Screenshots are kept in test-artifacts/ui/ (git-ignored; CI can upload the folder).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = REPO_ROOT / "test-artifacts" / "ui"
STARTUP_TIMEOUT_S = 180
UI_TIMEOUT_MS = 60_000


def _require_chromium() -> None:
    if CHROMIUM.exists():
        return
    message = f"{CHROMIUM} not found: apt-get install chromium (.ci/run installs it)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(process: subprocess.Popen) -> None:
    """dagster dev and its children (webserver, daemon, code server) share one process group."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@pytest.fixture
def dagster_ui(materialised_sample, tmp_path: Path) -> Iterator[str]:
    """`dagster dev -w workspace.yaml` on a free port, in the sample's homes; its base URL."""
    port = _free_port()
    log_path = tmp_path / "dagster-dev.log"
    cmd = [sys.executable, "-m", "dagster", "dev", "-w", "workspace.yaml"]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [*cmd, "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO_ROOT,
            env=materialised_sample.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            assert process.poll() is None, f"dagster dev exited:\n{log_path.read_text()[-4000:]}"
            try:
                with urllib.request.urlopen(f"{base}/server_info", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"no UI at {base}:\n{log_path.read_text()[-4000:]}"
            time.sleep(1)
        yield base
    finally:
        _stop(process)


def _skip_community_dialog(page) -> None:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(state="visible", timeout=10_000)
    except PlaywrightTimeout:
        return
    skip.click()


def _shot(target, name: str, **options) -> Path:
    """Screenshot of a page or one element of it, kept as a test artifact."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    target.screenshot(path=str(path), **options)
    print(f"screenshot: {path}")
    return path


def _group_names() -> set[str]:
    from routeiq_assets.definitions import defs

    return {node.group_name for node in defs.resolve_asset_graph().asset_nodes}


def test_asset_graph_and_evaluation_report_in_chromium(dagster_ui, materialised_sample):
    _require_chromium()
    from playwright.sync_api import expect, sync_playwright

    groups = _group_names()
    assert {"telemetry", "training_data", "routers", "evaluation", "deployment"} <= groups
    report_path = materialised_sample.home / "work" / "evaluation" / "report.md"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)

            # the asset graph: one box per group, and the groups in the sidebar
            page.goto(f"{dagster_ui}/asset-groups")
            _skip_community_dialog(page)
            expect(page.get_by_text("Global asset lineage")).to_be_visible()
            for group in sorted(groups):
                expect(page.get_by_text(group, exact=True).first).to_be_visible()
            _shot(page, "asset_graph", full_page=True)

            # the routers group holds one asset per router config of the sample
            page.goto(f"{dagster_ui}/locations/routeiq_assets/asset-groups/routers/list")
            for router in ("router_knn", "router_mlp"):
                expect(page.get_by_text(router, exact=True).first).to_be_visible()

            # the evaluation report's latest materialisation and its metadata
            page.goto(f"{dagster_ui}/assets/evaluation_report")
            expect(page.get_by_text("Latest materialization")).to_be_visible()
            for key in ("report", "report_path", "plot_path", "mlflow_run_id", "routers"):
                expect(page.get_by_role("cell", name=key, exact=True)).to_be_visible()
            expect(page.get_by_text(str(report_path), exact=True).first).to_be_visible()
            _shot(page, "evaluation_report", full_page=True)

            # the report itself, as the markdown metadata renders it
            page.get_by_text("[Show Markdown]").first.click()
            dialog = page.get_by_role("dialog")
            expect(dialog.get_by_text("Router evaluation").first).to_be_visible()
            expect(dialog.get_by_text("router_knn", exact=False).first).to_be_visible()
            expect(dialog.locator("img").first).to_be_visible()  # the embedded PNG
            _shot(dialog, "evaluation_report_markdown")
        finally:
            browser.close()
