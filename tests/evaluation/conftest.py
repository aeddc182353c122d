"""A warehouse with logged telemetry and a full-information table (the LLMRouter benchmark
replayed through the simulator), built once for this package through the real ingestion path;
tests that change it work on a copy."""

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from routeiq_assets.telemetry.raw_store import land_file
from routeiq_assets.telemetry.simulator import load_table, replay_table, write_otlp_files
from routeiq_assets.training.embeddings import minilm_encoder
from routeiq_assets.training.labels import (
    LabelingPolicy,
    build_routing_examples,
    load_full_information,
    load_prices,
)
from routeiq_assets.training.training_set import build_training_set
from routeiq_assets.warehouse.ingest import ingest_pending, register_raw_file
from routeiq_assets.warehouse.store import connect

MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass
class ReplayedWarehouse:
    db: Path
    root: Path
    encoder: object


@pytest.fixture(scope="package")
def replayed_warehouse(tmp_path_factory, benchmark_table) -> ReplayedWarehouse:
    root = tmp_path_factory.mktemp("replayed")
    records, catalog = load_table(*benchmark_table)
    logged, table = records[:600], records[600:900]
    (table_path := root / "bench.json").write_text(json.dumps(table))
    files = write_otlp_files(
        replay_table(logged, catalog, seed=1, log_propensities=True), root / "l", "r"
    )
    policy = LabelingPolicy(
        prices_file=benchmark_table[1], full_information=[{"path": table_path, "name": "bench"}]
    )
    db = root / "w.duckdb"
    with connect(db) as con:
        for f in files:
            register_raw_file(con, land_file(f, root / "raw"))
        ingest_pending(con)
        load_full_information(con, policy.full_information)
        build_routing_examples(con, load_prices(policy.prices_file), policy)
        build_training_set(con, validation=0.1, test=0.3)
    return ReplayedWarehouse(db, root, minilm_encoder(MODEL, "cpu"))
