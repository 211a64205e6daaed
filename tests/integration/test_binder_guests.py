"""Anonymous Binder: guests on the local stack, end to end through the proxy.

A real ``egi-hub up`` with ``BinderGuests.enabled``, real git and the venv builder (as
in `test_binder_local`). A visitor with no account opens a Binder link, is sent to the
hub's guest page, continues as a guest and gets a running Binder session; the guest
cannot start anything else, gets no storage mount, and once its session has ended the
Binder service deletes it and its files. The caps and the page's own defences (XSRF,
``next`` staying on the hub) are checked too. Nothing here is a stand-in.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from egi_hub.names import path_component
from tests.gitserver import GitServer
from tests.integration.test_binder_local import (
    NOTEBOOK,
    PREFIX,
    binder_site,
    git_spec,
    launch,
    phases,
)
from tests.oidcprovider import CLIENT_SECRET, checkin_site, start_provider
from tests.stackrunner import Stack, free_port, server_process, start_stack, wait_for
from tests.wheels import make_wheel

GUEST_PAGE = "/hub/binder-guest"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    wheels = tmp_path_factory.mktemp("wheels")
    make_wheel(wheels)
    site = {
        **binder_site(wheels),
        # A short grace and a fast round, so the test sees a guest go in seconds.
        "BinderGuests": {"enabled": True, "max_guests": 3, "max_guests_per_address": 2,
                         "grace": 20, "reap_interval": 1},
        # A mount open to every user (no ``vos``): still none for a guest.
        "StorageMounts": {"mounts": [{"name": "shared", "kind": "nfs", "path": "/nfs/shared",
                                      "server": "nfs.example.org", "export": "/shared"}]},
    }  # fmt: skip
    stack = start_stack(tmp_path_factory.mktemp("stack"), site)
    try:
        yield stack
    finally:
        stack.stop()


def visitor(stack: Stack) -> httpx.Client:
    return httpx.Client(base_url=stack.url, follow_redirects=False, timeout=30)


def become_guest(stack: Stack, spec: str) -> tuple[httpx.Client, str]:
    """A visitor opens a launch link, lands on the guest page, and continues as a guest;
    returns its browser (logged in at the hub and the service) and the guest's name."""
    client = visitor(stack)
    r = client.get(f"{PREFIX}v2/{spec}")
    assert r.status_code == 302, r.text
    where = urlsplit(r.headers["location"])
    assert where.path == GUEST_PAGE, r.headers["location"]
    page = client.get(r.headers["location"])
    assert page.status_code == 200, page.text
    assert "Continue as a guest" in page.text
    action = html.unescape(re.search(r'<form method="post" action="([^"]+)"', page.text)[1])
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)[1]
    r = client.post(action, data={"_xsrf": xsrf})
    assert r.status_code == 302, r.text
    # On to the service's hub OAuth, which comes back to the launch page.
    assert r.headers["location"].startswith("/hub/api/oauth2/authorize?"), r.headers
    name = client.get("/hub/api/user").json()["name"]
    client.follow_redirects = True
    r = client.get(r.headers["location"])
    assert r.status_code == 200 and str(r.url).endswith(f"{PREFIX}v2/{spec}"), r.url
    return client, name


def test_guest_page_keeps_next_on_the_hub_and_needs_xsrf(stack: Stack):
    client = visitor(stack)
    page = client.get(GUEST_PAGE, params={"next": "https://evil.example/steal"})
    assert page.status_code == 200
    action = html.unescape(re.search(r'<form method="post" action="([^"]+)"', page.text)[1])
    assert "evil.example" not in action
    r = client.post(action, data={})  # no XSRF token: refused, no account made
    assert r.status_code == 403
    assert not [u for u in stack.api.get("/users").json() if u["name"].startswith("guest--")]


def test_a_guest_launches_a_link_and_is_deleted_with_its_files_when_it_ends(
    stack: Stack, git: GitServer
):
    git.commit("guestdemo", {"requirements.txt": "egi_binder_demo==1.0\n",
                             "index.ipynb": NOTEBOOK})  # fmt: skip
    spec = git_spec(git, "guestdemo")
    client, name = become_guest(stack, spec)
    assert name.startswith("guest--")
    assert "binder-guests" in stack.user(name)["groups"]
    events = launch(client, spec)
    assert phases(events)[-1] == "ready", events[-3:]
    servers = stack.user(name)["servers"]
    assert len(servers) == 1
    (server,) = servers
    assert server.startswith("binder-")
    # No storage mount for a guest, even one open to every user (alice gets it).
    env = server_process(stack.data_dir, path_component(name), server)["env"]
    assert "EGI_MOUNTS_URL" not in env and "EGI_MOUNTS_FILE" not in env, env

    alice = stack.dev_login("alice")
    alice.close()
    stack.start_server("alice")
    assert "EGI_MOUNTS_URL" in server_process(stack.data_dir, "alice", "")["env"]
    stack.api.delete("/users/alice/server")

    # One Binder session at a time: a second link fails with the reason.
    git.commit("guestdemo2", {"requirements.txt": "egi_binder_demo==1.0\n"})
    events = launch(client, git_spec(git, "guestdemo2"))
    assert events[-1]["phase"] == "failed", events[-3:]
    assert "one Binder session at a time" in events[-1]["message"], events[-1]
    # Nothing but Binder sessions: its own token cannot start anything else.
    token = stack.api.post(f"/users/{name}/tokens", json={}).json()["token"]
    own = httpx.Client(base_url=f"{stack.url}/hub/api", timeout=30,
                       headers={"Authorization": f"token {token}"})  # fmt: skip
    r = own.post(f"/users/{name}/server")
    assert r.status_code == 403 and "Binder sessions only" in r.text, r.text
    r = own.post(f"/users/{name}/servers/other", json={"binder": "forged"})
    assert r.status_code == 403, r.text

    work = stack.data_dir / "users" / path_component(name)
    assert work.is_dir()
    r = stack.api.delete(f"/users/{name}/servers/{server}")
    assert r.status_code in (202, 204), r.text

    def gone() -> bool:
        return stack.api.get(f"/users/{name}").status_code == 404

    wait_for(gone, timeout=60, what="the ended guest to be deleted")
    wait_for(lambda: not work.exists(), timeout=30, what="the guest's files to go")
    # Its login is worth nothing now.
    assert client.get("/hub/api/user").status_code in (401, 403)


def test_guest_caps_per_address_and_for_the_site(stack: Stack):
    made = []
    for _ in range(2):
        client = visitor(stack)
        page = client.get(GUEST_PAGE)
        xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)[1]
        assert client.post(GUEST_PAGE, data={"_xsrf": xsrf}).status_code == 302
        made.append(client.get("/hub/api/user").json()["name"])
    # A visitor's own X-Real-Ip or X-Forwarded-For changes nothing: the proxy's entry counts.
    third = visitor(stack)
    third.headers.update({"X-Real-Ip": "10.9.8.7", "X-Forwarded-For": "10.9.8.6"})
    page = third.get(GUEST_PAGE)
    assert page.status_code == 503
    assert "this address already has 2 guest sessions" in page.text
    xsrf = re.search(r'name="_xsrf" value="([^"]+)"', page.text)[1]
    r = third.post(GUEST_PAGE, data={"_xsrf": xsrf})
    assert r.status_code == 503
    assert third.get("/hub/api/user").status_code in (401, 403)
    for name in made:  # (the service deletes idle guests anyway, after its grace)
        stack.api.delete(f"/users/{name}")


def test_a_guest_stays_logged_in_on_a_checkin_hub(tmp_path: Path):
    """The production login: Check-in (the tests' real OIDC provider standing in for
    Check-in itself). A guest has no Check-in session to refresh, and keeps its login."""
    port = free_port()
    provider = start_provider(tmp_path / "oidc", f"http://127.0.0.1:{port}")
    try:
        site = {**checkin_site(provider.issuer), "BinderGuests": {"enabled": True}}
        hub = start_stack(tmp_path / "hub", site, port=port,
                          env={"EGI_CHECKIN_CLIENT_SECRET": CLIENT_SECRET})  # fmt: skip
        try:
            client, name = become_guest(hub, "gh/owner/repo/HEAD")
            assert client.get("/hub/api/user").json()["name"] == name
            assert "binder-guests" in hub.user(name)["groups"]  # not dropped by a refresh
        finally:
            hub.stop()
    finally:
        provider.stop()


def test_without_guests_the_page_does_not_exist_and_links_ask_for_a_login_and_no_user_tokens(
    tmp_path: Path, stack: Stack
):
    # (This stack has guests on; a plain one is the default site of test_binder_local.)
    plain = start_stack(tmp_path, binder_site(tmp_path))
    try:
        client = visitor(plain)
        assert client.get(GUEST_PAGE).status_code == 404
        r = client.get(f"{PREFIX}v2/gh/owner/repo/HEAD")
        assert r.status_code == 302
        where = urlsplit(r.headers["location"])
        assert where.path.endswith("/oauth2/authorize") or "login" in where.path, where
        assert "binder-guest" not in r.headers["location"]
        assert parse_qs(where.query) is not None
        # (A site default too: no user tokens for private repositories.)
        alice = plain.dev_login("alice")
        alice.follow_redirects = True
        r = alice.put(f"{PREFIX}api/v1/tokens/github.com", json={"token": "t"})
        assert r.status_code in (403, 404), r.text
        r = alice.get(f"{PREFIX}api/v1/tokens")
        assert r.status_code == 404 and "does not launch private repositories" in r.text
    finally:
        plain.stop()
