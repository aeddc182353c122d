import json

import pytest

from routeiq_assets.contract import ContractError, parse_decision_payload
from routeiq_assets.telemetry.simulator import decision_payload, simulate_requests


def _payload(**changes):
    req = next(simulate_requests(1, seed=1))
    payload = decision_payload(req)
    payload.update(changes)
    return payload


@pytest.mark.parametrize("version", ["v1", "v1.0", "v1.1"])
def test_supported_versions_parse(version):
    extra = {
        "experiment": {"experiment_id": "exp-1", "variant": "b", "weight": 1, "total_weight": 4}
    }
    decision = parse_decision_payload(json.dumps(_payload(contract_version=version, **extra)))
    assert decision.contract_version == version
    assert decision.experiment.experiment_id == "exp-1"
    assert decision.candidate_deployments and decision.outcome.status


def test_unknown_version_is_rejected_with_reason():
    with pytest.raises(ContractError, match="unknown contract_version 'v2'"):
        parse_decision_payload(_payload(contract_version="v2"))


def test_payload_that_is_not_json():
    with pytest.raises(ContractError, match="not JSON"):
        parse_decision_payload('{"contract_version": "v1", ')


def test_missing_event_id_and_bad_status_are_named():
    payload = _payload()
    del payload["event_id"]
    payload["outcome"]["status"] = "maybe"
    with pytest.raises(ContractError) as err:
        parse_decision_payload(payload)
    assert "event_id" in str(err.value) and "outcome.status" in str(err.value)


def test_json_array_is_not_a_payload():
    with pytest.raises(ContractError, match="JSON list"):
        parse_decision_payload("[1, 2]")
