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
        queries = [str(q) for q in frame["query"]]
        text_router = self.runtime.router.input_kind == "text"
        embeddings = [None] * len(queries) if text_router else self.runtime.embed(queries)
        lam = float((params or {}).get("lambda", self.runtime.default_lambda))
        rows = []
        for query, emb in zip(queries, embeddings, strict=True):
            decision = self.runtime.route(query=query, embedding=emb, lam=lam)
            rows.append(
                {
                    "model": decision.model,
                    **{f"quality::{k}": v for k, v in decision.scores.items()},
                }
            )
        return pd.DataFrame(rows)


mlflow.models.set_model(RouteIQRouterModel())
