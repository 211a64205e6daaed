"""Binder on the local stack: launch overhead, build sharing and resolution caching, in one run.

Real parts only: ``egi-hub up`` with the Binder service (venv builder), ``git daemon``
serving real repositories (`tests.gitserver`) and a wheel made here (`tests.wheels`), so
builds need no package index. Three figures:

1. **Launch of a built environment vs a plain spawn of it** (goal: launch / plain
   <= 1.20). A repository is built once (its first launch, not counted), then ``--cycles``
   interleaved cycles of (a) a Binder launch through the proxy as alice's browser makes
   it from a click on the link (the launch page ``/services/binder/v2/<spec>``, then the
   event stream it opens), timed from the click to the ``ready`` event, and (b) a plain
   start of the same named server with the same environment and content: ``POST`` to
   the hub API with alice's token and a ticket signed here as the service signs it
   (checked to carry the same ``launch`` as the service's ticket of the first launch),
   timed to the ``ready`` event of the hub's progress stream. The server is stopped
   fully between starts; the order alternates each cycle so that machine load hits both
   alike. Server starts vary by seconds on a loaded machine, so the service's own part
   of each launch is printed too (the click to its first ``launching`` event, and the
   hub's ready to its ``ready`` event).
2. **Concurrent first launches of one new repository** (goal: exactly 1 build):
   ``--concurrent`` users (dev logins, each its own browser) click one link at once and
   follow their launches to ``ready`` or ``failed``: as many launches and sessions, one
   environment. (One user's launches would not do: the same link twice is one shared
   launch, and ``BinderService.max_launches_per_user`` caps distinct ones.) The builds
   that ran are the service's ``builds_started`` (``api/v1/capacity``) after minus before.
3. **Resolution cold vs cached**: an in-process `Resolver` against the git daemon,
   ``--resolves`` distinct repositories resolved once (cold: ``git ls-remote``), then
   again (cached); medians, their ratio and the Resolver's counts.

    python -m tests.benchmarks.bench_binder [--cycles 20] [--concurrent 20] [--resolves 20]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import html
import json
import re
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from traitlets.config import Config

from egi_hub.binder_service.resolver import Resolver
from egi_hub.binder_service.specs import parse_launch
from egi_hub.binder_service.ticket import sign_ticket
from tests.benchmarks.bench_spawn import p90
from tests.gitserver import GitServer, start_git_server
from tests.stackrunner import ALICE_ENTITLEMENTS, TEST_SERVICE, Stack, start_stack
from tests.wheels import make_wheel

USER = "alice"
PREFIX = "/services/binder/"
NOTEBOOK = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
TIMEOUT = 600  # seconds for one launch or start at most (a build included)
LOCAL_GIT = Config({"GitProvider": {"allow_private_hosts": True}})  # as the service's


def crowd(n: int) -> list[str]:
    """The users of the concurrent launches."""
    return [f"crowd-{i:03d}" for i in range(n)]


def binder_site(wheels: Path, concurrent: int) -> dict[str, Any]:
    """The local stack with the Binder service; builds install from ``wheels`` only."""
    users = [USER, *crowd(concurrent)]
    return {
        "DevAuthenticator": {"users": {u: {"entitlements": ALICE_ENTITLEMENTS} for u in users}},
        "JupyterHub": {
            "services": [{"name": TEST_SERVICE, "api_token": "__API_TOKEN__"}],
            "load_roles": [{"name": "admin", "services": [TEST_SERVICE]}],
        },
        "VenvBuilder": {"pip_args": ["--no-index", "--find-links", str(wheels)]},
        "GitProvider": {"allow_private_hosts": True},  # the git daemon is on 127.0.0.1
        "EGILocalSpawner": {"binder_profile": {
            "display_name": "Binder", "slug": "binder",
            "kubespawner_override": {"mem_limit": "4G", "cpu_limit": 1},
        }},
    }  # fmt: skip


def git_link(git: GitServer, name: str) -> str:
    """The spec part of a launch link of ``name``'s ``main`` (``git/<escaped url>/main``)."""
    return f"git/{quote(git.git_url(name), safe='')}/main"


def browser(stack: Stack, user: str = USER) -> httpx.Client:
    """A user's browser: logged in at the hub, then at the service (hub OAuth)."""
    client = stack.dev_login(user)
    client.follow_redirects = True
    r = client.get(f"{PREFIX}api/v1/capacity")
    if r.status_code != 200:
        raise RuntimeError(f"the Binder service answered {r.status_code}: {r.text[:200]}")
    return client


def launch(client: httpx.Client, path: str) -> tuple[float, list[dict[str, Any]]]:
    """One launch as a browser makes it from a click on the link: the launch page
    (``v2/<path>``), then the event stream its page opens (with the page's launch token),
    read until it ends. (Seconds from the click to the end, the events, each with ``at``:
    seconds from the click.)"""
    events: list[dict[str, Any]] = []
    same_origin = {"Sec-Fetch-Site": "same-origin"}
    start = time.perf_counter()
    page = client.get(f"{PREFIX}v2/{path}", headers=same_origin)
    found = re.search(r'data-build-url="([^"]+)"', page.text)
    if page.status_code != 200 or not found:
        raise RuntimeError(f"the launch page answered {page.status_code}: {page.text[:200]}")
    with client.stream(
        "GET", html.unescape(found.group(1)), timeout=httpx.Timeout(30, read=TIMEOUT),
        headers=same_origin,
    ) as r:  # fmt: skip
        if r.status_code != 200:
            raise RuntimeError(f"the launch answered {r.status_code}: {r.read()[:200]!r}")
        for line in r.iter_lines():
            if line.startswith("data:"):
                events.append({**json.loads(line[5:]), "at": time.perf_counter() - start})
                if events[-1]["phase"] in ("ready", "failed"):
                    break
    return time.perf_counter() - start, events


def launch_ready(client: httpx.Client, path: str) -> tuple[float, list[dict[str, Any]]]:
    took, events = launch(client, path)
    if not events or events[-1]["phase"] != "ready":
        raise RuntimeError(f"the launch of {path} did not end ready: {events[-3:]}")
    return took, events


def server_of(ready: dict[str, Any]) -> str:
    """The named server a ``ready`` event's URL (``/user/alice/<server>/...``) points at."""
    return ready["url"].split("/")[3]


def service_time(events: list[dict[str, Any]]) -> float:
    """The service's own part of a launch (no build): from the click to its first
    ``launching`` event (the launch page, resolving, the environment check, the ticket),
    plus from the hub's ready (the last ``launching`` event, the hub's progress saying
    so) to the ``ready`` event. The rest is the hub starting the server."""
    launching = [e["at"] for e in events if e["phase"] == "launching"]
    return launching[0] + (events[-1]["at"] - launching[-1])


def ticket_payload(ticket: str) -> dict[str, Any]:
    """What a ticket carries (its signature not checked: the hub checks it)."""
    encoded = ticket.partition(".")[0]
    return json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))


def plain_start(hub: httpx.Client, server: str, secret: str, launch: dict[str, Any]) -> float:
    """Seconds from the hub API's start of ``server`` (a ticket signed here) to ready."""
    start = time.perf_counter()
    ticket = sign_ticket(secret, user=USER, server=server, launch=launch)
    path = f"/users/{USER}/servers/{server}"
    r = hub.post(path, json={"binder": ticket})
    if r.status_code not in (201, 202):
        raise RuntimeError(f"the hub answered {r.status_code}: {r.text[:200]}")
    with hub.stream("GET", f"{path}/progress", timeout=httpx.Timeout(30, read=TIMEOUT)) as r:
        if r.status_code != 200:
            raise RuntimeError(f"the hub's progress answered {r.status_code}")
        for line in r.iter_lines():
            if not line.startswith("data:"):
                continue
            event = json.loads(line[5:])
            if event.get("failed"):
                raise RuntimeError(f"the plain start failed: {event.get('message')}")
            if event.get("ready"):
                return time.perf_counter() - start
    raise RuntimeError("the hub's progress stream ended before ready")


def service_launch(stack: Stack, git: GitServer, name: str) -> dict[str, Any]:
    """The ``launch`` the service puts in its ticket for ``name``'s current commit (see
    `BinderService._start_session`), rebuilt from what it keeps on disk: its build record
    (``<data dir>/binder/builds/<key>.json``) and its fetched content folder, with the
    spec resolved here as the service resolves it."""
    request = parse_launch(f"v2/{git_link(git, name)}")

    async def resolve() -> Any:
        resolver = Resolver(config=LOCAL_GIT)
        try:
            return await resolver.resolve(request.spec)
        finally:
            await resolver.close()

    resolved = asyncio.run(resolve())
    binder = stack.data_dir / "binder"
    records = [json.loads(p.read_text()) for p in (binder / "builds").glob("*.json")]
    built = [r for r in records if r.get("state") == "built" and r.get("ref") == resolved.ref]
    if len(built) != 1:
        raise RuntimeError(f"expected one build record of {resolved.label}, found {len(built)}")
    record = built[0]
    return {
        "key": record["key"],
        "spec": request.spec.path,
        "label": resolved.label,
        "environment": record.get("environment") or {},
        "content": {
            "path": str(binder / "content" / resolved.content_id),
            "fetch": resolved.fetch,
            "ref": resolved.ref,
        },
        "built_from": record.get("ref"),
    }


def launch_vs_plain(stack: Stack, git: GitServer, alice: httpx.Client, cycles: int) -> None:
    """Figure 1 (see the module docstring)."""
    git.commit("demo", {"requirements.txt": "egi_binder_demo==1.0\n", "index.ipynb": NOTEBOOK})
    path = git_link(git, "demo")
    took, events = launch_ready(alice, path)  # the build, not counted
    print(f"first launch (build included): {took:.2f} s")
    server = server_of(events[-1])
    ticket_launch = service_launch(stack, git, "demo")
    sent = stack.user(USER)["servers"][server]["user_options"]["binder"]
    if ticket_payload(sent)["launch"] != ticket_launch:  # the same start, or no comparison
        raise RuntimeError("the ticket made here differs from the service's")
    stack.stop_server(USER, server)
    secret = (stack.data_dir / "binder_ticket_secret").read_text().strip()
    token = stack.api.post(f"/users/{USER}/tokens", json={"scopes": ["servers!user"]})
    token.raise_for_status()
    hub = httpx.Client(
        base_url=f"{stack.url}/hub/api", timeout=30,
        headers={"Authorization": f"token {token.json()['token']}"},
    )  # fmt: skip

    def binder() -> float:
        took, events = launch_ready(alice, path)
        if server_of(events[-1]) != server:
            raise RuntimeError(f"the launch started {server_of(events[-1])}, not {server}")
        own.append(service_time(events))
        return took

    def plain() -> float:
        return plain_start(hub, server, secret, ticket_launch)

    own: list[float] = []  # the service's own part of each launch (see service_time)
    sides = {"launch": binder, "plain": plain}
    for run in sides.values():  # warm-up, not counted
        run()
        stack.stop_server(USER, server)
    times: dict[str, list[float]] = {side: [] for side in sides}
    own.clear()
    try:
        for cycle in range(cycles):
            order = list(sides) if cycle % 2 == 0 else list(reversed(sides))
            for side in order:
                times[side].append(sides[side]())
                stack.stop_server(USER, server)
    finally:
        hub.close()

    med = {k: statistics.median(v) for k, v in times.items()}
    high = {k: p90(v) for k, v in times.items()}
    print(f"built environment: click -> ready, {cycles} cycles each, interleaved in one run")
    for key, label in (
        ("launch", "Binder launch (page + events)"),
        ("plain", "plain spawn (hub API + ticket)"),
    ):
        print(f"  {label:33}  median {med[key]:.3f} s  p90 {high[key]:.3f} s")
    print(
        f"  {'ratio launch / plain spawn':33}  median {med['launch'] / med['plain']:.3f}"
        f"    p90 {high['launch'] / high['plain']:.3f}   (goal <= 1.20)"
    )
    print(
        f"  {'Binder service time in a launch':33}  median {statistics.median(own):.3f} s"
        f"  p90 {p90(own):.3f} s   (click -> hub start, hub ready -> ready event)"
    )


def concurrent_first_launches(stack: Stack, git: GitServer, alice: httpx.Client, n: int) -> None:
    """Figure 2 (see the module docstring)."""
    git.commit("crowd", {"requirements.txt": "egi_binder_demo==2.0\n", "index.ipynb": NOTEBOOK})
    link = git_link(git, "crowd")
    users = crowd(n)
    browsers = [browser(stack, user) for user in users]  # logged in before the clock

    def started() -> int:
        return int(alice.get(f"{PREFIX}api/v1/capacity").json()["builds_started"])

    before = started()
    barrier = threading.Barrier(n)

    built: list[float] = []  # when each launch saw the environment built

    def one(client: httpx.Client) -> tuple[float, str, str]:
        barrier.wait(60)
        try:
            took, events = launch(client, link)
        except (RuntimeError, httpx.HTTPError) as e:
            return 0.0, "error", str(e)
        built.extend([e["at"] for e in events if e["phase"] == "built"][:1])
        last = events[-1] if events else {"phase": "none", "message": "no events"}
        return took, last["phase"], last.get("message", "").strip()

    start = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:
        results = list(pool.map(one, browsers))
    wall = time.perf_counter() - start
    builds = started() - before
    ready = [took for took, phase, _ in results if phase == "ready"]
    print(f"{n} concurrent first launches of one new repository ({n} users, one link)")
    print(f"  builds started               {builds}   (goal: exactly 1)")
    print(f"  streams ended ready          {len(ready)} of {n}")
    for reason in sorted({m for _, phase, m in results if phase != "ready"}):
        count = sum(1 for _, phase, m in results if phase != "ready" and m == reason)
        print(f"  not ready ({count}): {reason[:160]}")
    if built:
        print(f"  environment built after      median {statistics.median(built):.2f} s")
    if ready:
        print(
            f"  click -> ready               median {statistics.median(ready):.2f} s"
            f"  max {max(ready):.2f} s  (all done in {wall:.2f} s)"
        )
    for client in browsers:
        client.close()
    for user in users:
        for server in list(stack.user(user)["servers"]):
            stack.stop_server(user, server)


def resolve_latency(git: GitServer, k: int) -> None:
    """Figure 3 (see the module docstring)."""
    names = [f"resolve-{i:03d}" for i in range(k)]
    for name in names:
        git.commit(name, {"README.md": f"{name}\n"})
    specs = [parse_launch(f"v2/{git_link(git, name)}").spec for name in names]

    async def measure() -> tuple[list[float], list[float], dict[str, int]]:
        resolver = Resolver(config=LOCAL_GIT)
        try:
            rounds: list[list[float]] = [[], []]
            for times in rounds:  # cold, then cached
                for spec in specs:
                    start = time.perf_counter()
                    await resolver.resolve(spec)
                    times.append(time.perf_counter() - start)
            return rounds[0], rounds[1], resolver.stats
        finally:
            await resolver.close()

    cold, cached, stats = asyncio.run(measure())
    c0, c1 = statistics.median(cold), statistics.median(cached)
    print(f"resolve git://127.0.0.1 (git daemon), {k} distinct repositories, in-process Resolver")
    for label, times in (("cold (git ls-remote)", cold), ("cached", cached)):
        med, high = statistics.median(times) * 1000, p90(times) * 1000
        print(f"  {label:28} median {med:9.3f} ms  p90 {high:9.3f} ms")
    print(f"  ratio cached / cold          median {c1 / c0:.5f}")
    print(f"  resolver.stats               {stats}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=20, help="launch / plain spawn cycles")
    parser.add_argument("--concurrent", type=int, default=20, help="concurrent first launches")
    parser.add_argument("--resolves", type=int, default=20, help="distinct repositories resolved")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="egi-bench-binder-") as tmp:
        git = start_git_server(Path(tmp) / "git")
        try:
            resolve_latency(git, args.resolves)
            wheels = Path(tmp) / "wheels"
            make_wheel(wheels, version="1.0")
            make_wheel(wheels, version="2.0")
            stack = start_stack(Path(tmp) / "stack", binder_site(wheels, args.concurrent))
            try:
                alice = browser(stack)
                launch_vs_plain(stack, git, alice, args.cycles)
                concurrent_first_launches(stack, git, alice, args.concurrent)
            finally:
                stack.stop()
        finally:
            git.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
