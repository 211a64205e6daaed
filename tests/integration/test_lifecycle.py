"""Stopping the stack, and the idle culler, on the real local stack."""

from __future__ import annotations

from pathlib import Path

from tests.stackrunner import (
    ALICE_ENTITLEMENTS,
    TEST_SERVICE,
    processes_in,
    start_stack,
    wait_for,
)


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:  # exited meanwhile
        return ""


def test_ctrl_c_stops_hub_proxy_culler_and_servers(tmp_path):
    stack = start_stack(tmp_path)
    try:
        stack.start_server("alice")
        proxy_pid = stack.data_dir / "proxy.pid"

        def all_running() -> list[int] | None:
            # The whole expected state: the hub, the proxy (its pid file written), the
            # idle culler and alice's single-user server, each found by what it is.
            running = processes_in(stack.data_dir)
            commands = [command_line(pid) for pid in running]
            found = (
                stack.proc.pid in running
                and proxy_pid.exists()
                and int(proxy_pid.read_text().strip() or 0) in running
                and any("jupyterhub_idle_culler" in c for c in commands)
                and any("jupyterhub-singleuser" in c for c in commands)
            )
            return running if found else None

        wait_for(all_running, 30, "hub, proxy, idle culler and alice's server")
        assert stack.interrupt(timeout=60) == 0
        wait_for(lambda: processes_in(stack.data_dir) == [], 30, "every stack process to exit")
        assert not (stack.data_dir / "proxy.pid").exists()
    finally:
        stack.stop()


def test_idle_culler_stops_idle_servers(tmp_path):
    site = {
        "DevAuthenticator": {"users": {"alice": {"entitlements": ALICE_ENTITLEMENTS}}},
        "LocalStack": {"idle_timeout": 3, "idle_cull_every": 1},
        "JupyterHub": {
            "services": [{"name": TEST_SERVICE, "api_token": "__API_TOKEN__"}],
            "load_roles": [{"name": "admin", "services": [TEST_SERVICE]}],
        },
    }
    stack = start_stack(tmp_path, site)
    try:
        stack.start_server("alice")
        wait_for(lambda: stack.user("alice")["servers"] == {}, 60, "the culler to stop alice")
        # The hub logs the request when it has answered it, which may come after the
        # server is gone: wait for the line too.
        wait_for(
            lambda: "DELETE /hub/api/users/alice/server (idle-culler@" in stack.log(),
            30,
            "the culler's request in the hub log",
        )
    finally:
        stack.stop()
