"""Spawn progress and honest records on the real local stack (hub, npm proxy, servers).

The progress test holds the single-user server at a gate (a file it waits for) before
it can listen: the events up to "waiting for the server" must have arrived, through the
proxy, while the server is provably not ready; only then is the gate opened. Nothing
depends on timing.
"""

from __future__ import annotations

import asyncio
import json
import shlex

import httpx
import pytest

from egi_hub.procs import installed_script
from tests.integration.test_quota_local import quota_site
from tests.stackrunner import start_stack, wait_for

SINGLEUSER = installed_script("jupyterhub-singleuser")


def gated_profile(gate: str) -> dict:
    """A profile whose server waits for ``gate`` to exist before it starts listening."""
    script = (
        f"while [ ! -e {shlex.quote(gate)} ]; do sleep 0.05; done; "
        f'exec {shlex.quote(SINGLEUSER)} "$@"'
    )
    return {
        "display_name": "Gated",
        "slug": "gated",
        "kubespawner_override": {
            "cpu_limit": 1,
            "mem_limit": "1G",
            "cmd": ["sh", "-c", script, "gated"],
        },
    }


def gated_site(gate) -> dict:
    """The quota test site (alice in vo.access.egi.eu) plus the "gated" profile."""
    site = quota_site({"vo.access.egi.eu": {"max_servers": 3, "max_memory": "8G"}})
    profiles = site["EGILocalSpawner"]["profile_list"]
    site["EGILocalSpawner"]["profile_list"] = [*profiles, gated_profile(str(gate))]
    return site


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("progress")
    stack = start_stack(tmp, gated_site(tmp / "gate"))
    stack.dev_login("alice")
    stack.gate = tmp / "gate"
    yield stack
    stack.stop()


async def read_events(response: httpx.Response):
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            yield json.loads(line[len("data:") :])


async def test_progress_events_arrive_in_order_as_they_happen_before_ready(stack):
    headers = {"Authorization": f"token {stack.api_token}"}
    async with httpx.AsyncClient(
        base_url=f"{stack.url}/hub/api", headers=headers, timeout=120
    ) as c:
        spawn = asyncio.ensure_future(c.post("/users/alice/server", json={"profile": "gated"}))

        def pending() -> bool:
            model = stack.user("alice")["servers"].get("")
            return bool(model and model["pending"] == "spawn")

        await asyncio.to_thread(wait_for, pending, 60, "alice's spawn to be pending")
        messages = []
        async with c.stream("GET", "/users/alice/server/progress") as response:
            assert response.status_code == 200
            events = read_events(response)
            async for event in events:
                messages.append(event["message"])
                if event["message"].startswith("Waiting for the server to answer"):
                    break
            # Arrived while the server is held at the gate: not ready, still spawning.
            model = (await c.get("/users/alice")).json()["servers"][""]
            assert (model["ready"], model["pending"]) == (False, "spawn")
            stack.gate.touch()
            async for event in events:
                messages.append(event["message"])
                if event.get("ready"):
                    break
        assert (await spawn).status_code in (201, 202)
    assert messages[0] == "Server requested"
    assert messages[1] == (
        "Admitted: profile Gated (1 CPU, 1 GiB of memory), charged to vo.access.egi.eu. "
        "vo.access.egi.eu: 1 of 3 servers, 1 of 8 GiB."
    )
    assert messages[2].startswith("Server process started (pid ")
    assert messages[3].startswith("Waiting for the server to answer on port ")
    assert messages[4] == "The server is listening; the hub checks that it answers"
    assert messages[5].startswith("Server ready at /user/alice/")
    assert len(messages) == 6
    stack.stop_server("alice")


def test_a_refused_spawn_leaves_the_records_as_they_were(stack):
    """The admin's view (``include_stopped_servers``, as the admin panel asks) shows the
    profile that last ran and no activity from the refused start."""
    stack.api.post("/users/alice/server", json={"profile": "small"})
    wait_for(lambda: stack.user("alice")["servers"].get("", {}).get("ready"), 90, "small ready")
    stack.stop_server("alice")

    def stopped() -> dict:
        r = stack.api.get("/users/alice", params={"include_stopped_servers": "1"})
        return r.json()["servers"][""]

    before = stopped()
    assert before["user_options"] == {"profile": "small"} and before["last_activity"]
    r = stack.api.post("/users/alice/server", json={"profile": "large"})
    assert r.status_code == 403
    assert r.json()["message"].startswith("The profile 'Large' needs membership of")
    after = stopped()
    assert after["user_options"] == {"profile": "small"}
    assert after["last_activity"] == before["last_activity"]
    # A server that never started has no options and no activity after a refusal.
    r = stack.api.post("/users/alice/servers/never", json={"profile": "large"})
    assert r.status_code == 403
    never = stack.api.get("/users/alice", params={"include_stopped_servers": "1"}).json()
    if "never" in never["servers"]:  # JupyterHub may drop a failed named server
        assert never["servers"]["never"]["user_options"] == {}
        assert never["servers"]["never"]["last_activity"] is None
    # The profile options were handled (no "unhandled" warning in the hub's log).
    assert "Received unhandled user_options" not in stack.log()
