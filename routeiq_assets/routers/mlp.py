"""Multi-output MLP router: embedding -> predicted quality per model, trained with a masked loss.

Trained in torch (GPU when there is one); served in numpy from the saved weights, so the runtime
needs no torch and a decision costs microseconds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from routeiq_assets.routers.torch_training import TorchRouter, sigmoid


class MLPRouter(TorchRouter):
    router_type = "mlp"

    def __init__(
        self,
        hidden_sizes: tuple[int, ...] = (256, 128),
        epochs: int = 30,
        lr: float = 1e-3,
        batch_size: int = 128,
        weight_decay: float = 1e-4,
        dropout: float = 0.1,
        seed: int = 42,
        device: str = "auto",
    ):
        self.hidden_sizes = tuple(hidden_sizes)
        self.epochs, self.lr, self.batch_size = epochs, lr, batch_size
        self.weight_decay, self.dropout, self.seed, self.device = (
            weight_decay,
            dropout,
            seed,
            device,
        )

    def _module(self, input_dim: int, n_models: int):
        import torch

        layers, width = [], input_dim
        for size in self.hidden_sizes:
            layers += [
                torch.nn.Linear(width, size),
                torch.nn.ReLU(),
                torch.nn.Dropout(self.dropout),
            ]
            width = size
        layers.append(torch.nn.Linear(width, n_models))
        return torch.nn.Sequential(*layers)

    def fit(self, embeddings, quality, mask, model_names, cost, progress=None):
        module = self._fit_module(embeddings, quality, mask, model_names, cost, progress)
        linears = [layer for layer in module if hasattr(layer, "weight")]
        self.weights_ = [layer.weight.detach().numpy().T.copy() for layer in linears]
        self.biases_ = [layer.bias.detach().numpy().copy() for layer in linears]
        return self

    def predict_quality(self, embeddings: np.ndarray) -> np.ndarray:
        h = np.atleast_2d(np.asarray(embeddings, np.float32))
        for i, (w, b) in enumerate(zip(self.weights_, self.biases_, strict=True)):
            h = h @ w + b
            if i < len(self.weights_) - 1:
                h = np.maximum(h, 0.0)
        return sigmoid(h)

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "hidden_sizes": list(self.hidden_sizes),
            "epochs": self.epochs,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "weight_decay": self.weight_decay,
            "dropout": self.dropout,
            "seed": self.seed,
            "device": self.device,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        out = {}
        for i, (w, b) in enumerate(zip(self.weights_, self.biases_, strict=True)):
            out[f"w{i}"], out[f"b{i}"] = w, b
        return out

    @classmethod
    def from_arrays(cls, hparams, arrays):
        router = cls(**{**hparams, "hidden_sizes": tuple(hparams["hidden_sizes"])})
        n = len([k for k in arrays if k.startswith("w")])
        router.weights_ = [arrays[f"w{i}"] for i in range(n)]
        router.biases_ = [arrays[f"b{i}"] for i in range(n)]
        return router
