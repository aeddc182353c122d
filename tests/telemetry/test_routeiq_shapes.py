"""What RouteIQ's own code writes, ingested as it comes (baladithyab/RouteIQ).

The fixtures reproduce the output shapes of its code, read from its source:

- ``RouterDecisionEvent.to_json()`` (src/litellm_llmrouter/telemetry_contracts.py): every field
  of the dataclasses through ``asdict``; ``trace_id``/``span_id`` null unless the builder's
  ``with_trace_context`` was given an active span's ids (``format(trace_id, "032x")``);
  ``experiment`` an object of nulls when no experiment ran; ``query_length`` 0 and
  ``fallback_attempt`` 0 by default; no propensity anywhere.
- the decision JSONL a gateway writes: one such JSON a line.
- ``examples/mlops/scripts/generate_synthetic_traces.py``: legacy trace lines with ids
  ``trace_000001``/``span_000001``, ``ground_truth`` "" and a unix-microsecond timestamp.
- OTLP: the event on a span, exported by the OpenTelemetry SDK and encoded as OTLP/JSON the way
  protobuf's JSON mapping writes it (ids in base64).
"""

import json
import uuid

from google.protobuf import json_format
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from routeiq_assets.telemetry.raw_store import land_file
from routeiq_assets.warehouse.ingest import ingest_pending, register_raw_file
from routeiq_assets.warehouse.store import connect, decision_call_join_counts

MODELS = ("gpt-4o-mini", "claude-3-5-sonnet", "llama-3-70b")


def routeiq_decision(i, trace_id=None, span_id=None, selected=None):
    """A RouterDecisionEvent as its to_json() writes it."""
    selected = selected or MODELS[i % len(MODELS)]
    return {
        "contract_version": "v1",
        "contract_name": "routeiq.router_decision.v1",
        "event_id": str(uuid.UUID(int=i + 1)),
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": None,
        "timestamp_utc": "2026-12-01T10:00:00.000Z",
        "timestamp_unix_ms": 1_796_119_200_000 + i,
        "input": {
            "requested_model": None,
            "query_length": 40 + i,
            "user_id": None,
            "team_id": None,
            "api_type": "chat_completion",
            "request_metadata": {},
        },
        "strategy_name": "llmrouter-knn",
        "strategy_version": None,
        "candidate_deployments": [
            {"model_name": m, "provider": None, "score": None, "available": True} for m in MODELS
        ],
        "selected_deployment": selected,
        "selection_reason": "active_strategy",
        "experiment": {
            "experiment_id": None,
            "variant": None,
            "strategy_name": None,
            "strategy_version": None,
            "weight": None,
            "total_weight": None,
            "hash_bucket": None,
            "hash_key_type": None,
        },
        "timings": {
            "total_ms": 1.5,
            "strategy_ms": None,
            "embedding_ms": None,
            "candidate_filter_ms": None,
        },
        "outcome": {
            "status": "success",
            "error_message": None,
            "error_type": None,
            "input_tokens": None,
            "output_tokens": None,
            "total_tokens": None,
            "api_type": None,
        },
        "fallback": {
            "fallback_triggered": False,
            "original_model": None,
            "fallback_reason": None,
            "fallback_attempt": 0,
        },
        "custom_attributes": {},
    }


def generator_trace_line(i):
    """A line of generate_synthetic_traces.py's traces.jsonl."""
    return {
        "query": f"What is {i} squared?",
        "model_name": MODELS[i % len(MODELS)],
        "response": f"[Simulated response to: What is {i} squared?...]",
        "response_time": 0.8,
        "token_num": 30,
        "input_tokens": 10,
        "output_tokens": 20,
        "task_name": "production",
        "trace_id": f"trace_{i:06d}",
        "span_id": f"span_{i:06d}",
        "timestamp": 1_796_119_200_000_000 - i * 60_000_000,
        "performance": 0.75,
        "ground_truth": "",
    }


def test_a_decision_jsonl_written_by_routeiqs_builder_is_ingested(tmp_path):
    """40 decisions without trace context, one of them twice, and 7 lines that are not
    decisions: nothing valid is quarantined, and the duplicate is seen."""
    lines = [routeiq_decision(i) for i in range(40)]
    lines.insert(17, routeiq_decision(5))
    bad = [{**routeiq_decision(100 + k), "contract_version": "v9"} for k in range(7)]
    path = tmp_path / "in" / "routing_decisions.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(d) + "\n" for d in lines + bad))
    with connect(tmp_path / "w.duckdb") as con:
        register_raw_file(con, land_file(path, tmp_path / "raw"))
        [(_, counts)] = ingest_pending(con)
        assert counts.records_in == 48 and counts.balanced
        assert (counts.decisions, counts.duplicates, counts.quarantined) == (40, 1, 7)
        traces = con.execute("SELECT count(*) FROM router_decisions WHERE trace_id IS NULL")
        assert traces.fetchall() == [(40,)]
        # without a trace a decision pairs with no call
        assert decision_call_join_counts(con)["decisions_without_call"] == 40


def test_the_generators_traces_with_non_hex_ids_are_ingested(tmp_path):
    path = tmp_path / "in" / "traces.jsonl"
    path.parent.mkdir()
    path.write_text("".join(json.dumps(generator_trace_line(i)) + "\n" for i in range(60)))
    copy = tmp_path / "in" / "traces-again.jsonl"  # the same export under another name
    copy.write_text(path.read_text() + "\n")
    with connect(tmp_path / "w.duckdb") as con:
        for f in (path, copy):
            register_raw_file(con, land_file(f, tmp_path / "raw"))
        (_, first), (_, again) = ingest_pending(con)
        assert (first.llm_calls, first.quarantined) == (60, 0)
        assert (again.llm_calls, again.duplicates, again.quarantined) == (0, 60, 0)
        ids = con.execute("SELECT trace_id, span_id FROM llm_calls ORDER BY trace_id LIMIT 1")
        assert ids.fetchall() == [("trace_000000", "span_000000")]


def _otlp_json(tmp_path, with_context):
    """Decision events on spans exported by the OpenTelemetry SDK, as one OTLP/JSON line (a
    decision's payload carries its span's ids when ``with_context``, else nulls) and the ids."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("litellm_llmrouter")
    for i in range(12):
        with tracer.start_as_current_span("litellm.router.route") as span:
            ctx = span.get_span_context()
            trace = format(ctx.trace_id, "032x") if with_context else None
            span_id = format(ctx.span_id, "016x") if with_context else None
            payload = json.dumps(routeiq_decision(i, trace, span_id))
            span.add_event(
                "routeiq.router_decision.v1", {"routeiq.router_decision.payload": payload}
            )
            span.set_attribute("router.strategy", "llmrouter-knn")
    request = encode_spans(exporter.get_finished_spans())
    path = tmp_path / f"otlp-{with_context}.json"
    path.write_text(json_format.MessageToJson(request, indent=None) + "\n")
    return path, {format(s.context.trace_id, "032x") for s in exporter.get_finished_spans()}


def test_otlp_from_routeiqs_contract_through_the_sdk_is_ingested(tmp_path):
    for with_context in (True, False):
        path, traces = _otlp_json(tmp_path, with_context)
        with connect(tmp_path / f"{with_context}.duckdb") as con:
            register_raw_file(con, land_file(path, tmp_path / "raw"))
            [(_, counts)] = ingest_pending(con)
            assert (counts.decisions, counts.quarantined) == (12, 0) and counts.balanced
            # a payload without trace context belongs to the trace of the span it came in
            stored = con.execute("SELECT trace_id FROM router_decisions").fetchall()
            assert {t for (t,) in stored} == traces
