"""The real local stack: JupyterHub + npm configurable-http-proxy + EGILocalSpawner."""

from __future__ import annotations

import httpx

from tests.kernel import run_code, run_code_v1
from tests.oidcprovider import Provider
from tests.stackrunner import Stack, wait_for


def test_health_and_proxy(stack: Stack):
    r = httpx.get(f"{stack.url}/hub/api/")
    assert r.status_code == 200
    assert "version" in r.json()


def banner_in(stack: Stack) -> list[str]:
    """The lines ``egi-hub up`` printed from "egi-hub is running" to "Stop it with Ctrl-C"."""

    def printed() -> list[str] | None:
        lines = stack.log().splitlines()
        starts = [i for i, line in enumerate(lines) if line.startswith("egi-hub is running at")]
        if not starts:
            return None
        rest = lines[starts[0] :]
        ends = [i for i, line in enumerate(rest) if line == "Stop it with Ctrl-C."]
        return rest[: ends[0] + 1] if ends else None

    return wait_for(printed, 30, "the banner of egi-hub up")


def test_up_prints_url_and_dev_users_once_serving(stack: Stack):
    """What `make run` ends with: where to go, and whom to log in as with which VOs."""
    lines = banner_in(stack)
    log = stack.log()
    # Printed after the hub (and its proxy) serve, not before.
    assert log.index("JupyterHub is now running") < log.index("egi-hub is running at")
    assert lines == [
        f"egi-hub is running at {stack.url}/",
        "Development login (no password). Log in as one of:",
        "  alice  vo.access.egi.eu",
        "  bob    vo.notebooks.egi.eu, vo.access.egi.eu",
        "Stop it with Ctrl-C.",
    ]


def test_up_with_checkin_names_the_sign_in_button(checkin: tuple[Stack, Provider]):
    stack, _ = checkin
    assert banner_in(stack) == [
        f"egi-hub is running at {stack.url}/",
        'Log in with the "Sign in with EGI Check-in" button.',
        "Stop it with Ctrl-C.",
    ]


def test_login_page_says_development_login(stack: Stack):
    r = httpx.get(f"{stack.url}/hub/login")
    assert r.status_code == 200
    assert "Development login" in r.text
    assert "alice" in r.text and "bob" in r.text
    assert 'type="password"' not in r.text


def test_dev_login_syncs_vo_groups(stack: Stack):
    client = stack.dev_login("bob")
    assert client.last_login_response.status_code == 302
    groups = {g["name"]: g["users"] for g in stack.api.get("/groups").json()}
    # One group per VO, named after the VO; subgroup membership counts for its VO.
    assert "bob" in groups["vo.notebooks.egi.eu"]
    assert "bob" in groups["vo.access.egi.eu"]
    assert not any(name.startswith("urn:") for name in groups)
    r = stack.api.get("/users/bob", params={"include_stopped_servers": "1"})
    assert set(r.json()["groups"]) == {"vo.notebooks.egi.eu", "vo.access.egi.eu"}


def test_dev_login_keeps_entitlements_in_auth_state(stack: Stack):
    stack.dev_login("alice")
    auth_state = stack.user("alice")["auth_state"]
    assert auth_state == {
        "entitlements": ["urn:mace:egi.eu:group:vo.access.egi.eu:role=member#aai.egi.eu"]
    }


def test_unknown_user_is_refused_with_reason(stack: Stack):
    client = stack.dev_login("mallory")
    r = client.last_login_response
    assert r.status_code == 403
    assert "Unknown user" in r.text and "DevAuthenticator.users" in r.text
    assert stack.api.get("/users/mallory").status_code == 404


def test_spawn_runs_a_kernel(stack: Stack):
    model = stack.start_server("alice")
    assert model["url"] == "/user/alice/"
    assert (stack.data_dir / "users" / "alice").is_dir()
    output = run_code(stack.url, "/user/alice/", stack.api_token, "print(6*7)")
    assert output.strip() == "42"
    # The server runs in the user's own work directory, which is also HOME.
    cwd = run_code(stack.url, "/user/alice/", stack.api_token, "import os; print(os.getcwd())")
    home = run_code(
        stack.url, "/user/alice/", stack.api_token, "import os; print(os.environ['HOME'])"
    )
    assert cwd.strip() == home.strip() == str(stack.data_dir / "users" / "alice")
    stack.stop_server("alice")


def test_proxy_speaks_jupyterlabs_kernel_protocol(stack: Stack):
    """The browser's kernel websocket subprotocol (v1) is negotiated through the proxy,
    and binary frames cross it both ways (what JupyterLab does)."""
    stack.start_server("bob")
    try:
        output, protocol = run_code_v1(stack.url, "/user/bob/", stack.api_token, "print(6*7)")
        assert protocol == "v1.kernel.websocket.jupyter.org"
        assert output.strip() == "42"
    finally:
        stack.stop_server("bob")


def test_proxy_forwards_paths_as_sent(stack: Stack):
    """A username with '@' (as Check-in's) reaches its server through the proxy."""
    name = "carol@egi.eu"
    stack.start_server(name)
    try:
        r = httpx.get(
            f"{stack.url}/user/{name}/api/status",
            headers={"Authorization": f"token {stack.api_token}"},
        )
        assert r.status_code == 200, r.text
        assert run_code(stack.url, f"/user/{name}/", stack.api_token, "print(6*7)").strip() == "42"
    finally:
        stack.stop_server(name)


def test_long_unicode_username_gets_a_server(stack: Stack):
    name = "jörg-" + "x" * 195  # 200 characters, 201 bytes
    stack.start_server(name)
    try:
        dirs = [p.name for p in (stack.data_dir / "users").iterdir() if p.name.startswith("j-c3")]
        assert len(dirs) == 1 and len(dirs[0]) <= 120
    finally:
        stack.stop_server(name)
