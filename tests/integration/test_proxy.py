"""The local stack's proxy: npm configurable-http-proxy 5.x, found, checked and streaming.

The streaming tests run a plain JupyterHub (tests/stackrunner.start_plain_hub) with the
stack's proxy and a spawner, defined in the hub config, that reports one progress event
and then waits for a gate file before it starts a real single-user server. The test
opens the gate only once that event has come through the proxy's public port: a proxy
that buffered the event stream until the spawn finished would never deliver it, and the
test fails on its time-out instead of passing by luck of timing.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from egi_hub import proxy
from egi_hub.procs import installed_script
from tests.kernel import run_code_v1
from tests.stackrunner import Stack, free_port, start_plain_hub

GATE_MESSAGE = "Waiting for the test to open the gate"


def gated_hub(tmp: Path, gate: Path) -> Stack:
    """A plain hub whose spawner reports progress, then waits for ``gate`` to exist."""
    args = ["--allow-root"] if os.geteuid() == 0 else []
    return start_plain_hub(
        tmp,
        free_port(),
        f"""
import asyncio, os
from jupyterhub.spawner import SimpleLocalProcessSpawner

GATE = {str(gate)!r}

async def gate_open(seconds=120):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not os.path.exists(GATE):
        if loop.time() > deadline:
            raise TimeoutError("the test never opened the gate")
        await asyncio.sleep(0.05)

class GatedSpawner(SimpleLocalProcessSpawner):
    async def progress(self):
        yield {{"progress": 30, "message": {GATE_MESSAGE!r}}}
        await gate_open()
        yield {{"progress": 60, "message": "Gate open, starting the server"}}

    async def start(self):
        await gate_open()
        return await super().start()

c.JupyterHub.authenticator_class = "dummy"
c.JupyterHub.spawner_class = GatedSpawner
c.JupyterHub.tornado_settings = {{"slow_spawn_timeout": 0}}
c.SimpleLocalProcessSpawner.home_dir_template = "{tmp}/users/{{username}}"
c.Spawner.cmd = [{installed_script("jupyterhub-singleuser")!r}]
c.Spawner.args = {args!r}
c.Spawner.start_timeout = 120
""",
    )


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    return tmp_path / "gate"


@pytest.fixture
def hub(tmp_path: Path, gate: Path) -> Iterator[Stack]:
    stack = gated_hub(tmp_path / "hub", gate)
    try:
        yield stack
    finally:
        gate.touch()  # lets a spawn still waiting finish, so the hub stops it cleanly
        stack.stop()


async def events(response: httpx.Response) -> AsyncIterator[dict]:
    """The JSON events of a text/event-stream response, as they arrive."""
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            yield json.loads(line.removeprefix("data:"))


def test_progress_events_stream_through_the_proxy_before_ready(hub: Stack, gate: Path):
    user = "alice"

    async def scenario() -> list[dict]:
        headers = {"Authorization": f"token {hub.api_token}"}
        async with httpx.AsyncClient(base_url=hub.url, headers=headers, timeout=30) as client:
            assert (await client.post(f"/hub/api/users/{user}")).status_code == 201
            r = await client.post(f"/hub/api/users/{user}/server")
            assert r.status_code == 202, r.text  # pending: slow_spawn_timeout is 0
            seen: list[dict] = []
            url = f"/hub/api/users/{user}/server/progress"
            async with client.stream("GET", url, timeout=httpx.Timeout(30, read=90)) as stream:
                assert stream.status_code == 200, stream.status_code
                assert stream.headers["content-type"].startswith("text/event-stream")
                async for event in events(stream):
                    seen.append(event)
                    if event.get("message") == GATE_MESSAGE:
                        # Received through the proxy while the spawn still waits on us.
                        assert not await asyncio.to_thread(gate.exists)
                        assert not any(e.get("ready") for e in seen)
                        await asyncio.to_thread(gate.touch)
                    if event.get("ready") or event.get("failed"):
                        break
            return seen

    seen = asyncio.run(asyncio.wait_for(scenario(), 180))
    messages = [e.get("message") for e in seen]
    assert GATE_MESSAGE in messages, messages
    assert seen[-1].get("ready") is True, seen
    assert messages.index(GATE_MESSAGE) < len(seen) - 1
    progress = [e["progress"] for e in seen if "progress" in e]
    assert progress == sorted(progress) and progress[-1] == 100
    assert hub.user(user)["servers"][""]["ready"]


def test_at_in_username_and_kernel_websocket_through_the_proxy(hub: Stack, gate: Path):
    """A Check-in style username reaches its server, and JupyterLab's v1 kernel protocol
    (binary websocket frames, subprotocol negotiated end to end) runs a cell."""
    gate.touch()
    name = "bob@egi.eu"
    hub.start_server(name)
    r = httpx.get(
        f"{hub.url}/user/{name}/api/status",
        headers={"Authorization": f"token {hub.api_token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert "started" in r.json()
    output, protocol = run_code_v1(hub.url, f"/user/{name}/", hub.api_token, "print(6*7)")
    assert protocol == "v1.kernel.websocket.jupyter.org"
    assert output.strip() == "42"
    hub.stop_server(name)


# Which proxy, and the one-line refusals of `egi-hub up`.


def fake_proxy(directory: Path, version: str, status: int = 0) -> Path:
    """An executable named configurable-http-proxy that prints ``version``."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / proxy.PROXY_NAME
    path.write_text(f"#!/bin/sh\necho {version}\nexit {status}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_the_checkout_proxy_is_the_pinned_5x():
    found = proxy.find_proxy()
    assert found == str(proxy.checkout_proxy()), "run: make proxy/node_modules/.package-lock.json"
    lock = json.loads((proxy.checkout_proxy().parents[2] / "package-lock.json").read_text())
    pinned = lock["packages"]["node_modules/configurable-http-proxy"]["version"]
    assert pinned.startswith("5.")
    assert proxy.check_proxy([found]) == pinned
    assert proxy.check_proxy(found) == pinned  # a string, as JupyterHub's Command allows


def test_without_the_checkout_proxy_the_one_on_path_is_used(tmp_path, monkeypatch):
    on_path = fake_proxy(tmp_path / "bin", "5.3.0")
    monkeypatch.setattr(proxy, "checkout_proxy", lambda: tmp_path / "absent")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert proxy.proxy_command() == [str(on_path)]
    assert proxy.check_proxy(proxy.proxy_command()) == "5.3.0"


def test_with_no_proxy_anywhere_the_check_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setattr(proxy, "checkout_proxy", lambda: tmp_path / "absent")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert proxy.proxy_command() == ["configurable-http-proxy"]
    with pytest.raises(proxy.ProxyError) as e:
        proxy.check_proxy(proxy.proxy_command())
    assert (
        str(e.value)
        == f"the proxy (configurable-http-proxy) is not installed; {proxy.INSTALL_HINT}"
    )
    assert "npm install -g configurable-http-proxy@5" in proxy.INSTALL_HINT
    assert "make run" in proxy.INSTALL_HINT


def up_with_proxy(tmp_path: Path, command: list[str]) -> subprocess.CompletedProcess:
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({"ConfigurableHTTPProxy": {"command": command}}))
    return subprocess.run(
        [
            *(sys.executable, "-m", "egi_hub", "up", "--config", str(site)),
            *("--port", str(free_port()), "--data-dir", str(tmp_path / "data")),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("version", "status", "why"),
    [
        ("4.6.2", 0, "is version 4.6.2, egi-hub needs 5.x"),
        ("0.4.0", 0, "is version 0.4.0, egi-hub needs 5.x"),
        ("boom", 1, "does not run (boom)"),
    ],
    ids=["old-npm", "pypi-port", "broken"],
)
def test_up_with_a_wrong_proxy_is_one_line(tmp_path, version, status, why):
    fake = fake_proxy(tmp_path / "bin", version, status)
    r = up_with_proxy(tmp_path, [str(fake)])
    assert r.returncode == 1
    assert r.stderr.splitlines() == [f"egi-hub: the proxy ({fake}) {why}; {proxy.INSTALL_HINT}"]
    assert r.stdout == ""


def test_up_with_a_missing_proxy_is_one_line(tmp_path):
    missing = tmp_path / "nowhere" / proxy.PROXY_NAME
    r = up_with_proxy(tmp_path, [str(missing)])
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"egi-hub: the proxy ({missing}) is not installed; {proxy.INSTALL_HINT}"
    ]
