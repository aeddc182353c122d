"""Normalise telemetry records into warehouse rows.

Pure functions: records in, rows out, plus the quarantine rows for every record that could not
be normalised. Writing them is :mod:`routeiq_assets.warehouse.store`'s job.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from routeiq_assets.contract import ContractError, parse_decision_payload
from routeiq_assets.telemetry.pii import PromptTextMode, prompt_for_warehouse
from routeiq_assets.telemetry.records import (
    TelemetryRecord,
    as_float,
    first_value,
    token_counts,
)

_LLM_STATUS = {0: "unset", 1: "ok", 2: "error"}


@dataclass
class NormalisedBatch:
    """Rows for every table from one batch, and the counts that prove nothing was lost."""

    decisions: list[dict[str, Any]] = field(default_factory=list)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    llm_calls: list[dict[str, Any]] = field(default_factory=list)
    feedback: list[dict[str, Any]] = field(default_factory=list)
    quarantine: list[dict[str, Any]] = field(default_factory=list)
    records_in: int = 0
    duplicates_in_batch: int = 0


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _as_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _parse_ts(value: str | None, unix_ms: int | None) -> datetime | None:
    if value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
    if unix_ms is not None:
        return datetime.fromtimestamp(unix_ms / 1000, tz=UTC)
    return None


def decision_rows(
    record: TelemetryRecord, batch_id: str
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One decision row and its candidate rows; raises ContractError for a bad payload."""
    decision = parse_decision_payload(record.data["payload"])
    span_trace = record.data.get("trace_id")
    if span_trace and decision.trace_id.lower() != span_trace:
        raise ContractError(
            f"payload trace_id {decision.trace_id!r} differs from its span's {span_trace!r}"
        )
    custom = decision.custom_attributes
    exp = decision.experiment
    row = {
        "event_id": decision.event_id,
        "batch_id": batch_id,
        "location": record.location,
        "contract_version": decision.contract_version,
        "contract_name": decision.contract_name,
        "trace_id": decision.trace_id.lower(),
        "span_id": decision.span_id,
        "parent_span_id": decision.parent_span_id,
        "timestamp_utc": _parse_ts(decision.timestamp_utc, decision.timestamp_unix_ms),
        "timestamp_unix_ms": decision.timestamp_unix_ms,
        "requested_model": decision.input.requested_model,
        "query_length": decision.input.query_length,
        "user_id": decision.input.user_id,
        "team_id": decision.input.team_id,
        "api_type": decision.input.api_type,
        "request_metadata": json.dumps(decision.input.request_metadata),
        "strategy_name": decision.strategy_name,
        "strategy_version": decision.strategy_version,
        "selected_deployment": decision.selected_deployment,
        "selection_reason": decision.selection_reason,
        "experiment_id": exp.experiment_id if exp else None,
        "experiment_variant": exp.variant if exp else None,
        "experiment_strategy_name": exp.strategy_name if exp else None,
        "experiment_strategy_version": exp.strategy_version if exp else None,
        "experiment_weight": exp.weight if exp else None,
        "experiment_total_weight": exp.total_weight if exp else None,
        "experiment_hash_bucket": exp.hash_bucket if exp else None,
        "experiment_hash_key_type": exp.hash_key_type if exp else None,
        "total_ms": decision.timings.total_ms,
        "strategy_ms": decision.timings.strategy_ms,
        "embedding_ms": decision.timings.embedding_ms,
        "candidate_filter_ms": decision.timings.candidate_filter_ms,
        "outcome_status": decision.outcome.status,
        "error_message": decision.outcome.error_message,
        "error_type": decision.outcome.error_type,
        "input_tokens": decision.outcome.input_tokens,
        "output_tokens": decision.outcome.output_tokens,
        "total_tokens": decision.outcome.total_tokens,
        "outcome_api_type": decision.outcome.api_type,
        "fallback_triggered": decision.fallback.fallback_triggered,
        "fallback_original_model": decision.fallback.original_model,
        "fallback_reason": decision.fallback.fallback_reason,
        "fallback_attempt": decision.fallback.fallback_attempt,
        "num_candidates": len(decision.candidate_deployments),
        "selection_propensity": as_float(custom.get("selection_propensity")),
        "logging_policy": custom.get("logging_policy"),
        "quality_score": as_float(custom.get("quality_score")),
        "custom_attributes": json.dumps(custom),
    }
    candidates = [
        {
            "event_id": decision.event_id,
            "batch_id": batch_id,
            "position": pos,
            "model_name": cand.model_name,
            "provider": cand.provider,
            "score": cand.score,
            "available": cand.available,
            "is_selected": cand.model_name == decision.selected_deployment,
        }
        for pos, cand in enumerate(decision.candidate_deployments)
    ]
    return row, candidates


def llm_call_row(
    record: TelemetryRecord, batch_id: str, prompt_mode: PromptTextMode = "scrub"
) -> dict[str, Any]:
    data = record.data
    attrs = data["attributes"]
    prompt = first_value(attrs, "gen_ai.prompt", "gen_ai.prompt.0.content")
    input_tokens, output_tokens, total = token_counts(attrs)
    prompt_text = _as_text(prompt)
    completion = first_value(attrs, "gen_ai.completion", "gen_ai.completion.0.content")
    return {
        "trace_id": data["trace_id"],
        "span_id": data["span_id"],
        "batch_id": batch_id,
        "location": record.location,
        "parent_span_id": data.get("parent_span_id"),
        "span_name": data.get("name"),
        "prompt_text": prompt_for_warehouse(prompt_text, prompt_mode),
        "prompt_sha256": text_sha256(prompt_text) if prompt_text is not None else None,
        "request_model": attrs.get("gen_ai.request.model"),
        "response_model": first_value(attrs, "gen_ai.response.model", "gen_ai.request.model"),
        "completion": prompt_for_warehouse(_as_text(completion), prompt_mode),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": total,
        "duration_ms": data.get("duration_ms"),
        "start_unix_ms": (data.get("start_unix_nano") or 0) // 1_000_000 or None,
        "status": _LLM_STATUS.get(data.get("status_code") or 0, "unset"),
        "task": attrs.get("litellm.task"),
        "quality_score": as_float(attrs.get("routeiq.quality_score")),
        "ground_truth": _as_text(attrs.get("routeiq.ground_truth")),
    }


def normalise_records(
    records: Iterable[TelemetryRecord],
    batch_id: str,
    source: str,
    prompt_mode: PromptTextMode = "scrub",
) -> NormalisedBatch:
    """Turn a batch's records into rows; every record lands in exactly one list."""
    batch = NormalisedBatch()
    now = datetime.now(UTC).replace(tzinfo=None)
    seen_events: set[str] = set()
    seen_calls: set[tuple[str, str]] = set()

    def quarantine(rec: TelemetryRecord, reason: str) -> None:
        batch.quarantine.append(
            {
                "batch_id": batch_id,
                "source": source,
                "location": rec.location,
                "reason": reason,
                "raw_excerpt": rec.raw if rec.raw is not None else _excerpt_of(rec),
                "quarantined_at": now,
            }
        )

    for rec in records:
        batch.records_in += 1
        if rec.kind == "bad":
            quarantine(rec, rec.reason or "unreadable record")
        elif rec.kind == "decision":
            try:
                row, cands = decision_rows(rec, batch_id)
            except ContractError as exc:
                quarantine(rec, str(exc))
                continue
            if row["event_id"] in seen_events:
                batch.duplicates_in_batch += 1
                continue
            seen_events.add(row["event_id"])
            batch.decisions.append(row)
            batch.candidates.extend(cands)
        elif rec.kind == "llm_call":
            row = llm_call_row(rec, batch_id, prompt_mode)
            key = (row["trace_id"], row["span_id"])
            if key in seen_calls:
                batch.duplicates_in_batch += 1
                continue
            seen_calls.add(key)
            batch.llm_calls.append(row)
        elif rec.kind == "feedback":
            created = rec.data.get("created_at")
            batch.feedback.append(
                {
                    "batch_id": batch_id,
                    "location": rec.location,
                    "event_id": rec.data["event_id"],
                    "trace_id": rec.data["trace_id"],
                    "score": rec.data["score"],
                    "source": rec.data["source"],
                    "created_at": _parse_ts(created if isinstance(created, str) else None, None),
                }
            )
        else:
            quarantine(rec, f"unknown record kind {rec.kind!r}")
    return batch


def _excerpt_of(rec: TelemetryRecord) -> str:
    text = json.dumps(rec.data, default=str)
    return text if len(text) <= 2000 else text[:2000] + "...[truncated]"
