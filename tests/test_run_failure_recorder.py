"""The run-failure sensor records real failed runs, telling a held deployment gate apart."""

import json

import dagster as dg

from routeiq_assets.defs.automation import failure_kind, run_failure_recorder
from routeiq_assets.defs.resources import RouteIQResource
from tests.conftest import run_failure_context


@dg.asset
def broken():
    raise ValueError("the warehouse is gone")


def test_failed_run_is_appended_to_the_ops_log(routeiq_home):
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([broken], instance=instance, raise_on_error=False)
    assert not result.success
    context = run_failure_context(
        instance,
        result.run_id,
        "run_failure_recorder",
        {"routeiq": RouteIQResource(home=str(routeiq_home))},
    )
    run_failure_recorder(context)
    lines = (routeiq_home / "ops" / "run_failures.jsonl").read_text().splitlines()
    record = json.loads(lines[-1])
    assert record["run_id"] == result.run_id and record["kind"] == "failure"
    assert "broken" in record["message"]


def test_gate_held_is_told_apart():
    only_gate = "Execution of run failed. Steps failed: ['evaluation_report_deployment_gate']."
    both = "Steps failed: ['router_knn', 'evaluation_report_deployment_gate']."
    assert failure_kind(only_gate) == "gate_held"
    assert failure_kind(both) == "failure" and failure_kind("boom") == "failure"
