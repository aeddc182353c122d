"""PSI and the retraining decision on a real DuckDB warehouse."""

import numpy as np
import pytest

from routeiq_assets.training.drift import (
    RetrainingConfigError,
    RetrainingPolicy,
    decide_retraining,
    load_retraining_policy,
    psi,
    read_reference,
    take_snapshot,
    write_reference,
)
from routeiq_assets.warehouse.store import connect
from tests.conftest import REPO_ROOT

MODEL = "test-model"


def test_psi_is_zero_for_the_same_distribution_and_large_for_a_shift():
    rng = np.random.default_rng(0)
    ref = rng.normal(0, 1, 20_000)
    assert psi(ref, rng.normal(0, 1, 20_000)) < 0.01
    assert 0.05 < psi(ref, rng.normal(0.3, 1, 20_000)) < 0.2
    assert psi(ref, rng.normal(1.5, 1, 20_000)) > 1.0
    assert np.isnan(psi(ref, np.array([])))


def _add(con, start, n, rng, shift=0.0, length=40):
    rows = []
    for i in range(start, start + n):
        text = f"q{i} " + "x" * int(rng.integers(length // 2, length * 2))
        sha = f"{i:064x}"
        emb = (rng.normal(0, 1, 8) + shift).astype(np.float32).tolist()
        rows.append((i, text, sha, emb))
    for i, text, sha, emb in rows:
        con.execute(
            "INSERT INTO routing_examples (event_id, query_text, query_sha256, model_name, "
            "outcome_status, quality, label_source, is_logged) "
            "VALUES (?, ?, ?, 'm', 'success', 1.0, 'outcome', true)",
            [f"e{i}", text, sha],
        ).fetchall()
        con.execute(
            "INSERT INTO query_embeddings VALUES (?, ?, 8, ?, now())", [sha, MODEL, emb]
        ).fetchall()


def test_retrain_on_new_examples_or_drift(tmp_path):
    policy = RetrainingPolicy(min_new_examples=500, sample_size=5000)
    rng = np.random.default_rng(1)
    with connect(tmp_path / "w.duckdb") as con:
        empty = decide_retraining(con, None, MODEL, policy)
        assert not empty.retrain and empty.reason == "no labelled examples yet"
        _add(con, 0, 1000, rng)
        first = decide_retraining(con, None, MODEL, policy)
        assert first.retrain and first.reason == "no routers trained yet"
        write_reference(tmp_path / "ref", take_snapshot(con, MODEL, policy))
        reference = read_reference(tmp_path / "ref")
        assert reference.examples == 1000 and len(reference.components) == 3

        _add(con, 1000, 100, rng)  # same distribution, few: no retraining
        calm = decide_retraining(con, reference, MODEL, policy)
        assert not calm.retrain and calm.new_examples == 100
        assert calm.length_psi < 0.2 and calm.embedding_psi < 0.2, calm.reason

        _add(con, 1100, 350, rng, shift=0.0, length=400)  # much longer queries
        longer = decide_retraining(con, reference, MODEL, policy)
        assert longer.retrain and "query-length PSI" in longer.reason
        assert "new labelled examples" not in longer.reason

    with connect(tmp_path / "w2.duckdb") as con:
        _add(con, 0, 1000, rng)
        reference = take_snapshot(con, MODEL, policy)
        _add(con, 1000, 400, rng, shift=4.0)  # the embeddings move
        moved = decide_retraining(con, reference, MODEL, policy)
        assert moved.retrain and "embedding PSI" in moved.reason and moved.length_psi < 0.2
        _add(con, 1400, 100, rng, shift=4.0)
        many = decide_retraining(con, reference, MODEL, policy)
        assert "500 new labelled examples (threshold 500)" in many.reason


def test_policy_file(tmp_path):
    assert load_retraining_policy(REPO_ROOT / "configs" / "retraining.yaml").psi_threshold == 0.2
    (bad := tmp_path / "retraining.yaml").write_text("min_new_examples: -1\n")
    with pytest.raises(RetrainingConfigError, match="retraining.yaml"):
        load_retraining_policy(bad)
