"""A telemetry simulator: what a RouteIQ gateway emits, as OTLP JSON files.

Per request one trace: an ``llm.routing.decision`` span carrying the
``routeiq.router_decision.v1`` event, and a child ``gen_ai`` LLM-call span with the prompt, the
model, token counts and duration. The gateway's policy is epsilon-greedy over an incumbent router.

By default the output is what a RouteIQ gateway sends (:func:`write_gateway_files`): no
propensity anywhere (its builder has no field for one and leaves ``custom_attributes`` empty),
about one decision in fifty written to a decision JSONL without trace context (OpenTelemetry off
on that worker), about one in fifty in the legacy ``traces.jsonl`` shape of RouteIQ's
synthetic-trace generator (ids ``trace_000001``, a ``performance`` score). With
``log_propensities`` the logging policy, each choice's probability, the incumbent and the
outcome score are recorded in the payload's custom attributes instead, as an exploring gateway
that logs its propensities would. Two worlds:

* the built-in generator (:mod:`routeiq_assets.telemetry.catalog`): outcomes drawn from each
  model's per-domain skill;
* a full-information table (LLMRouter's ``train.json`` with ``llm_candidates.json``): the logged
  model's score for that question becomes the outcome.

Everything is deterministic for a seed, timestamps included.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from routeiq_assets.contract import DECISION_EVENT_NAME, PAYLOAD_ATTRIBUTE
from routeiq_assets.telemetry.catalog import (
    DEFAULT_CATALOG,
    DIFFICULTY,
    CatalogModel,
    Query,
    expected_output_tokens,
    generate_query,
)

SERVICE_NAME = "litellm-gateway"
EXPERIMENT_FIELDS = (
    "experiment_id",
    "variant",
    "strategy_name",
    "strategy_version",
    "weight",
    "total_weight",
    "hash_bucket",
    "hash_key_type",
)
SIDE_CHANNEL_EVERY = 50  # one request in this many goes to each JSONL side file
DEFAULT_START = datetime(2026, 11, 1, tzinfo=UTC)
CHARS_PER_TOKEN = 4
TABLE_OUTPUT_TOKENS = 256


@dataclass(frozen=True)
class SimulatedRequest:
    """One request as the gateway saw it, before it is written as spans."""

    query: str
    task: str
    candidates: tuple[CatalogModel, ...]
    available: tuple[bool, ...]
    selected: CatalogModel
    propensity: float | None  # the logging policy's choice probability, when it is logged
    incumbent: str
    quality: float  # the outcome's score in [0, 1]
    status: str
    input_tokens: int
    output_tokens: int
    duration_ms: float
    timestamp: datetime
    trace_id: str
    decision_span_id: str
    llm_span_id: str
    event_id: str
    difficulty: str | None = None


class EpsilonGreedyPolicy:
    """Logging policy: the incumbent's pick with probability 1 - eps, else uniform."""

    def __init__(self, epsilon: float) -> None:
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.epsilon = epsilon

    def choose(
        self, rng: random.Random, incumbent: int, available: Sequence[bool]
    ) -> tuple[int, float]:
        """Return (chosen index, probability of that choice)."""
        open_idx = [i for i, ok in enumerate(available) if ok]
        if incumbent not in open_idx:
            incumbent = open_idx[0]
        uniform = self.epsilon / len(open_idx)
        choice = rng.choice(open_idx) if rng.random() < self.epsilon else incumbent
        return choice, uniform + (1.0 - self.epsilon if choice == incumbent else 0.0)


def _incumbent_for_text(text: str, names: Sequence[str]) -> str:
    """The gateway's current rule-based router: keywords to a model."""
    lowered = text.lower()
    if any(w in lowered for w in ("python", "code", "function", "bug", "refactor", "rust")):
        wanted = "deepseek-coder"
    elif any(w in lowered for w in ("prove", "solve", "derivative", "integral", "reasoning")):
        wanted = "gpt-4o"
    else:
        wanted = "gpt-4o-mini"
    return wanted if wanted in names else names[0]


def _ids(rng: random.Random) -> tuple[str, str, str, str]:
    trace_id = f"{rng.getrandbits(128):032x}"
    return (
        trace_id,
        f"{rng.getrandbits(64):016x}",
        f"{rng.getrandbits(64):016x}",
        str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    )


def _availability(rng: random.Random, n: int) -> tuple[bool, ...]:
    available = [rng.random() > 0.05 for _ in range(n)]
    if not any(available):
        available[rng.randrange(n)] = True
    return tuple(available)


def simulate_requests(
    n: int,
    seed: int,
    catalog: Sequence[CatalogModel] = DEFAULT_CATALOG,
    epsilon: float = 0.2,
    start: datetime = DEFAULT_START,
    log_propensities: bool = False,
) -> Iterator[SimulatedRequest]:
    """Requests from the built-in query generator, outcomes drawn from model skill. The policy
    explores either way; ``log_propensities`` says whether its probabilities are recorded."""
    rng = random.Random(seed)
    policy = EpsilonGreedyPolicy(epsilon)
    names = [m.name for m in catalog]
    for i in range(n):
        query = generate_query(rng)
        available = _availability(rng, len(catalog))
        incumbent = _incumbent_for_text(query.text, names)
        idx, propensity = policy.choose(rng, names.index(incumbent), available)
        model = catalog[idx]
        logged = propensity if log_propensities else None
        yield _request_from_outcome(
            rng, query, catalog, available, model, logged, incumbent, start, i
        )


def with_distinct_prompts(requests: Iterable[SimulatedRequest]) -> Iterator[SimulatedRequest]:
    """Each request's prompt made its own (" (request N)" appended): a gateway's prompts are
    mostly distinct, while the query generator repeats a few thousand; per-text work (scrubbing,
    hashing) is then done for every call, as in production."""
    for i, request in enumerate(requests):
        yield replace(request, query=f"{request.query} (request {i})")


def _request_from_outcome(
    rng: random.Random,
    query: Query,
    catalog: Sequence[CatalogModel],
    available: tuple[bool, ...],
    model: CatalogModel,
    propensity: float | None,
    incumbent: str,
    start: datetime,
    i: int,
) -> SimulatedRequest:
    logit = model.skill.get(query.domain, 0.0) - DIFFICULTY[query.difficulty]
    good = rng.random() < 1.0 / (1.0 + math.exp(-logit))
    infra = rng.random()
    status = (
        "timeout"
        if infra < 0.01
        else "error"
        if infra < 0.02
        else ("success" if good else "failure")
    )
    output_tokens = expected_output_tokens(query.domain, rng) if status != "timeout" else 0
    return _make_request(
        rng,
        query.text,
        query.domain,
        catalog,
        available,
        model,
        propensity,
        incumbent,
        quality=1.0 if status == "success" else 0.0,
        status=status,
        output_tokens=output_tokens,
        timestamp=start + timedelta(seconds=i * 3 + rng.random()),
        difficulty=query.difficulty,
    )


def _make_request(
    rng: random.Random,
    text: str,
    task: str,
    catalog: Sequence[CatalogModel],
    available: tuple[bool, ...],
    model: CatalogModel,
    propensity: float | None,
    incumbent: str,
    *,
    quality: float,
    status: str,
    output_tokens: int,
    timestamp: datetime,
    difficulty: str | None = None,
) -> SimulatedRequest:
    trace_id, decision_span, llm_span, event_id = _ids(rng)
    duration = model.base_latency_ms + model.ms_per_output_token * output_tokens
    duration *= rng.uniform(0.8, 1.3)
    return SimulatedRequest(
        query=text,
        task=task,
        candidates=tuple(catalog),
        available=available,
        selected=model,
        propensity=propensity,
        incumbent=incumbent,
        quality=quality,
        status=status,
        input_tokens=max(1, len(text) // CHARS_PER_TOKEN),
        output_tokens=output_tokens,
        duration_ms=round(duration, 3),
        timestamp=timestamp,
        trace_id=trace_id,
        decision_span_id=decision_span,
        llm_span_id=llm_span,
        event_id=event_id,
        difficulty=difficulty,
    )


def load_table(table_path: Path, prices_path: Path) -> tuple[list[dict], list[CatalogModel]]:
    """Read a full-information table and its price list; only scored models become candidates."""
    records = json.loads(Path(table_path).read_text())
    if not isinstance(records, list) or not records:
        raise ValueError(f"{table_path}: expected a non-empty JSON list of question records")
    prices = json.loads(Path(prices_path).read_text())
    scored = sorted({name for rec in records for name in rec.get("scores", {})})
    missing = [name for name in scored if name not in prices]
    if missing:
        raise ValueError(f"{prices_path}: no price for scored models {missing}")
    catalog = [
        CatalogModel(
            name=name,
            provider=str(prices[name].get("service", "unknown")),
            input_price=float(prices[name].get("input_price", 0.0)),
            output_price=float(prices[name].get("output_price", 0.0)),
            size=str(prices[name].get("size", "")),
            feature=str(prices[name].get("feature", "")),
            base_latency_ms=200.0,
            ms_per_output_token=6.0,
        )
        for name in scored
    ]
    return records, catalog


def replay_table(
    records: Sequence[dict],
    catalog: Sequence[CatalogModel],
    seed: int,
    epsilon: float = 0.2,
    start: datetime = DEFAULT_START,
    limit: int | None = None,
    log_propensities: bool = False,
) -> Iterator[SimulatedRequest]:
    """Replay a full-information table as telemetry: the logged model's score is the outcome.

    The incumbent sends short questions to the cheapest model and long ones to the most
    expensive; epsilon-greedy exploration around it gives every model some traffic.
    """
    rng = random.Random(seed)
    policy = EpsilonGreedyPolicy(epsilon)
    by_price = sorted(catalog, key=lambda m: (m.input_price + m.output_price, m.name))
    for i, record in enumerate(records[:limit] if limit else records):
        text, scores = record["question"], record["scores"]
        candidates = tuple(m for m in catalog if m.name in scores)
        available = (True,) * len(candidates)
        ranked = [m for m in by_price if m.name in scores]
        incumbent = (ranked[0] if len(text) < 200 else ranked[-1]).name
        names = [m.name for m in candidates]
        idx, propensity = policy.choose(rng, names.index(incumbent), available)
        model = candidates[idx]
        score = float(scores[model.name])
        yield _make_request(
            rng,
            text,
            str(record.get("task", "benchmark")),
            candidates,
            available,
            model,
            propensity if log_propensities else None,
            incumbent,
            quality=score,
            status="success" if score >= 0.5 else "failure",
            output_tokens=TABLE_OUTPUT_TOKENS,
            timestamp=start + timedelta(seconds=i * 3),
        )


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": str(value)}}


def _nanos(ts: datetime) -> int:
    return int(ts.timestamp() * 1_000_000) * 1000


def decision_payload(req: SimulatedRequest, *, trace_context: bool = True) -> dict[str, Any]:
    """The ``routeiq.router_decision.v1`` payload for one request, as RouteIQ's builder writes
    it (no propensity, empty custom attributes, an experiment of nulls) unless the request's
    propensity is logged. Without ``trace_context`` the ids are null, as the builder leaves them
    when no span is active."""
    fallback = req.status == "fallback"
    custom: dict[str, Any] = {}
    if req.propensity is not None:
        custom = {
            "logging_policy": "epsilon_greedy",
            "selection_propensity": round(req.propensity, 6),
            "incumbent_model": req.incumbent,
            "quality_score": req.quality,
        }
        if req.difficulty:
            custom["difficulty"] = req.difficulty
    routeiq = req.propensity is None
    return {
        "contract_version": "v1",
        "contract_name": DECISION_EVENT_NAME,
        "event_id": req.event_id,
        "trace_id": req.trace_id if trace_context else None,
        "span_id": req.decision_span_id if trace_context else None,
        "parent_span_id": None,
        "timestamp_utc": req.timestamp.isoformat().replace("+00:00", "Z"),
        "timestamp_unix_ms": int(req.timestamp.timestamp() * 1000),
        "input": {
            "requested_model": "auto",
            "query_length": len(req.query),
            "user_id": None,
            "team_id": None,
            "api_type": "chat_completion",
            "request_metadata": {"task": req.task},
        },
        "strategy_name": "llmrouter-simulated-incumbent",
        "strategy_version": "1",
        "candidate_deployments": [
            {
                "model_name": m.name,
                "provider": None if routeiq else m.provider,
                "score": None if routeiq else 1.0 if m.name == req.incumbent else 0.0,
                "available": ok,
            }
            for m, ok in zip(req.candidates, req.available, strict=True)
        ],
        "selected_deployment": req.selected.name,
        "selection_reason": (
            "strategy_prediction"
            if routeiq
            else "incumbent"
            if req.selected.name == req.incumbent
            else "exploration"
        ),
        **({"experiment": dict.fromkeys(EXPERIMENT_FIELDS)} if routeiq else {}),
        "timings": {
            "total_ms": 2.5,
            "strategy_ms": 1.8,
            "embedding_ms": 0.0,
            "candidate_filter_ms": 0.2,
        },
        "outcome": {
            "status": req.status,
            "error_message": "upstream timed out" if req.status == "timeout" else None,
            "error_type": "Timeout" if req.status == "timeout" else None,
            "input_tokens": req.input_tokens,
            "output_tokens": req.output_tokens,
            "total_tokens": req.input_tokens + req.output_tokens,
            "api_type": "chat_completion",
        },
        "fallback": {
            "fallback_triggered": fallback,
            "original_model": None,
            "fallback_reason": None,
            "fallback_attempt": None,
        },
        "custom_attributes": custom,
    }


def request_spans(req: SimulatedRequest) -> list[dict[str, Any]]:
    """The two OTLP spans of one request: the decision span and the LLM-call span."""
    start_ns = _nanos(req.timestamp)
    decision_end = start_ns + 2_500_000
    payload = decision_payload(req)
    decision = {
        "traceId": req.trace_id,
        "spanId": req.decision_span_id,
        "name": "llm.routing.decision",
        "kind": 1,
        "startTimeUnixNano": str(start_ns),
        "endTimeUnixNano": str(decision_end),
        "attributes": [
            _attr("router.strategy", payload["strategy_name"]),
            _attr("router.model_selected", req.selected.name),
            _attr("router.score", 1.0 if req.selected.name == req.incumbent else 0.0),
            _attr("router.candidates_evaluated", len(req.candidates)),
            _attr("router.decision_outcome", req.status),
            _attr("router.latency_ms", 2.5),
            _attr("router.strategy_version", "1"),
        ],
        "events": [
            {
                "timeUnixNano": str(decision_end),
                "name": DECISION_EVENT_NAME,
                "attributes": [_attr(PAYLOAD_ATTRIBUTE, json.dumps(payload))],
            }
        ],
        "status": {},
    }
    llm_start = decision_end
    llm_end = llm_start + int(req.duration_ms * 1_000_000)
    call_attrs = [
        _attr("gen_ai.system", req.selected.provider),
        _attr("gen_ai.request.model", req.selected.name),
        _attr("gen_ai.prompt", req.query),
        _attr("gen_ai.usage.input_tokens", req.input_tokens),
        _attr("gen_ai.usage.output_tokens", req.output_tokens),
        _attr("gen_ai.usage.total_tokens", req.input_tokens + req.output_tokens),
        _attr("litellm.task", req.task),
    ]
    if req.status not in ("timeout", "error"):
        call_attrs += [
            _attr("gen_ai.response.model", req.selected.name),
            _attr("gen_ai.completion", f"[simulated {req.task} answer by {req.selected.name}]"),
        ]
    llm_call = {
        "traceId": req.trace_id,
        "spanId": req.llm_span_id,
        "parentSpanId": req.decision_span_id,
        "name": f"chat {req.selected.name}",
        "kind": 3,
        "startTimeUnixNano": str(llm_start),
        "endTimeUnixNano": str(llm_end),
        "attributes": call_attrs,
        "events": [],
        "status": {"code": 2} if req.status in ("timeout", "error") else {"code": 1},
    }
    return [decision, llm_call]


def _export_request(spans: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceSpans": [
            {
                "resource": {"attributes": [_attr("service.name", SERVICE_NAME)]},
                "scopeSpans": [{"scope": {"name": "routeiq.gateway"}, "spans": spans}],
            }
        ]
    }


def write_otlp_files(
    requests: Iterator[SimulatedRequest],
    out_dir: Path,
    prefix: str,
    requests_per_file: int = 5000,
    requests_per_line: int = 100,
) -> list[Path]:
    """Write requests as OTLP JSON files in the collector file-exporter shape.

    Each line of a file is one ExportTraceServiceRequest; files are written to a temporary name
    and renamed, so a watcher never sees half a file.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    lines: list[str] = []
    batch: list[dict[str, Any]] = []
    count_in_file = 0

    def flush_line() -> None:
        if batch:
            lines.append(json.dumps(_export_request(batch), separators=(",", ":")))
            batch.clear()

    def flush_file() -> None:
        flush_line()
        if lines:
            path = out_dir / f"{prefix}-{len(written):05d}.otlp.json"
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text("\n".join(lines) + "\n")
            tmp.rename(path)
            written.append(path)
            lines.clear()

    for req in requests:
        batch.extend(request_spans(req))
        count_in_file += 1
        if count_in_file % requests_per_line == 0:
            flush_line()
        if count_in_file == requests_per_file:
            flush_file()
            count_in_file = 0
    flush_file()
    return written


def legacy_trace_line(req: SimulatedRequest, trace_id: str, span_id: str) -> dict[str, Any]:
    """One line of the legacy ``traces.jsonl`` that RouteIQ's synthetic-trace generator writes:
    one LLM call, ids that are not hex, a unix-microsecond timestamp, the outcome score as
    ``performance``."""
    return {
        "query": req.query,
        "model_name": req.selected.name,
        "response": f"[Simulated response to: {req.query[:50]}...]",
        "response_time": round(req.duration_ms / 1000, 3),
        "token_num": req.input_tokens + req.output_tokens,
        "input_tokens": req.input_tokens,
        "output_tokens": req.output_tokens,
        "task_name": req.task,
        "trace_id": trace_id,
        "span_id": span_id,
        "timestamp": int(req.timestamp.timestamp() * 1_000_000),
        "performance": req.quality,
        "ground_truth": "",
    }


def _write_lines(path: Path, documents: list[dict[str, Any]]) -> list[Path]:
    if not documents:
        return []
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("".join(json.dumps(d, separators=(",", ":")) + "\n" for d in documents))
    tmp.rename(path)
    return [path]


def write_gateway_files(
    requests: Iterable[SimulatedRequest],
    out_dir: Path,
    prefix: str,
    requests_per_file: int = 5000,
    side_every: int = SIDE_CHANNEL_EVERY,
) -> list[Path]:
    """Write requests the way a RouteIQ deployment delivers them: most as OTLP JSON files, one
    in ``side_every`` as a decision JSONL line without trace context (``{prefix}-decisions.jsonl``:
    a decision and no call), one in ``side_every`` as a legacy generator line
    (``{prefix}-traces.jsonl``: a call with a score and no decision)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    decisions: list[dict[str, Any]] = []
    legacy: list[dict[str, Any]] = []

    def spans() -> Iterator[SimulatedRequest]:
        for i, req in enumerate(requests):
            slot = i % side_every if side_every else -1
            if slot == side_every // 3:
                decisions.append(decision_payload(req, trace_context=False))
            elif slot == 2 * side_every // 3:
                legacy.append(legacy_trace_line(req, f"trace_{prefix}_{i:06d}", f"span_{i:06d}"))
            else:
                yield req

    written = write_otlp_files(spans(), out_dir, prefix, requests_per_file)
    written += _write_lines(out_dir / f"{prefix}-decisions.jsonl", decisions)
    return written + _write_lines(out_dir / f"{prefix}-traces.jsonl", legacy)
