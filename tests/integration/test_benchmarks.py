"""The benchmarks still run (one cycle each); their figures are printed, never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_spawn_runs_and_prints_its_ratio():
    r = subprocess.run(
        [sys.executable, "-m", "tests.benchmarks.bench_spawn", "--cycles", "1"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "ratio egi-hub / plain" in r.stdout
