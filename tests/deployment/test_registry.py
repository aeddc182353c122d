"""MLflow that is down or failing, with a password in the tracking URI: training fails in
seconds, not after MLflow's minutes of backoff, and no message, event or cause shows the
password."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import dagster as dg
import pytest
from dagster._serdes import serialize_value

from routeiq_assets.defs.resources import RouteIQResource
from routeiq_assets.defs.routers import router_asset
from routeiq_assets.deployment.registry import RegistryError, log_router_run
from tests.conftest import REPO_ROOT
from tests.deployment.conftest import free_port, train_router

PASSWORD = "tr4cking-pw"


def _failing_training_error() -> str:
    """The error (with its causes) of a router_knn asset run that fails, after checking that no
    event the run stored mentions the password."""
    asset = router_asset("knn", REPO_ROOT / "configs" / "routers" / "knn.yaml")
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [asset],
            resources={"routeiq": RouteIQResource()},
            instance=instance,
            raise_on_error=False,
        )
        assert not result.success
        events = instance.all_logs(result.run_id)
        assert events and not [e for e in events if PASSWORD in serialize_value(e)]
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return failure.step_failure_data.error.to_string()


def test_training_fails_in_seconds_when_mlflow_is_down(routeiq_home, monkeypatch):
    port = free_port()  # bound, then closed: nothing listens there
    monkeypatch.setenv("ROUTEIQ_MLFLOW_TRACKING_URI", f"http://trainer:{PASSWORD}@127.0.0.1:{port}")
    started = time.monotonic()
    message = _failing_training_error()
    assert time.monotonic() - started < 15
    assert f"MLflow at http://trainer:***@127.0.0.1:{port} cannot be reached" in message
    assert "ROUTEIQ_MLFLOW_TRACKING_URI" in message and PASSWORD not in message
    # training did not start: the check comes before the router is fitted
    assert not (routeiq_home / "work" / "routers").exists()


def test_logging_a_run_to_a_closed_port_fails_in_seconds(tmp_path):
    folder = train_router(tmp_path / "knn")
    down = f"http://trainer:{PASSWORD}@127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(RegistryError, match="cannot be reached") as raised:
        log_router_run(down, "routeiq-routers", None, "knn", folder, {}, {})
    assert time.monotonic() - started < 15
    assert PASSWORD not in str(raised.value) and "trainer:***@127.0.0.1" in str(raised.value)


class _HealthyButFailing(http.server.BaseHTTPRequestHandler):
    """Answers /health, and 503 to every MLflow API call."""

    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 503)
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def failing_mlflow() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HealthyButFailing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_mlflow_error_is_masked_and_comes_in_seconds(tmp_path, failing_mlflow):
    """Past the reachability check, MLflow's own message names the raw URI: it is masked, it is
    not chained as the cause, and MLflow's retries end in seconds."""
    folder = train_router(tmp_path / "knn")
    started = time.monotonic()
    with pytest.raises(RegistryError) as raised:
        log_router_run(
            f"http://trainer:{PASSWORD}@{failing_mlflow}",
            "routeiq-routers",
            None,
            "knn",
            folder,
            {},
            {},
        )
    assert time.monotonic() - started < 15
    message = str(raised.value)
    assert f"in MLflow at http://trainer:***@{failing_mlflow} failed" in message
    assert "503" in message and PASSWORD not in message
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
