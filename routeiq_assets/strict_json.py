"""Strict JSON for everything the platform writes: NaN and Infinity are not JSON."""

from __future__ import annotations

import json
from typing import Any

import numpy as np


def finite_json(value: Any) -> Any:
    """``value`` with every float that is not finite (NaN, Infinity) as None, numpy scalars as
    Python numbers: what strict JSON and Dagster metadata can hold."""
    if isinstance(value, dict):
        return {k: finite_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_json(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """``json.dumps`` of :func:`finite_json` of ``value``, refusing NaN (sorted keys, indented)."""
    return json.dumps(
        finite_json(value), indent=2, sort_keys=True, allow_nan=False, default=float, **kwargs
    )
