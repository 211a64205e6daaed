"""Stopping the stack, and the idle culler, on the real local stack."""

from __future__ import annotations

from tests.stackrunner import (
    ALICE_ENTITLEMENTS,
    TEST_SERVICE,
    processes_in,
    start_stack,
    wait_for,
)


def test_ctrl_c_stops_hub_proxy_culler_and_servers(tmp_path):
    stack = start_stack(tmp_path)
    try:
        stack.start_server("alice")
        running = processes_in(stack.data_dir)
        # hub, proxy, idle culler and alice's single-user server at least
        assert len(running) >= 4, running
        assert (stack.data_dir / "proxy.pid").exists()
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
        assert "DELETE /hub/api/users/alice/server (idle-culler@" in stack.log()
    finally:
        stack.stop()
