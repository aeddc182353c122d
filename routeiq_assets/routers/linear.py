"""Linear router: one ridge regression of quality on the embedding per model, on the queries
where that model was observed (scikit-learn for the fit, numpy at serving time)."""

from __future__ import annotations

from typing import Any

import numpy as np

from routeiq_assets.routers.base import Router


class LinearRouter(Router):
    router_type = "linear"

    def __init__(self, alpha: float = 1.0):
        if alpha <= 0:
            raise ValueError(f"alpha must be > 0, got {alpha}")
        self.alpha = alpha

    def fit(self, embeddings, quality, mask, model_names, cost, progress=None):
        from sklearn.linear_model import Ridge

        x = np.asarray(embeddings, np.float64)
        overall = float(quality[mask].mean()) if mask.any() else 0.0
        coef = np.zeros((x.shape[1], len(model_names)))
        intercept = np.full(len(model_names), overall)
        for j in range(len(model_names)):
            rows = mask[:, j]
            if rows.sum() >= 2:
                fit = Ridge(alpha=self.alpha).fit(x[rows], quality[rows, j])
                coef[:, j], intercept[j] = fit.coef_, fit.intercept_
        self.coef_, self.intercept_ = coef.astype(np.float32), intercept.astype(np.float32)
        self.model_names_, self.cost_ = list(model_names), np.asarray(cost, np.float64)
        return self

    def predict_quality(self, embeddings: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(np.asarray(embeddings, np.float32))
        return np.clip(x @ self.coef_ + self.intercept_, 0.0, 1.0)

    def hyperparameters(self) -> dict[str, Any]:
        return {"alpha": self.alpha}

    def arrays(self) -> dict[str, np.ndarray]:
        return {"coef": self.coef_, "intercept": self.intercept_}

    @classmethod
    def from_arrays(cls, hparams, arrays):
        router = cls(**hparams)
        router.coef_, router.intercept_ = arrays["coef"], arrays["intercept"]
        return router
