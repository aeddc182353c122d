"""The decision contract is defined once (routeiq_assets.contract.decision): the warehouse's
column lists, its SQL schema and the fast path's msgspec structs are checked against it here."""

import json
import typing
from datetime import datetime

import duckdb
import msgspec
import pytest
from pydantic import BaseModel

from routeiq_assets.contract.decision import RouterDecision, parse_decision_payload
from routeiq_assets.warehouse.columnar import FEEDBACK_COLUMNS
from routeiq_assets.warehouse.normalize import (
    CANDIDATE_COLUMNS,
    DECISION_COLUMNS,
    LLM_CALL_COLUMNS,
    QUARANTINE_COLUMNS,
    decision_trace,
    decision_values,
)
from routeiq_assets.warehouse.otlp_fast import _DECISION, struct_of
from routeiq_assets.warehouse.store import schema_sql

# Where each leaf of the contract lands in router_decisions (candidate_deployments: in
# decision_candidates, counted in num_candidates). A new contract field fails
# test_every_contract_field_has_a_column until it is given a column here, in schema.sql and in
# normalize.decision_values.
COLUMN_OF = {
    "contract_version": "contract_version",
    "contract_name": "contract_name",
    "event_id": "event_id",
    "trace_id": "trace_id",
    "span_id": "span_id",
    "parent_span_id": "parent_span_id",
    "timestamp_utc": "timestamp_utc",
    "timestamp_unix_ms": "timestamp_unix_ms",
    "input.requested_model": "requested_model",
    "input.query_length": "query_length",
    "input.user_id": "user_id",
    "input.team_id": "team_id",
    "input.api_type": "api_type",
    "input.request_metadata": "request_metadata",
    "strategy_name": "strategy_name",
    "strategy_version": "strategy_version",
    "candidate_deployments": "num_candidates",
    "selected_deployment": "selected_deployment",
    "selection_reason": "selection_reason",
    "experiment.experiment_id": "experiment_id",
    "experiment.variant": "experiment_variant",
    "experiment.strategy_name": "experiment_strategy_name",
    "experiment.strategy_version": "experiment_strategy_version",
    "experiment.weight": "experiment_weight",
    "experiment.total_weight": "experiment_total_weight",
    "experiment.hash_bucket": "experiment_hash_bucket",
    "experiment.hash_key_type": "experiment_hash_key_type",
    "timings.total_ms": "total_ms",
    "timings.strategy_ms": "strategy_ms",
    "timings.embedding_ms": "embedding_ms",
    "timings.candidate_filter_ms": "candidate_filter_ms",
    "outcome.status": "outcome_status",
    "outcome.error_message": "error_message",
    "outcome.error_type": "error_type",
    "outcome.input_tokens": "input_tokens",
    "outcome.output_tokens": "output_tokens",
    "outcome.total_tokens": "total_tokens",
    "outcome.api_type": "outcome_api_type",
    "fallback.fallback_triggered": "fallback_triggered",
    "fallback.original_model": "fallback_original_model",
    "fallback.fallback_reason": "fallback_reason",
    "fallback.fallback_attempt": "fallback_attempt",
    "custom_attributes": "custom_attributes",
}
# columns that are not a contract field: where the row came from, and what custom_attributes
# carries for evaluation
DERIVED = {"batch_id", "location", "selection_propensity", "logging_policy", "quality_score"}


def _model_of(annotation):
    """The model an annotation holds (a field typed ``Model | None``), else None."""
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _leaves(model, prefix=""):
    for name, info in model.model_fields.items():
        inner = _model_of(info.annotation)
        if inner is not None and typing.get_origin(info.annotation) is not list:
            yield from _leaves(inner, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", info.annotation


def test_schema_columns_are_the_row_builders_columns():
    con = duckdb.connect()
    con.execute(schema_sql())
    for table, columns in (
        ("router_decisions", DECISION_COLUMNS),
        ("decision_candidates", CANDIDATE_COLUMNS),
        ("llm_calls", LLM_CALL_COLUMNS),
        ("quarantine", QUARANTINE_COLUMNS),
        ("feedback", FEEDBACK_COLUMNS),
    ):
        described = [row[0] for row in con.execute(f"DESCRIBE {table}").fetchall()]
        assert described == list(columns), table


def test_every_contract_field_has_a_column():
    leaves = dict(_leaves(RouterDecision))
    assert set(leaves) == set(COLUMN_OF)
    assert set(COLUMN_OF.values()) | DERIVED == set(DECISION_COLUMNS)


def _distinct_payload():
    """A payload with a distinct value in every leaf of the contract."""
    values = {}
    for k, (path, annotation) in enumerate(_leaves(RouterDecision)):
        kinds = set(typing.get_args(annotation)) | {annotation}
        if path == "contract_version":
            value = "v1.1"
        elif path == "outcome.status":
            value = "fallback"
        elif path == "timestamp_utc":
            value = "2026-03-04T05:06:07+00:00"
        elif path == "candidate_deployments":
            value = [{"model_name": "m1", "provider": "p", "score": 0.5, "available": False}]
        elif path in ("input.request_metadata", "custom_attributes"):
            value = {"key": path, "quality_score": 0.25}
        elif bool in kinds:
            value = True
        elif float in kinds:
            value = k + 0.5
        elif str in kinds or any(typing.get_origin(t) is typing.Literal for t in kinds):
            value = f"value-{k}"
        else:  # the integers (Int32/Int64 annotated)
            value = 1000 + k
        values[path] = value
    payload: dict = {}
    for path, value in values.items():
        *parents, name = path.split(".")
        node = payload
        for parent in parents:
            node = node.setdefault(parent, {})
        node[name] = value
    return payload, values


@pytest.mark.parametrize("path", ["general", "fast"])
def test_each_contract_field_lands_in_its_column(path):
    payload, values = _distinct_payload()
    text = json.dumps(payload)
    decision = parse_decision_payload(text) if path == "general" else _DECISION.decode(text)
    trace = decision_trace(decision.trace_id, None)
    if path == "fast":
        from routeiq_assets.warehouse.columnar import BatchBuilder
        from routeiq_assets.warehouse.otlp_fast import _Rows

        row, candidates = _Rows(BatchBuilder("b", "s")).decision(decision, "loc", trace)
    else:
        row, candidates = decision_values(decision, "loc", "b", trace)
    stored = dict(zip(DECISION_COLUMNS, row, strict=True))
    for leaf, column in COLUMN_OF.items():
        expected = values[leaf]
        if leaf == "candidate_deployments":
            expected = len(expected)
        elif leaf == "timestamp_utc":
            expected = datetime.fromisoformat(expected)
        elif leaf in ("input.request_metadata", "custom_attributes"):
            expected = json.dumps(expected)
        assert stored[column] == expected, (leaf, column)
    assert stored["quality_score"] == 0.25
    assert [dict(zip(CANDIDATE_COLUMNS, c, strict=True)) for c in candidates] == [
        {
            "event_id": values["event_id"],
            "batch_id": "b",
            "position": 0,
            "model_name": "m1",
            "provider": "p",
            "score": 0.5,
            "available": False,
            "is_selected": False,
        }
    ]


def _field_names(struct_or_model):
    if isinstance(struct_or_model, type) and issubclass(struct_or_model, BaseModel):
        return {
            name: _field_names(_model_of(info.annotation) or list)
            if _model_of(info.annotation)
            else None
            for name, info in struct_or_model.model_fields.items()
        }
    names = {}
    for field in msgspec.structs.fields(struct_or_model):
        nested = next(
            (
                t
                for t in (field.type, *typing.get_args(field.type))
                for t in (t, *typing.get_args(t))
                if isinstance(t, type) and issubclass(t, msgspec.Struct)
            ),
            None,
        )
        names[field.name] = _field_names(nested) if nested else None
    return names


def test_the_fast_struct_has_the_contracts_fields_everywhere():
    assert _field_names(struct_of(RouterDecision)) == _field_names(RouterDecision)


@pytest.mark.parametrize(
    "edit",
    [
        lambda p: p.update(event_id=""),
        lambda p: p.update(trace_id=7),
        lambda p: p.pop("outcome"),
        lambda p: p["outcome"].update(status="maybe"),
        lambda p: p["input"].update(query_length=2**31),
        lambda p: p["outcome"].update(total_tokens=2**63),
        lambda p: p["fallback"].update(fallback_attempt=-(2**31) - 1),
        lambda p: p["experiment"].update(hash_bucket=2**40),
        lambda p: p["candidate_deployments"].append({"provider": "no model_name"}),
    ],
)
def test_what_the_contract_refuses_the_fast_struct_refuses(edit):
    """The fast path never stores what the contract refuses (it hands such a payload to the
    general path, which quarantines it with the contract's reason)."""
    payload, _ = _distinct_payload()
    edit(payload)
    text = json.dumps(payload)
    with pytest.raises(ValueError):
        parse_decision_payload(text)
    with pytest.raises(msgspec.ValidationError):
        _DECISION.decode(text)
