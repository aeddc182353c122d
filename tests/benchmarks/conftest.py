"""Benchmarks: never in the default test run (`make bench` runs them).

Figures are reported as ratios against a baseline measured in the same run, with the machine's
load average beside them: these machines are shared and noisy.
"""

import os

import pytest


@pytest.fixture
def machine_load() -> str:
    one, five, _ = os.getloadavg()
    return f"{os.cpu_count()} cores, load avg 1m={one:.2f} 5m={five:.2f}"
