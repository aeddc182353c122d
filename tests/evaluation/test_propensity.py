"""Off-policy estimates from logs without propensities, checked against the true value.

A full-information table (every model's score for each question: the shared LLMRouter
benchmark) is replayed as a gateway's log: a stochastic logging policy that depends on the
question picks one model per question and only that model's score is kept, its propensity
dropped, as RouteIQ logs. The propensities are then estimated from the logged choices, and the
value of another policy estimated off-policy must land within its interval of that policy's
true value, which the full table gives exactly.
"""

import json

import numpy as np
import pytest

from routeiq_assets.evaluation.offpolicy import bootstrap, doubly_robust, estimate_policy_value
from routeiq_assets.evaluation.propensity import estimate_logging_policy, reward_model


def _features(questions, dims=16):
    """Cheap dense features of the questions (hashed words, reduced): what the policies see."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import HashingVectorizer

    words = HashingVectorizer(n_features=2**12, alternate_sign=False).transform(questions)
    x = TruncatedSVD(dims, random_state=0).fit_transform(words)
    return (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-9)


@pytest.fixture(scope="module")
def replayed(benchmark_table):
    table, _ = benchmark_table
    records = json.loads(table.read_text())
    models = sorted(records[0]["scores"])
    scores = np.array([[r["scores"][m] for m in models] for r in records], np.float64)
    x = _features([r["question"] for r in records])
    rng = np.random.default_rng(7)
    logits = x @ rng.normal(0, 0.6, (x.shape[1], len(models)))
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    logged = np.array([rng.choice(len(models), p=p) for p in probs])
    reward = scores[np.arange(len(records)), logged]
    return x, scores, logged, reward, probs[np.arange(len(records)), logged]


def test_a_stochastic_logging_policy_is_recognised_and_its_propensities_estimated(replayed):
    x, scores, logged, _, true_propensity = replayed
    fit = estimate_logging_policy(x, logged, scores.shape[1])
    assert not fit.deterministic and fit.choices == scores.shape[1]
    # close to the propensities the policy really had (which the estimator never saw)
    assert np.corrcoef(fit.propensity, true_propensity)[0, 1] > 0.6
    assert np.abs(fit.propensity - true_propensity).mean() < 0.08


def test_estimates_with_estimated_propensities_contain_the_true_value(replayed):
    x, scores, logged, reward, _ = replayed
    n, n_models = scores.shape
    # the policy to value: a feature-dependent choice among the three best models on average
    best = np.argsort(-scores.mean(axis=0))[:3]
    target = best[np.argmax(x[:, :3], axis=1)]
    truth = float(scores[np.arange(n), target].mean())
    fit = estimate_logging_policy(x, logged, n_models)
    direct = reward_model(x, logged, reward, n_models)

    def dr(idx):
        return doubly_robust(
            target[idx], logged[idx], reward[idx], fit.propensity[idx], direct[idx]
        )

    def snips(idx):
        return estimate_policy_value(
            target[idx], logged[idx], reward[idx], fit.propensity[idx]
        ).snips

    # DR, the estimate reported with estimated propensities, is the tighter of the two
    for statistic, width in ((dr, 0.15), (snips, 0.2)):
        interval = bootstrap(statistic, n, samples=300)
        assert interval.low <= truth <= interval.high, (statistic.__name__, truth, interval)
        assert interval.high - interval.low < width  # an interval that says something


def test_a_deterministic_logging_policy_is_recognised(replayed):
    x, scores, _, _, _ = replayed
    always_best_of_two = np.where(x[:, 0] > 0, 0, 1)  # a rule of the query, no exploration
    fit = estimate_logging_policy(x, always_best_of_two, scores.shape[1])
    assert fit.deterministic and fit.agreement >= 0.95
    assert estimate_logging_policy(x, np.zeros(len(x), int), scores.shape[1]).deterministic
