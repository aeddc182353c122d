"""The training loop the torch routers share: masked loss over observed (query, model) pairs.

Bandit telemetry observes one model per query; the loss only counts observed cells, so a router
is never taught that an unobserved model scored 0. Deterministic on the CPU for a seed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np

from routeiq_assets.routers.base import Router

log = logging.getLogger(__name__)


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA GPU")
    return device


def train_masked(
    module,
    inputs: np.ndarray,
    quality: np.ndarray,
    mask: np.ndarray,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    weight_decay: float,
    seed: int,
    device: str,
    progress: Callable[[str], None] | None = None,
) -> list[float]:
    """Fit ``module`` (inputs -> logits per model) with masked BCE; return the epoch losses."""
    import torch

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    dev = torch.device(pick_device(device))
    module.to(dev)
    x = torch.as_tensor(inputs, dtype=torch.float32)
    y = torch.as_tensor(quality, dtype=torch.float32)
    m = torch.as_tensor(mask, dtype=torch.float32)
    optimiser = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=weight_decay)
    loss_fn = torch.nn.BCEWithLogitsLoss(reduction="none")
    losses = []
    for epoch in range(epochs):
        module.train()
        order = torch.randperm(len(x), generator=generator)
        total, weight = 0.0, 0.0
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            xb, yb, mb = x[idx].to(dev), y[idx].to(dev), m[idx].to(dev)
            observed = mb.sum()
            if observed == 0:
                continue
            loss = (loss_fn(module(xb), yb) * mb).sum() / observed
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += float(loss.detach()) * float(observed)
            weight += float(observed)
        losses.append(total / max(weight, 1.0))
        if progress and (epoch == epochs - 1 or epoch % max(1, epochs // 5) == 0):
            progress(f"epoch {epoch + 1}/{epochs}: masked BCE {losses[-1]:.4f}")
    module.eval()
    module.to("cpu")
    return losses


class TorchRouter(Router):
    """A router whose ``_module(input_dim, n_models)`` is trained with :func:`train_masked` using
    the instance's epochs, lr, batch_size, weight_decay, seed and device."""

    epochs: int
    lr: float
    batch_size: int
    weight_decay: float
    seed: int
    device: str

    def _module(self, input_dim: int, n_models: int): ...

    def _fit_module(self, embeddings, quality, mask, model_names, cost, progress):
        import torch

        torch.manual_seed(self.seed)  # the initial weights too, not only the batch order
        module = self._module(embeddings.shape[1], len(model_names))
        self.losses_ = train_masked(
            module,
            embeddings,
            quality,
            mask,
            epochs=self.epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            weight_decay=self.weight_decay,
            seed=self.seed,
            device=self.device,
            progress=progress,
        )
        self.model_names_, self.cost_ = list(model_names), np.asarray(cost, np.float64)
        return module


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))
