"""CARMIN: the client's transfers against raw httpx, and the kernel while ``%carmin``
follows executions, against the CARMIN server stand-in on loopback.

The stand-in (`tests.carmin_standin`, spec dialect) runs in a process of its own (this
module with ``--serve-standin DIR``: its own GIL, its CPU counted apart), so the
client's side is measured alone. Two parts:

1. **Transfers** (goal: client / raw >= 0.90 in throughput). One file of
   ``--size-mib`` MiB (default 256, random bytes) is uploaded to and downloaded from
   one platform path with `CarminClient.upload` / `CarminClient.download` (as users
   call them: md5 computed on the way and compared with the platform's md5 after) and
   with raw streaming httpx (one streamed ``PUT /path/...`` from the file in 1 MiB
   pieces, one streamed ``GET /path/...?action=content`` to a file, nothing else): the
   same file, server and endpoints. A third side, the client with ``verify=False``,
   does the same work as raw httpx (no checksum): the goal is judged on it; the
   default client's ratio shows what the md5 comparison costs on loopback, where md5
   (~0.5 GB/s here) is slower than the link and the platform reads the whole file again
   to answer it (VIP offers no md5: no cost there; on a WAN link md5 keeps up).
   ``--rounds`` interleaved rounds (the order rotates so machine load hits
   every side alike); median MB/s (10^6 bytes) each, and the stand-in's busy share of
   the wall time (near 100%: every side waits on it). Then one untimed pass under
   ``tracemalloc``: the peak of Python memory during each transfer, which shows that
   the client streams (a few MiB whatever the file's size).
2. **The kernel while executions are followed** (goal: near zero extra). A real IPython
   kernel (jupyter_client's ``KernelManager``, the user's environment: ``CARMIN_URL``
   and ``CARMIN_API_KEY``) loads ``%load_ext egi_hub.carmin``. Baseline: ``--cells``
   small cells (``1+1``) are executed spread evenly over ``--window`` seconds and
   timed from request to reply, and the kernel process's CPU time over the window is
   taken from ``/proc/<pid>/stat``. Then ``--executions`` executions of the stand-in's
   ``sleeps`` pipeline are launched with ``%carmin launch`` (no ``--wait``: each is
   followed by a task on the kernel's loop); once all are Running and their tools are
   asleep (``sleep`` processes under the stand-in: Boutiques' start-up spent), the same
   cells are timed over a window of the same length; then the executions are killed,
   the followers seen to end, and the idle window is timed again (idle figures pool
   the windows before and after, so drift in machine load hits both sides). Printed:
   median and p95 of the round trips and their ratio (following / idle), the
   kernel's CPU in each window and the extra CPU share of following, and how many
   followers were still running at the end of their window (all of them, or the
   window proved nothing).

Figures are printed, never asserted.

    python -m tests.benchmarks.bench_carmin [--size-mib 256] [--rounds 3]
        [--executions 10] [--cells 50] [--window 10]
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
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

MiB = 2**20
PIECE = 1 << 20  # the raw side's upload pieces (the client's CHUNK)
KEY = "standin-key"  # the stand-in's default API key (alice)
HOME = "/vip/Home"


# -- processes (Linux /proc) --------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def descendants(pid: int) -> list[tuple[int, str]]:
    """(pid, command name) of every live descendant of ``pid``."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append((int(entry.name), name))
    found: list[tuple[int, str]] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


class StandinProcess:
    """The stand-in served by this module in its own process (``--serve-standin``);
    it stops when its stdin closes."""

    def __init__(self, folder: Path) -> None:
        repo = Path(__file__).resolve().parents[2]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.benchmarks.bench_carmin", "--serve-standin", folder],
            cwd=repo,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # printed once it serves
        if not line:
            self.proc.wait(10)
            raise RuntimeError(f"the CARMIN stand-in exited ({self.proc.returncode})")
        self.url: str = json.loads(line)["url"]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid)

    def stop(self) -> None:
        from tests.stackrunner import stop_process

        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            stop_process(self.proc)


def serve_standin(folder: Path) -> int:
    """``--serve-standin DIR``: serve until stdin closes (then kill what still runs)."""
    from tests.carmin_standin import start_carmin_standin

    standin = start_carmin_standin(folder, dialect="carmin")
    print(json.dumps({"url": standin.url}), flush=True)
    try:
        sys.stdin.read()
    finally:
        standin.stop()
    return 0


# -- 1. transfers ----------------------------------------------------------------------


class RawHttp:
    """The baseline: the CARMIN data calls straight over httpx, streamed, nothing else."""

    def __init__(self, url: str) -> None:
        import httpx

        self.url = url
        self.http = httpx.Client(timeout=120, headers={"apiKey": KEY})

    def upload(self, source: Path, path: str) -> None:
        size = source.stat().st_size

        def pieces() -> Any:
            with source.open("rb") as f:
                while piece := f.read(PIECE):
                    yield piece

        headers = {"Content-Type": "application/octet-stream", "Content-Length": str(size)}
        r = self.http.put(f"{self.url}/path{path}", content=pieces(), headers=headers)
        if r.status_code != 201:
            raise AssertionError(f"raw PUT {path}: HTTP {r.status_code} {r.text[:200]}")

    def download(self, path: str, dest: Path, size: int) -> None:
        got = 0
        url = f"{self.url}/path{path}"
        with self.http.stream("GET", url, params={"action": "content"}) as r:
            if r.status_code != 200:
                raise AssertionError(f"raw GET {path}: HTTP {r.status_code}")
            with dest.open("wb") as out:
                for chunk in r.iter_bytes():
                    out.write(chunk)
                    got += len(chunk)
        if got != size:
            raise AssertionError(f"raw GET {path}: {got} bytes, expected {size}")

    def close(self) -> None:
        self.http.close()


def random_file(path: Path, size: int) -> Path:
    with path.open("wb") as f:
        left = size
        while left > 0:
            f.write(os.urandom(min(left, 8 * MiB)))
            left -= 8 * MiB
    return path


def traced_peak(fn: Callable[[], Any]) -> float:
    """The peak of Python memory (MiB above the start) while ``fn`` runs."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1] / MiB
    finally:
        tracemalloc.stop()


def compare_transfers(
    args: argparse.Namespace, standin: StandinProcess, tmp: Path
) -> tuple[float, float]:
    """Prints the transfer rows; returns the lowest client / raw ratio for the same work
    (the client with ``verify=False``: raw httpx checks nothing either), and with the
    default md5 comparison."""
    from egi_hub.carmin import CarminClient

    size = args.size_mib * MiB
    source = random_file(tmp / "source.bin", size)
    client = CarminClient(standin.url, api_key=KEY)
    raw = RawHttp(standin.url)

    def check_size(dest: Path) -> None:
        if dest.stat().st_size != size:
            raise AssertionError(f"{dest.name}: {dest.stat().st_size} bytes, expected {size}")

    def client_down(dest: Path, verify: bool) -> None:
        client.download(f"{HOME}/bench-client.bin", dest, verify=verify)
        check_size(dest)

    sides: dict[str, dict[str, Callable[[], Any]]] = {
        "client": {
            "upload": lambda: client.upload(source, f"{HOME}/bench-client.bin"),
            "download": lambda: client_down(tmp / "down-client.bin", True),
        },
        "client verify=False": {
            "upload": lambda: client.upload(source, f"{HOME}/bench-client.bin", verify=False),
            "download": lambda: client_down(tmp / "down-client.bin", False),
        },
        "raw httpx": {
            "upload": lambda: raw.upload(source, f"{HOME}/bench-raw.bin"),
            "download": lambda: raw.download(f"{HOME}/bench-raw.bin", tmp / "down-raw.bin", size),
        },
    }
    try:
        # Warm-up, untimed: connections, the client's dialect (asked once), a small file.
        small = random_file(tmp / "small.bin", 4096)
        client.upload(small, f"{HOME}/warm-up.bin")
        client.download(f"{HOME}/warm-up.bin", tmp / "warm-up-client.bin")
        raw.upload(small, f"{HOME}/warm-up.bin")
        raw.download(f"{HOME}/warm-up.bin", tmp / "warm-up-raw.bin", 4096)

        wall: dict[tuple[str, str], list[float]] = {}
        busy: dict[tuple[str, str], list[float]] = {}
        names = list(sides)
        for r in range(args.rounds):
            order = names[r % len(names) :] + names[: r % len(names)]
            for side in order:
                for op in ("upload", "download"):
                    server0, t0 = standin.cpu(), time.perf_counter()
                    sides[side][op]()
                    t = time.perf_counter() - t0
                    wall.setdefault((op, side), []).append(t)
                    busy.setdefault((op, side), []).append((standin.cpu() - server0) / t)
        same = (tmp / "down-client.bin").read_bytes() == source.read_bytes()
        if not same:
            raise AssertionError("the client's download differs from the file sent")

        # Memory, untimed (tracemalloc slows every allocation down).
        peaks = {
            (op, side): traced_peak(sides[side][op])
            for side in ("client", "raw httpx")
            for op in ("upload", "download")
        }
    finally:
        client.close()
        raw.close()

    print(
        f"transfers: {args.size_mib} MiB, median of {args.rounds} interleaved round(s), "
        "loopback, stand-in in its own process"
    )
    worst = {"client": float("inf"), "client verify=False": float("inf")}
    for op in ("upload", "download"):
        rate = {s: size / 1e6 / statistics.median(wall[(op, s)]) for s in sides}
        base = rate["raw httpx"]
        for side in ("client", "client verify=False"):
            ratio = rate[side] / base
            worst[side] = min(worst[side], ratio)
            print(
                f"  {op:8} {side:20} {rate[side]:8.1f} MB/s   raw httpx {base:8.1f} MB/s"
                f"   ratio client / raw {ratio:.2f}"
                + ("" if side == "client" else "  (without the md5 comparison)")
            )
        shares = ", ".join(f"{s} {statistics.median(busy[(op, s)]):.0%}" for s in sides)
        print(f"  {'':8} (stand-in busy, share of the wall time: {shares})")
    for op in ("upload", "download"):
        print(
            f"  peak Python memory during {op} of {args.size_mib} MiB: "
            f"client {peaks[(op, 'client')]:.1f} MiB, raw httpx {peaks[(op, 'raw httpx')]:.1f} MiB"
        )
    return worst["client verify=False"], worst["client"]


# -- 2. the kernel while executions are followed ----------------------------------------


class KernelRun:
    """One IPython kernel driven over jupyter_client; cells return their reply."""

    def __init__(self, cwd: Path, env: dict[str, str]) -> None:
        from jupyter_client import KernelManager

        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(env=env, cwd=str(cwd))
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)

    @property
    def pid(self) -> int:
        provisioner = self.km.provisioner
        assert provisioner is not None and provisioner.process is not None  # type: ignore[attr-defined]
        return provisioner.process.pid  # type: ignore[attr-defined]

    def run(self, code: str) -> str:
        """Execute ``code``; its printed output, or RuntimeError with what went wrong."""
        out: list[str] = []

        def hook(msg: dict[str, Any]) -> None:
            content = msg["content"]
            if msg["msg_type"] == "stream":
                out.append(content["text"])
            elif msg["msg_type"] == "error":
                out.append("\n".join(content["traceback"]))

        reply = self.kc.execute_interactive(
            code, timeout=120, output_hook=hook, store_history=False
        )
        text = "".join(out)
        if reply["content"]["status"] != "ok" or "UsageError" in text:
            raise RuntimeError(f"cell {code!r} failed: {text.strip()[:500]}")
        return text

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def timed_window(kernel: KernelRun, cells: int, window: float) -> tuple[list[float], float]:
    """``cells`` ``1+1`` cells spread evenly over ``window`` seconds: their round trips
    (seconds) and the kernel's CPU seconds over the window."""
    times = []
    cpu0, start = cpu_seconds(kernel.pid), time.monotonic()
    for i in range(cells):
        due = start + i * window / cells
        time.sleep(max(0.0, due - time.monotonic()))  # pacing, not waiting on a condition
        t0 = time.perf_counter()
        kernel.run("1+1")
        times.append(time.perf_counter() - t0)
    time.sleep(max(0.0, start + window - time.monotonic()))
    return times, cpu_seconds(kernel.pid) - cpu0


def live_followers(kernel: KernelRun) -> int:
    """How many ``%carmin`` followers (tasks on the kernel's loop) are still running."""
    return int(
        kernel.run(
            "_m = get_ipython().magics_manager.registry['CarminMagics']\n"
            "print(sum(1 for r in _m.runs.values() if r.task is not None and not r.task.done()))"
        ).strip()
    )


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def compare_kernel(args: argparse.Namespace, standin: StandinProcess, tmp: Path) -> float:
    """Prints the kernel rows; returns the round-trip ratio following / idle (medians)."""
    from egi_hub.carmin import CarminClient
    from tests.stackrunner import wait_for

    env = {**os.environ, "CARMIN_URL": standin.url, "CARMIN_API_KEY": KEY}
    env.pop("VIP_API_KEY", None)
    env["CARMIN_WIDGETS"] = "0"  # text display; no widget front end listens here
    work = tmp / "notebook"
    work.mkdir()
    kernel = KernelRun(work, env)
    client = CarminClient(standin.url, api_key=KEY)
    ms = 1000.0
    try:
        kernel.run("%load_ext egi_hub.carmin")
        kernel.run("%carmin platform")  # the kernel's clients made, the dialect asked
        for _ in range(5):
            kernel.run("1+1")
        idle, idle_cpu = timed_window(kernel, args.cells, args.window)

        names = [f"bench-follow-{i}" for i in range(args.executions)]
        seconds = int(args.window * 3 + 120)  # well past the window; stopped at the end
        launches = []
        for name in names:
            t0 = time.perf_counter()
            kernel.run(f"%carmin launch sleeps --name {name} --param seconds={seconds}")
            launches.append(time.perf_counter() - t0)

        def all_asleep() -> bool:
            ours = [e for e in client.executions() if e.name in names]
            running = sum(1 for e in ours if e.status.value == "Running")
            asleep = sum(1 for _, n in descendants(standin.pid) if n == "sleep")
            return running == len(names) and asleep >= len(names)

        wait_for(all_asleep, 60 + 10 * args.executions, "the executions' tools to sleep")
        following, following_cpu = timed_window(kernel, args.cells, args.window)
        ours = [e for e in client.executions() if e.name in names]
        still = sum(1 for e in ours if e.status.value == "Running")
        followers = live_followers(kernel)

        # Idle again, once the followers saw their executions killed and ended.
        for execution in ours:
            client.kill(execution.identifier)
        wait_for(lambda: live_followers(kernel) == 0, 60, "the followers to end")
        idle_after, idle_after_cpu = timed_window(kernel, args.cells, args.window)
    finally:
        client.close()
        kernel.close()

    idle_windows = f"{statistics.median(idle) * ms:.2f} / {statistics.median(idle_after) * ms:.2f}"
    idle += idle_after  # both idle windows, before and after: drift hits both sides
    idle_cpu = (idle_cpu + idle_after_cpu) / 2
    ratio = statistics.median(following) / statistics.median(idle)
    print(
        f"kernel: {args.cells} cells of 1+1 over {args.window:g} s, idle vs "
        f"{args.executions} executions followed (%carmin launch without --wait)"
    )
    print(
        f"  launch {args.executions} executions: median {statistics.median(launches) * ms:.0f} ms"
        f" per %carmin launch cell (total {sum(launches):.1f} s)"
    )
    print(
        f"  cell round trip  following: median {statistics.median(following) * ms:.2f} ms"
        f" p95 {p95(following) * ms:.2f} ms   idle: median {statistics.median(idle) * ms:.2f} ms"
        f" p95 {p95(idle) * ms:.2f} ms   ratio following / idle {ratio:.2f}"
        f" (p95 {p95(following) / p95(idle):.2f})"
    )
    extra = following_cpu - idle_cpu
    print(
        f"  kernel CPU over {args.window:g} s  following: {following_cpu:.2f} s"
        f" ({following_cpu / args.window:.1%})   idle: {idle_cpu:.2f} s"
        f" ({idle_cpu / args.window:.1%})   extra for following: {extra:+.2f} s"
        f" ({extra / args.window:+.1%} of one core; goal: near zero)"
    )
    print(f"  (idle medians before / after following: {idle_windows} ms; idle figures pool both)")
    print(
        f"  followers still running at the end: {followers} of {args.executions}"
        f" (executions Running: {still})"
    )
    return ratio


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256, help="size of the file moved")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved transfer rounds")
    parser.add_argument("--executions", type=int, default=10, help="executions followed")
    parser.add_argument("--cells", type=int, default=50, help="cells timed per window")
    parser.add_argument("--window", type=float, default=10.0, help="seconds per window")
    parser.add_argument("--serve-standin", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve_standin is not None:
        return serve_standin(args.serve_standin)
    if min(args.size_mib, args.rounds, args.executions, args.cells) < 1 or args.window <= 0:
        parser.error("sizes, rounds, executions, cells and the window must be positive")
    with tempfile.TemporaryDirectory(prefix="egi-bench-carmin-") as tmp:
        standin = StandinProcess(Path(tmp) / "standin")
        try:
            same_work, checked = compare_transfers(args, standin, Path(tmp))
            ratio = compare_kernel(args, standin, Path(tmp))
        finally:
            standin.stop()
    print(
        f"lowest transfer ratio client / raw {same_work:.2f} for the same work, no checksum "
        "on either side (goal >= 0.90)"
    )
    print(
        f"lowest transfer ratio client / raw {checked:.2f} with the client's md5 comparison "
        "(its cost on loopback: md5 is slower than the link, and the platform reads the "
        "file again to answer; none where the platform offers no md5, as VIP)"
    )
    print(f"cell round trip ratio following / idle {ratio:.2f} (goal: near 1, the kernel free)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
