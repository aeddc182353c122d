import numpy as np
import pytest

from routeiq_assets.training.embeddings import embed_with_cache, minilm_encoder, resolve_model_path
from routeiq_assets.warehouse.store import connect

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def test_only_new_texts_are_embedded(tmp_path):
    calls = []
    real = minilm_encoder(MODEL, "cpu")

    def counting(texts):
        calls.append(list(texts))
        return real(texts)

    with connect(tmp_path / "w.duckdb") as con:
        x1, s1 = embed_with_cache(con, ["a cat", "a dog", "a cat"], MODEL, counting)
        assert x1.shape == (3, 384) and s1.embedded == 2 and s1.cache_hits == 0
        assert np.allclose(x1[0], x1[2]) and np.allclose(np.linalg.norm(x1, axis=1), 1, atol=1e-4)
        x2, s2 = embed_with_cache(con, ["a dog", "a bird"], MODEL, counting)
        assert s2.cache_hits == 1 and s2.embedded == 1
        assert calls == [["a cat", "a dog"], ["a bird"]]
        assert np.allclose(x2[0], x1[1], atol=1e-6)


def test_embeddings_carry_meaning():
    x = minilm_encoder(MODEL, "cpu")(["a cat", "a kitten", "quarterly tax filing deadline"])
    assert x[0] @ x[1] > x[0] @ x[2] + 0.2


def test_unknown_model_is_never_downloaded():
    with pytest.raises(ValueError, match="never downloaded"):
        resolve_model_path("some-org/some-model")
