"""The benchmarks still run (one cycle each); their figures are printed, never asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def bench(module: str, *args: str) -> str:
    r = subprocess.run(
        [sys.executable, "-m", f"tests.benchmarks.{module}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_bench_spawn_runs_and_prints_its_ratio():
    assert "ratio egi-hub (EGILocalSpawner) / plain" in bench("bench_spawn", "--cycles", "1")


def test_bench_quota_runs_and_prints_its_figures():
    out = bench("bench_quota", "--decisions", "200", "--cycles", "1")
    assert "p99" in out and "ratio egi-hub with quotas / plain" in out


def test_bench_login_runs_and_prints_its_ratio():
    assert "ratio egi-hub / oauthenticator" in bench("bench_login", "--logins", "2")


def test_bench_storage_runs_and_prints_its_ratios():
    out = bench("bench_storage", "--size-mib", "2", "--entries", "50", "--rounds", "1")
    for backend, baseline in (("s3", "bare s3fs"), ("datahub", "raw HTTP")):
        rows = [line for line in out.splitlines() if line.split()[:1] == [backend]]
        for operation in ("write 2 MiB", "read 2 MiB", "list 50 entries"):
            assert any(operation in row for row in rows), out
        assert all(f"ratio egi-hub / {baseline}" in row for row in rows), out
    assert "stand-in busy" in out and "lowest ratio" in out, out


def test_bench_binder_runs_and_prints_its_figures():
    out = bench("bench_binder", "--cycles", "1", "--concurrent", "3", "--resolves", "3")
    for figure in ("ratio launch / plain spawn", "builds started", "streams ended ready",
                   "ratio cached / cold", "resolver.stats"):  # fmt: skip
        assert figure in out, out


def test_bench_carmin_runs_and_prints_its_ratios():
    out = bench("bench_carmin", "--size-mib", "2", "--rounds", "1", "--executions", "2",
                "--cells", "5", "--window", "1")  # fmt: skip
    for operation in ("upload", "download"):
        rows = [line for line in out.splitlines() if line.split()[:1] == [operation]]
        assert len(rows) == 2 and all("ratio client / raw" in row for row in rows), out
    for figure in ("peak Python memory during upload", "ratio following / idle",
                   "extra for following", "followers still running at the end: 2 of 2",
                   "lowest transfer ratio client / raw"):  # fmt: skip
        assert figure in out, out
