"""Label policy (foundation version): quality from the outcome, cost from tokens and prices.

quality: the event's ``quality_score`` when the telemetry carries one (offline evals, table
replays), else 1.0 for ``success`` and 0.0 for every other status (failure, fallback, error,
timeout, no_candidates): the model that was picked did not deliver.
cost: input_tokens * input_price + output_tokens * output_price, prices per million tokens.
latency: the LLM-call span's duration.
Each example carries the logging policy's propensity for the logged model (NULL when unknown).
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class ModelPrice(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input_price: float = Field(ge=0)
    output_price: float = Field(ge=0)


def load_prices(path: Path) -> dict[str, ModelPrice]:
    """Read a prices file (YAML or LLMRouter's llm_candidates JSON); errors name the model."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of model name to prices")
    prices = {}
    for name, entry in raw.items():
        try:
            fields = {k: entry[k] for k in ("input_price", "output_price") if k in entry}
            prices[str(name)] = ModelPrice.model_validate(fields)
        except (ValidationError, TypeError) as exc:
            raise ValueError(f"{path}: bad prices for model {name!r}: {exc}") from None
    return prices


ROUTING_EXAMPLES_SQL = """
WITH calls AS (
    SELECT trace_id, any_value(prompt_text ORDER BY start_unix_ms) AS prompt_text,
           any_value(task ORDER BY start_unix_ms) AS task,
           sum(duration_ms) AS latency_ms
    FROM llm_calls WHERE prompt_text IS NOT NULL GROUP BY trace_id
)
SELECT d.event_id, d.trace_id, c.prompt_text AS query_text, sha256(c.prompt_text) AS query_sha256,
       d.selected_deployment AS model_name, c.task, d.outcome_status,
       coalesce(d.quality_score, CASE WHEN d.outcome_status = 'success' THEN 1.0 ELSE 0.0 END)
           AS quality,
       (coalesce(d.input_tokens, 0) * p.input_price
        + coalesce(d.output_tokens, 0) * p.output_price) / 1e6 AS cost_usd,
       c.latency_ms, d.selection_propensity AS propensity,
       CASE WHEN d.quality_score IS NOT NULL THEN 'event_score' ELSE 'outcome_status' END
           AS label_source,
       d.timestamp_utc
FROM router_decisions d
JOIN calls c USING (trace_id)
LEFT JOIN prices p ON p.model_name = d.selected_deployment
WHERE d.selected_deployment IS NOT NULL
"""


def build_routing_examples(
    con: duckdb.DuckDBPyConnection, prices: dict[str, ModelPrice]
) -> dict[str, int]:
    """Rebuild ``routing_examples`` in one transaction; return counts for the metadata."""
    table = pa.Table.from_pylist(
        [
            {"model_name": k, "input_price": v.input_price, "output_price": v.output_price}
            for k, v in prices.items()
        ],
        schema=pa.schema(
            [
                ("model_name", pa.string()),
                ("input_price", pa.float64()),
                ("output_price", pa.float64()),
            ]
        ),
    )
    con.register("prices", table)
    try:
        con.execute("BEGIN TRANSACTION")
        con.execute("DELETE FROM routing_examples").fetchall()
        con.execute(f"INSERT INTO routing_examples BY NAME {ROUTING_EXAMPLES_SQL}").fetchall()
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    finally:
        con.unregister("prices")
    row = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE cost_usd IS NULL),"
        " count(*) FILTER (WHERE propensity IS NULL), count(DISTINCT query_sha256) "
        "FROM routing_examples"
    ).fetchall()[0]
    decisions = con.execute("SELECT count(*) FROM router_decisions").fetchall()[0][0]
    return {
        "examples": int(row[0]),
        "examples_without_price": int(row[1]),
        "examples_without_propensity": int(row[2]),
        "distinct_queries": int(row[3]),
        "decisions_without_llm_call": int(decisions - row[0]),
    }
