"""The MLflow pyfunc for a RouteIQ router, logged from code (no pickle).

Input: a DataFrame with a ``query`` column (text) and optionally ``lambda``. Output: one row per
query with the chosen ``model`` and the predicted quality per candidate.
"""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel

from routeiq_assets.serving.runtime import RouterRuntime


class RouteIQRouterModel(PythonModel):
    def load_context(self, context) -> None:
        self.runtime = RouterRuntime.from_folder(context.artifacts["router"])

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if "query" not in frame:
            raise ValueError("input needs a 'query' column of text")
        embeddings = self.runtime.embed([str(q) for q in frame["query"]])
        lam = float((params or {}).get("lambda", self.runtime.default_lambda))
        rows = []
        for emb in embeddings:
            decision = self.runtime.route(embedding=emb, lam=lam)
            rows.append(
                {
                    "model": decision.model,
                    **{f"quality::{k}": v for k, v in decision.scores.items()},
                }
            )
        return pd.DataFrame(rows)


mlflow.models.set_model(RouteIQRouterModel())
