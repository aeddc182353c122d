"""Matrix-factorisation router in the spirit of RouteLLM's, generalised to N models.

Each model m has a learned vector v_m; a query embedding x is projected to the same space.
The quality logit is ``w . (v_m * (P x)) + b_m``: the model-query interaction RouteLLM scores
pairwise, scored here for every candidate at once. Trained with the masked loss in torch,
served in numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from routeiq_assets.routers.torch_training import TorchRouter, sigmoid


class MFRouter(TorchRouter):
    router_type = "mf"

    def __init__(
        self,
        dim: int = 64,
        epochs: int = 30,
        lr: float = 3e-3,
        batch_size: int = 128,
        weight_decay: float = 1e-4,
        seed: int = 42,
        device: str = "auto",
    ):
        self.dim, self.epochs, self.lr, self.batch_size = dim, epochs, lr, batch_size
        self.weight_decay, self.seed, self.device = weight_decay, seed, device

    def _module(self, input_dim: int, n_models: int):
        import torch

        dim = self.dim

        class Factorised(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.project = torch.nn.Linear(input_dim, dim, bias=False)
                self.models = torch.nn.Parameter(torch.randn(n_models, dim) * 0.1)
                self.out = torch.nn.Linear(dim, 1, bias=False)
                self.bias = torch.nn.Parameter(torch.zeros(n_models))

            def forward(self, x):
                q = self.project(x)  # [batch, dim]
                interaction = q[:, None, :] * self.models[None, :, :]  # [batch, models, dim]
                return self.out(interaction).squeeze(-1) + self.bias

        return Factorised()

    def fit(self, embeddings, quality, mask, model_names, cost, progress=None):
        module = self._fit_module(embeddings, quality, mask, model_names, cost, progress)
        self.project_ = module.project.weight.detach().numpy().T.copy()
        self.models_ = module.models.detach().numpy().copy()
        self.out_ = module.out.weight.detach().numpy()[0].copy()
        self.bias_ = module.bias.detach().numpy().copy()
        return self

    def predict_quality(self, embeddings: np.ndarray) -> np.ndarray:
        q = np.atleast_2d(np.asarray(embeddings, np.float32)) @ self.project_
        # w . (v_m * q) = q . (v_m * w): one matrix product for every model
        return sigmoid(q @ (self.models_ * self.out_).T + self.bias_)

    def hyperparameters(self) -> dict[str, Any]:
        return {
            "dim": self.dim,
            "epochs": self.epochs,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "weight_decay": self.weight_decay,
            "seed": self.seed,
            "device": self.device,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "project": self.project_,
            "models": self.models_,
            "out": self.out_,
            "bias": self.bias_,
        }

    @classmethod
    def from_arrays(cls, hparams, arrays):
        router = cls(**hparams)
        router.project_, router.models_ = arrays["project"], arrays["models"]
        router.out_, router.bias_ = arrays["out"], arrays["bias"]
        return router
