"""When to retrain: enough new labelled examples, or input drift (PSI) past a threshold.

The reference is a snapshot of the labelled data the routers were last trained on: the example
count, the query-length distribution, and the embeddings' distribution along their top principal
directions. The Population Stability Index compares the current data with it on the reference's
quantile bins: PSI = sum((p_cur - p_ref) * ln(p_cur / p_ref)). RouteIQ's gateway calls 0.2
significant drift; that is the default threshold here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

REFERENCE_JSON = "reference.json"
_EPS = 1e-4


class RetrainingPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_new_examples: int = Field(1000, ge=1, description="labelled examples since last training")
    psi_threshold: float = Field(0.2, gt=0)
    psi_bins: int = Field(10, ge=2, le=100)
    embedding_components: int = Field(3, ge=1, le=16, description="principal directions checked")
    sample_size: int = Field(20_000, ge=100, description="at most this many queries per snapshot")


class RetrainingConfigError(ValueError):
    """configs/retraining.yaml has an unknown key or a bad value; the message names it."""


def load_retraining_policy(path: Path) -> RetrainingPolicy:
    path = Path(path)
    if not path.exists():
        return RetrainingPolicy()
    try:
        return RetrainingPolicy.model_validate(yaml.safe_load(path.read_text()) or {})
    except (ValidationError, yaml.YAMLError) as exc:
        raise RetrainingConfigError(f"{path}: {exc}") from exc


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    """PSI of ``current`` against ``reference`` on the reference's quantile bins."""
    reference, current = np.asarray(reference, float), np.asarray(current, float)
    if len(reference) == 0 or len(current) == 0:
        return float("nan")
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    return psi_from_edges(edges, _fractions(reference, edges), current)


def _fractions(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    counts = np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1)
    return np.clip(counts / max(len(values), 1), _EPS, None)


def psi_from_edges(edges: np.ndarray, ref_fractions: np.ndarray, current: np.ndarray) -> float:
    cur = _fractions(np.asarray(current, float), np.asarray(edges, float))
    ref = np.asarray(ref_fractions, float)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


@dataclass
class Snapshot:
    """What the routers were trained on, reduced to what drift needs (JSON-serialisable)."""

    examples: int
    created_at: str
    length_edges: list[float]
    length_fractions: list[float]
    mean: list[float]
    components: list[list[float]]
    projection_edges: list[list[float]]
    projection_fractions: list[list[float]]

    def to_json(self) -> str:
        return json.dumps(asdict(self))


LABELLED_SQL = "SELECT count(*) FROM routing_examples WHERE is_logged"

SAMPLE_SQL = """
SELECT length(e.query_text), q.embedding
FROM (SELECT DISTINCT query_text, query_sha256 FROM routing_examples WHERE is_logged) e
JOIN query_embeddings q ON q.text_sha256 = e.query_sha256 AND q.model_name = ?
ORDER BY hash(e.query_sha256)
LIMIT ?
"""


def _sample(con: duckdb.DuckDBPyConnection, model: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    rows = con.execute(SAMPLE_SQL, [model, n]).fetchall()
    lengths = np.array([r[0] for r in rows], float)
    emb = np.array([r[1] for r in rows], np.float32) if rows else np.zeros((0, 0), np.float32)
    return lengths, emb


def take_snapshot(
    con: duckdb.DuckDBPyConnection, embedding_model: str, policy: RetrainingPolicy
) -> Snapshot:
    examples = con.execute(LABELLED_SQL).fetchall()[0][0]
    lengths, emb = _sample(con, embedding_model, policy.sample_size)
    bins = policy.psi_bins
    quantiles = np.linspace(0, 1, bins + 1)[1:-1]
    length_edges = np.unique(np.quantile(lengths, quantiles)) if len(lengths) else np.zeros(0)
    mean = emb.mean(0) if len(emb) else np.zeros(0)
    components = np.zeros((0, emb.shape[1] if emb.ndim == 2 else 0))
    proj_edges, proj_fracs = [], []
    if len(emb) >= 2:
        _, _, vt = np.linalg.svd(emb - mean, full_matrices=False)
        components = vt[: policy.embedding_components]
        for projected in ((emb - mean) @ components.T).T:
            edges = np.unique(np.quantile(projected, quantiles))
            proj_edges.append(edges.tolist())
            proj_fracs.append(_fractions(projected, edges).tolist())
    return Snapshot(
        examples=int(examples),
        created_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        length_edges=length_edges.tolist(),
        length_fractions=_fractions(lengths, length_edges).tolist() if len(lengths) else [],
        mean=np.asarray(mean).tolist(),
        components=np.asarray(components).tolist(),
        projection_edges=proj_edges,
        projection_fractions=proj_fracs,
    )


@dataclass
class RetrainDecision:
    retrain: bool
    reason: str
    new_examples: int
    length_psi: float | None
    embedding_psi: float | None


def decide_retraining(
    con: duckdb.DuckDBPyConnection,
    reference: Snapshot | None,
    embedding_model: str,
    policy: RetrainingPolicy,
) -> RetrainDecision:
    """Retrain when nothing was trained yet, when ``min_new_examples`` labelled examples arrived
    since the reference, or when the query-length or embedding PSI reaches ``psi_threshold``."""
    examples = con.execute(LABELLED_SQL).fetchall()[0][0]
    if reference is None:
        return RetrainDecision(
            examples > 0,
            "no routers trained yet" if examples else "no labelled examples yet",
            examples,
            None,
            None,
        )
    new = examples - reference.examples
    lengths, emb = _sample(con, embedding_model, policy.sample_size)
    length_psi = embedding_psi = None
    if len(lengths) and reference.length_fractions:
        length_psi = psi_from_edges(
            np.array(reference.length_edges), np.array(reference.length_fractions), lengths
        )
    if len(emb) and reference.components and emb.shape[1] == len(reference.mean):
        projected = (emb - np.array(reference.mean)) @ np.array(reference.components).T
        embedding_psi = max(
            psi_from_edges(np.array(e), np.array(f), projected[:, i])
            for i, (e, f) in enumerate(
                zip(reference.projection_edges, reference.projection_fractions, strict=True)
            )
        )
    reasons = []
    if new >= policy.min_new_examples:
        reasons.append(f"{new} new labelled examples (threshold {policy.min_new_examples})")
    for name, value in (("query-length", length_psi), ("embedding", embedding_psi)):
        if value is not None and value >= policy.psi_threshold:
            reasons.append(f"{name} PSI {value:.3f} >= {policy.psi_threshold}")
    if reasons:
        return RetrainDecision(True, "; ".join(reasons), new, length_psi, embedding_psi)
    detail = ", ".join(
        f"{n} PSI {v:.3f}"
        for n, v in (("query-length", length_psi), ("embedding", embedding_psi))
        if v is not None
    )
    return RetrainDecision(
        False,
        f"{new} new labelled examples (< {policy.min_new_examples})"
        + (f", {detail} (< {policy.psi_threshold})" if detail else ""),
        new,
        length_psi,
        embedding_psi,
    )


def read_reference(folder: Path) -> Snapshot | None:
    path = Path(folder) / REFERENCE_JSON
    if not path.exists():
        return None
    return Snapshot(**json.loads(path.read_text()))


def write_reference(folder: Path, snapshot: Snapshot) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{REFERENCE_JSON}.tmp"
    tmp.write_text(snapshot.to_json())
    tmp.replace(folder / REFERENCE_JSON)
    return folder / REFERENCE_JSON


def describe(decision: RetrainDecision) -> dict[str, Any]:
    return asdict(decision)
