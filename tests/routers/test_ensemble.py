"""The ensemble router: the weighted mean of its members' predicted quality, saved without
pickle (one router.json, one weights.npz with every member's arrays) and loaded identically."""

import json

import numpy as np
import pytest

from routeiq_assets.routers import ROUTER_TYPES, EnsembleRouter, load_router, save_router
from routeiq_assets.routers.config import EnsembleHparams, load_router_config
from tests.routers.test_knn import _two_cluster_problem

MEMBERS = [
    {"router_type": "knn", "hparams": {"k": 15}, "weight": 2.0},
    {"router_type": "linear", "hparams": {"alpha": 0.1}},
    {
        "router_type": "mlp",
        "hparams": {"hidden_sizes": [16], "epochs": 20, "lr": 1e-2, "batch_size": 32},
    },
]


def _fitted():
    x, q, m = _two_cluster_problem(n=300)
    router = EnsembleRouter(members=MEMBERS, device="cpu")
    return x, router.fit(x, q, m, ["a", "b"], np.array([0.5, 2.0]))


def test_ensemble_is_the_weighted_mean_of_its_members():
    x, router = _fitted()
    knn, linear, mlp = (r.predict_quality(x) for r in router.routers_)
    expected = (2.0 * knn + linear + mlp) / 4.0
    assert np.allclose(router.predict_quality(x), expected, atol=1e-6)
    probe = np.array([[1.0] + [0] * 7, [-1.0] + [0] * 7])
    assert list(router.route(probe)) == [0, 1]
    assert ROUTER_TYPES["ensemble"] is EnsembleRouter


def test_ensemble_saves_without_pickle_and_loads_identically(tmp_path):
    x, router = _fitted()
    files = save_router(router, tmp_path / "e", extra={"embedding_model": "e"})
    assert {f.name for f in files} == {"router.json", "weights.npz"}
    with np.load(tmp_path / "e" / "weights.npz", allow_pickle=False) as data:
        assert all(data[k].dtype != object for k in data.files)
        assert {k.split(".")[0] for k in data.files} == {"m0", "m1", "m2", "cost"}
    meta = json.loads((tmp_path / "e" / "router.json").read_text())
    assert [m["router_type"] for m in meta["hyperparameters"]["members"]] == [
        "knn",
        "linear",
        "mlp",
    ]
    loaded = load_router(tmp_path / "e")
    assert isinstance(loaded, EnsembleRouter)
    assert np.array_equal(loaded.predict_quality(x), router.predict_quality(x))
    assert loaded.model_names_ == ["a", "b"] and np.array_equal(loaded.cost_, [0.5, 2.0])
    assert all(m.model_names_ == ["a", "b"] for m in loaded.routers_)
    assert loaded.hyperparameters() == router.hyperparameters()


@pytest.mark.parametrize(
    "members, message",
    [
        ([{"router_type": "bert"}], "router_type 'bert'"),
        ([{"router_type": "ensemble"}], "router_type 'ensemble'"),
        ([{"router_type": "knn", "weight": 0}], "weight must be > 0"),
        ([{"router_type": "knn", "weight": float("nan")}], "weight must be > 0"),
    ],
)
def test_ensemble_refuses_members_it_cannot_average(members, message):
    with pytest.raises(ValueError, match=message):
        EnsembleRouter(members=members)


def test_ensemble_config_validates_each_member(tmp_path):
    default = EnsembleHparams(device="cpu").router_kwargs()
    assert [m["router_type"] for m in default["members"]] == ["knn", "linear"]
    with_mlp = EnsembleHparams.model_validate(
        {"device": "cpu", "members": [{"router_type": "mlp", "hparam": {"epochs": 1}}]}
    )
    assert with_mlp.router_kwargs()["members"][0]["hparams"]["device"] == "cpu"
    EnsembleRouter(**default)  # every key is a constructor argument
    bad = tmp_path / "ensemble.yaml"
    bad.write_text("hparam:\n  members:\n    - router_type: knn\n      hparam: {k: 0}\n")
    with pytest.raises(ValueError, match="members"):
        load_router_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text(
        "router_type: ensemble\nhparam:\n  members:\n    - router_type: knn\n"
        "      hparam: {k: 7}\n      weight: 2\n    - router_type: linear\n"
    )
    cfg = load_router_config(good)
    kwargs = cfg.hparam.router_kwargs()
    assert kwargs["members"][0] == {
        "router_type": "knn",
        "hparams": {
            "k": 7,
            "weighting": "similarity",
            "prior_weight": 1.0,
            "index_min_examples": 20000,
            "nprobe": 16,
        },
        "weight": 2.0,
    }
    EnsembleRouter(**kwargs)
