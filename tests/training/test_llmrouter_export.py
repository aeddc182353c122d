import json
import os
import subprocess
import sys

import pytest
import torch

from routeiq_assets.telemetry.simulator import load_table, replay_table
from tests.conftest import REPO_ROOT


def _legacy_traces(path, requests):
    path.write_text(
        "\n".join(
            json.dumps(
                {
                    "query": r.query,
                    "model_name": r.selected.name,
                    "response": "an answer",
                    "response_time": r.duration_ms / 1000,
                    "token_num": r.input_tokens + r.output_tokens,
                    "input_tokens": r.input_tokens,
                    "output_tokens": r.output_tokens,
                    "task_name": r.task,
                    "trace_id": r.trace_id,
                    "span_id": r.llm_span_id,
                    "timestamp": r.timestamp.isoformat(),
                    "performance": r.quality,
                    "ground_truth": None,
                }
            )
            for r in requests
        )
        + "\n"
    )


def test_convert_cli_writes_llmrouter_files(tmp_path, benchmark_table, routeiq_home):
    records, catalog = load_table(*benchmark_table)
    requests = list(replay_table(records, catalog, seed=3, limit=300))
    traces = tmp_path / "traces.jsonl"
    _legacy_traces(traces, requests)
    with traces.open("a") as f:  # one bad line and one without performance: counted, not written
        f.write("{not json\n" + json.dumps({"query": "q", "model_name": "m"}) + "\n")
    out = tmp_path / "export"
    env = dict(os.environ, ROUTEIQ_PRICES_FILE=str(benchmark_table[1]))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "routeiq_assets.cli",
            "convert",
            "--input",
            str(traces),
            "--output-dir",
            str(out),
            "--include-routing-metadata",
            "--test-split",
            "0.2",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    meta = json.loads((out / "conversion_metadata.json").read_text())
    assert meta["rows"] == 300 and meta["skipped"] == {"bad_lines": 1, "without_performance": 1}
    train = [json.loads(x) for x in (out / "routing_train.jsonl").read_text().splitlines()]
    test = [json.loads(x) for x in (out / "routing_test.jsonl").read_text().splitlines()]
    assert len(train) + len(test) == 300 and 0.1 < len(test) / 300 < 0.3
    assert not {r["query"] for r in train} & {r["query"] for r in test}
    row = train[0]
    assert set(row) == {
        "task_name",
        "query",
        "ground_truth",
        "metric",
        "model_name",
        "response",
        "performance",
        "embedding_id",
        "token_num",
        "routing_metadata",
    }
    by_query = {r.query: r for r in requests}
    assert row["performance"] == by_query[row["query"]].quality
    emb = torch.load(out / "query_embeddings.pt")
    assert emb.shape == (meta["unique_queries"], 384) and emb.dtype == torch.float32
    assert torch.all(emb.norm(dim=1) > 0.5)  # real embeddings, never zero placeholders
    assert max(r["embedding_id"] for r in train + test) == emb.shape[0] - 1
    llm_data = json.loads((out / "llm_data.json").read_text())
    candidates = json.loads(benchmark_table[1].read_text())
    for name, entry in llm_data.items():
        assert entry["input_price"] == candidates[name]["input_price"]
        assert entry["feature"] == candidates[name]["feature"]


def test_convert_refuses_an_input_without_labels(tmp_path, routeiq_home):
    empty = tmp_path / "traces.jsonl"
    empty.write_text(json.dumps({"query": "q", "model_name": "m"}) + "\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "routeiq_assets.cli",
            "convert",
            "--input",
            str(empty),
            "--output-dir",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 2 and "no labelled rows" in result.stderr


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _cli(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "routeiq_assets.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def test_the_generators_traces_convert_and_train(tmp_path, routeiq_home):
    """RouteIQ's generate_synthetic_traces.py output (ids trace_000001, models nobody priced
    here) through `routeiq convert`, then `routeiq train` on what it wrote: a quality-only
    router; with `convert --prices`, a cost-aware one."""
    from tests.telemetry.test_routeiq_shapes import MODELS, generator_trace_line

    traces = tmp_path / "traces.jsonl"
    lines = []
    for i in range(90):
        line = generator_trace_line(i)
        line["performance"] = 0.9 if (i + MODELS.index(line["model_name"])) % 2 else 0.3
        lines.append(json.dumps(line))
    traces.write_text("\n".join(lines) + "\n")
    prices = tmp_path / "prices.yaml"
    prices.write_text(
        "".join(
            f"{m}: {{input_price: {k + 1}, output_price: {2 * k + 2}}}\n"
            for k, m in enumerate(MODELS)
        )
    )
    (nothing := tmp_path / "no-prices.yaml").write_text("{}\n")
    env = dict(os.environ, ROUTEIQ_PRICES_FILE=str(nothing))  # a gateway's models, unpriced
    for priced in (False, True):
        out = tmp_path / f"export-{priced}"
        extra = ["--prices", str(prices)] if priced else []
        done = _cli("convert", "--input", str(traces), "--output-dir", str(out), *extra, env=env)
        assert done.returncode == 0, done.stderr
        llm_data = json.loads((out / "llm_data.json").read_text())
        assert sorted(llm_data) == sorted(MODELS)
        assert all((e["input_price"] is not None) == priced for e in llm_data.values())
        config = tmp_path / f"knn-{priced}.yaml"
        config.write_text(
            f"router_type: knn\ndata_path:\n  train_data: {out / 'routing_train.jsonl'}\n"
            f"  llm_data: {out / 'llm_data.json'}\nhparam:\n  k: 5\n"
        )
        trained = _cli(
            "train",
            "--config",
            str(config),
            "--output-dir",
            str(tmp_path / "r"),
            "--name",
            f"knn-{priced}",
            env=env,
        )
        assert trained.returncode == 0, trained.stderr
        meta = json.loads((tmp_path / "r" / f"knn-{priced}" / "router.json").read_text())
        assert meta["cost_aware"] is priced
