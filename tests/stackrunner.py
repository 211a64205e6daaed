"""Start and stop a real egi-hub local stack (hub, proxy, culler, spawner) for tests.

Everything runs on free loopback ports in a temporary data dir; processes are stopped
by pid, and waits are on conditions with time-outs, never fixed sleeps.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

TEST_SERVICE = "egi-test"

ALICE_ENTITLEMENTS = ["urn:mace:egi.eu:group:vo.access.egi.eu:role=member#aai.egi.eu"]
BOB_ENTITLEMENTS = [
    "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu",
    "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=manager#aai.egi.eu",
    "urn:mace:egi.eu:group:vo.access.egi.eu:training:role=member#aai.egi.eu",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """Poll ``condition`` until it returns a truthy value; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Stop a test server by its pid: SIGTERM, then SIGKILL if it is still there."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


def processes_in(directory: Path) -> list[int]:
    """Pids of live processes whose working directory is inside ``directory``."""
    found = []
    root = str(directory.resolve())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (cwd == root or cwd.startswith(root + os.sep)):
            found.append(int(entry.name))
    return found


def server_process(data_dir: Path, user_dir: str, server: str | None = None) -> dict[str, Any]:
    """The command line, environment and working folder (read from /proc) of a
    single-user server running in ``<data_dir>/users/<user_dir>``: the server named
    ``server``, or any (None)."""
    for pid in processes_in(data_dir / "users" / user_dir):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
            environ = Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        env = dict(item.partition("=")[::2] for item in environ if "=" in item)
        named = server is None or env.get("JUPYTERHUB_SERVER_NAME") == server
        if named and any("singleuser" in part for part in cmdline):
            return {"cmdline": cmdline, "env": env, "cwd": cwd}
    raise AssertionError(f"no server process of {user_dir} ({server}) found")


def default_site(api_token: str) -> dict[str, Any]:
    """A site file with two dev users in different VOs and an admin service for tests."""
    return {
        "DevAuthenticator": {
            "users": {
                "alice": {"entitlements": ALICE_ENTITLEMENTS},
                "bob": {"entitlements": BOB_ENTITLEMENTS},
            },
        },
        "JupyterHub": {
            "services": [{"name": TEST_SERVICE, "api_token": api_token}],
            "load_roles": [{"name": "admin", "services": [TEST_SERVICE]}],
        },
    }


@dataclass
class Stack:
    """A running ``egi-hub up``."""

    proc: subprocess.Popen
    url: str
    port: int
    data_dir: Path
    api_token: str
    log_path: Path
    _client: httpx.Client | None = field(default=None, repr=False)

    @property
    def api(self) -> httpx.Client:
        """An HTTP client for the hub REST API, authorised as the admin test service."""
        if self._client is None:
            self._client = httpx.Client(
                base_url=f"{self.url}/hub/api",
                headers={"Authorization": f"token {self.api_token}"},
                timeout=30,
            )
        return self._client

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def dev_login(self, username: str) -> httpx.Client:
        """Log in through the dev login form (with its xsrf token) as a browser would.

        The client keeps the hub cookies; ``client.last_login_response`` is the answer.
        """
        client = httpx.Client(base_url=self.url, follow_redirects=False, timeout=30)
        page = client.get("/hub/login")
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text).group(1)
        client.last_login_response = client.post(
            "/hub/login", data={"username": username, "_xsrf": xsrf}
        )
        return client

    def user(self, name: str) -> dict[str, Any]:
        r = self.api.get(f"/users/{name}")
        r.raise_for_status()
        return r.json()

    def start_server(self, name: str, server: str = "", timeout: float = 90) -> dict[str, Any]:
        """Create the user if needed, start a server and wait until it is ready."""
        self.api.post(f"/users/{name}")  # 201, or 409 if the user exists
        path = f"/users/{name}/servers/{server}" if server else f"/users/{name}/server"
        r = self.api.post(path)
        assert r.status_code in (201, 202), r.text

        def ready() -> dict[str, Any] | None:
            model = self.user(name)["servers"].get(server)
            return model if model and model["ready"] else None

        return wait_for(ready, timeout, f"{name}'s server {server!r} to be ready")

    def stop_server(self, name: str, server: str = "", timeout: float = 60) -> None:
        path = f"/users/{name}/servers/{server}" if server else f"/users/{name}/server"
        r = self.api.delete(path)
        assert r.status_code in (202, 204), r.text
        wait_for(
            lambda: server not in self.user(name)["servers"],
            timeout,
            f"{name}'s server {server!r} to stop",
        )

    def interrupt(self, timeout: float = 60) -> int:
        """Send SIGINT (Ctrl-C) and wait for the stack to exit; return its exit status."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """Stop the stack and anything it left behind (by pid)."""
        try:
            self.interrupt()
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        for pid in processes_in(self.data_dir):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def start_stack(
    tmp: Path,
    site: dict[str, Any] | None = None,
    *,
    extra_args: tuple[str, ...] = (),
    timeout: float = 60,
    port: int | None = None,
    env: dict[str, str] | None = None,
) -> Stack:
    """Run ``egi-hub up`` with ``site`` (default: `default_site`) and wait until it serves."""
    api_token = secrets.token_hex(16)
    site = default_site(api_token) if site is None else site
    site_text = json.dumps(site).replace("__API_TOKEN__", api_token)
    tmp.mkdir(parents=True, exist_ok=True)
    site_file = tmp / "site.yaml"
    site_file.write_text(yaml.safe_dump(json.loads(site_text)))
    data_dir = tmp / "data"
    port = port or free_port()
    log_path = tmp / "egi-hub.log"
    command = [
        *(sys.executable, "-m", "egi_hub", "up", "--config", str(site_file)),
        *("--port", str(port), "--data-dir", str(data_dir), *extra_args),
    ]
    return launch_hub(command, port, data_dir, api_token, log_path, timeout=timeout, env=env)


def launch_hub(
    command: list[str],
    port: int,
    data_dir: Path,
    api_token: str,
    log_path: Path,
    *,
    cwd: Path | None = None,
    timeout: float = 60,
    env: dict[str, str] | None = None,
    inherit_env: bool = True,
) -> Stack:
    """Run a hub command in its own session, log to ``log_path``, wait for /hub/health
    (``env`` on top of this process's environment, or alone without ``inherit_env``)."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            command,
            cwd=cwd,
            env={**(os.environ if inherit_env else {}), **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    stack = Stack(proc, f"http://127.0.0.1:{port}", port, data_dir, api_token, log_path)

    def serving() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"{command[0]} exited with {proc.returncode}:\n{stack.log()}")
        try:
            return httpx.get(f"{stack.url}/hub/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(serving, timeout, "the hub to serve /hub/health")
    except BaseException:
        stack.stop()
        raise
    return stack


def plain_hub_config(tmp: Path, port: int, api_token: str | None = None) -> str:
    """The lines of a jupyterhub_config.py for a plain hub on loopback in ``tmp``.

    Free internal ports, the stack's proxy (npm configurable-http-proxy, found as
    ``egi-hub up`` finds it), and (with ``api_token``) an admin service. Callers append
    their own lines (authenticator, spawner).
    """
    from egi_hub.proxy import proxy_command

    lines = f"""
c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = {port}
c.JupyterHub.hub_port = {free_port()}
c.JupyterHub.db_url = "sqlite:///{tmp}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{tmp}/cookie_secret"
c.ConfigurableHTTPProxy.command = {proxy_command()!r}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{free_port()}"
"""
    if api_token:
        lines += f"""
c.JupyterHub.services = [{{"name": "{TEST_SERVICE}", "api_token": "{api_token}"}}]
c.JupyterHub.load_roles = [{{"name": "admin", "services": ["{TEST_SERVICE}"]}}]
"""
    return lines


def start_plain_hub(tmp: Path, port: int, config_lines: str) -> Stack:
    """Run ``jupyterhub`` with `plain_hub_config` plus ``config_lines``."""
    from egi_hub.procs import installed_script

    tmp.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(16)
    config = tmp / "jupyterhub_config.py"
    config.write_text(plain_hub_config(tmp, port, token) + config_lines)
    command = [installed_script("jupyterhub"), "-f", str(config)]
    return launch_hub(command, port, tmp, token, tmp / "jupyterhub.log", cwd=tmp)
