"""``training_set``: (query, model) aggregates of routing examples, with their split."""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from routeiq_assets.training.splits import split_for
from routeiq_assets.warehouse.store import transaction

TRAINING_SET_SQL = """
SELECT e.query_sha256, any_value(e.query_text) AS query_text, e.model_name, s.split,
       avg(e.quality) AS quality, avg(e.cost_usd) AS cost_usd, avg(e.latency_ms) AS latency_ms,
       avg(e.propensity) AS propensity, avg(e.utility) AS utility, count(*) AS n_obs,
       count(*) FILTER (WHERE e.is_logged) AS n_logged
FROM routing_examples e JOIN query_splits s USING (query_sha256)
GROUP BY e.query_sha256, e.model_name, s.split
"""


def build_training_set(
    con: duckdb.DuckDBPyConnection, validation: float = 0.1, test: float = 0.1
) -> dict[str, object]:
    """Rebuild ``training_set`` from ``routing_examples``; return split sizes and coverage."""
    texts = con.execute(
        "SELECT query_sha256, any_value(query_text) FROM routing_examples GROUP BY 1"
    ).fetchall()
    splits = pa.Table.from_pylist(
        [{"query_sha256": sha, "split": split_for(text, validation, test)} for sha, text in texts],
        schema=pa.schema([("query_sha256", pa.string()), ("split", pa.string())]),
    )
    con.register("query_splits", splits)
    with transaction(con, "query_splits"):
        con.execute("DELETE FROM training_set").fetchall()
        con.execute(f"INSERT INTO training_set BY NAME {TRAINING_SET_SQL}").fetchall()
    sizes = dict(
        con.execute(
            "SELECT split, count(DISTINCT query_sha256) FROM training_set GROUP BY 1"
        ).fetchall()
    )
    coverage = dict(
        con.execute(
            "SELECT model_name, count(*) FROM training_set WHERE split = 'train'"
            " GROUP BY 1 ORDER BY 1"
        ).fetchall()
    )
    mean_quality = con.execute("SELECT avg(quality) FROM training_set").fetchall()[0][0]
    return {
        "queries_per_split": sizes,
        "train_pairs_per_model": coverage,
        "mean_quality": float(mean_quality or 0.0),
    }


@dataclass
class QualityMatrix:
    """One split as matrices: queries x models, with a mask of observed pairs."""

    query_sha256: list[str]
    query_text: list[str]
    model_names: list[str]
    quality: np.ndarray  # float32 [n_queries, n_models], 0 where unobserved
    cost: np.ndarray  # float32 [n_queries, n_models], 0 where unobserved, nan where unpriced
    mask: np.ndarray  # bool [n_queries, n_models]
    propensity: np.ndarray  # float32 [n_queries, n_models], nan where unknown


def load_quality_matrix(
    con: duckdb.DuckDBPyConnection, split: str, model_names: list[str] | None = None
) -> QualityMatrix:
    rows = con.execute(
        "SELECT query_sha256, query_text, model_name, quality, cost_usd,"
        " propensity FROM training_set WHERE split = ? ORDER BY query_sha256, model_name",
        [split],
    ).fetchall()
    if model_names is None:
        model_names = sorted({r[2] for r in rows})
    col = {name: j for j, name in enumerate(model_names)}
    order: dict[str, int] = {}
    texts: list[str] = []
    for sha, text, *_ in rows:
        if sha not in order:
            order[sha] = len(order)
            texts.append(text)
    shape = (len(order), len(model_names))
    quality = np.zeros(shape, np.float32)
    cost = np.zeros(shape, np.float32)
    mask = np.zeros(shape, bool)
    propensity = np.full(shape, np.nan, np.float32)
    for sha, _text, model, q, c, p in rows:
        if model not in col:
            continue
        i, j = order[sha], col[model]
        quality[i, j], cost[i, j], mask[i, j] = q, np.nan if c is None else c, True
        propensity[i, j] = np.nan if p is None else p
    return QualityMatrix(list(order), texts, list(model_names), quality, cost, mask, propensity)
