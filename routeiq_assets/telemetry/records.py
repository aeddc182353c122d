"""The record every telemetry reader yields, whatever the source format.

Readers turn their source into a stream of :class:`TelemetryRecord`; normalisation
(:mod:`routeiq_assets.warehouse.normalize`) turns records into table rows. Three kinds:

``decision``
    ``data = {"payload": <JSON str or dict of routeiq.router_decision.v1>,
    "trace_id": <lowercase hex or None>, "span_id": <lowercase hex or None>,
    "span_attributes": {...flat span attributes, may be empty}}``.
    When ``trace_id`` is given it must equal the payload's trace_id.
``llm_call``
    ``data = {"trace_id": str, "span_id": str, "name": str | None,
    "parent_span_id": str | None, "start_unix_nano": int, "duration_ms": float,
    "status_code": 0 unset | 1 ok | 2 error, "attributes": {...}}`` where attributes use the
    gen_ai names: ``gen_ai.prompt``, ``gen_ai.request.model``, ``gen_ai.response.model``,
    ``gen_ai.completion``, ``gen_ai.usage.input_tokens`` (or ``prompt_tokens``),
    ``gen_ai.usage.output_tokens`` (or ``completion_tokens``), ``gen_ai.usage.total_tokens``,
    ``litellm.task``; sources that carry an outcome score (the seed's legacy traces.jsonl
    ``performance``) put it in ``routeiq.quality_score`` and a reference answer in
    ``routeiq.ground_truth``.
``bad``
    a record that cannot be read: ``reason`` says why, ``raw`` holds a bounded excerpt.

``location`` always names where the record came from: ``file:line`` (plus `` span <id>``),
or ``jaeger trace <id> span <id>`` for API pulls.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from routeiq_assets.contract.nesting import bounded

EXCERPT_CHARS = 2000
# The UTF-8 byte-order mark some Windows tools write first: json.loads refuses it; every reader
# drops it from a file's first line.
BOM = b"\xef\xbb\xbf"


@dataclass
class TelemetryRecord:
    kind: str  # "decision" | "llm_call" | "bad"
    location: str
    data: dict[str, Any] = field(default_factory=dict)
    reason: str | None = None
    raw: str | None = None


def excerpt(text: str) -> str:
    """A bounded excerpt of a bad record, for the quarantine table."""
    return text if len(text) <= EXCERPT_CHARS else text[:EXCERPT_CHARS] + "...[truncated]"


def bad_record(location: str, reason: str, text: str) -> TelemetryRecord:
    """A record for the quarantine: where, why, and a bounded excerpt of ``text``."""
    return TelemetryRecord("bad", location, reason=reason, raw=excerpt(text))


def parse_json_bytes(
    raw: bytes, location: str, unit: str, excerpt_of: bytes | None = None
) -> tuple[Any, str, TelemetryRecord | None]:
    """``(document, text, None)`` when ``raw`` is UTF-8 JSON, else ``(None, text, bad record)``
    whose reason says the ``unit`` ("line", "file") is not UTF-8 or not JSON; its excerpt is of
    ``excerpt_of`` (default ``raw``), decoded leniently."""
    shown = raw if excerpt_of is None else excerpt_of
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        reason = f"{unit} is not UTF-8: {exc}"
        return None, "", bad_record(location, reason, shown.decode("utf-8", "replace"))
    try:
        return bounded(json.loads, text), text, None
    except (ValueError, RecursionError) as exc:  # also: over 4,300 digits, too deeply nested
        reason = f"{unit} is not JSON: {exc}"
        return None, text, bad_record(location, reason, shown.decode("utf-8", "replace"))


def first_value(attrs: dict[str, Any], *keys: str) -> Any:
    """The value of the first key present (not None) in ``attrs``."""
    for key in keys:
        if attrs.get(key) is not None:
            return attrs[key]
    return None


# The widest integer a warehouse column holds (BIGINT); a count beyond it is no count.
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def as_int(value: Any) -> int | None:
    """``int(value)``, or None when it is not an integer a BIGINT column can hold."""
    try:
        number = None if value is None else int(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(float("inf"))
        return None
    return number if number is None or _INT64_MIN <= number <= _INT64_MAX else None


def as_float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError, OverflowError):  # OverflowError: an int beyond any float
        return None


def count_value(value: Any, key: str) -> int | None:
    """A token count: a whole number from 0 to what a BIGINT column holds (an integral float
    or a numeric string too); anything else raises ValueError naming ``key`` and the value."""
    number: int | None = None
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        try:
            number = int(value)
        except ValueError:
            number = None
    if number is None or not 0 <= number <= _INT64_MAX:
        raise ValueError(
            f"{key} is {value!r}: a token count is a whole number from 0 to {_INT64_MAX}"
        )
    return number


def unit_value(value: Any, key: str, *, zero: bool = True) -> float | None:
    """A score or a probability: a finite number in [0, 1] (``zero=False``: in (0, 1]); anything
    else raises ValueError naming ``key`` and the value."""
    if value is None:
        return None
    number = None if isinstance(value, bool) else as_float(value)
    if number is None or not (0.0 <= number <= 1.0) or (number == 0.0 and not zero):
        raise ValueError(
            f"{key} is {value!r}: expected a finite number in {'[0' if zero else '(0'}, 1]"
        )
    return number


def token_counts(attrs: dict[str, Any]) -> tuple[int | None, int | None, int | None]:
    """(input, output, total) tokens of a gen_ai span under either naming; the total is summed
    when only the parts are given. A count out of range raises ValueError (its record is
    quarantined with the reason), never a silent NULL."""
    input_key = "gen_ai.usage.input_tokens"
    if attrs.get(input_key) is None:
        input_key = "gen_ai.usage.prompt_tokens"
    output_key = "gen_ai.usage.output_tokens"
    if attrs.get(output_key) is None:
        output_key = "gen_ai.usage.completion_tokens"
    input_tokens = count_value(attrs.get(input_key), input_key)
    output_tokens = count_value(attrs.get(output_key), output_key)
    total = count_value(attrs.get("gen_ai.usage.total_tokens"), "gen_ai.usage.total_tokens")
    if total is None and input_tokens is not None and output_tokens is not None:
        total = count_value(input_tokens + output_tokens, "the sum of the token counts")
    return input_tokens, output_tokens, total


QUALITY_KEY = "routeiq.quality_score"


def quality_value(attrs: dict[str, Any]) -> float | None:
    """A call's outcome score, when it carries one: in [0, 1] (else ValueError)."""
    return unit_value(attrs.get(QUALITY_KEY), QUALITY_KEY)
