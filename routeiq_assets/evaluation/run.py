"""Evaluate trained router folders on the held-out (test) split of logged telemetry."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import numpy as np

from routeiq_assets.evaluation.report import (
    LoggedExamples,
    evaluate_against_baselines,
    markdown_table,
)
from routeiq_assets.routers.base import load_router, read_router_meta
from routeiq_assets.training.embeddings import Encoder, embed_with_cache

TEST_EXAMPLES_SQL = """
SELECT e.query_text, e.model_name, e.quality, coalesce(e.cost_usd, 0), e.propensity
FROM routing_examples e
WHERE e.query_sha256 IN (SELECT query_sha256 FROM training_set WHERE split = 'test')
ORDER BY e.event_id
"""


def load_test_examples(
    con: duckdb.DuckDBPyConnection, model_names: list[str], embedding_model: str, encoder: Encoder
) -> LoggedExamples:
    rows = con.execute(TEST_EXAMPLES_SQL).fetchall()
    index = {m: j for j, m in enumerate(model_names)}
    emb, _ = embed_with_cache(con, [r[0] for r in rows], embedding_model, encoder)
    return LoggedExamples(
        embeddings=emb,
        texts=[r[0] for r in rows],
        logged_model=np.array([index.get(r[1], -1) for r in rows], int),
        quality=np.array([r[2] for r in rows], np.float64),
        cost=np.array([r[3] for r in rows], np.float64),
        propensity=np.array([np.nan if r[4] is None else r[4] for r in rows], np.float64),
        model_names=model_names,
    )


def train_quality_by_model(con: duckdb.DuckDBPyConnection, model_names: list[str]) -> np.ndarray:
    means = dict(
        con.execute(
            "SELECT model_name, avg(quality) FROM training_set WHERE split = 'train' GROUP BY 1"
        ).fetchall()
    )
    return np.array([means.get(m, 0.0) for m in model_names], np.float64)


def evaluate_router_folder(
    con: duckdb.DuckDBPyConnection, folder: Path, encoder: Encoder
) -> dict[str, Any]:
    """The evaluation of one router folder: rows for the router and baselines, and a table."""
    meta = read_router_meta(folder)
    router = load_router(folder)
    examples = load_test_examples(con, router.model_names_, meta["embedding_model"], encoder)
    lam = float(meta.get("default_lambda", 0.0))
    rows = evaluate_against_baselines(
        router, examples, lam, train_quality_by_model(con, router.model_names_)
    )
    return {
        "router": folder.name,
        "router_type": meta["router_type"],
        "lambda": lam,
        "test_examples": len(examples.logged_model),
        "estimate": "off-policy SNIPS on logged test-split telemetry",
        "rows": [
            {
                "policy": r.policy,
                "quality": r.quality.as_dict(),
                "cost": r.cost.as_dict(),
                "share": r.share,
                "quality_intervals": {
                    k: {"value": v.value, "low": v.low, "high": v.high}
                    for k, v in r.intervals.items()
                },
            }
            for r in rows
        ],
        "markdown": markdown_table(rows),
    }


def write_report(evaluations: list[dict[str, Any]], out_dir: Path) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "evaluation.json"
    md_path = out_dir / "report.md"
    json_path.write_text(json.dumps(evaluations, indent=2, sort_keys=True, default=float))
    parts = ["# Router evaluation", ""]
    for ev in evaluations:
        parts += [
            f"## {ev['router']} ({ev['router_type']})",
            "",
            f"{ev['test_examples']} logged test examples; {ev['estimate']}.",
            "",
            ev["markdown"],
            "",
        ]
    md_path.write_text("\n".join(parts))
    return json_path, md_path
