"""Spawn overhead of the egi-hub local stack against a plain JupyterHub, in one run.

Runs N sequential spawn -> ready -> stop cycles through the hub REST API on:

* the egi-hub local stack (``egi-hub up``: DevAuthenticator, EGILocalSpawner), and
* a plain JupyterHub with ``SimpleLocalProcessSpawner`` and the same proxy,

interleaving the two so that machine load affects both alike, then prints the median
and p90 of each and their ratio (goal: egi-hub / plain <= 1.10).

    python -m tests.benchmarks.bench_spawn [--cycles 20]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from egi_hub.procs import installed_script
from tests.stackrunner import Stack, free_port, start_plain_hub, start_stack, wait_for

USER = "alice"


def start_simple_hub(tmp: Path) -> Stack:
    """A plain JupyterHub: SimpleLocalProcessSpawner, the stack's proxy, an admin token."""
    args = ["--allow-root"] if os.geteuid() == 0 else []
    return start_plain_hub(
        tmp,
        free_port(),
        f"""
c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{tmp}/users/{{username}}"
c.Spawner.cmd = [{installed_script("jupyterhub-singleuser")!r}]
c.Spawner.args = {args!r}
c.Spawner.default_url = "/lab"
""",
    )


def cycle(hub: Stack) -> float:
    """Seconds for one spawn -> ready -> stop cycle."""
    start = time.perf_counter()
    r = hub.api.post(f"/users/{USER}/server")
    assert r.status_code in (201, 202), r.text
    wait_for(
        lambda: hub.user(USER)["servers"].get("", {}).get("ready"), 120, "ready", interval=0.02
    )
    r = hub.api.delete(f"/users/{USER}/server")
    assert r.status_code in (202, 204), r.text
    wait_for(lambda: hub.user(USER)["servers"] == {}, 120, "stopped", interval=0.02)
    return time.perf_counter() - start


def p90(values: list[float]) -> float:
    return (
        statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 else values[0]
    )


def compare(cycles: int, site: dict | None = None, label: str = "egi-hub") -> None:
    """Interleave spawn cycles on an egi-hub stack (``site``) and a plain hub; print."""
    with tempfile.TemporaryDirectory(prefix="egi-bench-") as tmp:
        egi = start_stack(Path(tmp) / "egi", site)
        plain = None
        try:
            plain = start_simple_hub(Path(tmp) / "plain")
            for hub in (egi, plain):
                hub.api.post(f"/users/{USER}")
                if hub is egi and site is not None:
                    egi.dev_login(USER)  # so that the user's VOs are known
                cycle(hub)  # warm-up, not counted
            times: dict[str, list[float]] = {"egi": [], "plain": []}
            for _ in range(cycles):
                times["egi"].append(cycle(egi))
                times["plain"].append(cycle(plain))
        finally:
            egi.stop()
            if plain is not None:
                plain.stop()
    med = {k: statistics.median(v) for k, v in times.items()}
    high = {k: p90(v) for k, v in times.items()}
    print(f"spawn -> ready -> stop, {cycles} cycles each, interleaved in one run")
    for key, name in ((("egi", label)), ("plain", "plain (SimpleLocal...)")):
        print(f"  {name:33}  median {med[key]:.3f} s  p90 {high[key]:.3f} s")
    ratio = f"ratio {label} / plain"
    print(
        f"  {ratio:33}  median {med['egi'] / med['plain']:.3f}"
        f"    p90 {high['egi'] / high['plain']:.3f}   (goal <= 1.10)"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20)
    args = parser.parse_args(argv)
    compare(args.cycles, label="egi-hub (EGILocalSpawner)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
