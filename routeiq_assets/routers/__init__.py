"""Routers: one interface, one module a type, safe save/load (npz + JSON, never pickle)."""

from routeiq_assets.routers.base import Router, decide, load_router, save_router
from routeiq_assets.routers.bert import BertRouter
from routeiq_assets.routers.ensemble import EnsembleRouter
from routeiq_assets.routers.knn import KNNRouter
from routeiq_assets.routers.linear import LinearRouter
from routeiq_assets.routers.mf import MFRouter
from routeiq_assets.routers.mlp import MLPRouter

ROUTER_TYPES: dict[str, type[Router]] = {
    cls.router_type: cls
    for cls in (KNNRouter, MLPRouter, LinearRouter, MFRouter, BertRouter, EnsembleRouter)
}

__all__ = [
    "ROUTER_TYPES",
    "BertRouter",
    "EnsembleRouter",
    "KNNRouter",
    "LinearRouter",
    "MFRouter",
    "MLPRouter",
    "Router",
    "decide",
    "load_router",
    "save_router",
]
