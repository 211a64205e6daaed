"""A running server always holds a fresh Check-in access token (real provider, real hub)."""

from __future__ import annotations

import httpx
import pytest

from egi_hub.names import path_component
from tests.kernel import run_code
from tests.oidcprovider import login, start_checkin_hub
from tests.stackrunner import wait_for

USER = "alice@egi.eu"


@pytest.fixture(scope="module")
def short_lived(tmp_path_factory):
    """Access tokens that live 10 s, so that a refresh happens within the test."""
    stack, provider = start_checkin_hub(tmp_path_factory.mktemp("handoff"), access_token_ttl=10)
    yield stack, provider
    stack.stop()
    provider.stop()


def test_server_token_file_is_kept_fresh(short_lived):
    stack, provider = short_lived
    assert login(stack.url, "alice").status_code == 302
    stack.start_server(USER)
    try:
        token_file = stack.data_dir / "users" / path_component(USER) / ".egi" / "access_token"
        first = wait_for(lambda: token_file.exists() and token_file.read_text(), 30, "the file")
        assert oct(token_file.stat().st_mode & 0o777) == "0o600"
        in_kernel = run_code(
            stack.url,
            f"/user/{USER}/",
            stack.api_token,
            "from egi_hub.token import access_token; print(access_token())",
        )
        assert in_kernel.strip() == first
        # The token lives 10 s: the server asks again, the hub refreshes, the file changes.
        refreshed = wait_for(
            lambda: token_file.read_text() != first and token_file.read_text(), 60, "a new token"
        )
        assert provider.count("GRANT refresh_token") >= 1
        assert stack.user(USER)["auth_state"]["access_token"] == refreshed
        userinfo = httpx.get(
            f"{provider.issuer}/protocol/openid-connect/userinfo",
            headers={"Authorization": f"Bearer {refreshed}"},
        )
        assert userinfo.status_code == 200
    finally:
        stack.stop_server(USER)


def test_only_the_owners_scoped_token_is_answered(short_lived):
    stack, _ = short_lived
    assert login(stack.url, "bob").status_code == 302
    url = f"{stack.url}/hub/api/egi/token"
    # A service (even an admin one) is not a user's server.
    r = httpx.get(url, headers={"Authorization": f"token {stack.api_token}"})
    assert r.status_code == 403
    # Bob's own token without the scope is refused; with it, Bob gets his token only.
    narrow = stack.api.post("/users/bob@egi.eu/tokens", json={"scopes": ["read:users:name!user"]})
    r = httpx.get(url, headers={"Authorization": f"token {narrow.json()['token']}"})
    assert r.status_code == 403
    scoped = stack.api.post(
        "/users/bob@egi.eu/tokens", json={"scopes": ["custom:egi:access-token!user"]}
    )
    r = httpx.get(url, headers={"Authorization": f"token {scoped.json()['token']}"})
    assert r.status_code == 200
    body = r.json()
    assert body["access_token"] == stack.user("bob@egi.eu")["auth_state"]["access_token"]
    assert "refresh_token" not in body and "id_token" not in body
