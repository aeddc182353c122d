"""What RouteIQ's gateway reads: the plugin's configuration lines and files for its mlp loader.

The gateway serves a deployed router through our plugin
(:mod:`routeiq_assets.serving.gateway_plugin`, loaded by ``LLMROUTER_PLUGINS``), configured by
``ROUTEIQ_PLUGIN_ROUTER_*`` variables; ``router_settings.routing_strategy`` names its strategy.

The gateway's inference loaders (``llmrouter-<type>`` with ``model_path``) read, per type:

- mlp: a torch ``state_dict`` (``layers.<i>.weight/bias`` of Linear layers with an activation
  between them) loaded with ``torch.load(weights_only=True)`` (tensors only, no code), plus a
  companion JSON beside it (same stem) with ``input_dim, hidden_layer_sizes, num_classes,
  activation, idx_to_model``; it routes by argmax of the last layer. We export that
  (``gateway/model.pt`` + ``gateway/model.json``): our MLP's outputs are per-model quality
  logits, so its argmax is our decision at lambda = 0. ``torch.save`` writes a pickle-based
  container, so this export is opt-in (``ROUTEIQ_GATEWAY_TORCH_EXPORT=true`` or ``routeiq deploy
  --gateway-torch-export``): by default a deployed version holds no pickle at all (ARCHITECTURE
  decision 5) and the gateway serves the mlp through RouterRuntime like every other type.
- knn (and svm): a scikit-learn pickle only, which the gateway itself refuses unless
  ``LLMROUTER_ALLOW_PICKLE_MODELS=true``. We never write pickle: knn, linear, mf and bert are
  served from ``router.json`` + ``weights.npz`` (and safetensors for bert) by
  ``routeiq_assets.serving.RouterRuntime``, which a gateway embeds as its strategy.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from routeiq_assets.deployment.manifest import MANIFEST_NAME
from routeiq_assets.deployment.publish import MODELS_PREFIX
from routeiq_assets.routers.base import WEIGHTS_NPZ, read_router_meta
from routeiq_assets.serving.gateway_plugin import DEFAULT_STRATEGY_NAME, ENV_PREFIX, PLUGIN_PATH

GATEWAY_SUBDIR = "gateway"
MLP_STATE_DICT = "model.pt"
MLP_COMPANION = "model.json"


def write_gateway_files(router_folder: Path, torch_export: bool = False) -> list[str]:
    """Add the gateway's legacy loader files (mlp only, when ``torch_export``) to a router
    folder; return their relative paths."""
    folder = Path(router_folder)
    meta = read_router_meta(folder)
    if meta["router_type"] != "mlp" or not torch_export:
        return []
    import torch

    with np.load(folder / WEIGHTS_NPZ, allow_pickle=False) as data:
        n = len([k for k in data.files if k.startswith("w") and k[1:].isdigit()])
        weights = [data[f"w{i}"] for i in range(n)]
        biases = [data[f"b{i}"] for i in range(n)]
    state = {}
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        state[f"layers.{i}.weight"] = torch.from_numpy(np.ascontiguousarray(w.T, np.float32))
        state[f"layers.{i}.bias"] = torch.from_numpy(np.ascontiguousarray(b, np.float32))
    names = list(meta["model_names"])
    companion = {
        "input_dim": int(weights[0].shape[0]),
        "hidden_layer_sizes": [int(w.shape[1]) for w in weights[:-1]],
        "num_classes": len(names),
        "activation": "relu",
        "idx_to_model": {str(i): name for i, name in enumerate(names)},
        "model_to_idx": {name: i for i, name in enumerate(names)},
        "embedding_model": meta.get("embedding_model"),
        "outputs": "quality logits per model; argmax is the lambda = 0 decision",
    }
    out = folder / GATEWAY_SUBDIR
    out.mkdir(exist_ok=True)
    (out / MLP_COMPANION).write_text(json.dumps(companion, indent=2, sort_keys=True))
    torch.save(state, out / MLP_STATE_DICT)
    return [f"{GATEWAY_SUBDIR}/{MLP_COMPANION}", f"{GATEWAY_SUBDIR}/{MLP_STATE_DICT}"]


def model_path_in(folder: Path, router_type: str) -> Path:
    """What the gateway's ``model_path`` should name inside a deployed version folder."""
    exported = Path(folder) / GATEWAY_SUBDIR / MLP_STATE_DICT
    if router_type == "mlp" and exported.exists():
        return exported
    return Path(folder)


def gateway_config(
    router_type: str,
    *,
    store_uri: str,
    model_name: str,
    models_prefix: str = MODELS_PREFIX,
    s3_endpoint_url: str | None = None,
    model_path: str | None = None,
) -> dict[str, Any]:
    """What the gateway needs to serve a deployed model through our plugin: the environment
    that loads and configures it (``LLMROUTER_PLUGINS``, ``ROUTEIQ_PLUGIN_ROUTER_*``) and the
    ``router_settings`` naming its strategy. With an exported mlp (``model_path``), RouteIQ's own
    ``llmrouter-mlp`` loader's snippet too, under ``legacy_router_settings``."""
    env = {
        "LLMROUTER_PLUGINS": PLUGIN_PATH,
        f"{ENV_PREFIX}STORE": store_uri,
        f"{ENV_PREFIX}MODEL": model_name,
    }
    if models_prefix.strip("/") != MODELS_PREFIX:
        env[f"{ENV_PREFIX}MODELS_PREFIX"] = models_prefix.strip("/")
    if s3_endpoint_url:
        env[f"{ENV_PREFIX}S3_ENDPOINT_URL"] = s3_endpoint_url
    config: dict[str, Any] = {
        "environment": env,
        "router_settings": {"routing_strategy": DEFAULT_STRATEGY_NAME},
    }
    if model_path and router_type == "mlp":
        config["legacy_router_settings"] = {
            "routing_strategy": "llmrouter-mlp",
            "routing_strategy_args": {"model_path": model_path, "hot_reload": True},
        }
    return config


def gateway_lines(config: dict[str, Any]) -> str:
    """``gateway_config``'s output as ``routeiq deploy`` prints it: ``NAME=value`` lines for the
    gateway's environment, then the YAML of its ``router_settings``."""
    import yaml

    env = "".join(f"{k}={v}\n" for k, v in config["environment"].items())
    rest = {k: v for k, v in config.items() if k != "environment"}
    return env + yaml.safe_dump(rest, sort_keys=False)


def install_local(version_folder: Path, dest: Path, version: str) -> Path:
    """Copy a verified version folder to ``dest/<version>`` and switch the ``dest/current``
    symlink to it in one rename, so a gateway reading ``dest/current`` never sees half a
    version; return ``dest/current``.

    A folder that ``current`` may be serving is never deleted: reinstalling the same version
    (a rerun after a failed alias step) keeps the installed copy when its manifest is identical,
    and installs different bytes under a fresh ``<version>.<n>`` name instead of replacing it."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    new_manifest = (Path(version_folder) / MANIFEST_NAME).read_bytes()
    name, n = str(version), 1
    while (dest / name).exists():
        installed = dest / name / MANIFEST_NAME
        if installed.exists() and installed.read_bytes() == new_manifest:
            break  # the same verified bytes are installed already
        name, n = f"{version}.{n}", n + 1
    else:
        staging = dest / f".{name}.{os.getpid()}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(version_folder, staging)
        staging.rename(dest / name)
    link = dest / "current"
    tmp_link = dest / f".current.{os.getpid()}.tmp"
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(name)
    tmp_link.replace(link)
    return link
