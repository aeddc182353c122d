"""Every router type behind the one interface: learns, saves safely, loads identically."""

import json
import subprocess
import sys

import numpy as np
import pytest

from routeiq_assets.routers import ROUTER_TYPES, BertRouter, load_router, save_router
from routeiq_assets.routers.config import load_router_config
from tests.conftest import REPO_ROOT
from tests.routers.test_knn import _two_cluster_problem

FAST = {
    "knn": {"k": 15},
    "mlp": {"hidden_sizes": (32,), "epochs": 40, "lr": 1e-2, "batch_size": 32, "device": "cpu"},
    "linear": {"alpha": 0.1},
    "mf": {"dim": 8, "epochs": 60, "lr": 1e-2, "batch_size": 32, "device": "cpu"},
}


@pytest.mark.parametrize("kind", sorted(FAST))
def test_router_learns_saves_and_loads_identically(kind, tmp_path):
    x, q, m = _two_cluster_problem(n=300)
    router = ROUTER_TYPES[kind](**FAST[kind]).fit(x, q, m, ["a", "b"], np.array([1.0, 1.0]))
    probe = np.array([[1.0] + [0] * 7, [-1.0] + [0] * 7])
    pred = router.predict_quality(probe)
    assert pred.shape == (2, 2) and np.all((pred >= 0) & (pred <= 1))
    assert pred[0, 0] > pred[0, 1] and pred[1, 1] > pred[1, 0], pred
    assert list(router.route(probe)) == [0, 1]
    files = save_router(router, tmp_path / kind, extra={"embedding_model": "e"})
    assert {f.suffix for f in files} <= {".json", ".npz"}
    with np.load(tmp_path / kind / "weights.npz", allow_pickle=False) as data:
        assert all(data[k].dtype != object for k in data.files)
    loaded = load_router(tmp_path / kind)
    assert np.array_equal(loaded.predict_quality(x), router.predict_quality(x))


@pytest.mark.parametrize("kind", ["mlp", "mf"])
def test_torch_routers_are_deterministic_on_cpu(kind):
    x, q, m = _two_cluster_problem(n=200)
    a = ROUTER_TYPES[kind](**FAST[kind]).fit(x, q, m, ["a", "b"], np.ones(2))
    b = ROUTER_TYPES[kind](**FAST[kind]).fit(x, q, m, ["a", "b"], np.ones(2))
    assert np.array_equal(a.predict_quality(x), b.predict_quality(x))


def test_bert_fine_tunes_end_to_end_and_reloads(tmp_path):
    code = [
        f"Write a Python function that {t}."
        for t in (
            "sorts a list",
            "parses JSON",
            "reads a file",
            "merges dicts",
            "counts words",
            "reverses a string",
            "zips two lists",
            "retries a request",
        )
    ]
    poems = [
        f"Write a short poem about {t}."
        for t in (
            "the sea",
            "autumn",
            "a cat",
            "the moon",
            "rain",
            "friendship",
            "snow",
            "a garden",
        )
    ]
    texts = (code + poems) * 3
    quality = np.array([[1.0, 0.0] if t in code else [0.0, 1.0] for t in texts], np.float32)
    mask = np.ones_like(quality, bool)
    router = BertRouter(
        epochs=3, lr=5e-5, head_lr=2e-2, batch_size=16, max_seq_length=16, device="cpu"
    ).fit(texts, quality, mask, ["coder", "poet"], np.ones(2))
    assert router.losses_[-1] < router.losses_[0]
    pred = router.predict_quality(
        ["Write a Python function that sorts a list.", "Write a short poem about the sea."]
    )
    assert pred[0, 0] > pred[0, 1] and pred[1, 1] > pred[1, 0], pred
    files = save_router(router, tmp_path / "bert", extra={"embedding_model": "minilm"})
    names = {f.name for f in files}
    assert "model.safetensors" in names and not any(n.endswith((".bin", ".pkl")) for n in names)
    loaded = load_router(tmp_path / "bert")
    assert np.allclose(
        loaded.predict_quality(texts[:4]), router.predict_quality(texts[:4]), atol=1e-5
    )


@pytest.mark.parametrize("kind", ["knn", "mlp", "linear", "mf", "bert", "ensemble"])
def test_shipped_configs_validate(kind):
    cfg = load_router_config(REPO_ROOT / "configs" / "routers" / f"{kind}.yaml")
    assert cfg.router_type == kind
    ROUTER_TYPES[kind](**cfg.hparam.router_kwargs())  # every key is a constructor argument
    dumped = cfg.model_dump(mode="json")["hparam"]
    assert set(dumped) >= {"embedding_model", "seed", "device"}


def test_train_cli_on_the_seed_guides_json(tmp_path):
    names = ["claude-3-opus", "gpt-3.5-turbo"]
    queries = [
        {"text": f"Explain {t} in depth", "best_model": names[0]}
        for t in (
            "quantum computing",
            "general relativity",
            "protein folding",
            "monetary policy",
            "category theory",
            "the french revolution",
        )
    ] + [
        {"text": f"Write a hello world in {lang}", "best_model": names[1]}
        for lang in ("Python", "Go", "Rust", "Java", "C", "Ruby")
    ]
    (tmp_path / "train.json").write_text(json.dumps({"queries": queries}))
    (tmp_path / "llm_candidates.json").write_text(
        json.dumps(
            {
                names[0]: {"input_price": 15.0, "output_price": 75.0, "size": "large"},
                names[1]: {"input_price": 0.5, "output_price": 1.5, "size": "small"},
            }
        )
    )
    config = tmp_path / "knn_config.yaml"
    config.write_text(
        "data_path:\n  train_data: train.json\n  llm_data: llm_candidates.json\n"
        "hparam:\n  k: 3\n  embedding_model: sentence-transformers/all-MiniLM-L6-v2\n"
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "routeiq_assets.cli",
            "train",
            "--router-type",
            "knn",
            "--config",
            str(config),
            "--output-dir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["train_queries"] + out["validation_queries"] == 12
    from routeiq_assets.serving.runtime import RouterRuntime

    runtime = RouterRuntime.from_folder(tmp_path / "out" / "knn_config")
    assert runtime.route("Write a hello world in Kotlin").model == names[1]
    assert runtime.route("Explain string theory in depth").model == names[0]
