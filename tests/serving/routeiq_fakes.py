"""Stand-ins for the RouteIQ gateway pieces that drive a plugin, making the calls RouteIQ makes
(read from its source, baladithyab/RouteIQ, not copied):

* ``src/litellm_llmrouter/gateway/plugin_manager.py`` ``PluginManager``: ``_load_plugin``
  imports ``module.Class`` and instantiates it with no arguments; ``_validate_capabilities``
  reads ``plugin.metadata.capabilities``; ``startup(app)`` awaits
  ``asyncio.wait_for(plugin.startup(app, context), timeout)``; ``shutdown(app)`` awaits
  ``plugin.shutdown(app, context)``; readiness awaits ``plugin.health_check()``.
  ``_collect_plugin_settings`` puts every ``ROUTEIQ_PLUGIN_*`` variable in
  ``context.settings``, the prefix stripped and the rest lowercased.
* ``gateway/plugin_protocols.py`` ``RoutingAccessor``: ``register_strategy(name, strategy, *,
  metadata=None)``, ``set_active_strategy(name)``, ``list_strategies()``,
  ``get_active_strategy()``.
* ``src/litellm_llmrouter/strategy_registry.py``: ``RoutingStrategyRegistry.register`` reads
  ``strategy.version``; ``RoutingPipeline.route(context)`` calls
  ``strategy.select_deployment(context)`` on the active strategy, falling back to its default
  strategy when that raises; ``RoutingContext`` carries ``router`` (the LiteLLM Router, whose
  ``healthy_deployments`` or ``model_list`` the strategies filter by ``model_name``),
  ``model``, ``messages``, ``input``, ``specific_deployment``, ``request_kwargs``, ids and a
  ``metadata`` dict.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
from dataclasses import dataclass, field
from typing import Any


@dataclass
class RoutingContext:
    router: Any
    model: str
    messages: list[dict] | None = None
    input: Any = None
    specific_deployment: bool = False
    request_kwargs: dict | None = None
    request_id: str | None = None
    user_id: str | None = None
    tenant_id: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class LiteLLMRouter:
    model_list: list[dict]

    @property
    def healthy_deployments(self) -> list[dict]:
        return self.model_list


def deployments(group: str, names: list[str], provider: str = "openai") -> list[dict]:
    return [{"model_name": group, "litellm_params": {"model": f"{provider}/{n}"}} for n in names]


class Registry:
    """RoutingStrategyRegistry's register/activate/select and the pipeline's route()."""

    def __init__(self) -> None:
        self.strategies: dict[str, tuple[Any, str, dict]] = {}
        self.active: str | None = None

    # RoutingAccessor
    def register_strategy(self, name: str, strategy: Any, *, metadata: dict | None = None):
        self.strategies[name] = (strategy, getattr(strategy, "version", None) or "", metadata)
        if self.active is None:
            self.active = name
        return True

    def set_active_strategy(self, name: str) -> bool:
        if name not in self.strategies:
            return False
        self.active = name
        return True

    def list_strategies(self) -> list[str]:
        return list(self.strategies)

    def get_active_strategy(self) -> str | None:
        return self.active

    def unregister(self, name: str) -> bool:
        self.active = None if self.active == name else self.active
        return self.strategies.pop(name, None) is not None

    def route(self, context: RoutingContext) -> tuple[dict | None, str | None]:
        """(deployment, error) as RoutingPipeline.route leaves them in its RoutingResult."""
        strategy = self.strategies[self.active][0]
        try:
            return strategy.select_deployment(context), None
        except Exception as exc:  # the pipeline logs it and falls back to its default strategy
            return None, f"{type(exc).__name__}: {exc}"


@dataclass
class PluginContext:
    settings: dict[str, Any]
    logger: logging.Logger
    validate_outbound_url: Any = None
    routing: Any = None
    metrics: Any = None


def plugin_settings() -> dict[str, Any]:
    return {
        key[len("ROUTEIQ_PLUGIN_") :].lower(): value
        for key, value in os.environ.items()
        if key.startswith("ROUTEIQ_PLUGIN_")
    }


class PluginManager:
    def __init__(self, path: str, registry: Registry) -> None:
        module, name = path.rsplit(".", 1)
        self.plugin = getattr(importlib.import_module(module), name)()
        assert "routing_strategy" in {
            getattr(c, "value", c) for c in self.plugin.metadata.capabilities
        }
        self.context = PluginContext(
            plugin_settings(), logging.getLogger("plugins"), None, registry
        )

    def startup(self, app: Any = None, timeout: float = 30.0) -> None:
        asyncio.run(asyncio.wait_for(self.plugin.startup(app, self.context), timeout))

    def health(self) -> dict[str, Any]:
        return asyncio.run(self.plugin.health_check())

    def shutdown(self, app: Any = None) -> None:
        asyncio.run(self.plugin.shutdown(app, self.context))
