"""What the logs can support when the gateway logged no propensity.

RouteIQ logs which model it chose, not how likely that choice was. Off-policy estimates need
that probability, so it is estimated from the logged choices themselves: a multinomial logistic
regression of the chosen model on the query's embedding, cross-fitted (each half of the
examples is scored by a model fitted on the other half, so a query's own choice does not
inform its propensity). When that model predicts the logged choice almost surely, the logging
policy is (near-)deterministic: reweighting cannot reach the decisions it never makes, and only
the decisions a challenger shares with the log are evaluable.

A direct model of the reward (one ridge regression a candidate on the embeddings, cross-fitted
the same way) makes doubly robust estimates possible: unbiased when either the propensities or
the reward model is right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Estimated propensities are clipped below at this value: a choice the model finds nearly
# impossible would otherwise get an unbounded weight.
MIN_PROPENSITY = 0.01
# The logging policy counts as deterministic when the cross-fitted model's most likely model is
# the logged choice for at least this share of the queries: the choice is a function of the
# query (a stochastic policy makes other choices for the same kind of query).
DETERMINISTIC_AGREEMENT = 0.95
FOLDS = 2


@dataclass(frozen=True)
class LoggingPolicyFit:
    """The logged choices' propensities as estimated, and what they say about the policy."""

    propensity: np.ndarray  # [n] probability of the logged choice, in [MIN_PROPENSITY, 1]
    deterministic: bool
    agreement: float  # share of queries whose most likely model (held out) is the logged one
    choices: int  # distinct models the log chose


def _folds(n: int, seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return [order[k::FOLDS] for k in range(FOLDS)]


def estimate_logging_policy(
    embeddings: np.ndarray, logged: np.ndarray, n_models: int, seed: int = 0
) -> LoggingPolicyFit:
    """Cross-fitted propensities of ``logged`` (model indices, -1: unknown) given the queries'
    ``embeddings``."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(embeddings, np.float64)
    y = np.asarray(logged, int)
    n = len(y)
    propensity = np.ones(n)
    predicted = np.full(n, -1)
    known = y >= 0
    chosen = np.unique(y[known])
    if n == 0 or len(chosen) <= 1:  # one model only: the log never chose anything else
        return LoggingPolicyFit(propensity, True, 1.0, int(len(chosen)))
    for held in _folds(n, seed):
        fit_on = np.setdiff1d(np.arange(n), held)
        fit_on = fit_on[known[fit_on]]
        classes = np.unique(y[fit_on])
        if len(classes) < 2:
            propensity[held] = np.where(y[held] == classes[0], 1.0, MIN_PROPENSITY)
            predicted[held] = classes[0]
            continue
        model = LogisticRegression(C=1.0, max_iter=1000)
        model.fit(x[fit_on], y[fit_on])
        probs = model.predict_proba(x[held])
        predicted[held] = model.classes_[probs.argmax(axis=1)]
        column = {c: j for j, c in enumerate(model.classes_)}
        propensity[held] = [
            probs[i, column[c]] if c in column else MIN_PROPENSITY for i, c in enumerate(y[held])
        ]
    propensity = np.clip(propensity, MIN_PROPENSITY, 1.0)
    agreement = float((predicted[known] == y[known]).mean()) if known.any() else 1.0
    return LoggingPolicyFit(
        propensity, agreement >= DETERMINISTIC_AGREEMENT, agreement, int(len(chosen))
    )


def reward_model(
    embeddings: np.ndarray, logged: np.ndarray, reward: np.ndarray, n_models: int, seed: int = 0
) -> np.ndarray:
    """Cross-fitted predicted reward [n, n_models] of every candidate for every query: a ridge
    regression a candidate, fitted where the log chose it; a candidate too rarely chosen to fit
    gets its mean observed reward (the overall mean where never chosen)."""
    from sklearn.linear_model import Ridge

    x = np.asarray(embeddings, np.float64)
    y = np.asarray(logged, int)
    r = np.asarray(reward, np.float64)
    n = len(y)
    finite = np.isfinite(r)
    overall = float(r[finite].mean()) if finite.any() else 0.0
    predicted = np.full((n, n_models), overall)
    for held in _folds(n, seed):
        fit_on = np.setdiff1d(np.arange(n), held)
        for a in range(n_models):
            rows = fit_on[(y[fit_on] == a) & finite[fit_on]]
            if len(rows) >= 5:
                predicted[held, a] = Ridge(alpha=1.0).fit(x[rows], r[rows]).predict(x[held])
            elif len(rows):
                predicted[held, a] = r[rows].mean()
    return predicted
