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

from routeiq_assets.telemetry.pii import scrub_text
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
    print(f"\n{len(texts)} distinct real prompts, {mean:.0f} characters on average; {machine_load}")
    for name, rate in (("baseline: the three patterns", base), ("scrub_text", ours)):
        print(
            f"{name:<30}{rate / 1e6:8.1f} M chars/s{1e6 * mean / rate:8.1f} CPU-s a million prompts"
        )
    print(json.dumps({"scrub_speed_vs_patterns": round(ours / base, 2)}))
