"""``routeiq.router_decision.v1``: the span event a RouteIQ gateway emits per routing decision.

The event carries one attribute, ``routeiq.router_decision.payload``, a JSON string. Versions
"v1", "v1.0" and "v1.1" are accepted (v1.1 adds ``experiment``); anything else is a
:class:`ContractError` so the record can be quarantined with its reason.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from routeiq_assets.contract.nesting import TooDeep, bounded

DECISION_EVENT_NAME = "routeiq.router_decision.v1"
PAYLOAD_ATTRIBUTE = "routeiq.router_decision.payload"
SUPPORTED_VERSIONS = ("v1", "v1.0", "v1.1")
OutcomeStatus = Literal["success", "failure", "fallback", "error", "no_candidates", "timeout"]


# Integers as wide as the warehouse columns they land in (INTEGER, BIGINT): a larger one is a
# contract violation (quarantined with its reason), not a failed write of the whole batch.
INT32_RANGE = (-(2**31), 2**31 - 1)
INT64_RANGE = (-(2**63), 2**63 - 1)
Int32 = Annotated[int, Field(ge=INT32_RANGE[0], le=INT32_RANGE[1])]
Int64 = Annotated[int, Field(ge=INT64_RANGE[0], le=INT64_RANGE[1])]
# Counts, lengths and attempts are never negative; times and weights are finite and never
# negative; a score is finite (NaN and the infinities fail any bound, on both ingest paths).
Count32 = Annotated[int, Field(ge=0, le=INT32_RANGE[1])]
Count64 = Annotated[int, Field(ge=0, le=INT64_RANGE[1])]
NonNegative = Annotated[float, Field(ge=0.0, le=sys.float_info.max)]
Finite = Annotated[float, Field(ge=-sys.float_info.max, le=sys.float_info.max)]


class ContractError(ValueError):
    """A record that does not satisfy the contract; the message says why."""


class _Lenient(BaseModel):
    # Gateways add fields over time; unknown keys are kept, not rejected.
    model_config = ConfigDict(extra="allow")


class DecisionInput(_Lenient):
    requested_model: str | None = None
    query_length: Count32 | None = None
    user_id: str | None = None
    team_id: str | None = None
    api_type: str | None = None
    request_metadata: dict[str, Any] = Field(default_factory=dict)


class CandidateDeployment(_Lenient):
    model_name: str
    provider: str | None = None
    score: Finite | None = None
    available: bool = True


class Experiment(_Lenient):
    experiment_id: str | None = None
    variant: str | None = None
    strategy_name: str | None = None
    strategy_version: str | None = None
    weight: NonNegative | None = None
    total_weight: NonNegative | None = None
    hash_bucket: Int32 | None = None
    hash_key_type: str | None = None


class Timings(_Lenient):
    total_ms: NonNegative | None = None
    strategy_ms: NonNegative | None = None
    embedding_ms: NonNegative | None = None
    candidate_filter_ms: NonNegative | None = None


class Outcome(_Lenient):
    status: OutcomeStatus
    error_message: str | None = None
    error_type: str | None = None
    input_tokens: Count64 | None = None
    output_tokens: Count64 | None = None
    total_tokens: Count64 | None = None
    api_type: str | None = None


class Fallback(_Lenient):
    fallback_triggered: bool = False
    original_model: str | None = None
    fallback_reason: str | None = None
    fallback_attempt: Count32 | None = None


class RouterDecision(_Lenient):
    """One routing decision, as the gateway logged it."""

    contract_version: str
    contract_name: str = DECISION_EVENT_NAME
    event_id: str = Field(min_length=1)
    # Optional in RouteIQ's RouterDecisionEvent (a decision JSONL written by its builder carries
    # "trace_id": null); any non-empty text is an id (its generator writes "trace_000001")
    trace_id: str | None = None
    span_id: str | None = None
    parent_span_id: str | None = None
    timestamp_utc: str | None = None
    timestamp_unix_ms: Int64 | None = None
    input: DecisionInput = Field(default_factory=DecisionInput)
    strategy_name: str | None = None
    strategy_version: str | None = None
    candidate_deployments: list[CandidateDeployment] = Field(default_factory=list)
    selected_deployment: str | None = None
    selection_reason: str | None = None
    experiment: Experiment | None = None
    timings: Timings = Field(default_factory=Timings)
    outcome: Outcome
    fallback: Fallback = Field(default_factory=Fallback)
    custom_attributes: dict[str, Any] = Field(default_factory=dict)


def parse_decision_payload(payload: str | bytes | dict[str, Any]) -> RouterDecision:
    """Parse and validate one payload; raise :class:`ContractError` naming the problem."""
    if isinstance(payload, (str, bytes)):
        try:
            # the common case in one pass through pydantic-core's JSON parser
            decision = bounded(RouterDecision.model_validate_json, payload)
        except (ValidationError, TooDeep):
            pass  # re-parse below to say precisely what is wrong
        else:
            if decision.contract_version in SUPPORTED_VERSIONS:
                return decision
        try:
            payload = bounded(json.loads, payload)
        except (ValueError, RecursionError) as exc:
            # ValueError: JSONDecodeError, UnicodeDecodeError, an integer of over 4,300 digits
            raise ContractError(f"payload is not JSON: {exc}") from None
        # json.loads decodes an unpaired \ud83d escape into text no column can hold
        problem = unpaired_surrogate(payload)
        if problem:
            raise ContractError(f"payload is not valid Unicode: {problem}")
    if not isinstance(payload, dict):
        raise ContractError(f"payload is a JSON {type(payload).__name__}, expected an object")
    version = payload.get("contract_version")
    if version not in SUPPORTED_VERSIONS:
        raise ContractError(
            f"unknown contract_version {version!r}; supported: {', '.join(SUPPORTED_VERSIONS)}"
        )
    try:
        return RouterDecision.model_validate(payload)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()[:5]
        )
        raise ContractError(f"payload violates the contract: {problems}") from None


def canonical_id(text: str | None) -> str | None:
    """An id as the warehouse keys it: hex ids lowercased (the same id in either case), any other
    non-empty text as given; empty or missing: None."""
    if not text:
        return None
    return text.lower() if _HEX_TEXT.fullmatch(text) else text


_HEX_TEXT = re.compile(r"[0-9a-fA-F]+")


def shown_text(text: str) -> str:
    """``text`` with anything UTF-8 cannot encode (unpaired surrogates) as backslash escapes."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def unpaired_surrogate(value: Any) -> str | None:
    """Where decoded JSON holds text with an unpaired UTF-16 surrogate (an escape such as
    ``"\\ud83d"`` with no low half: valid JSON, but no Unicode text, and no database column
    takes it), as ``path holds '\\ud83d'``; None when nowhere. Walks without recursion (the
    value may be nested as deep as the JSON parser allowed)."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if item.isascii():
                continue
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                return f"{path or 'the value'} holds {shown_text(item[exc.start])!r}"
        elif isinstance(item, dict):
            for key, child in item.items():
                named = f"{path}.{shown_text(str(key))}" if path else shown_text(str(key))
                stack.append((f"{named} (its key)", key))
                stack.append((named, child))
        elif isinstance(item, list):
            stack.extend((f"{path}[{i}]", child) for i, child in enumerate(item))
    return None
