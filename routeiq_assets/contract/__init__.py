"""The RouteIQ telemetry contract as pydantic models."""

from routeiq_assets.contract.decision import (
    DECISION_EVENT_NAME,
    PAYLOAD_ATTRIBUTE,
    SUPPORTED_VERSIONS,
    CandidateDeployment,
    ContractError,
    RouterDecision,
    canonical_id,
    parse_decision_payload,
    shown_text,
    unpaired_surrogate,
)

__all__ = [
    "DECISION_EVENT_NAME",
    "PAYLOAD_ATTRIBUTE",
    "SUPPORTED_VERSIONS",
    "CandidateDeployment",
    "ContractError",
    "RouterDecision",
    "canonical_id",
    "parse_decision_payload",
    "shown_text",
    "unpaired_surrogate",
]
