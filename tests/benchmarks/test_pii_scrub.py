"""Prompt-text scrubbing throughput on real prompts (issue: telemetry ingestion, PII).

The default prompt mode scrubs every distinct prompt and completion of a batch. The simulator's
telemetry repeats a few thousand prompts, so the ingestion benchmark hardly sees this cost; a
gateway's prompts are mostly distinct. Measured here on the distinct questions of the shared
benchmark table (real prompts, 314 characters on average): scrub_text (pre-tests, then the
patterns where a match may be) against the three patterns on every text (the baseline: what
scrub_text did before), in the same run; both give the same texts. Also what scrubbing would
cost a million distinct prompts of that length.
"""

import json
import time

import pyarrow as pa

from routeiq_assets.telemetry.pii import scrub_array, scrub_text
from tests.telemetry.test_pii import reference_scrub

ROUNDS = 5


def _rate(fn, texts: list[str]) -> float:
    """Best of ROUNDS passes, characters a second."""
    chars = sum(map(len, texts))
    best = float("inf")
    for _ in range(ROUNDS):
        started = time.perf_counter()
        for text in texts:
            fn(text)
        best = min(best, time.perf_counter() - started)
    return chars / best


def test_scrub_throughput(benchmark_table, machine_load):
    table, _ = benchmark_table
    texts = sorted({row["question"] for row in json.loads(table.read_text())})
    assert [scrub_text(t) for t in texts] == [reference_scrub(t) for t in texts]
    mean = sum(map(len, texts)) / len(texts)
    base = _rate(reference_scrub, texts)
    ours = _rate(scrub_text, texts)
    column = pa.array(texts)
    assert scrub_array(column).to_pylist() == [reference_scrub(t) for t in texts]
    started = time.perf_counter()
    for _ in range(ROUNDS):
        scrub_array(column)
    whole = sum(map(len, texts)) * ROUNDS / (time.perf_counter() - started)
    print(f"\n{len(texts)} distinct real prompts, {mean:.0f} characters on average; {machine_load}")
    rows = (
        ("baseline: the three patterns", base),
        ("scrub_text, a text at a time", ours),
        ("scrub_array, the column at once", whole),
    )
    for name, rate in rows:
        print(
            f"{name:<30}{rate / 1e6:8.1f} M chars/s{1e6 * mean / rate:8.1f} CPU-s a million prompts"
        )
    print(
        json.dumps(
            {
                "scrub_speed_vs_patterns": round(ours / base, 2),
                "column_scrub_speed_vs_patterns": round(whole / base, 2),
            }
        )
    )


def test_normalising_distinct_prompts(tmp_path, machine_load):
    """A 50,000-event OTLP file normalised (the fast path) with its simulated,
    repeated prompts and with every prompt made distinct, as a gateway's are; each in the
    ``keep`` mode (no scrubbing: the baseline) and the default ``scrub`` mode."""
    from dataclasses import replace

    from routeiq_assets.telemetry.simulator import simulate_requests, write_otlp_files
    from routeiq_assets.warehouse.ingest import normalise_file

    requests = list(simulate_requests(50_000, seed=3))
    distinct = [replace(r, query=f"{r.query} (request {i})") for i, r in enumerate(requests)]
    files = {
        name: write_otlp_files(iter(reqs), tmp_path / name, name, requests_per_file=50_000)[0]
        for name, reqs in (("repeated", requests), ("distinct", distinct))
    }
    print(f"\n50,000 events a file; {machine_load}")
    for name, path in files.items():
        seconds = {}
        for mode in ("keep", "scrub"):
            best = float("inf")
            for _ in range(ROUNDS):
                started = time.perf_counter()
                batch = normalise_file(path, "otlp_json", "b", path.name, mode)
                best = min(best, time.perf_counter() - started)
            assert batch.records_in == 100_000
            seconds[mode] = best
        print(
            f"{name} prompts: keep {seconds['keep']:.3f} s, scrub {seconds['scrub']:.3f} s "
            f"= {seconds['scrub'] / seconds['keep']:.2f}x keep"
        )
