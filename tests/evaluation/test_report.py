"""The evaluation pipeline on a warehouse holding both logged telemetry and a full-information
table (the LLMRouter benchmark replayed), through the real DuckDB file and router folders."""

import numpy as np

from routeiq_assets.evaluation.render import write_report
from routeiq_assets.evaluation.run import evaluate_router_folder
from routeiq_assets.routers.config import load_router_config
from routeiq_assets.training.train import data_from_warehouse, fit_and_save
from routeiq_assets.warehouse.store import connect
from tests.conftest import REPO_ROOT
from tests.evaluation.conftest import MODEL


def test_report_with_off_policy_and_full_information(replayed_warehouse, tmp_path):
    encoder = replayed_warehouse.encoder
    with connect(replayed_warehouse.db) as con:
        config = load_router_config(REPO_ROOT / "configs" / "routers" / "knn.yaml")
        data = data_from_warehouse(con, MODEL, encoder, lambda _m: None)
        result = fit_and_save("knn", config, data, tmp_path / "routers")
        ev = evaluate_router_folder(con, result.folder, encoder)

    rows = {r["policy"].split(" (")[0]: r for r in ev["rows"]}
    assert {"router_knn", "always-cheapest", "always-best", "random", "logging policy"} <= set(rows)
    iv = rows["router_knn"]["quality_intervals"]
    assert iv["snips"]["low"] <= iv["snips"]["value"] <= iv["snips"]["high"]
    fi = ev["full_information"]
    assert fi["queries"] > 30 and fi["apgr"] >= 0 and fi["oracle"][1] >= fi["best"][1]
    assert fi["best"][1] >= max(q for _, q in fi["single_models"].values()) - 0.1
    assert ev["latency"]["route_p99_ms"] > 0
    assert sum(t["examples"] for t in ev["per_task"].values()) == ev["test_examples"]
    paths = write_report([ev], tmp_path / "report")
    text = paths["markdown"].read_text()
    assert "Off-policy" in text and "Full information" in text and "oracle" in text
    assert "Per task" in text
    assert paths["png"].read_bytes()[:4] == b"\x89PNG" and paths["png"].stat().st_size > 10000
    assert np.isfinite(fi["aiq"])


def test_the_headline_and_curves_are_the_gates_numbers(replayed_warehouse, tmp_path):
    """report.md opens with the gate's headline, and the PNG draws exactly gate.json's curves,
    operating points and baselines: the figure's data is read back and compared."""
    import json

    import matplotlib.pyplot as plt

    from routeiq_assets.evaluation.gate import GatePolicy, evaluate_gate, write_gate
    from routeiq_assets.evaluation.render import figure

    encoder = replayed_warehouse.encoder
    config = load_router_config(REPO_ROOT / "configs" / "routers" / "knn.yaml")
    with connect(replayed_warehouse.db) as con:
        data = data_from_warehouse(con, MODEL, encoder, lambda _m: None)
        knn = fit_and_save("knn", config, data, tmp_path / "routers").folder
        ev = evaluate_router_folder(con, knn, encoder)
        result = evaluate_gate(con, {"knn": knn}, None, GatePolicy(bootstrap_samples=200), encoder)
    gate = json.loads(write_gate(result, tmp_path).read_text())
    paths = write_report([ev], tmp_path / "report", result.markdown(), gate)
    text = paths["markdown"].read_text()
    assert text.startswith(f"# Router evaluation\n\n**{gate['headline']}**\n")
    assert gate["headline"].startswith("knn at its operating point (lambda ")
    point = gate["points"]["knn"]
    assert f"quality {point['quality']:.4f} at ${point['cost']:.6f} a query" in gate["headline"]
    assert point["lambda"] == json.loads((knn / "router.json").read_text())["default_lambda"]

    fig = figure([ev], gate)
    ax = fig.axes[0]
    [line] = ax.lines
    expected = sorted((c, q) for _, c, q in gate["curves"]["knn"])
    assert len(expected) > 5
    np.testing.assert_allclose(np.column_stack(line.get_data()), expected)
    markers = {c.get_label(): c.get_offsets()[0].tolist() for c in ax.collections}
    star = next(v for k, v in markers.items() if k.startswith("knn at its operating point"))
    np.testing.assert_allclose(star, [point["cost"], point["quality"]])
    assert set(gate["baselines"]) and set(gate["baselines"]) <= set(markers)
    for name, b in gate["baselines"].items():
        np.testing.assert_allclose(markers[name], [b["cost"], b["quality"]])
        row = next(c for c in gate["comparisons"] if c["baseline"] == name)
        assert (row["quality"], row["cost"]) == (b["quality"], b["cost"])
    plt.close(fig)
