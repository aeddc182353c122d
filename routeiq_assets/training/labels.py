"""Label policies: telemetry (and full-information tables) to labelled routing examples.

The policy lives in ``configs/labeling.yaml`` and is validated here; its comments document the
quality sources, cost, latency and ``utility = quality - lambda * cost - mu * latency``.
Every logged example carries the logging policy's propensity when the telemetry gives it
(NULL, and counted, when it does not).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import duckdb
import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from routeiq_assets.telemetry.simulator import CHARS_PER_TOKEN
from routeiq_assets.warehouse.store import transaction

QualitySource = Literal["feedback", "event_score", "outcome"]
OUTCOME_STATUSES = ("success", "fallback", "failure", "error", "timeout", "no_candidates")


class ModelPrice(BaseModel):
    """One model's entry: prices per million tokens, plus LLMRouter's optional descriptors. A
    null price (LLMRouter's llm_data.json for a model nobody priced) is unknown, never zero."""

    model_config = ConfigDict(extra="forbid")
    input_price: float | None = Field(None, ge=0)
    output_price: float | None = Field(None, ge=0)
    size: str | None = None
    feature: str | None = None
    model: str | None = None
    service: str | None = None

    @property
    def priced(self) -> bool:
        return self.input_price is not None and self.output_price is not None


class FullInformationTable(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: Path
    name: str | None = None
    output_tokens: int = Field(256, ge=0)


class LabelingPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")
    quality_sources: list[QualitySource] = Field(
        default_factory=lambda: ["feedback", "event_score", "outcome"], min_length=1
    )
    outcome_quality: dict[str, float] = Field(
        default_factory=lambda: {s: 1.0 if s == "success" else 0.0 for s in OUTCOME_STATUSES}
    )
    feedback_min: float = 0.0
    feedback_max: float = 1.0
    prices_file: Path = Path("prices.yaml")
    utility_lambda: float = Field(0.0, ge=0)
    utility_mu: float = Field(0.0, ge=0)
    include_calls_without_decision: bool = True
    full_information: list[FullInformationTable] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> LabelingPolicy:
        unknown = set(self.outcome_quality) - set(OUTCOME_STATUSES)
        if unknown:
            raise ValueError(f"outcome_quality: unknown statuses {sorted(unknown)}")
        missing = set(OUTCOME_STATUSES) - set(self.outcome_quality)
        if missing:
            raise ValueError(f"outcome_quality: no quality for statuses {sorted(missing)}")
        if any(not 0.0 <= q <= 1.0 for q in self.outcome_quality.values()):
            raise ValueError("outcome_quality values must be in [0, 1]")
        if self.feedback_max <= self.feedback_min:
            raise ValueError("feedback_max must be greater than feedback_min")
        if len(set(self.quality_sources)) != len(self.quality_sources):
            raise ValueError("quality_sources lists a source twice")
        return self

    def resolve(self, base: Path) -> LabelingPolicy:
        """Paths relative to the policy file's folder."""
        tables = [t.model_copy(update={"path": base / t.path}) for t in self.full_information]
        return self.model_copy(
            update={"prices_file": base / self.prices_file, "full_information": tables}
        )


def load_policy(path: Path) -> LabelingPolicy:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"labeling policy {path} not found")
    raw = yaml.safe_load(path.read_text()) or {}
    try:
        return LabelingPolicy.model_validate(raw).resolve(path.parent)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(policy)'}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(f"{path}: invalid labeling policy: {problems}") from None


def load_prices(path: Path) -> dict[str, ModelPrice]:
    """Read a prices file (YAML, or LLMRouter's llm_candidates JSON); errors name the model."""
    raw = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping of model name to prices")
    prices = {}
    for name, entry in raw.items():
        try:
            fields = {k: entry[k] for k in ModelPrice.model_fields if k in entry}
            prices[str(name)] = ModelPrice.model_validate(fields)
        except (ValidationError, TypeError) as exc:
            raise ValueError(f"{path}: bad prices for model {name!r}: {exc}") from None
    return prices


def load_full_information(
    con: duckdb.DuckDBPyConnection, tables: list[FullInformationTable]
) -> dict[str, int]:
    """Rebuild ``full_information`` from the configured tables (rows per question x model)."""
    rows = []
    for table in tables:
        records = json.loads(Path(table.path).read_text())
        if not isinstance(records, list):
            raise ValueError(f"{table.path}: expected a JSON list of {{question, scores}}")
        source = table.name or Path(table.path).stem
        for i, rec in enumerate(records):
            if (
                not isinstance(rec, dict)
                or not isinstance(rec.get("question"), str)
                or not (isinstance(rec.get("scores"), dict))
            ):
                raise ValueError(f"{table.path}: record {i} has no question text or scores")
            for model, score in rec["scores"].items():
                rows.append(
                    {
                        "source": source,
                        "query_text": rec["question"],
                        "model_name": model,
                        "quality": float(score),
                        "output_tokens": table.output_tokens,
                        "task": rec.get("task"),
                    }
                )
    schema = pa.schema(
        [
            ("source", pa.string()),
            ("query_text", pa.string()),
            ("model_name", pa.string()),
            ("quality", pa.float64()),
            ("output_tokens", pa.int64()),
            ("task", pa.string()),
        ]
    )
    con.register("incoming_fi", pa.Table.from_pylist(rows, schema=schema))
    with transaction(con, "incoming_fi"):
        con.execute("DELETE FROM full_information").fetchall()
        con.execute("INSERT INTO full_information BY NAME SELECT * FROM incoming_fi").fetchall()
    return {"full_information_rows": len(rows), "full_information_tables": len(tables)}


_QUALITY_EXPR = {
    "feedback": "fb.score",
    "event_score": "d.quality_score",
    "outcome": "oq.quality",
}


# The decisions that are labelled. RouteIQ's routing pipeline emits its own decision event for a
# decision our gateway plugin made (same trace, same selected deployment), without the
# propensity the plugin logs in its event: that copy is kept in router_decisions but not labelled
# twice (the plugin's event, with the propensity, is).
DECISIONS_LABELLED_SQL = """
    SELECT * FROM router_decisions d
    WHERE NOT (
        d.selection_propensity IS NULL AND d.trace_id IS NOT NULL AND EXISTS (
            SELECT 1 FROM router_decisions o
            WHERE o.trace_id = d.trace_id AND o.event_id <> d.event_id
              AND o.selection_propensity IS NOT NULL
              AND o.selected_deployment IS NOT DISTINCT FROM d.selected_deployment))
"""


def routing_examples_sql(policy: LabelingPolicy) -> str:
    quality = "coalesce(" + ", ".join(_QUALITY_EXPR[s] for s in policy.quality_sources) + ")"
    source = (
        "CASE "
        + " ".join(
            f"WHEN {_QUALITY_EXPR[s]} IS NOT NULL THEN '{s}'" for s in policy.quality_sources
        )
        + " END"
    )
    fb_scale = f"(f.score - {policy.feedback_min}) / ({policy.feedback_max - policy.feedback_min})"
    cost = (
        "(coalesce({t}.input_tokens, 0) * p.input_price"
        " + coalesce({t}.output_tokens, 0) * p.output_price) / 1e6"
    )
    logged = f"""
    WITH decisions AS ({DECISIONS_LABELLED_SQL}),
    calls AS (
        SELECT trace_id, arg_min(prompt_text, start_unix_ms) AS prompt_text,
               arg_min(task, start_unix_ms) AS task, sum(duration_ms) AS latency_ms
        FROM llm_calls WHERE prompt_text IS NOT NULL GROUP BY trace_id
    ),
    fb AS (
        SELECT d.event_id, avg(least(greatest({fb_scale}, 0), 1)) AS score
        FROM router_decisions d JOIN feedback f
          ON f.event_id = d.event_id OR (f.event_id IS NULL AND f.trace_id = d.trace_id)
        GROUP BY d.event_id
    )
    SELECT d.event_id, d.trace_id, c.prompt_text AS query_text,
           sha256(c.prompt_text) AS query_sha256, d.selected_deployment AS model_name, c.task,
           d.outcome_status, {quality} AS quality, {source} AS label_source,
           {cost.format(t="d")} AS cost_usd, c.latency_ms, d.selection_propensity AS propensity,
           TRUE AS is_logged, d.timestamp_utc
    FROM decisions d
    JOIN calls c USING (trace_id)
    LEFT JOIN fb USING (event_id)
    LEFT JOIN outcome_quality oq ON oq.status = d.outcome_status
    LEFT JOIN prices p ON p.model_name = d.selected_deployment
    WHERE d.selected_deployment IS NOT NULL
    """
    parts = [logged]
    if policy.include_calls_without_decision:
        parts.append(f"""
    SELECT 'call:' || l.trace_id || ':' || l.span_id, l.trace_id, l.prompt_text,
           sha256(l.prompt_text), coalesce(l.response_model, l.request_model), l.task,
           'success', l.quality_score, 'call_score', {cost.format(t="l")}, l.duration_ms,
           NULL, TRUE, to_timestamp(l.start_unix_ms / 1000)
    FROM llm_calls l
    LEFT JOIN prices p ON p.model_name = coalesce(l.response_model, l.request_model)
    WHERE l.quality_score IS NOT NULL AND l.prompt_text IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM router_decisions d WHERE d.trace_id = l.trace_id)
    """)
    parts.append(f"""
    SELECT 'full:' || f.source || ':' || sha256(f.query_text) || ':' || f.model_name, NULL,
           f.query_text, sha256(f.query_text), f.model_name, f.task, 'success', f.quality,
           'full_information:' || f.source,
           (length(f.query_text) / {CHARS_PER_TOKEN} * p.input_price
            + f.output_tokens * p.output_price) / 1e6,
           NULL, NULL, FALSE, NULL
    FROM full_information f
    LEFT JOIN prices p ON p.model_name = f.model_name
    """)
    return " UNION ALL ".join(parts)


def _register(con: duckdb.DuckDBPyConnection, name: str, rows: list[dict], schema: pa.Schema):
    con.register(name, pa.Table.from_pylist(rows, schema=schema))


def build_routing_examples(
    con: duckdb.DuckDBPyConnection, prices: dict[str, ModelPrice], policy: LabelingPolicy
) -> dict[str, object]:
    """Rebuild ``routing_examples`` in one transaction; return counts for the metadata."""
    _register(
        con,
        "prices",
        [
            {"model_name": k, "input_price": v.input_price, "output_price": v.output_price}
            for k, v in prices.items()
        ],
        pa.schema(
            [
                ("model_name", pa.string()),
                ("input_price", pa.float64()),
                ("output_price", pa.float64()),
            ]
        ),
    )
    _register(
        con,
        "outcome_quality",
        [{"status": s, "quality": q} for s, q in policy.outcome_quality.items()],
        pa.schema([("status", pa.string()), ("quality", pa.float64())]),
    )
    # a term whose input is unknown leaves the utility unknown (NULL), never a zero cost
    utility = "quality"
    if policy.utility_lambda:
        utility += f" - {policy.utility_lambda} * cost_usd"
    if policy.utility_mu:
        utility += f" - {policy.utility_mu} * latency_ms / 1000"
    with transaction(con, "prices", "outcome_quality"):
        con.execute("DELETE FROM routing_examples").fetchall()
        con.execute(
            f"INSERT INTO routing_examples BY NAME SELECT *, {utility}"
            f" AS utility FROM ({routing_examples_sql(policy)})"
            " AS e(event_id, trace_id, query_text, query_sha256, model_name, task, outcome_status,"
            " quality, label_source, cost_usd, latency_ms, propensity, is_logged, timestamp_utc)"
        ).fetchall()
    row = con.execute(
        "SELECT count(*), count(*) FILTER (WHERE cost_usd IS NULL),"
        " count(*) FILTER (WHERE is_logged AND propensity IS NULL),"
        " count(DISTINCT query_sha256), count(*) FILTER (WHERE is_logged) FROM routing_examples"
    ).fetchall()[0]
    decisions = con.execute("SELECT count(*) FROM router_decisions").fetchall()[0][0]
    labelled = con.execute(f"SELECT count(*) FROM ({DECISIONS_LABELLED_SQL})").fetchall()[0][0]
    logged_decisions = con.execute(
        "SELECT count(*) FROM routing_examples WHERE event_id NOT LIKE 'call:%' AND is_logged"
    ).fetchall()[0][0]
    by_source = dict(
        con.execute(
            "SELECT label_source, count(*) FROM routing_examples GROUP BY 1 ORDER BY 1"
        ).fetchall()
    )
    balance = dict(
        con.execute(
            "SELECT CASE WHEN quality >= 1 THEN 'quality=1' WHEN quality <= 0 THEN 'quality=0'"
            " ELSE 'partial' END, count(*) FROM routing_examples GROUP BY 1 ORDER BY 1"
        ).fetchall()
    )
    return {
        "examples": int(row[0]),
        "logged_examples": int(row[4]),
        "examples_without_price": int(row[1]),
        "logged_examples_without_propensity": int(row[2]),
        "distinct_queries": int(row[3]),
        # RouteIQ's own copies of a decision the gateway plugin logged with its propensity
        "decisions_duplicated_by_gateway": int(decisions - labelled),
        "decisions_not_labelled": int(labelled - logged_decisions),
        "by_label_source": by_source,
        "label_balance": balance,
    }
