"""Binder on the local stack, end to end through the proxy (issue 10's "Done when").

A real ``egi-hub up`` (hub, proxy, local spawner and the Binder service it starts by
default), real git (``git daemon`` serving bare repositories on 127.0.0.1) and the venv
builder installing a real wheel (made by the test, served with ``--find-links``, so no
package index is needed). Alice logs in with the dev login, opens a launch's event
stream through the proxy as her browser's launch page does, and gets mybinder's phases
in order, then a running named server where the requirement imports. A second commit
that changes only a notebook launches with no build. A bad link ends in ``failed`` with
its reason, and the service goes on serving. Nothing here is a stand-in.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from egi_hub.names import path_component
from tests.gitserver import GitServer
from tests.kernel import run_code_async
from tests.stackrunner import (
    Stack,
    default_site,
    server_process,
    start_stack,
    wait_for,
)
from tests.wheels import make_wheel

PREFIX = "/services/binder/"
NOTEBOOK = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})


def binder_site(wheels: Path) -> dict[str, Any]:
    """Alice and bob (stackrunner's default site), builds from the test's wheels, the
    test git server on 127.0.0.1 allowed, a Binder profile with a memory limit."""
    return {
        **default_site("__API_TOKEN__"),
        "VenvBuilder": {"pip_args": ["--no-index", "--find-links", str(wheels)]},
        "GitProvider": {"allow_private_hosts": True},  # the test git server is on 127.0.0.1
        "EGILocalSpawner": {"binder_profile": {
            "display_name": "Binder", "slug": "binder",
            "kubespawner_override": {"mem_limit": "4G", "cpu_limit": 1},
        }},
    }  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    wheels = tmp_path_factory.mktemp("wheels")
    make_wheel(wheels)
    stack = start_stack(tmp_path_factory.mktemp("stack"), binder_site(wheels))
    try:
        yield stack
    finally:
        stack.stop()


def browser(stack: Stack, name: str) -> httpx.Client:
    """Alice's browser: logged in at the hub, then at the service (hub OAuth)."""
    client = stack.dev_login(name)
    client.follow_redirects = True
    r = client.get(f"{PREFIX}api/v1/capacity")  # the service's login through the hub
    assert r.status_code == 200, r.text
    return client


def stream_url(client: httpx.Client, spec: str) -> str:
    """The event stream's URL as the launch page gives it (with its launch token)."""
    r = client.get(f"{PREFIX}v2/{spec}", headers={"Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 200, r.text
    return html.unescape(re.search(r'data-build-url="([^"]+)"', r.text).group(1))


def launch(client: httpx.Client, spec: str, timeout: float = 300) -> list[dict[str, Any]]:
    """The events of one launch, read from the stream as they come, until it ends."""
    events: list[dict[str, Any]] = []
    with client.stream(
        "GET", stream_url(client, spec), timeout=httpx.Timeout(30, read=timeout),
        headers={"Sec-Fetch-Site": "same-origin"},
    ) as r:  # fmt: skip
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data:"):
                events.append(json.loads(line[5:]))
                if events[-1]["phase"] in ("ready", "failed"):
                    break
    return events


def phases(events: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for event in events:
        if not out or out[-1] != event["phase"]:
            out.append(event["phase"])
    return out


def git_spec(git: GitServer, name: str, ref: str = "main") -> str:
    return f"git/{quote(git.git_url(name), safe='')}/{ref}"


def imports_requirement(stack: Stack, url: str) -> str:
    user_token = stack.api.post("/users/alice/tokens", json={"scopes": ["access:servers!user"]})
    token = user_token.json()["token"]
    server_path = url.split("/lab")[0].split("/tree")[0]
    code = "import egi_binder_demo, sys; print(egi_binder_demo.VERSION, sys.prefix)"
    out, _ = asyncio.run(run_code_async(stack.url, server_path, token, code))
    return out


def test_a_git_repo_launches_into_its_environment_and_a_notebook_commit_needs_no_build(
    stack: Stack, git: GitServer
):
    git.commit("demo", {"requirements.txt": "egi_binder_demo==1.0\n", "index.ipynb": NOTEBOOK})
    alice = browser(stack, "alice")
    events = launch(alice, git_spec(git, "demo") + "?labpath=index.ipynb")
    assert phases(events)[-1] == "ready", events[-3:]
    seen = phases(events)
    for phase in ("fetching", "waiting", "building", "built", "launching", "ready"):
        assert phase in seen, (phase, seen)
    assert seen.index("building") < seen.index("built") < seen.index("launching")
    assert any(
        "egi_binder_demo" in e.get("message", "") for e in events if e["phase"] == "building"
    )
    ready = events[-1]
    assert ready["url"].startswith("/user/alice/binder-") and ready["url"].endswith(
        "/lab/tree/index.ipynb"
    )
    assert ready["token"] == ""  # (the browser needs none; see launcher.py)
    out = imports_requirement(stack, ready["url"])
    assert out.startswith("1.0 ") and "/binder/envs/" in out, out

    # The API shows the build, what it resolved (pip freeze) and its log.
    builds = alice.get(f"{PREFIX}api/v1/builds").json()["builds"]
    assert [b["state"] for b in builds] == ["built"]
    build = alice.get(f"{PREFIX}api/v1/builds/{builds[0]['key']}").json()
    assert "egi_binder_demo==1.0" in build["resolved"]
    assert "egi_binder_demo" in build["log"]
    assert "/binder/envs/" not in json.dumps(builds)  # no paths of the service's disk

    # A commit that changes only a notebook: new content, same environment, no build.
    # (by its SHA: "main" stays resolved to the first commit for Resolver.cache_ttl)
    sha = git.commit("demo", {"second.ipynb": NOTEBOOK})
    events = launch(alice, git_spec(git, "demo", sha))
    assert "building" not in phases(events) and phases(events)[-1] == "ready", events
    assert any("Reusing environment" in e["message"] for e in events if e["phase"] == "built")
    assert any(sha[:7] in e["message"] for e in events if e["phase"] == "fetching")
    second = events[-1]["url"]
    assert second != ready["url"]
    assert len(alice.get(f"{PREFIX}api/v1/builds").json()["builds"]) == 1
    # The new session's folder holds the new commit's content.
    session = stack.data_dir / "users" / "alice" / "binder" / path_component(second.split("/")[3])
    assert sorted(p.name for p in session.iterdir() if p.suffix == ".ipynb") == [
        "index.ipynb", "second.ipynb"
    ]  # fmt: skip


def test_a_bad_link_fails_with_its_reason_and_the_service_keeps_serving(
    stack: Stack, git: GitServer
):
    git.commit("bad-links", {"README.md": "a repository with one branch\n"})
    alice = browser(stack, "alice")
    for spec, reason in [  # refused before anything runs: the launch page says why
        ("gh/owner/repo/a..b", "not a valid git ref"),
        ("nope/x/y", "unknown provider"),
        (f"git/{quote('file:///etc', safe='')}/main", "must start with"),
    ]:
        r = alice.get(f"{PREFIX}v2/{spec}")
        assert r.status_code == 400 and html.escape(reason) in r.text, (spec, r.text[-500:])
    for spec, reason in [  # valid links to nothing: the launch fails with the reason
        (git_spec(git, "no-such-repo"), ""),
        (git_spec(git, "bad-links", "no-such-branch"), "no-such-branch"),
    ]:
        events = launch(alice, spec)
        assert events[-1]["phase"] == "failed", (spec, events)
        assert reason in events[-1]["message"] and "Traceback" not in events[-1]["message"]
    assert alice.get(f"{PREFIX}api/v1/capacity").status_code == 200


def test_launch_events_need_the_launch_pages_token_and_refuse_other_sites(
    stack: Stack, git: GitServer
):
    """A page of another site, or another page of this one (an <img>, a form), cannot
    start a launch with the user's cookie: the stream needs the launch page's token, for
    this user and this link, and a same-origin fetch."""
    alice = browser(stack, "alice")
    spec = git_spec(git, "demo")
    url = stream_url(alice, spec)
    bare = f"{PREFIX}build/{spec}"
    for target, headers in [
        (bare, {"Sec-Fetch-Site": "same-origin"}),  # no token
        (bare + "?launch_token=1.abc", {"Sec-Fetch-Site": "same-origin"}),  # forged
        (url, {"Sec-Fetch-Site": "cross-site"}),
        (url, {"Sec-Fetch-Site": "same-site"}),  # another port or subdomain
        (url.replace("/main?", "/other?"), {"Sec-Fetch-Site": "same-origin"}),  # other link
    ]:
        r = alice.get(target, headers=headers)
        assert r.status_code == 403 and "own pages" in r.json()["reason"], (target, headers)
    bob = browser(stack, "bob")  # alice's token is hers
    r = bob.get(url, headers={"Sec-Fetch-Site": "same-origin"})
    assert r.status_code == 403
    anonymous = httpx.Client(base_url=stack.url, timeout=30)
    assert anonymous.get(url).status_code in (302, 403)
    # The launch page asks to confirm unless the user came from this service's own page.
    page = alice.get(f"{PREFIX}v2/{spec}", headers={"Sec-Fetch-Site": "cross-site"}).text
    assert "data-confirm" in page


def test_a_user_cannot_start_a_binder_server_without_a_ticket_the_service_signed(stack: Stack):
    """user_options are user input: a forged ticket, or the service's ticket for another
    user or server, starts nothing (403) and leaves no server behind."""
    from egi_hub.binder_service.ticket import sign_ticket

    stack.dev_login("bob").close()
    token = stack.api.post("/users/bob/tokens", json={"scopes": ["servers!user"]}).json()["token"]
    bob = httpx.Client(base_url=f"{stack.url}/hub/api", timeout=60,
                       headers={"Authorization": f"token {token}"})  # fmt: skip
    launch = {"environment": {"python": "/bin/sh"}, "content": {"path": "/"}}
    secret = (stack.data_dir / "binder_ticket_secret").read_text().strip()
    for ticket, why in [
        ("no-dot-in-this-ticket", "malformed"),
        ("forged.ticket", "signature"),
        (sign_ticket("x" * 40, user="bob", server="binder-x", launch=launch), "signature"),
        (sign_ticket(secret, user="alice", server="binder-x", launch=launch), "another user"),
        (sign_ticket(secret, user="bob", server="binder-y", launch=launch), "another user"),
        (sign_ticket(secret, user="bob", server="binder-x", launch=launch, ttl=-1), "expired"),
    ]:
        r = bob.post("/users/bob/servers/binder-x", json={"binder": ticket})
        assert r.status_code == 403 and why in r.json()["message"], (why, r.text)
        wait_for(lambda: "binder-x" not in stack.user("bob")["servers"], 30, "no server")


def test_a_binder_server_started_again_without_a_ticket_keeps_nothing_of_binder(
    stack: Stack, git: GitServer
):
    """The same named server, stopped, then started as a plain server: the site's own
    command, folder and resources, not the Binder environment's or profile's. (Started
    again from the home page, with its last options, it is the Binder session again,
    while its ticket lasts.)"""
    git.commit("restart", {"requirements.txt": "egi_binder_demo==1.0\n"})
    alice = browser(stack, "alice")
    ready = launch(alice, git_spec(git, "restart"))[-1]
    assert ready["phase"] == "ready", ready
    server = ready["url"].split("/")[3]
    assert server_process(stack.data_dir, "alice", server)["env"].get("MEM_LIMIT") == str(4 * 2**30)
    stack.stop_server("alice", server)
    # (a start without options restarts with the last ones, the ticket's: new options)
    r = stack.api.post(f"/users/alice/servers/{server}", json={"user_options": {}})
    assert r.status_code in (201, 202), r.text
    wait_for(lambda: stack.user("alice")["servers"][server]["ready"], 90, "the plain server")
    plain = server_process(stack.data_dir, "alice", server)
    assert "/binder/envs/" not in " ".join(plain["cmdline"])
    assert "MEM_LIMIT" not in plain["env"] and "/binder/" not in plain["cwd"]
    stack.stop_server("alice", server)
