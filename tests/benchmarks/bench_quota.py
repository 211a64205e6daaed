"""Quota admission cost, and the spawn overhead of EGILocalSpawner with quotas on.

1. Decisions: a `QuotaPolicy` with 20 VOs (per-VO and per-user limits), 10,000 users
   and 2,000 running servers in its state; 10,000 admissions (each admitted or refused,
   then released) timed one by one. Prints p50 and p99 per decision (goal p99 < 1 ms).
2. Spawns: spawn -> ready -> stop cycles on the egi-hub stack with profiles and quotas,
   and on a plain JupyterHub (SimpleLocalProcessSpawner), interleaved in one run; prints
   medians, p90 and their ratio (goal <= 1.10).

    python -m tests.benchmarks.bench_quota [--decisions 10000] [--cycles 20]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

from egi_hub.spawner.quota import Charge, QuotaExceededError, QuotaPolicy
from tests.benchmarks.bench_spawn import compare
from tests.stackrunner import ALICE_ENTITLEMENTS, TEST_SERVICE

VOS = [f"vo.bench{i}.eu" for i in range(20)]
G = 10**9


def decisions(count: int, users: int = 10_000, running: int = 2_000) -> list[float]:
    QuotaPolicy.clear_instance()
    limits = {"max_servers": 150, "max_cpu": 300, "max_memory": "600G", "max_gpu": 4}
    per_user = {"max_servers": 2, "max_cpu": 4, "max_memory": "8G"}
    policy = QuotaPolicy(vo_limits={vo: {**limits, "per_user": per_user} for vo in VOS})
    rng = random.Random(42)
    for i in range(running):
        user = f"user{rng.randrange(users)}"
        policy.restore(Charge(user, f"s{i}", rng.choice(VOS), cpu=1, memory=2 * G))
    timings = []
    for i in range(count):
        charge = Charge(f"user{rng.randrange(users)}", f"new{i}", rng.choice(VOS), 1, 2 * G)
        start = time.perf_counter_ns()
        try:
            policy.admit(charge)
        except QuotaExceededError:
            pass
        timings.append((time.perf_counter_ns() - start) / 1e6)
        policy.release(charge.user, charge.server)
    return timings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=10_000)
    parser.add_argument("--cycles", type=int, default=20)
    args = parser.parse_args(argv)
    timings = sorted(decisions(args.decisions))
    p50 = statistics.median(timings)
    p99 = timings[min(len(timings) - 1, int(len(timings) * 0.99))]
    print(f"admission decisions: {args.decisions}, 10,000 users, 2,000 running servers")
    print(f"  p50 {p50 * 1000:.1f} us   p99 {p99 * 1000:.1f} us   (goal p99 < 1000 us)")
    site = {
        "DevAuthenticator": {"users": {"alice": {"entitlements": ALICE_ENTITLEMENTS}}},
        "QuotaPolicy": {"vo_limits": {"vo.access.egi.eu": {"max_servers": 10}}},
        "EGILocalSpawner": {
            "profile_list": [
                {
                    "display_name": "Small",
                    "default": True,
                    "kubespawner_override": {"cpu_limit": 1, "mem_limit": "1G"},
                }
            ]
        },
        "JupyterHub": {
            "services": [{"name": TEST_SERVICE, "api_token": "__API_TOKEN__"}],
            "load_roles": [{"name": "admin", "services": [TEST_SERVICE]}],
        },
    }
    compare(args.cycles, site, label="egi-hub with quotas")
    return 0


if __name__ == "__main__":
    sys.exit(main())
