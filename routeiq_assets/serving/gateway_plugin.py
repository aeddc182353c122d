"""A RouteIQ gateway plugin that serves a deployed router as a routing strategy.

Load it with ``LLMROUTER_PLUGINS=routeiq_assets.serving.gateway_plugin.RouteIQRouterPlugin``.
At startup it registers :class:`RouterStrategy` in RouteIQ's strategy registry (through the
plugin context's routing accessor, else ``get_routing_registry()``), under
``llmrouter-routeiq-runtime`` by default, and makes it the active strategy.

The strategy serves a router through :class:`~routeiq_assets.serving.runtime.RouterRuntime`,
from an artifact store (S3, MinIO or a folder store, via ``<prefix>/<model>/current.json``, hot
reloaded on its ETag, the last good version kept when a new one fails) or from a router folder.
Per request it maps the chat messages to the query text (embedded once), the model group's
deployments to the router's model names, decides at the router's operating point
(``default_lambda``) and may explore (:mod:`routeiq_assets.serving.exploration`). Every
decision is logged as a ``routeiq.router_decision.v1`` payload whose ``custom_attributes``
carry the propensity our ingestion reads back (``selection_propensity``, ``logging_policy``).
When it cannot decide it counts the reason and leaves the choice to the gateway.

RouteIQ is not needed to import or test this module: its base classes (``GatewayPlugin``,
``RoutingStrategy``, ``PluginMetadata``) are used when installed, plain classes otherwise.
Configuration and the metrics exposed are described in docs/gateway-plugin.md.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import threading
import time
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from routeiq_assets.contract import DECISION_EVENT_NAME, PAYLOAD_ATTRIBUTE
from routeiq_assets.serving.exploration import POLICIES, ExplorationPolicy

try:  # RouteIQ's own base classes when the gateway is installed
    from litellm_llmrouter.gateway.plugin_manager import (  # type: ignore[import-not-found]
        GatewayPlugin as _PluginBase,
    )
    from litellm_llmrouter.gateway.plugin_manager import (  # type: ignore[import-not-found]
        PluginCapability,
        PluginMetadata,
    )
except Exception:  # ImportError, or a gateway that fails to import: duck-typed
    _PluginBase, PluginCapability, PluginMetadata = object, None, None
try:
    from litellm_llmrouter.strategy_registry import (  # type: ignore[import-not-found]
        RoutingStrategy as _StrategyBase,
    )
except Exception:
    _StrategyBase = object

log = logging.getLogger(__name__)

PLUGIN_NAME = "routeiq-router"
PLUGIN_PATH = f"{__name__}.RouteIQRouterPlugin"
DEFAULT_STRATEGY_NAME = "llmrouter-routeiq-runtime"
ENV_PREFIX = "ROUTEIQ_PLUGIN_ROUTER_"
# RouteIQ hands plugins every ROUTEIQ_PLUGIN_* variable in context.settings, prefix stripped and
# lowercased: ROUTEIQ_PLUGIN_ROUTER_STORE arrives as settings["router_store"].
SETTINGS_PREFIX = "router_"
PENDING_MAX = 10_000  # decisions held for their call's outcome, at most
EMBEDDING_KEY = "routeiq_query_embedding"  # in RoutingContext.metadata: embedded once per request
FALLBACK_REASONS = (
    "not_loaded",
    "specific_deployment",
    "no_candidates",
    "unknown_candidates",
    "no_query",
    "embedding_failed",
    "router_error",
)


def _flag(text: str) -> bool:
    value = text.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _number(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"expected a finite number, got {text!r}")
    return value


def _model_map(text: str) -> dict[str, str]:
    """A JSON object, or ``gateway-name=router-name`` pairs separated by commas."""
    text = text.strip()
    if text.startswith("{"):
        mapping = json.loads(text)
        if not isinstance(mapping, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()
        ):
            raise ValueError("expected a JSON object of strings")
        return mapping
    pairs = [p.split("=", 1) for p in text.split(",") if p.strip()]
    if any(len(p) != 2 for p in pairs):
        raise ValueError("expected gateway-name=router-name pairs separated by commas")
    return {k.strip(): v.strip() for k, v in pairs}


# field -> (parser, default); the variable is ENV_PREFIX + the field's name in capitals
_FIELDS: dict[str, tuple[Callable[[str], Any], Any]] = {
    "store": (str, None),
    "model": (str, None),
    "models_prefix": (str, "models"),
    "folder": (str, None),
    "s3_endpoint_url": (str, None),
    "poll_seconds": (_number, 30.0),
    "startup_wait_seconds": (_number, 10.0),
    "model_map": (_model_map, {}),
    "lambda": (_number, None),
    "exploration": (_number, 0.0),
    "exploration_policy": (str, "epsilon_greedy"),
    "temperature": (_number, 0.05),
    "seed": (int, None),
    "strategy_name": (str, DEFAULT_STRATEGY_NAME),
    "activate": (_flag, True),
    "fallback": (str, "gateway"),
    "decision_log": (str, None),
    "span_events": (_flag, True),
    "blas_threads": (int, 1),
    "warm_up": (_flag, True),
    "emit_at": (str, "outcome"),
    "outcome_wait_seconds": (_number, 300.0),
}


VARIABLES = tuple(f"{ENV_PREFIX}{name.upper()}" for name in _FIELDS)


@dataclass(frozen=True)
class PluginConfig:
    store: str | None = None  # artifact store: s3://bucket[/prefix] or a folder
    model: str | None = None  # the deployed (registered) model name, e.g. knn-router
    models_prefix: str = "models"
    folder: str | None = None  # a router folder instead of a store (no hot reload)
    s3_endpoint_url: str | None = None  # MinIO or another S3-compatible endpoint
    poll_seconds: float = 30.0  # pointer poll interval; 0 turns hot reload off
    startup_wait_seconds: float = 10.0  # how long startup waits for the first version
    model_map: dict[str, str] = field(default_factory=dict)  # gateway name -> router name
    lam: float | None = None  # None: the router's operating point (router.json default_lambda)
    exploration: float = 0.0
    exploration_policy: str = "epsilon_greedy"
    temperature: float = 0.05
    seed: int | None = None
    strategy_name: str = DEFAULT_STRATEGY_NAME
    activate: bool = True
    fallback: str = "gateway"  # "gateway": return None (the gateway decides); "first"
    decision_log: str | None = None  # append each decision payload to this JSONL file
    span_events: bool = True  # add the decision event to the current OpenTelemetry span
    blas_threads: int = 1  # numpy's BLAS threads in the gateway process (0: leave as they are)
    warm_up: bool = True  # load the embedding model before the first version serves
    emit_at: str = "outcome"  # "outcome": when the call ends (if it has a call id); "decision"
    outcome_wait: float = 300.0  # how long a decision waits for its call's outcome

    @classmethod
    def from_sources(
        cls, config: Mapping[str, Any] | None = None, settings: Mapping[str, Any] | None = None
    ) -> PluginConfig:
        """Each field from ``config`` (field names), else the plugin context's ``settings``
        (``router_<field>``: RouteIQ's plugin manager puts ``ROUTEIQ_PLUGIN_ROUTER_<FIELD>``
        there; this module never reads the environment for them), else its default. A value
        that does not parse names its variable."""
        values: dict[str, Any] = {}
        for name, (parse, default) in _FIELDS.items():
            variable = f"{ENV_PREFIX}{name.upper()}"
            raw = (config or {}).get(name)
            if raw is None:
                raw = (settings or {}).get(f"{SETTINGS_PREFIX}{name}")
            if raw is None or raw == "":
                values[name] = default
                continue
            try:
                values[name] = parse(raw) if isinstance(raw, str) else raw
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{variable}: {exc}") from None
        values["lam"] = values.pop("lambda")
        values["outcome_wait"] = values.pop("outcome_wait_seconds")
        made = cls(**values)
        made.check()
        return made

    def check(self) -> None:
        if self.exploration_policy not in POLICIES:
            raise ValueError(f"{ENV_PREFIX}EXPLORATION_POLICY must be one of {POLICIES}")
        if self.emit_at not in ("decision", "outcome"):
            raise ValueError(f"{ENV_PREFIX}EMIT_AT must be decision or outcome")
        if self.fallback not in ("gateway", "first"):
            raise ValueError(f"{ENV_PREFIX}FALLBACK must be gateway or first")
        if self.lam is not None and self.lam < 0:
            raise ValueError(f"{ENV_PREFIX}LAMBDA must be >= 0")
        if self.folder is None and not (self.store and self.model):
            raise ValueError(
                f"set {ENV_PREFIX}STORE and {ENV_PREFIX}MODEL (a deployed model in an artifact "
                f"store), or {ENV_PREFIX}FOLDER (a router folder)"
            )

    def policy(self) -> ExplorationPolicy:
        return ExplorationPolicy(
            self.exploration_policy, self.exploration, self.temperature, self.seed
        )


def load_runtime(config: PluginConfig):
    """The runtime ``config`` names (raises when its first version cannot be loaded)."""
    from routeiq_assets.deployment.manifest import ManifestKeys
    from routeiq_assets.deployment.publish import pointer_key
    from routeiq_assets.deployment.store import store_from_uri
    from routeiq_assets.serving.runtime import RouterRuntime

    keys = ManifestKeys.from_env()  # the gateway's LLMROUTER_MODEL_* key variables
    if config.folder:
        return RouterRuntime.from_folder(Path(config.folder), keys=keys)
    store = store_from_uri(config.store, endpoint_url=config.s3_endpoint_url)
    key = pointer_key(config.model, config.models_prefix)
    return RouterRuntime.from_store(store, key, keys=keys, poll_interval_s=config.poll_seconds)


def query_text(messages: Any, input: Any = None) -> str | None:
    """The query a router reads: the last user message's text (text parts of a multi-part
    message joined), else every message's text, else the ``input``."""

    def text_of(message: Any) -> str:
        content = message.get("content") if isinstance(message, Mapping) else None
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return " ".join(
                str(p.get("text", ""))
                for p in content
                if isinstance(p, Mapping) and p.get("type") == "text"
            )
        return ""

    if messages:
        users = [m for m in messages if isinstance(m, Mapping) and m.get("role") == "user"]
        text = text_of(users[-1]) if users else " ".join(text_of(m) for m in messages)
        if text.strip():
            return text.strip()
    if isinstance(input, str) and input.strip():
        return input.strip()
    if isinstance(input, list) and input and all(isinstance(i, str) for i in input):
        return " ".join(input).strip() or None
    return None


def deployment_name(deployment: Mapping[str, Any]) -> str:
    """A LiteLLM deployment's model as the gateway names it (``litellm_params.model``)."""
    params = deployment.get("litellm_params") or {}
    return str(params.get("model") or deployment.get("model_name") or "")


def call_id_of(context: Any) -> str | None:
    """The LiteLLM call id of the request (``litellm_call_id``), which the call's success and
    failure hooks see too; else the context's request id."""
    kwargs = getattr(context, "request_kwargs", None)
    found = kwargs.get("litellm_call_id") if isinstance(kwargs, Mapping) else None
    found = found or getattr(context, "request_id", None)
    return str(found) if found else None


def with_span_ids(payload: dict[str, Any], span: Any) -> None:
    """The trace and span ids of ``span`` (when it has valid ones) in ``payload``."""
    ids = span.get_span_context() if span is not None else None
    if ids is not None and ids.is_valid:
        payload["trace_id"] = format(ids.trace_id, "032x")
        payload["span_id"] = format(ids.span_id, "016x")


def token_counts(usage: Any) -> dict[str, int]:
    """input/output/total tokens from an OpenAI-style ``usage`` (object or mapping)."""
    out = {}
    for key, name in (
        ("input_tokens", "prompt_tokens"),
        ("output_tokens", "completion_tokens"),
        ("total_tokens", "total_tokens"),
    ):
        value = usage.get(name) if isinstance(usage, Mapping) else getattr(usage, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            out[key] = value
    return out


@functools.cache
def _candidate_filter() -> Callable[..., Any] | None:
    """RouteIQ's cooldown / ban / residency filter, when the gateway is installed (looked up
    once: a failed import on every request would cost more than the decision)."""
    try:
        from litellm_llmrouter.candidate_filter import (  # type: ignore[import-not-found]
            filter_routable_candidates,
        )
    except Exception:
        return None
    return filter_routable_candidates


@dataclass
class Decision:
    """One routing decision, as the strategy made it (also what its telemetry says)."""

    deployment: dict | None
    model: str | None  # the router's name of the served model
    fallback_reason: str | None = None
    propensity: float | None = None
    explored: bool = False
    greedy_model: str | None = None
    version: str | None = None
    payload: dict[str, Any] | None = None


class RouterStrategy(_StrategyBase):
    """RouteIQ routing strategy over a :class:`RouterRuntime` (``select_deployment(context)``)."""

    def __init__(self, config: PluginConfig, runtime: Any = None) -> None:
        self.config = config
        self.policy = config.policy()
        self._runtime = runtime
        self._lock = threading.Lock()
        self._log_lock = threading.Lock()
        self._log_file: Any = None  # the decision log, opened on the first decision
        self._pending: OrderedDict[Any, tuple[float, dict[str, Any]]] = OrderedDict()
        self.decisions = 0
        self.explored = 0
        self.fallbacks: Counter[str] = Counter()
        self.load_failures = 0
        self.telemetry_errors = 0
        self.last_load_error: str | None = None
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self._instruments: dict[str, Any] = {}

    # -- RouteIQ's RoutingStrategy interface -------------------------------------------------
    @property
    def name(self) -> str:
        return self.config.strategy_name

    @property
    def version(self) -> str | None:
        runtime = self._runtime
        return runtime.version if runtime is not None else None

    def validate(self) -> tuple[bool, str | None]:
        if self._runtime is None:
            return False, f"no router version loaded yet ({self.last_load_error or 'loading'})"
        return True, None

    def select_deployment(self, context: Any) -> dict | None:
        """The deployment for one request; None leaves the choice to the gateway."""
        return self.decide(context).deployment

    # -- the decision ------------------------------------------------------------------------
    def candidates(self, context: Any) -> list[dict]:
        """The model group's healthy deployments, as RouteIQ's default strategy reads them."""
        router = getattr(context, "router", None)
        pool = getattr(router, "healthy_deployments", None)
        if pool is None:
            pool = getattr(router, "model_list", None) or []
        group = [d for d in pool if isinstance(d, Mapping) and d.get("model_name") == context.model]
        routable = _candidate_filter()
        return group if routable is None else list(routable(router, group, context=context))

    def router_name(self, gateway_name: str, known: set[str]) -> str | None:
        """The router's model name for a gateway deployment name (through the model map, then
        as given, then without a ``provider/`` prefix); None when the router does not know it."""
        for name in (
            self.config.model_map.get(gateway_name),
            gateway_name,
            gateway_name.rsplit("/", 1)[-1],
        ):
            if name and name in known:
                return name
        return None

    def decide(self, context: Any, embedding: np.ndarray | None = None) -> Decision:
        started = time.perf_counter()
        runtime = self._runtime
        if getattr(context, "specific_deployment", False):
            return self._fallback(context, "specific_deployment", [], started)
        group = self.candidates(context)
        if runtime is None:
            return self._fallback(context, "not_loaded", group, started)
        if not group:
            return self._fallback(context, "no_candidates", group, started)
        router = runtime.router
        known = set(router.model_names_)
        by_name: dict[str, dict] = {}
        for deployment in group:
            name = self.router_name(deployment_name(deployment), known)
            if name is not None:
                by_name.setdefault(name, deployment)
        if not by_name:
            return self._fallback(context, "unknown_candidates", group, started)
        metadata = getattr(context, "metadata", None)
        if embedding is None and isinstance(metadata, dict):
            embedding = metadata.get(EMBEDDING_KEY)
        query, embed_ms = None, None
        if router.input_kind == "text" or embedding is None:
            query = query_text(getattr(context, "messages", None), getattr(context, "input", None))
            if query is None:
                return self._fallback(context, "no_query", group, started)
        if router.input_kind != "text" and embedding is None:
            embed_started = time.perf_counter()
            try:
                embedding = runtime.embed([query])[0]
            except Exception as exc:
                log.warning("routeiq router plugin: embedding failed: %s", type(exc).__name__)
                return self._fallback(context, "embedding_failed", group, started)
            embed_ms = (time.perf_counter() - embed_started) * 1000
            if isinstance(metadata, dict):
                metadata[EMBEDDING_KEY] = embedding  # a retry of this request reuses it
        names = list(by_name)
        try:
            routed = runtime.route(
                query=query if router.input_kind == "text" else None,
                embedding=None if router.input_kind == "text" else embedding,
                lam=self.config.lam,
                candidates=names,
            )
        except Exception as exc:
            log.warning("routeiq router plugin: router error: %s: %s", type(exc).__name__, exc)
            return self._fallback(context, "router_error", group, started)
        lam = routed.lam or 0.0
        costs = routed.costs or {}
        utilities = [routed.scores[n] - lam * costs.get(n, 0.0) for n in names]
        choice = self.policy.choose(utilities, names.index(routed.model))
        served = names[choice.index]
        decision = Decision(
            by_name[served],
            served,
            propensity=choice.propensity,
            explored=choice.explored,
            greedy_model=routed.model,
            version=routed.version,
        )
        with self._lock:
            self.decisions += 1
            self.explored += choice.explored
        self._count("decisions", {"outcome": "explored" if choice.explored else "greedy"})
        custom = {
            "selection_propensity": choice.propensity,
            "logging_policy": self.policy.label,
            "logging_policy_version": routed.version or "unversioned",
            "exploration_rate": self.policy.exploration,
            "incumbent_model": routed.model,
            "router_version": routed.version,
            "lambda": lam,
            "gateway_model": deployment_name(by_name[served]),
        }
        if self.policy.name == "softmax":
            custom["exploration_temperature"] = self.policy.temperature
        scores = dict(zip(names, utilities, strict=True))
        self._emit(context, decision, custom, scores, started, embed_ms, query)
        return decision

    def _fallback(self, context: Any, reason: str, group: list[dict], started: float) -> Decision:
        with self._lock:
            self.fallbacks[reason] += 1
        self._count("decisions", {"outcome": "fallback", "reason": reason})
        deployment = group[0] if group and self.config.fallback == "first" else None
        decision = Decision(
            deployment,
            None,
            fallback_reason=reason,
            version=self.version,
        )
        self._emit(context, decision, {"router_version": decision.version}, {}, started)
        return decision

    # -- telemetry -----------------------------------------------------------------------------
    def _emit(
        self,
        context: Any,
        decision: Decision,
        custom: dict[str, Any],
        scores: dict[str, float],
        started: float,
        embed_ms: float | None = None,
        query: str | None = None,
    ) -> None:
        total_ms = (time.perf_counter() - started) * 1000
        self._count("latency", total_ms)
        span = self._span() if self.config.span_events else None
        call_id = call_id_of(context) if self.config.emit_at == "outcome" else None
        if call_id is None and span is None and not self.config.decision_log and not self.listeners:
            return
        try:  # telemetry never fails a decision
            payload = decision_payload(context, self.name, decision, custom, scores, total_ms)
            payload["timings"]["embedding_ms"] = embed_ms
            if query is not None:
                payload["input"]["query_length"] = len(query)
            with_span_ids(payload, span)
            decision.payload = payload
            if call_id is None:
                self._publish(payload, span)
            else:
                self._hold(call_id, payload)
        except Exception as exc:
            self._telemetry_failed(exc)

    def _telemetry_failed(self, exc: Exception) -> None:
        with self._lock:
            self.telemetry_errors += 1
        log.warning("routeiq router plugin: decision telemetry failed: %s", exc)

    def _publish(self, payload: dict[str, Any], span: Any) -> None:
        if span is None and not self.config.decision_log:
            text = None
        else:  # strict JSON: a non-finite number raises here, and is counted, never written
            text = json.dumps(payload, allow_nan=False, separators=(",", ":"))
        if span is not None:
            span.add_event(DECISION_EVENT_NAME, {PAYLOAD_ATTRIBUTE: text})
        if self.config.decision_log:
            with self._log_lock:
                if self._log_file is None:
                    self._log_file = open(self.config.decision_log, "a", encoding="utf-8")  # noqa: SIM115
                self._log_file.write(text + "\n")
                self._log_file.flush()
        for listener in self.listeners:
            listener(payload)

    def _hold(self, call_id: str, payload: dict[str, Any]) -> None:
        """Keep a decision until its call's outcome (:meth:`complete`); publish those held past
        ``outcome_wait_seconds`` (or beyond ``PENDING_MAX``) as they are."""
        now = time.monotonic()
        expired = []
        with self._lock:
            retried = self._pending.pop(call_id, None)  # routed again: a retry of the call
            if retried is not None:
                expired.append(retried[1])
            self._pending[call_id] = (now, payload)
            while self._pending:
                oldest, (held_at, held) = next(iter(self._pending.items()))
                if len(self._pending) <= PENDING_MAX and now - held_at < self.config.outcome_wait:
                    break
                del self._pending[oldest]
                expired.append(held)
        for held in expired:
            held["custom_attributes"]["outcome_observed"] = False
            self._publish(held, None)

    def complete(self, call_id: Any, status: str, usage: Any = None) -> bool:
        """The call a held decision routed has ended (``status``: success, error or timeout):
        publish its decision with that outcome and the call's token counts."""
        with self._lock:
            entry = self._pending.pop(str(call_id), None) if call_id else None
        if entry is None:
            return False
        payload = entry[1]
        try:
            payload["outcome"].update(status=status, **token_counts(usage))
            payload["custom_attributes"]["outcome_observed"] = True
            span = self._span() if self.config.span_events else None
            if payload["trace_id"] is None:
                with_span_ids(payload, span)
            self._publish(payload, span)
        except Exception as exc:
            self._telemetry_failed(exc)
        return True

    def flush_pending(self) -> None:
        """Publish every held decision as it is (at shutdown)."""
        with self._lock:
            held = [payload for _, payload in self._pending.values()]
            self._pending.clear()
        for payload in held:
            payload["custom_attributes"]["outcome_observed"] = False
            self._publish(payload, None)

    @staticmethod
    def _span() -> Any:
        try:
            from opentelemetry import trace
        except ImportError:
            return None
        span = trace.get_current_span()
        return span if span is not None and span.is_recording() else None

    # -- metrics -------------------------------------------------------------------------------
    def metrics(self) -> dict[str, Any]:
        """What the gateway's metrics and health check read (no secrets)."""
        runtime = self._runtime
        with self._lock:
            return {
                "strategy_name": self.name,
                "loaded": runtime is not None,
                "router_version": runtime.version if runtime is not None else None,
                "reloads": runtime.swaps if runtime is not None else 0,
                "reload_failures": getattr(runtime, "failures", 0) if runtime is not None else 0,
                "last_reload_error": runtime.last_error if runtime is not None else None,
                "load_failures": self.load_failures,
                "last_load_error": self.last_load_error,
                "decisions": self.decisions,
                "explored": self.explored,
                "telemetry_errors": self.telemetry_errors,
                "pending_outcomes": len(self._pending),
                "fallbacks": sum(self.fallbacks.values()),
                "fallback_reasons": {r: self.fallbacks[r] for r in FALLBACK_REASONS},
                "exploration": self.policy.exploration,
                "logging_policy": self.policy.label,
            }

    def instrument(self, accessor: Any) -> None:
        """OpenTelemetry instruments through RouteIQ's metrics accessor (``context.metrics``):
        a decision counter, a latency histogram, and observable version/reload gauges."""
        try:
            self._instruments["decisions"] = accessor.create_counter(
                "routeiq.router_plugin.decisions",
                unit="{decision}",
                description="routing decisions by outcome (greedy, explored, fallback) and reason",
            )
            self._instruments["latency"] = accessor.create_histogram(
                "routeiq.router_plugin.decision_latency",
                unit="ms",
                description="time to a routing decision, embedding included",
            )
            meter = accessor.get_meter("routeiq_assets.gateway_plugin")
            from opentelemetry.metrics import Observation

            def observe(key: str):
                return lambda _options: [Observation(float(self.metrics()[key] or 0))]

            for key in ("reloads", "reload_failures", "load_failures"):
                meter.create_observable_counter(
                    f"routeiq.router_plugin.{key}", callbacks=[observe(key)]
                )
            meter.create_observable_gauge(
                "routeiq.router_plugin.loaded", callbacks=[observe("loaded")]
            )
        except Exception as exc:  # metrics are optional; a decision never depends on them
            log.info("routeiq router plugin: no OpenTelemetry metrics (%s)", exc)

    def _count(self, name: str, value: Any) -> None:
        instrument = self._instruments.get(name)
        if instrument is None:
            return
        if name == "latency":
            instrument.record(value)
        else:
            instrument.add(1, value)

    # -- loading -------------------------------------------------------------------------------
    def attach(self, runtime: Any) -> None:
        """Serve ``runtime`` (and poll its store for new versions when configured)."""
        self._runtime = runtime
        if self.config.poll_seconds > 0 and not self.config.folder:
            runtime.start_polling(self.config.poll_seconds)

    def load_in_background(self, stop: threading.Event) -> threading.Thread:
        """Load the first version in a daemon thread, retrying every ``poll_seconds`` (at least
        one second) until it loads or ``stop`` is set; requests fall back meanwhile."""

        def keep_loading() -> None:
            while not stop.is_set():
                try:
                    runtime = load_runtime(self.config)
                except Exception as exc:
                    with self._lock:
                        self.load_failures += 1
                        self.last_load_error = f"{type(exc).__name__}: {exc}"
                    log.warning("routeiq router plugin: no router yet: %s", self.last_load_error)
                    stop.wait(max(1.0, self.config.poll_seconds))
                    continue
                if self.config.warm_up and runtime.router.input_kind != "text":
                    try:  # requests fall back meanwhile rather than wait for the encoder
                        runtime.embed(["warm up"])
                    except Exception as exc:
                        log.warning("routeiq router plugin: embedding model: %s", exc)
                if stop.is_set():
                    runtime.close()
                    return
                self.attach(runtime)
                log.info("routeiq router plugin: serving version %s", runtime.version)
                return

        thread = threading.Thread(target=keep_loading, name="routeiq-router-load", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self.flush_pending()
        runtime, self._runtime = self._runtime, None
        if runtime is not None:
            runtime.close()
        with self._log_lock:
            if self._log_file is not None:
                self._log_file.close()
                self._log_file = None


def decision_payload(
    context: Any,
    strategy_name: str,
    decision: Decision,
    custom: dict[str, Any],
    scores: dict[str, float],
    total_ms: float,
) -> dict[str, Any]:
    """A ``routeiq.router_decision.v1`` payload, in the shape RouteIQ's RouterDecisionEvent
    serialises (contract v1), with the plugin's fields in ``custom_attributes``."""
    now = time.time()
    reason = decision.fallback_reason
    return {
        "contract_version": "v1",
        "contract_name": DECISION_EVENT_NAME,
        "event_id": str(uuid.uuid4()),
        "trace_id": None,
        "span_id": None,
        "parent_span_id": None,
        "timestamp_utc": datetime.fromtimestamp(now, UTC).isoformat().replace("+00:00", "Z"),
        "timestamp_unix_ms": int(now * 1000),
        "input": {
            "requested_model": getattr(context, "model", None),
            "query_length": 0,
            "user_id": getattr(context, "user_id", None),
            "team_id": getattr(context, "tenant_id", None),
            "api_type": None,
            "request_metadata": {},
        },
        "strategy_name": strategy_name,
        "strategy_version": decision.version,
        "candidate_deployments": [
            {"model_name": n, "provider": None, "score": s, "available": True}
            for n, s in scores.items()
        ],
        "selected_deployment": decision.model,
        "selection_reason": (
            "fallback" if reason else "exploration" if decision.explored else "router"
        ),
        "timings": {"total_ms": total_ms, "strategy_ms": total_ms, "embedding_ms": None},
        "outcome": {"status": "fallback" if reason else "success"},
        "fallback": {
            "fallback_triggered": reason is not None,
            "original_model": None,
            "fallback_reason": reason,
            "fallback_attempt": 0,
        },
        "custom_attributes": {k: v for k, v in custom.items() if v is not None},
    }


class RouteIQRouterPlugin(_PluginBase):
    """The gateway plugin: registers :class:`RouterStrategy` at startup, closes it at shutdown.

    RouteIQ's plugin manager instantiates it with no arguments and calls ``metadata``,
    ``startup(app, context)``, ``health_check()`` and ``shutdown(app, context)``.
    """

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        self._config_overrides = dict(config or {})
        self.strategy: RouterStrategy | None = None
        self._stop = threading.Event()
        self._loader: threading.Thread | None = None
        self._blas_limit: Any = None

    @property
    def metadata(self) -> Any:
        __version__ = package_version()
        description = "serves a RouteIQ-trained router (RouterRuntime) as a routing strategy"
        if PluginMetadata is None:
            return _Metadata(PLUGIN_NAME, __version__, {"routing_strategy"}, description)
        return PluginMetadata(
            name=PLUGIN_NAME,
            version=__version__,
            capabilities={PluginCapability.ROUTING_STRATEGY},
            description=description,
        )

    @property
    def name(self) -> str:
        return PLUGIN_NAME

    async def startup(self, app: Any, context: Any = None) -> None:
        settings = getattr(context, "settings", None)
        config = PluginConfig.from_sources(self._config_overrides, settings)
        strategy = RouterStrategy(config)
        self._blas_limit = limit_blas_threads(config.blas_threads)
        if getattr(context, "metrics", None) is not None:
            strategy.instrument(context.metrics)
        self._stop.clear()
        self._loader = strategy.load_in_background(self._stop)
        if config.startup_wait_seconds > 0:
            # the first version, when it comes quickly; startup never fails on a slow store
            await asyncio.get_running_loop().run_in_executor(
                None, self._loader.join, config.startup_wait_seconds
            )
        self.strategy = strategy
        register(strategy, getattr(context, "routing", None), activate=config.activate)
        if app is not None and hasattr(app, "state"):
            app.state.routeiq_router_strategy = strategy

    async def shutdown(self, app: Any, context: Any = None) -> None:
        self._stop.set()
        strategy, self.strategy = self.strategy, None
        if strategy is None:
            return
        unregister(strategy, getattr(context, "routing", None))
        if self._loader is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._loader.join, 10.0)
        strategy.close()
        if self._blas_limit is not None:
            self._blas_limit.restore_original_limits()
            self._blas_limit = None

    async def on_llm_success(self, model: str, response: Any, kwargs: dict[str, Any]) -> None:
        if self.strategy is not None:
            usage = getattr(response, "usage", None)
            if usage is None and isinstance(response, Mapping):
                usage = response.get("usage")
            self.strategy.complete(kwargs.get("litellm_call_id"), "success", usage)

    async def on_llm_failure(
        self, model: str, exception: Exception, kwargs: dict[str, Any]
    ) -> None:
        if self.strategy is not None:
            timeout = "timeout" in type(exception).__name__.lower()
            self.strategy.complete(kwargs.get("litellm_call_id"), "timeout" if timeout else "error")

    async def health_check(self) -> dict[str, Any]:
        strategy = self.strategy
        if strategy is None:
            return {"status": "unhealthy", "reason": "not started"}
        metrics = strategy.metrics()
        return {"status": "ok" if metrics["loaded"] else "degraded", **metrics}


@dataclass(frozen=True)
class _Metadata:
    """PluginMetadata's fields, when RouteIQ is not installed."""

    name: str
    version: str
    capabilities: set[str]
    description: str = ""
    depends_on: list[str] = field(default_factory=list)
    priority: int = 1000


def limit_blas_threads(threads: int) -> Any:
    """Limit numpy's BLAS to ``threads`` threads (0: no limit); return what restores it. One
    query's matrix-vector products only lose by spreading over threads, and a gateway serves many
    requests at once (docs/gateway-plugin.md has the figures)."""
    if threads <= 0:
        return None
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return None
    return threadpool_limits(limits=threads, user_api="blas")


@functools.cache
def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("routeiq-assets")
    except PackageNotFoundError:
        return "0.0.0"


def register(strategy: RouterStrategy, routing: Any = None, activate: bool = True) -> bool:
    """Register ``strategy`` in RouteIQ's strategy registry (through the plugin context's
    routing accessor, else the registry singleton) and activate it when asked."""
    name = strategy.name
    metadata = {"plugin": PLUGIN_NAME, "source": "routeiq_assets"}
    if routing is not None:
        done = routing.register_strategy(name, strategy, metadata=metadata)
        if done and activate:
            done = routing.set_active_strategy(name)
        return bool(done)
    try:
        from litellm_llmrouter.strategy_registry import (  # type: ignore[import-not-found]
            get_routing_registry,
        )
    except Exception:
        log.warning("routeiq router plugin: no RouteIQ strategy registry; %s not registered", name)
        return False
    registry = get_routing_registry()
    registry.register(name, strategy, metadata=metadata)
    return registry.set_active(name) if activate else True


def unregister(strategy: RouterStrategy, routing: Any = None) -> None:
    registry = routing
    if registry is None or not hasattr(registry, "unregister"):
        try:
            from litellm_llmrouter.strategy_registry import (  # type: ignore[import-not-found]
                get_routing_registry,
            )
        except Exception:
            return
        registry = get_routing_registry()
    registry.unregister(strategy.name)
