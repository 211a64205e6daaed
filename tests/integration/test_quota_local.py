"""Quota-aware spawning on the real local stack (EGILocalSpawner + QuotaPolicy)."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.kernel import run_code
from tests.stackrunner import ALICE_ENTITLEMENTS, TEST_SERVICE, start_stack, wait_for

PROFILES = [
    {
        "display_name": "Small",
        "slug": "small",
        "default": True,
        "kubespawner_override": {"cpu_limit": 1, "mem_limit": "1G"},
    },
    {
        "display_name": "Large",
        "slug": "large",
        "allowed_vos": ["vo.notebooks.egi.eu"],
        "kubespawner_override": {"cpu_limit": 4, "mem_limit": "4G"},
    },
]


def quota_site(vo_limits: dict, **hub) -> dict:
    return {
        "DevAuthenticator": {"users": {"alice": {"entitlements": ALICE_ENTITLEMENTS}}},
        "QuotaPolicy": {
            # The "Large" profile is charged to vo.notebooks.egi.eu: give it room.
            "vo_limits": {"vo.notebooks.egi.eu": {}, **vo_limits},
            "default_limits": {"max_servers": 0},
        },
        "EGILocalSpawner": {"profile_list": PROFILES},
        "JupyterHub": {
            "allow_named_servers": True,
            "services": [{"name": TEST_SERVICE, "api_token": "__API_TOKEN__"}],
            "load_roles": [{"name": "admin", "services": [TEST_SERVICE]}],
            **hub,
        },
    }


def settled() -> dict:
    """Hub settings for many concurrent spawns whose every answer is final.

    The hub answers a spawn request once the spawn has finished, or after
    ``slow_spawn_timeout`` seconds with 202 (JupyterHub's default is 10). A quota refusal
    comes before any process starts, but on a busy machine 50 requests can take more
    than 10 s to reach it: waiting longer makes each answer the spawn's real outcome (a
    refusal is always its 403). The requests go through the proxy, as users' do: npm's
    configurable-http-proxy sets no time-out on a response (PyPI's port gave up after
    20 s with a 503, and the spawn was cancelled).
    """
    return {"tornado_settings": {"slow_spawn_timeout": 60}}


def hub_api(stack) -> str:
    """The REST API through the proxy's public port."""
    return f"{stack.url}/hub/api"


async def spawn_many(
    stack, api_url: str, user: str, count: int, options: dict | None = None
) -> list:
    headers = {"Authorization": f"token {stack.api_token}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=120) as c:
        return await asyncio.gather(
            *(c.post(f"/users/{user}/servers/s{i}", json=options or {}) for i in range(count))
        )


def running(stack, user: str) -> list[str]:
    return sorted(stack.user(user)["servers"])


def wait_ready(stack, user: str, count: int, timeout: float = 120) -> list[str]:
    """Wait until ``user`` has exactly ``count`` servers, all ready (none pending)."""

    def settled() -> list[str] | None:
        servers = stack.user(user)["servers"]
        done = len(servers) == count and all(s["ready"] for s in servers.values())
        return sorted(servers) if done else None

    return wait_for(settled, timeout, f"{count} ready servers of {user}")


def usage_records(stack, count: int, timeout: float = 30) -> list[dict]:
    """The usage log once it holds (at least) ``count`` records; they are written by a
    thread, after each server is ready."""
    path = stack.data_dir / "usage.jsonl"

    def written() -> list[str] | None:
        lines = path.read_text().splitlines() if path.exists() else []
        return lines if len(lines) >= count else None

    return [json.loads(line) for line in wait_for(written, timeout, f"{count} usage records")]


@pytest.fixture
def server_limit_stack(tmp_path):
    """The stack, and its REST API's URL."""
    site = quota_site({"vo.access.egi.eu": {"max_servers": 5}}, **settled())
    stack = start_stack(tmp_path, site)
    stack.dev_login("alice")
    yield stack, hub_api(stack)
    stack.stop()


def test_fifty_concurrent_spawns_admit_exactly_the_limit(server_limit_stack):
    stack, api_url = server_limit_stack
    responses = asyncio.run(spawn_many(stack, api_url, "alice", 50))
    admitted = [r for r in responses if r.status_code in (201, 202)]
    refused = [r for r in responses if r.status_code == 403]
    assert len(admitted) == 5, [r.status_code for r in responses]
    assert len(refused) == 45
    message = refused[0].json()["message"]
    assert message.startswith("vo.access.egi.eu allows 5 servers and 5 are running.")
    assert "Running now: your server 's" in message and "alice/" not in message
    assert message.endswith("Stop one on your home page to start another: /hub/home.")
    # The whole expected state, not just its first sign: five servers ready, the
    # gauge at five, and one "start" record for each of them.
    ready = wait_ready(stack, "alice", 5)
    metrics = stack.api.get(f"{stack.url}/hub/metrics").text
    assert 'egi_hub_vo_servers{vo="vo.access.egi.eu"} 5.0' in metrics
    records = usage_records(stack, 5)
    assert [r["event"] for r in records] == ["start"] * 5
    assert sorted(r["server"] for r in records) == ready


def test_memory_limit_and_forged_profile(tmp_path):
    site = quota_site({"vo.access.egi.eu": {"max_memory": "2G"}}, **settled())
    stack = start_stack(tmp_path, site)
    try:
        stack.dev_login("alice")
        responses = asyncio.run(spawn_many(stack, hub_api(stack), "alice", 6, {"profile": "small"}))
        codes = sorted(r.status_code for r in responses)
        assert codes.count(403) == 4 and len([c for c in codes if c in (201, 202)]) == 2, codes
        wait_ready(stack, "alice", 2)
        refused = next(r for r in responses if r.status_code == 403)
        message = refused.json()["message"]
        assert message.startswith("vo.access.egi.eu allows 2 GiB of memory: 2 GiB in use, and ")
        # A profile alice's VO does not allow is refused, whatever the quota.
        r = stack.api.post("/users/alice/servers/big", json={"profile": "large"})
        assert r.status_code == 403
        assert r.json()["message"].startswith(
            "The profile 'Large' needs membership of vo.notebooks.egi.eu. Join vo.notebooks.egi.eu"
        )
    finally:
        stack.stop()


def test_usage_is_rebuilt_after_a_hub_restart(tmp_path):
    site = quota_site({"vo.access.egi.eu": {"max_servers": 2}}, cleanup_servers=False)
    first = start_stack(tmp_path, site)
    stack = first
    try:
        first.dev_login("alice")
        first.start_server("alice", "a")
        first.start_server("alice", "b")
        assert first.interrupt() == 0  # the servers keep running (cleanup_servers: false)
        stack = start_stack(tmp_path, site)  # a new hub on the same data dir
        r = stack.api.post("/users/alice/servers/c")
        assert r.status_code == 403
        assert r.json()["message"].startswith(
            "vo.access.egi.eu allows 2 servers and 2 are running."
        )
        stack.stop_server("alice", "a")
        stack.start_server("alice", "c")
    finally:
        stack.stop()
        first.stop()


def test_profile_limits_are_enforced_on_the_processes(tmp_path):
    stack = start_stack(tmp_path, quota_site({"vo.access.egi.eu": {"max_servers": 2}}))
    try:
        stack.dev_login("alice")
        stack.start_server("alice", "small")
        code = (
            "import os, resource\n"
            "print(len(os.sched_getaffinity(0)), resource.getrlimit(resource.RLIMIT_AS)[0],\n"
            "      os.environ['MEM_LIMIT'], os.environ['CPU_LIMIT'])\n"
            "try:\n    block = bytearray(1_500_000_000)\n"
            "except MemoryError:\n    print('refused')\n"
        )
        out = run_code(stack.url, "/user/alice/small/", stack.api_token, code).split()
        assert out == ["1", "1073741824", "1073741824", "1.0", "refused"]
    finally:
        stack.stop()


def test_option_values_that_are_not_text_are_400s_and_the_form_still_renders(tmp_path):
    """A list or a mapping as a profile or an option value (the REST API takes any
    JSON) is refused in words before anything starts, is not saved as the user's
    options, and the spawn form keeps working."""
    own = {
        "display_name": "Own image",
        "slug": "own",
        "profile_options": {"img": {"choices": {"minimal": {}, "full": {"default": True}}}},
    }
    site = quota_site({"vo.access.egi.eu": {"max_servers": 2}})
    site["EGILocalSpawner"]["profile_list"] = [*PROFILES, own]
    stack = start_stack(tmp_path, site)
    try:
        browser = stack.dev_login("alice")
        started = {"profile": "own", "img": "minimal"}
        assert stack.api.post("/users/alice/server", json=started).status_code in (201, 202)
        wait_ready(stack, "alice", 1)
        stack.stop_server("alice")
        for options, words in [
            ({"profile": "own", "img": []}, "Option 'img' must be given as text, not list"),
            ({"profile": "own", "img": {"a": 1}}, "Option 'img' must be given as text, not dict"),
            ({"profile": ["own"]}, "The profile must be given as text, not list"),
        ]:
            r = stack.api.post("/users/alice/server", json=options)
            assert r.status_code == 400, r.text
            assert r.json()["message"].startswith(words)
            assert "HTTP 400" not in r.json()["message"]
        r = stack.api.get("/users/alice", params={"include_stopped_servers": "1"})
        default = r.json()["servers"][""]
        assert not default["ready"] and default["user_options"] == started, default
        form = browser.get("/hub/spawn/alice")
        assert form.status_code == 200, form.text[:500]
        assert 'name="profile-option-own--img"' in form.text
        assert browser.get("/hub/spawn").status_code == 200
    finally:
        stack.stop()
