"""The seed's conversion: telemetry to LLMRouter's training format.

Writes ``routing_train.jsonl`` and ``routing_test.jsonl`` (task_name, query, ground_truth, metric,
model_name, response, performance, embedding_id, token_num; routing metadata when asked),
``query_embeddings.pt`` (a float tensor indexed by embedding_id: real embeddings),
``llm_data.json`` (``{name: {size, feature, input_price, output_price, model, service}}``) and
``conversion_metadata.json``. The test split is by hash of the normalised query, so a query and
its near-duplicates are on one side.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from routeiq_assets.telemetry.jsonl import read_legacy_traces_jsonl
from routeiq_assets.training.embeddings import Encoder
from routeiq_assets.training.labels import ModelPrice
from routeiq_assets.training.splits import split_for

METRIC = "quality"
ROW_KEYS = (
    "task_name",
    "query",
    "ground_truth",
    "metric",
    "model_name",
    "response",
    "performance",
    "embedding_id",
    "token_num",
)


def rows_from_legacy_traces(path: Path) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Rows from the seed's traces.jsonl; its ``performance`` is the quality when present."""
    rows, skipped = [], {"bad_lines": 0, "without_performance": 0}
    for rec in read_legacy_traces_jsonl(path):
        if rec.kind != "llm_call":
            skipped["bad_lines"] += 1
            continue
        a = rec.data["attributes"]
        if a.get("routeiq.quality_score") is None:
            skipped["without_performance"] += 1
            continue
        rows.append(
            {
                "task_name": a.get("litellm.task") or "unknown",
                "query": a["gen_ai.prompt"],
                "ground_truth": a.get("routeiq.ground_truth"),
                "model_name": a["gen_ai.request.model"],
                "response": a.get("gen_ai.completion"),
                "performance": a["routeiq.quality_score"],
                "token_num": a.get("gen_ai.usage.total_tokens"),
                "routing": {
                    "trace_id": rec.data["trace_id"],
                    "latency_ms": rec.data["duration_ms"],
                    "label_source": "legacy_performance",
                },
            }
        )
    return rows, skipped


def rows_from_warehouse(con: duckdb.DuckDBPyConnection) -> tuple[list[dict[str, Any]], dict]:
    """Rows from ``routing_examples`` (logged and full-information), with the LLM response."""
    result = con.execute("""
        SELECT e.task, e.query_text, c.ground_truth, e.model_name, c.completion, e.quality,
               coalesce(c.total_tokens, d.total_tokens), e.trace_id, e.event_id, e.outcome_status,
               e.propensity, e.cost_usd, e.latency_ms, e.label_source, e.is_logged
        FROM routing_examples e
        LEFT JOIN router_decisions d USING (event_id)
        LEFT JOIN (SELECT trace_id, any_value(ground_truth) AS ground_truth,
                          any_value(completion) AS completion, sum(total_tokens) AS total_tokens
                   FROM llm_calls GROUP BY trace_id) c ON c.trace_id = e.trace_id
        ORDER BY e.event_id
    """).fetchall()
    rows = [
        {
            "task_name": r[0] or "unknown",
            "query": r[1],
            "ground_truth": r[2],
            "model_name": r[3],
            "response": r[4],
            "performance": r[5],
            "token_num": r[6],
            "routing": {
                "trace_id": r[7],
                "event_id": r[8],
                "outcome_status": r[9],
                "propensity": r[10],
                "cost_usd": r[11],
                "latency_ms": r[12],
                "label_source": r[13],
                "is_logged": r[14],
            },
        }
        for r in result
    ]
    return rows, {}


def llm_data(models: Iterable[str], prices: dict[str, ModelPrice]) -> dict[str, dict[str, Any]]:
    out = {}
    for name in sorted(set(models)):
        p = prices.get(name)
        out[name] = {
            "size": p.size if p else None,
            "feature": p.feature if p else None,
            "input_price": p.input_price if p else None,
            "output_price": p.output_price if p else None,
            "model": (p.model if p and p.model else name),
            "service": p.service if p else None,
        }
    return out


def write_llmrouter_export(
    rows: list[dict[str, Any]],
    out_dir: Path,
    encoder: Encoder,
    embedding_model: str,
    prices: dict[str, ModelPrice],
    test_split: float = 0.2,
    include_routing_metadata: bool = False,
    source: str = "",
    skipped: dict[str, int] | None = None,
) -> dict[str, Any]:
    """Write the LLMRouter files for ``rows``; return the conversion metadata."""
    import torch

    if not rows:
        raise ValueError(f"{source}: no labelled rows to convert")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids: dict[str, int] = {}
    for row in rows:
        ids.setdefault(row["query"], len(ids))
    texts = list(ids)
    embeddings = torch.from_numpy(encoder(texts)).float()
    splits = {"train": 0, "test": 0}
    with (
        (out_dir / "routing_train.jsonl").open("w") as train,
        (out_dir / "routing_test.jsonl").open("w") as test,
    ):
        for row in rows:
            record = {
                **{k: row.get(k) for k in ROW_KEYS},
                "metric": METRIC,
                "embedding_id": ids[row["query"]],
            }
            if include_routing_metadata:
                record["routing_metadata"] = row.get("routing", {})
            side = "test" if split_for(row["query"], 0.0, test_split) == "test" else "train"
            splits[side] += 1
            (test if side == "test" else train).write(json.dumps(record) + "\n")
    torch.save(embeddings, out_dir / "query_embeddings.pt")
    models = {row["model_name"] for row in rows}
    (out_dir / "llm_data.json").write_text(json.dumps(llm_data(models, prices), indent=2))
    metadata = {
        "source": source,
        "created_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        "rows": len(rows),
        "rows_per_split": splits,
        "unique_queries": len(texts),
        "test_split": test_split,
        "embedding_model": embedding_model,
        "embedding_dim": int(embeddings.shape[1]),
        "models": sorted(models),
        "include_routing_metadata": include_routing_metadata,
        "skipped": skipped or {},
    }
    (out_dir / "conversion_metadata.json").write_text(json.dumps(metadata, indent=2))
    return metadata
