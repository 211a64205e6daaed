"""Storage mounts: egi-hub's mount layers against the bare clients, same server, same run.

One function per backend; each starts its own server on loopback, measures egi-hub's
layer and the baseline alternately (``--rounds`` times, so machine load hits both
alike), and returns rows of figures that `main` prints with their ratios (goal: egi-hub
/ baseline >= 0.90 in throughput, i.e. at most ~10% slower).

* ``s3``: `egi_hub.singleuser.s3.S3Mount` vs a bare `s3fs.S3FileSystem` with the same
  keys, both against one ``rclone serve s3`` (real S3 server, signatures checked):
  write and read ``--size-mib`` MiB (default 256) in 8 MiB chunks, and list a folder of
  ``--entries`` objects (default 10,000).
* ``datahub``: ``datahub://`` (`egi_hub.singleuser.datahub.DatahubFileSystem`) vs raw
  streaming HTTP (httpx, the same TLS context, the same Oneprovider calls, 8 MiB blocks)
  against one Onedata stand-in (`tests/onedata_standin.py`, Onedata cannot run here),
  run in a process of its own: write and read ``--size-mib`` MiB and list a folder of
  ``--entries`` files (the same attributes both sides). Raw HTTP is the floor a
  filesystem can reach: one streamed ``PUT`` and one streamed ``GET`` of the whole file,
  where ``datahub://`` sends one request per 8 MiB block. Listings are measured twice:
  with details (``ls(detail=True)``, which builds fsspec's entry of name, size, type,
  mtime... for each, against a raw client asking the same attributes and keeping the
  names) and names only (``ls(detail=False)`` against a raw client asking for names
  only, the same request). Two more figures per operation tell whether the stand-in
  hides the client's cost: each client's own CPU (MiB or entries per CPU second: higher
  is cheaper) and how busy the stand-in process was (its CPU time / wall time; near 100%
  means both sides wait on it, being one Python process). The stand-in keeps files in
  memory (a few copies of 256 MiB at most: well within a test machine's memory).

    python -m tests.benchmarks.bench_storage [--backends s3,datahub] [--size-mib 256]
        [--entries 10000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHUNK = 8 * 2**20
MiB = 2**20
LIST_BATCH = 5  # DataHub listings timed together, per round and side


@dataclass
class Row:
    """One operation: egi-hub's and the baseline's figures (higher is better)."""

    backend: str
    operation: str
    unit: str
    ours: float
    baseline: float
    baseline_name: str
    note: str = ""  # printed under the row
    in_goal: bool = True  # counts for the lowest ratio (CPU-cost rows are informative)

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


class _StandinProcess:
    """`tests.onedata_standin` run as ``python -m`` (its own process, its own GIL),
    stopped by its pid; ``cpu()`` is its CPU seconds so far (Linux ``/proc``)."""

    def __init__(self, tmp: Path, fill: str) -> None:
        repo = Path(__file__).resolve().parents[2]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.onedata_standin", str(tmp), "--fill", fill],
            cwd=repo,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # the stand-in prints it once it serves
        if not line:
            self.proc.wait(10)
            raise RuntimeError(f"the Onedata stand-in exited ({self.proc.returncode})")
        self.info: dict[str, str] = json.loads(line)
        self._ticks = os.sysconf("SC_CLK_TCK")

    def cpu(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self._ticks  # utime + stime

    def stop(self) -> None:
        from tests.stackrunner import stop_process

        if self.proc.stdin:
            self.proc.stdin.close()  # the stand-in's signal to stop
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            stop_process(self.proc)


class _RawDatahub:
    """The baseline: the Oneprovider REST calls straight over httpx, streamed, no layer."""

    def __init__(self, info: dict[str, str], tls: Any) -> None:
        import httpx

        self.api = f"{info['provider_url']}/api/v3/oneprovider"
        self.space, self.space_id = info["space"], info["space_id"]
        self.http = httpx.Client(verify=tls, timeout=120, headers={"X-Auth-Token": info["token"]})

    def _ok(self, r: Any) -> Any:
        if r.status_code >= 400:
            raise AssertionError(f"raw HTTP: {r.request.method} {r.url} -> {r.status_code}")
        return r

    def file_id(self, rel: str) -> str:
        url = f"{self.api}/lookup-file-id/{self.space}/{rel}"
        return self._ok(self.http.post(url)).json()["fileId"]

    def write(self, rel: str, size: int, block: bytes) -> None:
        params = {"type": "REG", "create_parents": "true", "update_existing": "true"}
        url = f"{self.api}/data/{self.space_id}/path/{rel}"
        file_id = self._ok(self.http.put(url, params=params)).json()["fileId"]

        def blocks() -> Any:
            left = size
            while left > 0:
                yield block[: min(left, len(block))]
                left -= len(block)

        # No offset: truncate and write, as datahub:// does for its first block. With
        # the length given, httpx streams the blocks as they come, without chunking.
        url = f"{self.api}/data/{file_id}/content"
        headers = {"Content-Length": str(size), "Content-Type": "application/octet-stream"}
        self._ok(self.http.put(url, content=blocks(), headers=headers))

    def read(self, rel: str, size: int) -> None:
        url = f"{self.api}/data/{self.file_id(rel)}/content"
        got = 0
        with self.http.stream("GET", url) as r:
            self._ok(r)
            for chunk in r.iter_bytes(CHUNK):
                got += len(chunk)
        if got != size:
            raise AssertionError(f"read {got} bytes of {rel}, expected {size}")

    def listing(self, rel: str, attributes: list[str]) -> list[str]:
        url = f"{self.api}/data/{self.file_id(rel)}/children"
        params: dict[str, Any] = {"limit": 1000}
        names: list[str] = []
        while True:
            page = self._ok(self.http.request("GET", url, params=params,
                                              json={"attributes": attributes})).json()  # fmt: skip
            names.extend(child["name"] for child in page["children"])
            if page["isLast"]:
                return names
            params = {"limit": 1000, "token": page["nextPageToken"]}

    def rm(self, rel: str) -> None:
        self._ok(self.http.delete(f"{self.api}/data/{self.file_id(rel)}"))


def compare_datahub(args: argparse.Namespace, tmp: Path) -> list[Row]:
    """``datahub://`` vs raw streaming HTTP on one Onedata stand-in; see the docstring."""
    import ssl

    from egi_hub.singleuser.datahub import ATTRS, NAME_ONLY, DatahubFileSystem

    server = _StandinProcess(tmp / "standin", f"many={args.entries}")
    try:
        info = server.info
        tls = ssl.create_default_context(cafile=info["ca_file"])
        fs = DatahubFileSystem(  # verify=<CA file>: the same default context as `tls`
            onezone_url=info["onezone_url"],
            token=info["token"],
            verify=info["ca_file"],
            skip_instance_cache=True,
        )
        raw = _RawDatahub(info, tls)
        space = info["space"]
        size = args.size_mib * MiB
        block = os.urandom(CHUNK)

        def fs_listing() -> None:
            found = fs.ls(f"{space}/many", detail=True)
            if len(found) != args.entries:
                raise AssertionError(f"listed {len(found)} entries, expected {args.entries}")

        def raw_listing() -> None:
            found = raw.listing("many", ATTRS)
            if len(found) != args.entries:
                raise AssertionError(f"listed {len(found)} entries, expected {args.entries}")

        def fs_names() -> None:
            found = fs.ls(f"{space}/many", detail=False)
            if len(found) != args.entries:
                raise AssertionError(f"listed {len(found)} names, expected {args.entries}")

        def raw_names() -> None:
            found = raw.listing("many", NAME_ONLY)
            if len(found) != args.entries:
                raise AssertionError(f"listed {len(found)} names, expected {args.entries}")

        ops: dict[str, dict[str, Callable[[], None]]] = {
            "egi-hub": {
                "write": lambda: write_object(fs, f"{space}/big-egi-hub.bin", size, block),
                "read": lambda: read_object(fs, f"{space}/big-egi-hub.bin", size),
                "list": fs_listing,
                "names": fs_names,
                "rm": lambda: fs.rm(f"{space}/big-egi-hub.bin"),
            },
            "raw HTTP": {
                "write": lambda: raw.write("big-raw.bin", size, block),
                "read": lambda: raw.read("big-raw.bin", size),
                "list": raw_listing,
                "names": raw_names,
                "rm": lambda: raw.rm("big-raw.bin"),
            },
        }
        # Warm-up, untimed: connections, TLS sessions, the scope answer, the first listing.
        fs.pipe_file(f"{space}/warm-up", b"1")
        fs.cat_file(f"{space}/warm-up")
        fs.rm(f"{space}/warm-up")
        fs_listing()
        fs_names()
        raw.write("warm-up", 1, b"1")
        raw.read("warm-up", 1)
        raw.rm("warm-up")
        raw_listing()
        raw_names()

        wall: dict[tuple[str, str], list[float]] = {}
        client: dict[tuple[str, str], list[float]] = {}
        busy: dict[tuple[str, str], list[float]] = {}
        for r in range(args.rounds):
            order = list(ops) if r % 2 == 0 else list(reversed(ops))
            for side in order:
                for op in ("write", "read", "list", "names"):
                    # A listing takes tens of ms here, less than the 10 ms ticks the
                    # stand-in's CPU is counted in make meaningful: time a batch of them.
                    times = LIST_BATCH if op in ("list", "names") else 1
                    cpu0, server0, t0 = time.process_time(), server.cpu(), time.perf_counter()
                    for _ in range(times):
                        ops[side][op]()
                    t = time.perf_counter() - t0
                    wall.setdefault((op, side), []).append(t / times)
                    client.setdefault((op, side), []).append((time.process_time() - cpu0) / times)
                    busy.setdefault((op, side), []).append((server.cpu() - server0) / t)
                ops[side]["rm"]()
    finally:
        server.stop()

    def med(table: dict[tuple[str, str], list[float]], op: str, side: str) -> float:
        return statistics.median(table[(op, side)])

    rows = []
    for op, label, amount, unit in (
        ("write", f"write {args.size_mib} MiB", args.size_mib, "MiB/s"),
        ("read", f"read {args.size_mib} MiB", args.size_mib, "MiB/s"),
        ("list", f"list {args.entries} entries", args.entries, "entries/s"),
        ("names", f"list {args.entries} names", args.entries, "entries/s"),
    ):
        ours, base = (amount / med(wall, op, s) for s in ("egi-hub", "raw HTTP"))
        note = "stand-in busy {:.0%} (egi-hub) / {:.0%} (raw HTTP) of the wall time".format(
            med(busy, op, "egi-hub"), med(busy, op, "raw HTTP")
        )
        rows.append(Row("datahub", label, unit, ours, base, "raw HTTP", note))
        cpu_unit = unit.replace("/s", "/CPU-s")
        ours, base = (amount / max(med(client, op, s), 1e-6) for s in ("egi-hub", "raw HTTP"))
        rows.append(
            Row("datahub", f"{op} client CPU", cpu_unit, ours, base, "raw HTTP", in_goal=False)
        )
    return rows


# Each backend: a function (arguments, a temp dir) -> rows.
BACKENDS: dict[str, Callable[[argparse.Namespace, Path], list[Row]]] = {
    "s3": compare_s3,
    "datahub": compare_datahub,
}


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
                if row.in_goal:
                    worst = min(worst, row.ratio)
                print(
                    f"  {row.backend:8} {row.operation:22} egi-hub {row.ours:10.1f} {row.unit}"
                    f"   {row.baseline_name} {row.baseline:10.1f} {row.unit}"
                    f"   ratio egi-hub / {row.baseline_name} {row.ratio:.2f}"
                )
                if row.note:
                    print(f"  {'':8} {'':22} ({row.note})")
    print(f"lowest ratio {worst:.2f} (goal >= 0.90)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
