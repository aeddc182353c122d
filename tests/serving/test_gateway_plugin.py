"""The gateway plugin's strategy without a store: exploration rates and logged propensities over
10,000 decisions against the configured policy, fallbacks and their reasons, one embedding per
request, configuration from RouteIQ's plugin settings or the environment."""

from __future__ import annotations

import asyncio
import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from routeiq_assets.contract import parse_decision_payload
from routeiq_assets.routers import ROUTER_TYPES, save_router
from routeiq_assets.serving.exploration import ExplorationPolicy
from routeiq_assets.serving.gateway_plugin import (
    EMBEDDING_KEY,
    PluginConfig,
    RouteIQRouterPlugin,
    RouterStrategy,
    query_text,
)
from routeiq_assets.serving.runtime import RouterRuntime
from routeiq_assets.settings import DEFAULT_EMBEDDING_MODEL
from routeiq_assets.warehouse.normalize import custom_fields
from tests.serving.routeiq_fakes import LiteLLMRouter, RoutingContext, deployments

MODELS = ["m-cheap", "m-mid", "m-big", "m-huge"]
DIM = 16
N = 10_000


@pytest.fixture(scope="module")
def runtime(tmp_path_factory) -> RouterRuntime:
    """A knn router over four models whose quality depends on the query's direction."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, DIM)).astype(np.float32)
    quality = 1 / (1 + np.exp(-x[:, :4] * np.array([0.5, 1.0, 1.5, 2.0]))).astype(np.float32)
    mask = rng.random(quality.shape) < 0.8
    cost = np.array([0.001, 0.002, 0.004, 0.008])
    router = ROUTER_TYPES["knn"](k=20).fit(x, quality, mask, MODELS, cost)
    folder = Path(tmp_path_factory.mktemp("router"))
    extra = {"embedding_model": DEFAULT_EMBEDDING_MODEL, "embedding_dim": DIM}
    save_router(router, folder, extra={**extra, "default_lambda": 5.0})
    return RouterRuntime.from_folder(folder)


def strategy_for(runtime, **config) -> RouterStrategy:
    return RouterStrategy(PluginConfig(folder="unused", **config), runtime)


def context(embedding=None, names=MODELS, **kwargs) -> RoutingContext:
    gateway = LiteLLMRouter(deployments("auto", list(names)))
    metadata = {} if embedding is None else {EMBEDDING_KEY: embedding}
    return RoutingContext(gateway, "auto", metadata=metadata, **kwargs)


def expected_probabilities(utilities: list[float], greedy: int, policy: str, eps: float, t: float):
    """The configured policy written out independently of serving/exploration.py."""
    others = [i for i in range(len(utilities)) if i != greedy]
    weights = {i: 1.0 if policy == "epsilon_greedy" else math.exp(utilities[i] / t) for i in others}
    total = sum(weights.values())
    return [1 - eps if i == greedy else eps * weights[i] / total for i in range(len(utilities))]


@pytest.mark.parametrize(
    "policy,eps,temperature",
    [("epsilon_greedy", 0.2, 0.05), ("softmax", 0.3, 0.02)],
)
def test_exploration_rate_and_propensities_match_the_policy(runtime, policy, eps, temperature):
    strategy = strategy_for(
        runtime, exploration=eps, exploration_policy=policy, temperature=temperature, seed=7
    )
    payloads: list[dict] = []
    strategy.listeners.append(payloads.append)
    probe = np.random.default_rng(1).normal(size=DIM).astype(np.float32)
    for _ in range(N):
        strategy.select_deployment(context(probe))
    metrics = strategy.metrics()
    assert metrics["decisions"] == N and metrics["fallbacks"] == 0

    first = parse_decision_payload(payloads[0])
    names = [c.model_name for c in first.candidate_deployments]
    utilities = [c.score for c in first.candidate_deployments]
    greedy = names.index(first.custom_attributes["incumbent_model"])
    assert greedy == int(np.argmax(utilities))  # the router's decision at its operating point
    assert first.custom_attributes["lambda"] == 5.0  # router.json's default_lambda
    expected = expected_probabilities(utilities, greedy, policy, eps, temperature)

    # the exploration rate: non-greedy choices are Binomial(N, eps)
    explored = sum(
        p["custom_attributes"]["incumbent_model"] != p["selected_deployment"] for p in payloads
    )
    assert explored == metrics["explored"]
    assert abs(explored / N - eps) <= 4 * math.sqrt(eps * (1 - eps) / N)
    # each model's share is Binomial(N, its probability), and its logged propensity is that
    chosen = Counter(p["selected_deployment"] for p in payloads)
    for name, p in zip(names, expected, strict=True):
        assert abs(chosen[name] / N - p) <= 4 * math.sqrt(p * (1 - p) / N) + 1e-12, name
    for payload in payloads:
        custom = payload["custom_attributes"]
        _, propensity, logged_policy, _ = custom_fields(custom)  # what ingestion reads back
        assert propensity == pytest.approx(expected[names.index(payload["selected_deployment"])])
        assert logged_policy == policy and custom["logging_policy_version"] == "unversioned"
        assert custom["exploration_rate"] == eps
    # importance weights average to the number of models the policy can serve (within 4 sd)
    inverse = np.mean([1 / p["custom_attributes"]["selection_propensity"] for p in payloads])
    variance = sum(1 / p for p in expected) - len(names) ** 2
    assert abs(inverse - len(names)) <= 4 * math.sqrt(variance / N)


def test_a_seed_repeats_the_choices(runtime):
    probe = np.ones(DIM, np.float32)

    def run(seed):
        strategy = strategy_for(runtime, exploration=0.5, seed=seed)
        return [strategy.decide(context(probe)).model for _ in range(200)]

    assert run(3) == run(3) != run(4)


def test_exploration_policy_edges():
    assert ExplorationPolicy("softmax", 0.3).choose([0.1], 0).propensity == 1.0
    assert ExplorationPolicy(exploration=0.0).label == "greedy"
    for bad in ({"exploration": 1.5}, {"temperature": 0.0}, {"name": "ucb"}):
        with pytest.raises(ValueError):
            ExplorationPolicy(**bad)


def test_fallbacks_are_counted_with_their_reason(runtime):
    probe = np.ones(DIM, np.float32)
    strategy = strategy_for(runtime)
    payloads: list[dict] = []
    strategy.listeners.append(payloads.append)
    assert strategy.select_deployment(context(probe, names=["gpt-x", "claude-y"])) is None
    assert strategy.select_deployment(context()) is None  # no messages, no embedding
    assert strategy.select_deployment(context(probe, specific_deployment=True)) is None
    empty = RoutingContext(LiteLLMRouter([]), "auto", metadata={EMBEDDING_KEY: probe})
    assert strategy.select_deployment(empty) is None
    unloaded = RouterStrategy(PluginConfig(folder="unused", fallback="first"))
    first = unloaded.select_deployment(context(probe))
    assert first["litellm_params"]["model"] == "openai/m-cheap"  # the group's first deployment
    assert unloaded.validate()[0] is False
    reasons = strategy.metrics()["fallback_reasons"]
    assert {r: n for r, n in reasons.items() if n} == {
        "unknown_candidates": 1,
        "no_query": 1,
        "specific_deployment": 1,
        "no_candidates": 1,
    }
    assert unloaded.metrics()["fallback_reasons"]["not_loaded"] == 1
    decision = parse_decision_payload(payloads[0])
    assert decision.outcome.status == "fallback" and decision.fallback.fallback_triggered
    assert decision.fallback.fallback_reason == "unknown_candidates"
    assert custom_fields(decision.custom_attributes)[1] is None  # no propensity on a fallback


def test_known_subset_and_model_map(runtime):
    probe = np.ones(DIM, np.float32)
    strategy = strategy_for(runtime, model_map={"azure/big-eu": "m-big"})
    gateway = LiteLLMRouter(
        [
            {"model_name": "auto", "litellm_params": {"model": "azure/big-eu"}},
            {"model_name": "auto", "litellm_params": {"model": "unknown/other"}},
            {"model_name": "other-group", "litellm_params": {"model": "m-huge"}},
        ]
    )
    decision = strategy.decide(RoutingContext(gateway, "auto", metadata={EMBEDDING_KEY: probe}))
    assert decision.model == "m-big" and decision.propensity == 1.0
    assert decision.deployment["litellm_params"]["model"] == "azure/big-eu"


def test_one_embedding_per_request(runtime, monkeypatch):
    calls: list[list[str]] = []

    def embed(texts, embedding_model=None):
        calls.append(texts)
        return np.ones((len(texts), DIM), np.float32)

    monkeypatch.setattr(runtime, "embed", embed)
    strategy = strategy_for(runtime)
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": [{"type": "text", "text": "prove"}, {"type": "image"}]},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "write a python function"},
    ]
    request = context(messages=messages)
    strategy.select_deployment(request)
    strategy.select_deployment(request)  # a retry of the same request
    assert calls == [["write a python function"]]
    monkeypatch.setattr(runtime, "embed", lambda *a, **k: 1 / 0)
    assert strategy.select_deployment(context(messages=messages)) is None
    assert strategy.metrics()["fallback_reasons"]["embedding_failed"] == 1


def test_a_decision_is_logged_with_its_calls_outcome(runtime):
    """With a LiteLLM call id the decision waits for the call's success or failure hook (as
    RouteIQ's callback bridge calls them) and carries its outcome and tokens."""
    probe = np.ones(DIM, np.float32)
    plugin = RouteIQRouterPlugin()
    plugin.strategy = strategy = strategy_for(runtime, exploration=0.5, seed=1)
    payloads: list[dict] = []
    strategy.listeners.append(payloads.append)
    for call in ("c1", "c2", "c3"):
        decision = strategy.decide(context(probe, request_kwargs={"litellm_call_id": call}))
        assert decision.deployment is not None
    assert payloads == [] and strategy.metrics()["pending_outcomes"] == 3
    usage = {"prompt_tokens": 12, "completion_tokens": 30, "total_tokens": 42}
    asyncio.run(plugin.on_llm_success("m", {"usage": usage}, {"litellm_call_id": "c2"}))
    asyncio.run(plugin.on_llm_failure("m", TimeoutError("slow"), {"litellm_call_id": "c1"}))
    asyncio.run(plugin.on_llm_success("m", {}, {"litellm_call_id": "unknown"}))
    first, second = (parse_decision_payload(p) for p in payloads)
    assert first.outcome.status == "success" and first.outcome.total_tokens == 42
    assert second.outcome.status == "timeout" and second.custom_attributes["outcome_observed"]
    assert (
        custom_fields(first.custom_attributes)[1]
        == payloads[0]["custom_attributes"]["selection_propensity"]
    )
    strategy.close()  # shutdown publishes what is still held, marked unobserved
    assert len(payloads) == 3 and payloads[2]["custom_attributes"]["outcome_observed"] is False
    expiring = strategy_for(runtime, outcome_wait=0.0)
    expiring.listeners.append(payloads.append)
    expiring.decide(context(probe, request_kwargs={"litellm_call_id": "c4"}))
    assert len(payloads) == 4  # no wait: published at once, unobserved
    retried = strategy_for(runtime)
    retried.listeners.append(payloads.append)
    for _ in range(2):  # the same call routed again (a retry): the first decision is published
        retried.decide(context(probe, request_kwargs={"litellm_call_id": "c5"}))
    assert len(payloads) == 5 and payloads[4]["custom_attributes"]["outcome_observed"] is False
    assert retried.metrics()["pending_outcomes"] == 1


def test_opentelemetry_instruments_through_the_metrics_accessor(runtime):
    class Instrument:
        def __init__(self):
            self.calls = []

        def add(self, value, attributes=None):
            self.calls.append((value, attributes))

        def record(self, value, attributes=None):
            self.calls.append((value, attributes))

    class Meter:
        callbacks: dict = {}

        def create_observable_counter(self, name, callbacks):
            self.callbacks[name] = callbacks[0]

        create_observable_gauge = create_observable_counter

    class Accessor:  # RouteIQ's MetricsAccessor protocol (gateway/plugin_protocols.py)
        instruments: dict = {}

        def create_counter(self, name, *, unit="", description=""):
            return self.instruments.setdefault(name, Instrument())

        create_histogram = create_counter

        def get_meter(self, name, version=""):
            return Meter()

    strategy = strategy_for(runtime)
    strategy.instrument(Accessor())
    strategy.select_deployment(context(np.ones(DIM, np.float32)))
    strategy.select_deployment(context())
    counted = Accessor.instruments["routeiq.router_plugin.decisions"].calls
    assert counted == [
        (1, {"outcome": "greedy"}),
        (1, {"outcome": "fallback", "reason": "no_query"}),
    ]
    assert len(Accessor.instruments["routeiq.router_plugin.decision_latency"].calls) == 2
    loaded = Meter.callbacks["routeiq.router_plugin.loaded"](None)
    assert [o.value for o in loaded] == [1.0]


def test_query_text():
    assert query_text([{"role": "user", "content": " hi "}]) == "hi"
    assert query_text([{"role": "system", "content": "sys"}]) == "sys"
    assert query_text(None, "from input") == "from input"
    assert query_text(None, ["a", "b"]) == "a b"
    assert query_text([{"role": "user", "content": None}], [1, 2]) is None


def test_configuration_from_routeiqs_plugin_settings_and_errors():
    # RouteIQ's plugin manager: ROUTEIQ_PLUGIN_ROUTER_STORE arrives as settings["router_store"]
    settings = {
        "router_store": "s3://bucket",
        "router_model": "knn-router",
        "router_exploration": "0.1",
        "router_model_map": '{"openai/gpt-4o": "gpt-4o"}',
        "startup_timeout": "30",  # another plugin's setting
    }
    config = PluginConfig.from_sources(settings=settings)
    assert config.exploration == 0.1 and config.model == "knn-router" and config.lam is None
    assert config.model_map == {"openai/gpt-4o": "gpt-4o"} and config.poll_seconds == 30.0
    assert PluginConfig.from_sources({"lambda": 2.0, "exploration": 0.2}, settings).lam == 2.0
    assert PluginConfig.from_sources({"exploration": 0.2}, settings).exploration == 0.2
    with pytest.raises(ValueError, match="ROUTEIQ_PLUGIN_ROUTER_EXPLORATION"):
        PluginConfig.from_sources(settings={**settings, "router_exploration": "nan"})
    with pytest.raises(ValueError, match="ROUTEIQ_PLUGIN_ROUTER_FOLDER"):
        PluginConfig.from_sources()
    with pytest.raises(ValueError, match="FALLBACK"):
        PluginConfig.from_sources({"fallback": "random"}, settings)


def test_plugin_metadata_without_routeiq():
    plugin = RouteIQRouterPlugin()
    assert plugin.metadata.capabilities == {"routing_strategy"}
    assert plugin.name == plugin.metadata.name == "routeiq-router"
