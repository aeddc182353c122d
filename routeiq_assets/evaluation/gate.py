"""The deployment gate: does a challenger earn deployment, beyond noise?

A challenger (a router trained in this run that may fill the deployment slot) runs at its
operating point and is compared, on the same held-out queries, with every baseline: what the
gateway does today (the logging policy, observed), the always-best model (best training
quality), the always-cheapest model, and the router in production (the MLflow registry's
``production`` alias) when there is one. It is deployed only when it beats each of them on its
objective beyond the paired bootstrap interval (:mod:`~routeiq_assets.evaluation.gate_rules`);
otherwise the gate holds and says which baseline won and by how much.

Policy (``configs/gate.yaml``): the objective is the challenger's own operating-point objective
(``operating_point``, the default), or ``quality`` / ``utility`` (quality - cost_weight * cost)
for every challenger; a confidence level, a quality margin, a minimum improvement.

Values come from full-information test queries (every candidate's score known: exact) when there
are at least ``min_full_information_queries`` of them, else from logged test telemetry
(off-policy SNIPS with logged propensities, doubly robust with estimated ones). A policy's cost is
the mean cost per query of the models it picks (exact on full-information queries; each model's
mean observed cost on logged ones; the logging policy's observed cost).
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
from routeiq_assets.evaluation.gate_rules import Comparison, Draws, Rule, Span, compare, score
from routeiq_assets.evaluation.metrics import default_lambdas
from routeiq_assets.evaluation.offpolicy import doubly_robust, estimate_policy_value
from routeiq_assets.evaluation.propensity import reward_model
from routeiq_assets.evaluation.run import (
    full_information_matrix,
    load_test_examples,
    train_quality_by_model,
)
from routeiq_assets.routers.base import Router, decide, load_router, read_router_meta, router_inputs
from routeiq_assets.training.embeddings import Encoder, embed_with_cache

GATE_JSON = "gate.json"
# what gives the held-out data an estimable value of a policy other than the logging one
REMEDY = (
    "enable exploration in the gateway, or add an offline evaluation table "
    "(full_information in configs/labeling.yaml)"
)


BASELINES = ("logging_policy", "always_best", "always_cheapest")


class GatePolicy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    objective: Literal["operating_point", "quality", "utility"] = "operating_point"
    cost_weight: float = Field(0.0, ge=0, description="quality given up per USD (utility)")
    confidence: float = Field(0.95, gt=0.5, lt=1)
    quality_margin: float = Field(
        0.02, ge=0, description="how far below a quality target still reaches it"
    )
    min_improvement: float = 0.0
    baselines: list[Literal["logging_policy", "always_best", "always_cheapest"]] = Field(
        default_factory=lambda: list(BASELINES)
    )
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
    router: str | None  # the challenger that would be deployed (or came closest)
    objective: str  # the rule it was judged by
    estimate: str  # "full information" | "off-policy ..." | "none ..."
    production_version: str | None = None
    challenger_value: float | None = None  # its quality
    production_value: float | None = None  # production's quality
    # against production: the utility difference under a utility rule, else the quality one
    difference: float | None = None
    interval: tuple[float, float] | None = None
    queries: int = 0
    # every challenger: quality, cost, passed, the baselines it lost to
    challengers: dict[str, dict[str, Any]] = field(default_factory=dict)
    production_unknown_share: float = 0.0  # production's picks of models the data no longer has
    comparisons: list[dict[str, Any]] = field(default_factory=list)  # the router's, per baseline
    skipped: list[str] = field(default_factory=list)  # baselines not evaluable here, and why
    headline: str = ""
    # what the report draws, from these same values: each router's [lambda, cost, quality]
    # sweep, its operating point, and the baselines' points
    curves: dict[str, list[list[float]]] = field(default_factory=dict)
    points: dict[str, dict[str, float]] = field(default_factory=dict)
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def markdown(self) -> str:
        verdict = "PASSED" if self.passed else "FAILED"
        lines = [f"**Deployment gate {verdict}**: {self.reason}", ""]
        if self.headline:
            lines += [self.headline, ""]
        if self.comparisons:
            lines += [
                f"{self.router} against each baseline ({self.objective}; {self.estimate}, "
                f"{self.queries} held-out queries; differences are {self.router} minus the "
                "baseline, with their paired bootstrap intervals):",
                "",
                "| baseline | its quality | its cost / query (USD) | quality difference "
                "| cost difference (USD) | beaten |",
                "|---|---:|---:|---|---|---|",
                *(
                    f"| {c['baseline']} | {_fmt(c['quality'])} | {_fmt(c['cost'], 6)} | "
                    f"{_span_text(c['quality_difference'], 4)} | "
                    f"{_span_text(c['cost_difference'], 6)} | {'yes' if c['passed'] else 'no'} |"
                    for c in self.comparisons
                ),
                "",
            ]
        lines += [f"- skipped: {s}" for s in self.skipped]
        if self.challengers:
            lines += [
                "",
                "| challenger | quality | cost / query (USD) | beats every baseline | lost to |",
                "|---|---:|---:|---|---|",
                *(
                    f"| {n} | {_fmt(c['quality'])} | {_fmt(c['cost'], 6)} | "
                    f"{'yes' if c['passed'] else 'no'} | {', '.join(c['lost_to']) or '-'} |"
                    for n, c in self.challengers.items()
                ),
                "",
            ]
        return "\n".join(lines)


def _fmt(value: float | None, digits: int = 4) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def _span_text(values: list[float], digits: int) -> str:
    value, low, high = values
    return Span(value, low, high).text(digits)


def write_gate(result: GateResult, out_dir: Path) -> Path:
    path = Path(out_dir) / GATE_JSON
    path.write_text(strict_json.dumps(result.as_dict()))
    return path


def read_gate(out_dir: Path) -> dict[str, Any]:
    path = Path(out_dir) / GATE_JSON
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist: materialise evaluation_report first")
    return json.loads(path.read_text())


def rule_for(policy: GatePolicy, meta: dict[str, Any]) -> Rule:
    """The rule a challenger is judged by: the gate's objective, or (``operating_point``) the
    objective its router config declared. A quality-only router is judged on quality."""
    improvement = policy.min_improvement
    if policy.objective == "quality" or not meta.get("cost_aware", True):
        return Rule("utility", "quality", min_improvement=improvement)
    if policy.objective == "utility":
        return Rule("utility", "utility", lam=policy.cost_weight, min_improvement=improvement)
    config = (meta.get("config") or {}).get("operating_point") or {}
    objective = config.get("objective") or "fixed_lambda"
    if objective == "match_best":
        return Rule("target", objective, margin=policy.quality_margin, min_improvement=improvement)
    if objective == "quality_floor":
        floor = float(config["quality_floor"])
        return Rule(
            "target",
            objective,
            floor=floor,
            margin=policy.quality_margin,
            min_improvement=improvement,
        )
    if objective == "budget":
        budget = float(config["budget_usd"])
        return Rule("budget", objective, budget=budget, min_improvement=improvement)
    lam = float(meta.get("default_lambda", 0.0))
    return Rule("utility", f"fixed_lambda {lam:g}", lam=lam, min_improvement=improvement)


def _picked(rows: np.ndarray, picks: np.ndarray, known: np.ndarray, unknown) -> float:
    """The mean of each row's picked cell; ``unknown`` of the row where the pick is unknown."""
    values = rows[np.arange(len(rows)), np.where(known, picks, 0)]
    return float(np.where(known, values, unknown(rows, axis=1)).mean())


@dataclass(frozen=True)
class _Policy:
    """A policy to value: a pick per held-out query (an index into the scorer's model names, -1
    for a model the data does not know), or the logging policy's observed outcomes."""

    name: str
    chosen: np.ndarray | None = None  # None: the logging policy
    rows: str = "all"  # "all" queries, or "logged" (those with a logged decision)


class _Scorer:
    """Quality and cost of any policy on one fixed set of held-out queries, and on bootstrap
    draws of them (the same draws for every policy)."""

    def __init__(
        self,
        con,
        names: list[str],
        embedding_model: str,
        encoder,
        policy: GatePolicy,
        needs_cost: bool,
        model_cost: np.ndarray,
    ):
        self.con, self.names, self.encoder, self.policy = con, names, encoder, policy
        self._embeddings: dict[str, np.ndarray] = {}  # per embedding model: read once
        self._cache: dict[tuple[str, str], Draws] = {}
        self._draws: dict[str, np.ndarray] = {}
        full = full_information_matrix(con, names)
        if (
            full is not None
            and len(full[0]) >= policy.min_full_information_queries
            and (not needs_cost or np.isfinite(full[2]).all())
        ):
            self.kind = "full information"
            self.texts, self.full_quality, self.full_cost = full
            self.logged_quality, self.logged_cost = self._logged_on(self.texts)
        else:
            self.examples = ex = load_test_examples(con, names, embedding_model, encoder)
            self.texts = ex.texts
            self._embeddings[embedding_model] = ex.embeddings
            self.logged_quality, self.logged_cost = ex.quality, ex.cost
            # each model's cost: its mean observed cost on these queries, else its training mean
            self.model_cost = np.array(
                [
                    np.nanmean(ex.cost[ex.logged_model == j])
                    if np.isfinite(ex.cost[ex.logged_model == j]).any()
                    else float(model_cost[j])
                    for j in range(len(names))
                ],
                np.float64,
            )
            self.direct: np.ndarray | None = None
            if ex.propensity_source == "logged":
                self.kind = "off-policy SNIPS"
            elif ex.deterministic:
                self.kind = "none (deterministic logging policy)"
            else:
                # doubly robust: the estimated propensities corrected by a direct reward model
                self.kind = "off-policy DR (estimated propensities)"
                self.direct = reward_model(ex.embeddings, ex.logged_model, ex.quality, len(names))
        self.logged_rows = np.flatnonzero(np.isfinite(self.logged_quality))

    def _logged_on(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """The logging policy's observed quality and cost on these texts (its first logged
        decision for each; NaN where it logged none)."""
        rows = self.con.execute(
            "SELECT query_text, quality, cost_usd FROM routing_examples WHERE is_logged "
            "AND quality IS NOT NULL ORDER BY event_id"
        ).fetchall()
        seen: dict[str, tuple[float, float]] = {}
        for text, quality, cost in rows:
            seen.setdefault(text, (quality, np.nan if cost is None else cost))
        quality = np.array([seen.get(t, (np.nan, np.nan))[0] for t in texts], np.float64)
        cost = np.array([seen.get(t, (np.nan, np.nan))[1] for t in texts], np.float64)
        return quality, cost

    @property
    def evaluable(self) -> bool:
        """Whether the held-out data supports an estimate of any other policy's value."""
        return not self.kind.startswith("none")

    @property
    def queries(self) -> int:
        return len(self.texts)

    def predicted(self, router: Router, embedding_model: str) -> np.ndarray:
        """The router's predicted quality [query, its model] on these queries."""
        emb = self._embeddings.get(embedding_model)
        if emb is None:
            emb, _ = embed_with_cache(self.con, self.texts, embedding_model, self.encoder)
            self._embeddings[embedding_model] = emb
        return router.predict_quality(router_inputs(router, self.texts, emb))

    def choices(
        self,
        router: Router,
        embedding_model: str,
        lam: float,
        predicted: np.ndarray | None = None,
    ) -> np.ndarray:
        """The router's pick per query, as an index into this scorer's model names (-1: a model
        the held-out data does not know)."""
        if predicted is None:
            predicted = self.predicted(router, embedding_model)
        chosen = decide(predicted, router.cost_, lam)
        index = {m: j for j, m in enumerate(self.names)}
        return np.array([index.get(router.model_names_[c], -1) for c in chosen], int)

    def curve(self, router: Router, embedding_model: str) -> list[list[float]]:
        """[lambda, cost, quality] over the lambda sweep, where the quality can be estimated."""
        predicted = self.predicted(router, embedding_model)
        every = np.arange(self.queries)
        points = []
        for lam in default_lambdas(np.asarray(router.cost_, np.float64)):
            chosen = self.choices(router, embedding_model, lam, predicted)
            q, c = self.quality(chosen, every), self.cost(chosen, every)
            if np.isfinite(q) and np.isfinite(c):
                points.append([float(lam), c, q])
        return points

    def quality(self, chosen: np.ndarray, idx: np.ndarray) -> float:
        """The policy's mean quality. A pick of a model the held-out data does not know (-1: a
        retired or renamed model) counts as the worst outcome, so an old router that still
        picks it cannot block its replacement: full information takes that query's worst
        candidate; off-policy mixes the estimate over the known picks with the worst observed
        quality, weighted by the share of unknown picks."""
        picks = chosen[idx]
        known = picks >= 0
        if self.kind == "full information":
            return _picked(self.full_quality[idx], picks, known, np.min)
        ex = self.examples
        unknown_share = 1.0 - float(known.mean()) if len(idx) else 0.0
        worst = float(np.nanmin(ex.quality[idx])) if len(idx) else float("nan")
        if unknown_share == 1.0:
            return worst
        sub = idx[known]
        if self.direct is not None:
            known_value = doubly_robust(
                chosen[sub],
                ex.logged_model[sub],
                ex.quality[sub],
                ex.propensity[sub],
                self.direct[sub],
            )
        else:
            known_value = estimate_policy_value(
                chosen[sub], ex.logged_model[sub], ex.quality[sub], ex.propensity[sub]
            ).snips
        if unknown_share == 0.0:
            return known_value
        return (1.0 - unknown_share) * known_value + unknown_share * worst

    def cost(self, chosen: np.ndarray, idx: np.ndarray) -> float:
        """The policy's mean cost per query; an unknown model's pick costs the most."""
        picks = chosen[idx]
        known = picks >= 0
        if self.kind == "full information":
            return _picked(self.full_cost[idx], picks, known, np.max)
        values = self.model_cost[np.where(known, picks, 0)]
        return float(np.where(known, values, np.nanmax(self.model_cost)).mean())

    def _rows(self, which: str) -> np.ndarray:
        """Bootstrap draws [samples, n] of row indices of "all" or the "logged" queries."""
        if which not in self._draws:
            rows = np.arange(self.queries) if which == "all" else self.logged_rows
            rng = np.random.default_rng(0)
            picks = rng.integers(0, len(rows), size=(self.policy.bootstrap_samples, len(rows)))
            self._draws[which] = rows[picks]
        return self._draws[which]

    def draws(self, policy: _Policy, rows: str) -> Draws:
        key = (policy.name, rows)
        if key not in self._cache:
            every = np.arange(self.queries) if rows == "all" else self.logged_rows
            if policy.chosen is None:

                def q(idx):
                    return float(np.nanmean(self.logged_quality[idx]))

                def c(idx):
                    finite = self.logged_cost[idx]
                    finite = finite[np.isfinite(finite)]
                    return float(finite.mean()) if len(finite) else float("nan")

            else:

                def q(idx, chosen=policy.chosen):
                    return self.quality(chosen, idx)

                def c(idx, chosen=policy.chosen):
                    return self.cost(chosen, idx)

            draws = self._rows(rows)
            self._cache[key] = Draws(
                q(every),
                c(every),
                np.array([q(d) for d in draws], np.float64),
                np.array([c(d) for d in draws], np.float64),
            )
        return self._cache[key]


def _load(folder: Path) -> tuple[Router, str, float, dict[str, Any]]:
    meta = read_router_meta(folder)
    return (
        load_router(folder),
        meta["embedding_model"],
        float(meta.get("default_lambda", 0.0)),
        meta,
    )


def _baselines(
    con, scorer: _Scorer, policy: GatePolicy, cost: np.ndarray
) -> tuple[list[_Policy], list[str]]:
    """The baselines this data can value, and those it cannot (with why)."""
    names, n = scorer.names, scorer.queries
    out, skipped = [], []
    wanted = set(policy.baselines)
    if "logging_policy" in wanted:
        if len(scorer.logged_rows):
            rows = "all" if len(scorer.logged_rows) == n else "logged"
            out.append(_Policy("logging policy (what the gateway does today)", None, rows))
        else:
            skipped.append(
                "logging policy: no logged decision on the held-out full-information queries"
            )
    if "always_best" in wanted:
        out.append(_always_best(con, scorer))
    if "always_cheapest" in wanted:
        priced = np.isfinite(cost)
        if priced.any():
            cheapest = int(np.flatnonzero(priced)[np.argmin(cost[priced])])
            out.append(_Policy(f"always-cheapest ({names[cheapest]})", np.full(n, cheapest)))
        else:
            skipped.append("always-cheapest: no candidate has a price")
    return out, skipped


def _always_best(con, scorer: _Scorer) -> _Policy:
    best = int(np.argmax(train_quality_by_model(con, scorer.names)))
    return _Policy(f"always-best ({scorer.names[best]})", np.full(scorer.queries, best))


def _headline(name: str, lam: float, mine: Draws, comparisons: list[Comparison]) -> str:
    """The operator's question first: what the router saves against always-best, and what it
    changes against what the gateway does today."""
    parts = [
        f"{name} at its operating point (lambda {lam:.3g}): quality {_fmt(mine.quality)} at "
        f"${_fmt(mine.cost, 6)} a query."
    ]
    for c in sorted(comparisons, key=lambda c: not c.baseline.startswith("always-best")):
        if c.baseline.startswith("always-best") and np.isfinite(c.cost) and c.cost > 0:
            saving = 1.0 - mine.cost / c.cost
            parts.append(
                f"Against {c.baseline}: {abs(saving):.0%} {'cheaper' if saving >= 0 else 'dearer'}"
                f" at a quality difference of {c.quality_difference.text()}."
            )
        elif c.baseline.startswith("logging policy"):
            parts.append(
                f"Against what the gateway does today: quality {c.quality_difference.text()}, "
                f"cost {c.cost_difference.text(6, money=True)} a query."
            )
    return " ".join(parts)


def evaluate_gate(
    con: duckdb.DuckDBPyConnection,
    challenger_folders: dict[str, Path],
    production: tuple[str, Path] | None,
    policy: GatePolicy,
    encoder: Encoder,
    shown: dict[str, Path] | None = None,
) -> GateResult:
    """Compare each challenger with the baselines and ``production`` (its registry version and
    router folder; None when nothing is in production yet), and pick the one to deploy: of those
    that beat every baseline, the best on its objective. Routers in ``shown`` (not candidates
    for this slot) get their curve and operating point valued the same way, for the report."""
    if not challenger_folders:
        return GateResult(False, "no challenger was trained", None, policy.objective, "none")
    loaded = {n: _load(f) for n, f in challenger_folders.items()}
    rules = {n: rule_for(policy, meta) for n, (*_, meta) in loaded.items()}
    first_router, first_model, *_ = next(iter(loaded.values()))
    needs_cost = any(r.kind != "utility" or r.lam > 0 for r in rules.values())
    cost = np.asarray(first_router.cost_, np.float64)
    scorer = _Scorer(
        con, list(first_router.model_names_), first_model, encoder, policy, needs_cost, cost
    )
    stays = " (nothing in production yet)" if production is None else "; production stays"
    first_name = next(iter(loaded))
    described = rules[first_name].describe()
    if scorer.queries == 0:
        return GateResult(
            False,
            "no held-out queries to evaluate on: a challenger must beat the baselines on "
            f"held-out data; hold{stays}. Remedy: collect more telemetry (the test split of "
            "training_set is empty)",
            first_name,
            described,
            "none",
            production[0] if production else None,
        )
    if not scorer.evaluable:
        shared = {
            n: float((scorer.choices(r, m, lam) == scorer.examples.logged_model).mean())
            for n, (r, m, lam, _) in loaded.items()
        }
        return GateResult(
            False,
            "no propensities and no full-information data: the gateway logged no propensity and "
            "its choices follow from the query (a deterministic policy), so only the decisions a "
            "challenger shares with it are evaluable ("
            + ", ".join(f"{n}: {v:.0%}" for n, v in shared.items())
            + f" of {scorer.queries} held-out queries); hold{stays}. Remedy: {REMEDY} (the "
            "RouteIQ routing plugin logs the propensity of each choice it makes when it explores)",
            first_name,
            described,
            scorer.kind,
            production[0] if production else None,
            queries=scorer.queries,
        )
    baselines, skipped = _baselines(con, scorer, policy, cost)
    target = _always_best(con, scorer)
    prod_policy = None
    if production is not None:
        prod_router, prod_model, prod_lam, _ = _load(production[1])
        prod_policy = _Policy(
            f"production v{production[0]}", scorer.choices(prod_router, prod_model, prod_lam)
        )
        baselines.append(prod_policy)
    level = policy.confidence
    results: dict[str, list[Comparison]] = {}
    mine: dict[str, Draws] = {}
    for n, (router, model, lam, _) in loaded.items():
        me = _Policy(f"challenger {n}", scorer.choices(router, model, lam))
        mine[n] = scorer.draws(me, "all")
        results[n] = [
            compare(
                rules[n],
                n,
                scorer.draws(me, b.rows),
                b.name,
                scorer.draws(b, b.rows),
                level,
                scorer.draws(target, b.rows),
            )
            for b in baselines
        ]
    summary = {
        n: {
            "quality": mine[n].quality,
            "cost": mine[n].cost,
            "passed": all(c.passed for c in results[n]),
            "lost_to": [c.baseline for c in results[n] if not c.passed],
        }
        for n in loaded
    }

    def rank(n: str) -> tuple:
        value = score(rules[n], mine[n])
        return (
            summary[n]["passed"],
            sum(c.passed for c in results[n]),
            value if np.isfinite(value) else -np.inf,
        )

    best = max(loaded, key=rank)
    rule, comparisons = rules[best], results[best]
    result = GateResult(
        summary[best]["passed"],
        "",
        best,
        rule.describe(),
        scorer.kind,
        queries=scorer.queries,
        challenger_value=mine[best].quality,
        challengers=summary,
        comparisons=[c.as_dict() for c in comparisons],
        skipped=skipped,
        headline=_headline(best, loaded[best][2], mine[best], comparisons),
        baselines={c.baseline: {"quality": c.quality, "cost": c.cost} for c in comparisons},
    )
    every = np.arange(scorer.queries)
    for n, folder in {**challenger_folders, **(shown or {})}.items():
        router, model, lam, _ = loaded[n] if n in loaded else _load(folder)
        result.curves[n] = scorer.curve(router, model)
        if n in mine:  # a challenger's point is valued already
            quality, cost = mine[n].quality, mine[n].cost
        else:
            chosen = scorer.choices(router, model, lam)
            quality, cost = scorer.quality(chosen, every), scorer.cost(chosen, every)
        result.points[n] = {"lambda": lam, "quality": quality, "cost": cost}
    if not any(np.isfinite(d.quality) for d in mine.values()):
        result.passed = False
        result.reason = (
            f"no challenger's quality can be estimated ({scorer.kind}, {scorer.queries} held-out "
            "queries: none of their logged decisions is one a challenger makes); hold"
            + ("" if production is None else ", production stays")
            + f". Remedy: collect more telemetry, {REMEDY}"
        )
        return result
    if prod_policy is not None:
        versus = comparisons[-1]
        difference = versus.utility_difference or versus.quality_difference
        result.production_version = production[0]
        result.production_value = versus.quality
        result.production_unknown_share = float((prod_policy.chosen < 0).mean())
        result.difference = difference.value
        result.interval = (difference.low, difference.high)
    where = f"({rule.describe()}; {scorer.kind}, {scorer.queries} held-out queries)"
    unknown = (
        f"; production picks models the held-out data no longer has for "
        f"{result.production_unknown_share:.1%} of queries (counted as the worst outcome)"
        if result.production_unknown_share
        else ""
    )
    if result.passed and not comparisons:
        result.reason = (
            f"no baselines configured (configs/gate.yaml) and nothing in production yet: {best} "
            f"ships unchecked {where}"
        )
    elif result.passed:
        result.reason = (
            f"{best} beats every baseline {where}: "
            + "; ".join(c.reason for c in comparisons)
            + unknown
            + ("; nothing in production yet, so it ships" if production is None else "")
        )
    else:
        lost = [c for c in comparisons if not c.passed]
        won = [c.baseline for c in comparisons if c.passed]
        shortfall = next((c.shortfall for c in lost if c.shortfall), None)
        result.reason = (
            f"hold{stays}: {best}, the closest challenger, loses to "
            + ", ".join(c.baseline for c in lost)
            + f" {where}: "
            + (f"{shortfall}; " if shortfall else "")
            + "; ".join(c.reason for c in lost)
            + (f". It beats {', '.join(won)}" if won else "")
            + unknown
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
