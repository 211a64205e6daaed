"""Storage mounts: egi-hub's mount layers against the bare clients, same server, same run.

One function per backend; each starts its own server on loopback, measures egi-hub's
layer and the baseline alternately (``--rounds`` times, so machine load hits both
alike), and returns rows of figures that `main` prints with their ratios (goal: egi-hub
/ baseline >= 0.90 in throughput, i.e. at most ~10% slower).

* ``s3``: `egi_hub.singleuser.s3.S3Mount` vs a bare `s3fs.S3FileSystem` with the same
  keys, both against one ``rclone serve s3`` (real S3 server, signatures checked):
  write and read ``--size-mib`` MiB (default 256) in 8 MiB chunks, and list a folder of
  ``--entries`` objects (default 10,000).
* ``datahub`` is still to come: add ``bench_datahub(args) -> list[Row]`` (``datahub://``
  vs raw streaming HTTP to the Onedata stand-in) and register it in ``BACKENDS``.

    python -m tests.benchmarks.bench_storage [--backends s3] [--size-mib 256]
        [--entries 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHUNK = 8 * 2**20
MiB = 2**20


@dataclass
class Row:
    """One operation: egi-hub's and the baseline's figures (higher is better)."""

    backend: str
    operation: str
    unit: str
    ours: float
    baseline: float
    baseline_name: str

    @property
    def ratio(self) -> float:
        return self.ours / self.baseline if self.baseline else float("nan")


def write_object(fs: Any, path: str, size: int, block: bytes) -> None:
    with fs.open(path, "wb", block_size=CHUNK) as f:
        left = size
        while left > 0:
            f.write(block[: min(left, len(block))])
            left -= len(block)


def read_object(fs: Any, path: str, size: int) -> None:
    got = 0
    with fs.open(path, "rb", block_size=CHUNK, cache_type="none") as f:
        while chunk := f.read(CHUNK):
            got += len(chunk)
    if got != size:
        raise AssertionError(f"read {got} bytes of {path}, expected {size}")


def timed(fn: Callable[..., Any], *args: Any) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def compare_s3(args: argparse.Namespace, tmp: Path) -> list[Row]:
    """The S3 mount layer vs bare s3fs on one rclone server; see the module docstring."""
    import s3fs

    from egi_hub.singleuser.s3 import S3Mount, S3MountCredentials
    from tests.s3server import start_s3_server

    key, secret = "benchkey0001", "bench-Secret-0001"
    server = start_s3_server(tmp / "s3", keys=[(key, secret)])
    try:
        bucket = "bench"
        server.make_bucket(bucket)
        # The listing folder is filled on disk, before anything lists it (rclone caches
        # listings): 10,000 PUTs would time the setup, not the listing.
        folder = server.path_of(bucket, "many")
        folder.mkdir()
        for i in range(args.entries):
            (folder / f"entry-{i:06d}.txt").write_bytes(b"x")

        mount = S3Mount(
            S3MountCredentials(
                name="bench",
                endpoint_url=server.endpoint_url,
                bucket=bucket,
                key=key,
                secret=secret,
            )
        )
        bare = s3fs.S3FileSystem(
            key=key,
            secret=secret,
            endpoint_url=server.endpoint_url,
            client_kwargs={"region_name": "us-east-1"},
            skip_instance_cache=True,
        )
        # Both sides name the same objects; the mount's paths are relative to the bucket.
        sides = {"egi-hub": (mount, ""), "bare s3fs": (bare, f"{bucket}/")}
        size = args.size_mib * MiB
        block = os.urandom(CHUNK)
        times: dict[tuple[str, str], list[float]] = {}

        def listing(fs: Any, prefix: str) -> None:
            found = fs.ls(f"{prefix}many", detail=False, refresh=True)  # not from cache
            if len(found) != args.entries:
                raise AssertionError(f"listed {len(found)} entries, expected {args.entries}")

        # Warm-up, untimed: each client's connection and session, rclone's first listing.
        for fs, prefix in sides.values():
            fs.pipe_file(f"{prefix}warm-up", b"1")
            fs.cat_file(f"{prefix}warm-up")
            listing(fs, prefix)
            fs.rm(f"{prefix}warm-up")

        for r in range(args.rounds):
            order = list(sides) if r % 2 == 0 else list(reversed(sides))
            for side in order:
                fs, prefix = sides[side]
                path = f"{prefix}big-{side.replace(' ', '-')}.bin"
                times.setdefault(("write", side), []).append(
                    timed(write_object, fs, path, size, block)
                )
                times.setdefault(("read", side), []).append(timed(read_object, fs, path, size))
                times.setdefault(("list", side), []).append(timed(listing, fs, prefix))
                fs.rm(path)
    finally:
        server.stop()

    def best(op: str, side: str) -> float:
        return statistics.median(times[(op, side)])

    rows = []
    for op in ("write", "read"):
        label = f"{op} {args.size_mib} MiB"
        ours, base = (args.size_mib / best(op, s) for s in ("egi-hub", "bare s3fs"))
        rows.append(Row("s3", label, "MiB/s", ours, base, "bare s3fs"))
    ours, base = (args.entries / best("list", s) for s in ("egi-hub", "bare s3fs"))
    rows.append(Row("s3", f"list {args.entries} entries", "entries/s", ours, base, "bare s3fs"))
    return rows


# Each backend: a function (arguments, a temp dir) -> rows. A DataHub part joins here.
BACKENDS: dict[str, Callable[[argparse.Namespace, Path], list[Row]]] = {"s3": compare_s3}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated")
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--entries", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    chosen = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = [b for b in chosen if b not in BACKENDS]
    if unknown:
        parser.error(f"unknown backend(s) {unknown}; known: {sorted(BACKENDS)}")
    print(f"storage benchmark: median of {args.rounds} interleaved round(s), loopback")
    worst = float("inf")
    with tempfile.TemporaryDirectory(prefix="egi-bench-storage-") as tmp:
        for backend in chosen:
            for row in BACKENDS[backend](args, Path(tmp) / backend):
                worst = min(worst, row.ratio)
                print(
                    f"  {row.backend:8} {row.operation:22} egi-hub {row.ours:10.1f} {row.unit}"
                    f"   {row.baseline_name} {row.baseline:10.1f} {row.unit}"
                    f"   ratio egi-hub / {row.baseline_name} {row.ratio:.2f}"
                )
    print(f"lowest ratio {worst:.2f} (goal >= 0.90)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
