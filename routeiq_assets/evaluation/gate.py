"""The deployment gate: does the best challenger beat the production router, beyond noise?

Policy (``configs/gate.yaml``): an objective per query, ``quality`` or ``utility`` =
quality - cost_weight * cost (USD); a confidence level; a minimum improvement. The challengers
are the routers trained in this run that may fill the deployment slot; the best one by the
objective's point estimate is compared with the version the MLflow registry's ``production``
alias points at, both evaluated on the same held-out queries.

The comparison is paired: the difference challenger - production is bootstrapped over the same
resampled queries, so shared noise cancels. The gate passes when the lower end of the
difference's interval is above ``min_improvement`` (the improvement is larger than its
confidence interval), or when there is no production router yet. It uses full-information test
queries (every candidate's score known: exact per-query rewards) when there are at least
``min_full_information_queries`` of them, else off-policy SNIPS on logged test telemetry.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from routeiq_assets import strict_json
from routeiq_assets.evaluation.offpolicy import bootstrap, doubly_robust, estimate_policy_value
from routeiq_assets.evaluation.propensity import reward_model
from routeiq_assets.evaluation.run import full_information_matrix, load_test_examples
from routeiq_assets.routers.base import Router, decide, load_router, read_router_meta, router_inputs
from routeiq_assets.training.embeddings import Encoder, embed_with_cache

GATE_JSON = "gate.json"
# what gives the held-out data an estimable value of a policy other than the logging one
REMEDY = (
    "enable exploration in the gateway, or add an offline evaluation table "
    "(full_information in configs/labeling.yaml)"
)


class GatePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    objective: Literal["quality", "utility"] = "utility"
    cost_weight: float = Field(0.0, ge=0, description="quality given up per USD (utility)")
    confidence: float = Field(0.95, gt=0.5, lt=1)
    min_improvement: float = 0.0
    bootstrap_samples: int = Field(1000, ge=100)
    min_full_information_queries: int = Field(50, ge=1)


class GateConfigError(ValueError):
    """configs/gate.yaml is missing a value or has a wrong one; the message names it."""


def load_gate_policy(path: Path) -> GatePolicy:
    path = Path(path)
    if not path.exists():
        return GatePolicy()
    try:
        return GatePolicy.model_validate(yaml.safe_load(path.read_text()) or {})
    except (ValidationError, yaml.YAMLError) as exc:
        raise GateConfigError(f"{path}: {exc}") from exc


@dataclass
class GateResult:
    passed: bool
    reason: str
    router: str | None  # the challenger that would be deployed
    objective: str
    estimate: str  # "full information" | "off-policy SNIPS" | "none"
    production_version: str | None = None
    challenger_value: float | None = None
    production_value: float | None = None
    difference: float | None = None
    interval: tuple[float, float] | None = None
    queries: int = 0
    challengers: dict[str, float] = field(default_factory=dict)
    production_unknown_share: float = 0.0  # production's picks of models the data no longer has

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def markdown(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [f"**Deployment gate {verdict}**: {self.reason}", ""]
        if self.challengers:
            lines += [
                f"| challenger | {self.objective} ({self.estimate}) |",
                "|---|---:|",
                *(f"| {n} | {v:.4f} |" for n, v in self.challengers.items()),
                "",
            ]
        return "\n".join(lines)


def write_gate(result: GateResult, out_dir: Path) -> Path:
    path = Path(out_dir) / GATE_JSON
    path.write_text(strict_json.dumps(result.as_dict()))
    return path


def read_gate(out_dir: Path) -> dict[str, Any]:
    path = Path(out_dir) / GATE_JSON
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: materialise evaluation_report first")
    return json.loads(path.read_text())


class _Scorer:
    """Per-query rewards of any router on one fixed set of held-out queries."""

    def __init__(self, con, names: list[str], embedding_model: str, encoder, policy: GatePolicy):
        self.con, self.names, self.encoder, self.policy = con, names, encoder, policy
        self._embeddings: dict[str, np.ndarray] = {}  # per embedding model: read once
        self.weight = policy.cost_weight if policy.objective == "utility" else 0.0
        full = full_information_matrix(con, names)
        if (
            full is not None
            and len(full[0]) >= policy.min_full_information_queries
            and (self.weight == 0 or np.isfinite(full[2]).all())
        ):
            self.kind = "full information"
            self.texts, quality, cost = full
            self.rewards = quality - self.weight * cost if self.weight else quality
        else:
            self.examples = ex = load_test_examples(con, names, embedding_model, encoder)
            self.texts = ex.texts
            self._embeddings[embedding_model] = ex.embeddings
            # an unknown cost leaves the reward unknown (never zero): such a logged decision
            # counts in no estimate that needs it
            self.reward = ex.quality - self.weight * ex.cost if self.weight else ex.quality
            self.direct: np.ndarray | None = None
            if ex.propensity_source == "logged":
                self.kind = "off-policy SNIPS"
            elif ex.deterministic:
                self.kind = "none (deterministic logging policy)"
            else:
                # doubly robust: the estimated propensities corrected by a direct reward model
                self.kind = "off-policy DR (estimated propensities)"
                self.direct = reward_model(ex.embeddings, ex.logged_model, self.reward, len(names))

    @property
    def evaluable(self) -> bool:
        """Whether the held-out data supports an estimate of any other policy's value."""
        return not self.kind.startswith("none")

    @property
    def queries(self) -> int:
        return len(self.texts)

    def choices(self, router: Router, embedding_model: str, lam: float) -> np.ndarray:
        """The router's pick per query, as an index into this scorer's model names (-1: a model
        the held-out data does not know)."""
        emb = self._embeddings.get(embedding_model)
        if emb is None:
            emb, _ = embed_with_cache(self.con, self.texts, embedding_model, self.encoder)
            self._embeddings[embedding_model] = emb
        chosen = decide(
            router.predict_quality(router_inputs(router, self.texts, emb)), router.cost_, lam
        )
        index = {m: j for j, m in enumerate(self.names)}
        return np.array([index.get(router.model_names_[c], -1) for c in chosen], int)

    def value(self, chosen: np.ndarray, idx: np.ndarray | None = None) -> float:
        """The policy's mean reward. A pick of a model the held-out data does not know (-1: a
        retired or renamed model) counts as the worst outcome, so an old router that still
        picks it cannot block its replacement: full information takes that query's worst
        candidate; off-policy mixes SNIPS over the known picks with the worst observed reward,
        weighted by the share of unknown picks."""
        idx = np.arange(len(chosen)) if idx is None else idx
        picks = chosen[idx]
        known = picks >= 0
        if self.kind == "full information":
            rows = self.rewards[idx]
            rewards = rows[np.arange(len(idx)), np.where(known, picks, 0)]
            return float(np.where(known, rewards, rows.min(axis=1)).mean())
        ex = self.examples
        unknown_share = 1.0 - float(known.mean()) if len(idx) else 0.0
        worst = float(np.nanmin(self.reward[idx])) if len(idx) else float("nan")
        if unknown_share == 1.0:
            return worst
        sub = idx[known]
        if self.direct is not None:
            known_value = doubly_robust(
                chosen[sub],
                ex.logged_model[sub],
                self.reward[sub],
                ex.propensity[sub],
                self.direct[sub],
            )
        else:
            known_value = estimate_policy_value(
                chosen[sub], ex.logged_model[sub], self.reward[sub], ex.propensity[sub]
            ).snips
        if unknown_share == 0.0:
            return known_value
        return (1.0 - unknown_share) * known_value + unknown_share * worst


def _router_and_lambda(folder: Path) -> tuple[Router, str, float]:
    meta = read_router_meta(folder)
    return load_router(folder), meta["embedding_model"], float(meta.get("default_lambda", 0.0))


def evaluate_gate(
    con: duckdb.DuckDBPyConnection,
    challenger_folders: dict[str, Path],
    production: tuple[str, Path] | None,
    policy: GatePolicy,
    encoder: Encoder,
) -> GateResult:
    """Pick the best challenger and decide whether it may replace ``production`` (its registry
    version and router folder; None when nothing is in production yet)."""
    if not challenger_folders:
        return GateResult(False, "no challenger was trained", None, policy.objective, "none")
    loaded = {n: _router_and_lambda(f) for n, f in challenger_folders.items()}
    first_router, first_model, _ = next(iter(loaded.values()))
    scorer = _Scorer(con, first_router.model_names_, first_model, encoder, policy)
    if scorer.queries == 0:
        return GateResult(
            production is None,
            "no held-out queries to evaluate on"
            + (
                "; nothing in production yet, so the first router ships"
                if production is None
                else "; production stays"
            ),
            next(iter(loaded)),
            policy.objective,
            "none",
            production[0] if production else None,
        )
    if not scorer.evaluable:
        shared = {
            n: float((scorer.choices(r, m, lam) == scorer.examples.logged_model).mean())
            for n, (r, m, lam) in loaded.items()
        }
        return GateResult(
            False,
            "no propensities and no full-information data: the gateway logged no propensity and "
            "its choices follow from the query (a deterministic policy), so only the decisions a "
            "challenger shares with it are evaluable ("
            + ", ".join(f"{n}: {v:.0%}" for n, v in shared.items())
            + f" of {scorer.queries} held-out queries); hold"
            + (" (nothing in production yet)" if production is None else "; production stays")
            + f". Remedy: {REMEDY} (the RouteIQ routing plugin logs the propensity of each "
            "choice it makes when it explores)",
            next(iter(loaded)),
            policy.objective,
            scorer.kind,
            production[0] if production else None,
            queries=scorer.queries,
        )
    chosen = {n: scorer.choices(r, m, lam) for n, (r, m, lam) in loaded.items()}
    values = {n: scorer.value(c) for n, c in chosen.items()}
    ranked = sorted(values, key=lambda n: -np.nan_to_num(values[n], nan=-np.inf))
    best = ranked[0]
    result = GateResult(
        False,
        "",
        best,
        policy.objective,
        scorer.kind,
        queries=scorer.queries,
        challenger_value=values[best],
        challengers={n: values[n] for n in ranked},
    )
    if not np.isfinite(values[best]):
        result.reason = (
            f"no challenger's {policy.objective} can be estimated ({scorer.kind}, "
            f"{scorer.queries} held-out queries: none of their logged decisions is one a "
            "challenger makes); hold"
            + ("" if production is None else ", production stays")
            + f". Remedy: collect more telemetry, {REMEDY}"
        )
        return result
    if production is None:
        result.passed = True
        result.reason = (
            f"no production router yet: {best} ships ({policy.objective} "
            f"{values[best]:.4f}, {scorer.kind}, {scorer.queries} queries)"
        )
        return result
    version, folder = production
    prod_router, prod_model, prod_lam = _router_and_lambda(folder)
    prod_chosen = scorer.choices(prod_router, prod_model, prod_lam)
    ch = chosen[best]

    def difference(idx: np.ndarray) -> float:
        return scorer.value(ch, idx) - scorer.value(prod_chosen, idx)

    interval = bootstrap(difference, scorer.queries, policy.bootstrap_samples, policy.confidence)
    result.production_version = version
    result.production_value = scorer.value(prod_chosen)
    result.production_unknown_share = float((prod_chosen < 0).mean())
    result.difference = interval.value
    result.interval = (interval.low, interval.high)
    level = f"{policy.confidence:.0%}"
    summary = (
        f"{best} {policy.objective} {values[best]:.4f} vs production v{version} "
        f"{result.production_value:.4f}: difference {interval.value:+.4f}, {level} interval "
        f"[{interval.low:+.4f}, {interval.high:+.4f}] ({scorer.kind}, {scorer.queries} queries)"
    )
    if result.production_unknown_share:
        summary += (
            f"; production picks models the held-out data no longer has for "
            f"{result.production_unknown_share:.1%} of queries (counted as the worst outcome)"
        )
    if not np.isfinite(interval.low):
        result.reason = (
            f"the difference cannot be estimated ({summary}): the held-out data has too few "
            f"logged decisions the two routers share; hold, production stays. Remedy: collect "
            f"more telemetry, {REMEDY}"
        )
    elif interval.low > policy.min_improvement:
        result.passed = True
        result.reason = f"the challenger is better beyond its interval: {summary}"
    else:
        result.reason = (
            f"the improvement is not larger than its {level} interval (needs the lower end above "
            f"{policy.min_improvement:g}): {summary}; production stays"
        )
    return result


def production_router(
    tracking_uri: str, registered_name: str, into: Path, alias: str = "production"
) -> tuple[str, Path] | None:
    """(version, router folder) of ``registered_name@alias`` from the MLflow registry, downloaded
    into ``into``; None when no version carries the alias yet. MLflow errors propagate as
    RegistryError (the gate must not pass because the registry was unreachable)."""
    from routeiq_assets.deployment.registry import (
        RegistryError,
        raise_mlflow_error,
        version_for_alias,
    )

    version = version_for_alias(tracking_uri, registered_name, alias)
    if version is None:
        return None
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    try:
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"models:/{registered_name}/{version}", dst_path=str(into)
            )
        )
    except Exception as exc:
        raise_mlflow_error(tracking_uri, f"downloading {registered_name} v{version}", exc)
    found = sorted(local.rglob("router.json"))
    if not found:
        raise RegistryError(f"{registered_name} v{version} has no router.json in its model files")
    return version, found[0].parent


BEST = "best"


def deployment_slot(deploy_router: str, trained: list[str]) -> tuple[str, list[str]]:
    """The registered model name the gate guards and the routers that may fill it."""
    if deploy_router == BEST:
        return "routeiq-router", list(trained)
    if deploy_router not in trained:
        raise GateConfigError(
            f"ROUTEIQ_DEPLOY_ROUTER={deploy_router!r} is not a trained router; configs/routers "
            f"has {sorted(trained)} (or use {BEST!r})"
        )
    return f"{deploy_router}-router", [deploy_router]
