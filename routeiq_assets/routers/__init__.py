"""Routers: one interface, one module a type, safe save/load (npz + JSON, never pickle)."""

from routeiq_assets.routers.base import Router, decide, load_router, save_router
from routeiq_assets.routers.knn import KNNRouter

ROUTER_TYPES: dict[str, type[Router]] = {"knn": KNNRouter}

__all__ = ["ROUTER_TYPES", "KNNRouter", "Router", "decide", "load_router", "save_router"]
