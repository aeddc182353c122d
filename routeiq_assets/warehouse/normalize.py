"""Normalise telemetry records into warehouse rows.

Pure functions: records in, rows out, plus the quarantine rows for every record that could not
be normalised. Writing them is :mod:`routeiq_assets.warehouse.store`'s job.
"""

from __future__ import annotations

import functools
import hashlib
import json
import json.encoder
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from routeiq_assets.contract import (
    ContractError,
    canonical_id,
    parse_decision_payload,
    shown_text,
    unpaired_surrogate,
)
from routeiq_assets.telemetry.pii import (
    PromptTextMode,
    excerpt_for_warehouse,
    id_for_warehouse,
    json_for_warehouse,
    prompt_for_warehouse,
    reason_for_warehouse,
)
from routeiq_assets.telemetry.records import (
    TelemetryRecord,
    first_value,
    quality_value,
    token_counts,
    unit_value,
)

_LLM_STATUS = {0: "unset", 1: "ok", 2: "error"}
# protobuf-JSON variants of the code: an int as a string, or the enum's name (the default of
# protobuf's own JSON printers); matched exactly, as the compiled normaliser matches them
_STATUS_STRINGS = {
    "0": 0,
    "1": 1,
    "2": 2,
    "STATUS_CODE_UNSET": 0,
    "STATUS_CODE_OK": 1,
    "STATUS_CODE_ERROR": 2,
}


def status_text(code: Any) -> str:
    """An OTLP status code as llm_calls stores it; anything that is no code is "unset"."""
    if isinstance(code, str):
        code = _STATUS_STRINGS.get(code, 0)
    try:
        return _LLM_STATUS.get(code or 0, "unset")
    except TypeError:  # unhashable (a list, an object)
        return "unset"


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
        try:
            return datetime.fromtimestamp(unix_ms / 1000, tz=UTC)
        except (ValueError, OverflowError, OSError):  # beyond the years datetime holds
            return None
    return None


DECISION_COLUMNS = (
    "event_id",
    "batch_id",
    "location",
    "contract_version",
    "contract_name",
    "trace_id",
    "span_id",
    "parent_span_id",
    "timestamp_utc",
    "timestamp_unix_ms",
    "requested_model",
    "query_length",
    "user_id",
    "team_id",
    "api_type",
    "request_metadata",
    "strategy_name",
    "strategy_version",
    "selected_deployment",
    "selection_reason",
    "experiment_id",
    "experiment_variant",
    "experiment_strategy_name",
    "experiment_strategy_version",
    "experiment_weight",
    "experiment_total_weight",
    "experiment_hash_bucket",
    "experiment_hash_key_type",
    "total_ms",
    "strategy_ms",
    "embedding_ms",
    "candidate_filter_ms",
    "outcome_status",
    "error_message",
    "error_type",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "outcome_api_type",
    "fallback_triggered",
    "fallback_original_model",
    "fallback_reason",
    "fallback_attempt",
    "num_candidates",
    "selection_propensity",
    "logging_policy",
    "quality_score",
    "custom_attributes",
)
CANDIDATE_COLUMNS = (
    "event_id",
    "batch_id",
    "position",
    "model_name",
    "provider",
    "score",
    "available",
    "is_selected",
)
LLM_CALL_COLUMNS = (
    "trace_id",
    "span_id",
    "batch_id",
    "location",
    "parent_span_id",
    "span_name",
    "prompt_text",
    "prompt_sha256",
    "request_model",
    "response_model",
    "completion",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "duration_ms",
    "start_unix_ms",
    "status",
    "task",
    "quality_score",
    "ground_truth",
)
QUARANTINE_COLUMNS = ("batch_id", "source", "location", "reason", "raw_excerpt", "quarantined_at")


# json.dumps(value) with its default settings, through one C encoder made once: json.dumps makes
# a new one each call, which is most of its time on the small objects a decision carries (2.2 us
# against 1.3 here). The same C function with the same settings gives the same text; without
# the C accelerator (not CPython), json.dumps itself. Decoded JSON cannot be circular, so the
# encoder keeps no markers.
_ENCODER = (
    json.encoder.c_make_encoder(
        None,
        json.JSONEncoder().default,
        json.encoder.encode_basestring_ascii,
        None,
        ": ",
        ", ",
        False,
        False,
        True,
    )
    if json.encoder.c_make_encoder is not None
    else None
)


def json_text(value: Any) -> str:
    """``json.dumps(value)``, faster (see _ENCODER)."""
    if _ENCODER is None:
        return json.dumps(value)
    return "".join(_ENCODER(value, 0))


def json_column(value: Any, mode: PromptTextMode) -> str | None:
    """A decoded JSON object the telemetry carried (request metadata, custom attributes) as
    its JSON column stores it in this prompt-text mode (NULL under ``hash``)."""
    return None if mode == "hash" else json_text(json_for_warehouse(value, mode))


def custom_fields(
    custom: dict[str, Any], mode: PromptTextMode = "scrub"
) -> tuple[str | None, float | None, Any, float | None]:
    """custom_attributes as (JSON as stored, selection_propensity, logging_policy,
    quality_score); the numbers are read before the mode applies."""
    return (
        json_column(custom, mode),
        unit_value(custom.get("selection_propensity"), "selection_propensity", zero=False),
        custom.get("logging_policy"),
        unit_value(custom.get("quality_score"), "quality_score"),
    )


def decision_values(
    decision: Any,
    location: str,
    batch_id: str,
    trace_id: str | None,
    metadata_json: Callable[[Any], str | None] | None = None,
    custom: Callable[[Any], tuple[str | None, float | None, Any, float | None]] | None = None,
    memo: TextMemo | None = None,
) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
    """A validated decision as a row (``DECISION_COLUMNS``) and candidate rows
    (``CANDIDATE_COLUMNS``); ``trace_id``: its :func:`decision_trace`. The free text the
    gateway passed on (user and team id, request metadata, custom attributes, error message,
    fallback reason) is stored as ``memo``'s prompt-text mode says (default: scrub).

    ``decision`` is a :class:`RouterDecision` or anything with the same attributes (the fast
    OTLP path passes its own typed structs, and memoised ``metadata_json``/``custom``
    serialisers for the same mode), so both paths build rows the same way.
    """
    memo = memo or TextMemo("scrub")
    mode = memo.prompt_mode
    if metadata_json is None:
        metadata_json = functools.partial(json_column, mode=mode)
    if custom is None:
        custom = functools.partial(custom_fields, mode=mode)
    custom_json, propensity, policy, quality = custom(decision.custom_attributes)
    exp = decision.experiment
    inp = decision.input
    timings = decision.timings
    outcome = decision.outcome
    fallback = decision.fallback
    event_id = decision.event_id
    selected = decision.selected_deployment
    candidates = decision.candidate_deployments
    row = (
        event_id,
        batch_id,
        location,
        decision.contract_version,
        decision.contract_name,
        trace_id,
        decision.span_id,
        decision.parent_span_id,
        _parse_ts(decision.timestamp_utc, decision.timestamp_unix_ms),
        decision.timestamp_unix_ms,
        inp.requested_model,
        inp.query_length,
        id_for_warehouse(inp.user_id, mode),
        id_for_warehouse(inp.team_id, mode),
        inp.api_type,
        metadata_json(inp.request_metadata),
        decision.strategy_name,
        decision.strategy_version,
        selected,
        decision.selection_reason,
        exp.experiment_id if exp else None,
        exp.variant if exp else None,
        exp.strategy_name if exp else None,
        exp.strategy_version if exp else None,
        exp.weight if exp else None,
        exp.total_weight if exp else None,
        exp.hash_bucket if exp else None,
        exp.hash_key_type if exp else None,
        timings.total_ms,
        timings.strategy_ms,
        timings.embedding_ms,
        timings.candidate_filter_ms,
        outcome.status,
        memo.stored(outcome.error_message),
        outcome.error_type,
        outcome.input_tokens,
        outcome.output_tokens,
        outcome.total_tokens,
        outcome.api_type,
        fallback.fallback_triggered,
        fallback.original_model,
        memo.stored(fallback.fallback_reason),
        fallback.fallback_attempt,
        len(candidates),
        propensity,
        policy,
        quality,
        custom_json,
    )
    cands = [
        (
            event_id,
            batch_id,
            pos,
            cand.model_name,
            cand.provider,
            cand.score,
            cand.available,
            cand.model_name == selected,
        )
        for pos, cand in enumerate(candidates)
    ]
    return row, cands


def decision_trace(decision_trace_id: str | None, span_trace: str | None) -> str | None:
    """The trace a decision belongs to: its span's, when it came in a span (a payload trace_id,
    when given, must be that one); else its payload's (:func:`canonical_id`), or None: a
    decision without trace context, keyed by its event_id and counted as unpaired."""
    given = canonical_id(decision_trace_id)
    if span_trace:
        if given is not None and given != span_trace:
            raise ContractError(
                f"payload trace_id {decision_trace_id!r} differs from its span's {span_trace!r}"
            )
        return span_trace
    return given


def decision_rows(
    record: TelemetryRecord, batch_id: str, memo: TextMemo | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One decision row and its candidate rows; raises ContractError for a bad payload."""
    decision = parse_decision_payload(record.data["payload"])
    trace_id = decision_trace(decision.trace_id, record.data.get("trace_id"))
    try:
        row, cands = decision_values(decision, record.location, batch_id, trace_id, memo=memo)
    except ValueError as exc:  # a custom attribute out of its range
        raise ContractError(f"custom_attributes.{exc}") from None
    return (
        dict(zip(DECISION_COLUMNS, row, strict=True)),
        [dict(zip(CANDIDATE_COLUMNS, c, strict=True)) for c in cands],
    )


class TextMemo:
    """What each distinct text becomes in the warehouse, and its hash, worked out once per batch
    (prompts and completions repeat: templates, benchmarks, retries)."""

    def __init__(self, prompt_mode: PromptTextMode) -> None:
        self.prompt_mode = prompt_mode
        self._stored: dict[str, str | None] = {}
        self._sha: dict[str, str] = {}

    def stored(self, text: str | None) -> str | None:
        if text is None:
            return None
        found = self._stored.get(text, _MISSING)
        if found is _MISSING:
            found = self._stored[text] = prompt_for_warehouse(text, self.prompt_mode)
        return found  # type: ignore[return-value]

    def sha256(self, text: str) -> str:
        found = self._sha.get(text)
        if found is None:
            found = self._sha[text] = text_sha256(text)
        return found


_MISSING = object()


def llm_call_values(
    data: dict[str, Any],
    location: str,
    batch_id: str,
    prompt_mode: PromptTextMode = "scrub",
    memo: TextMemo | None = None,
) -> tuple[Any, ...]:
    """An ``llm_call`` record's data as a row (``LLM_CALL_COLUMNS``)."""
    memo = memo or TextMemo(prompt_mode)
    attrs = data["attributes"]
    prompt = first_value(attrs, "gen_ai.prompt", "gen_ai.prompt.0.content")
    input_tokens, output_tokens, total = token_counts(attrs)
    prompt_text = _as_text(prompt)
    completion = first_value(attrs, "gen_ai.completion", "gen_ai.completion.0.content")
    return (
        data["trace_id"],
        data["span_id"],
        batch_id,
        location,
        data.get("parent_span_id"),
        data.get("name"),
        memo.stored(prompt_text),
        memo.sha256(prompt_text) if prompt_text is not None else None,
        attrs.get("gen_ai.request.model"),
        first_value(attrs, "gen_ai.response.model", "gen_ai.request.model"),
        memo.stored(_as_text(completion)),
        input_tokens,
        output_tokens,
        total,
        data.get("duration_ms"),
        (data.get("start_unix_nano") or 0) // 1_000_000 or None,
        status_text(data.get("status_code")),
        attrs.get("litellm.task"),
        quality_value(attrs),
        memo.stored(_as_text(attrs.get("routeiq.ground_truth"))),
    )


def llm_call_row(
    record: TelemetryRecord, batch_id: str, prompt_mode: PromptTextMode = "scrub"
) -> dict[str, Any]:
    values = llm_call_values(record.data, record.location, batch_id, prompt_mode)
    return dict(zip(LLM_CALL_COLUMNS, values, strict=True))


def unicode_problem(rec: TelemetryRecord) -> str | None:
    """Why a record cannot be stored as text (an unpaired surrogate escape in a value, a key or
    its location), or None."""
    problem = unpaired_surrogate({"location": rec.location, "data": rec.data})
    return None if problem is None else f"record is not valid Unicode: {problem}"


def quarantine_text(
    rec: TelemetryRecord, reason: str, mode: PromptTextMode = "scrub"
) -> tuple[str, str, str | None]:
    """A quarantined record's location, reason and excerpt as stored: escaped where they hold
    what UTF-8 cannot encode, and in the prompt-text mode (a reason may quote the input, a
    Jaeger error message; under ``hash`` the excerpt is NULL and the location says where in
    the raw zone the record is)."""
    excerpt = shown_text(rec.raw) if rec.raw is not None else _excerpt_of(rec)
    return (
        shown_text(rec.location),
        reason_for_warehouse(shown_text(reason), mode),
        excerpt_for_warehouse(excerpt, mode),
    )


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
    memo = TextMemo(prompt_mode)

    def quarantine(rec: TelemetryRecord, reason: str) -> None:
        location, reason, excerpt = quarantine_text(rec, reason, prompt_mode)
        batch.quarantine.append(
            {
                "batch_id": batch_id,
                "source": source,
                "location": location,
                "reason": reason,
                "raw_excerpt": excerpt,
                "quarantined_at": now,
            }
        )

    for rec in records:
        batch.records_in += 1
        if rec.kind == "bad":
            quarantine(rec, rec.reason or "unreadable record")
        elif problem := unicode_problem(rec):
            quarantine(rec, problem)
        elif rec.kind == "decision":
            try:
                row, cands = decision_rows(rec, batch_id, memo)
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
            try:
                row = llm_call_row(rec, batch_id, prompt_mode)
            except ValueError as exc:  # a value out of its range
                quarantine(rec, f"span has a value out of range: {exc}")
                continue
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
