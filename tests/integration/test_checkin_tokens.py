"""Token refresh, rotation, the per-user lock and invalid grants, against a real provider.

The authenticator runs in this process (as in the hub); the provider is npm
oidc-provider with refresh-token rotation on.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any

import httpx
import pytest

from egi_hub.authenticator.checkin import CheckinAuthenticator
from tests.oidcprovider import ACCOUNTS, CLIENT_ID, CLIENT_SECRET, code_flow_tokens, start_provider
from tests.standins import json_standin

HUB = "http://127.0.0.1:9"  # only the registered redirect URI; never contacted


class StoredUser:
    """What the authenticator sees of a hub user: a name and its stored auth_state."""

    def __init__(self, name: str, auth_state: dict[str, Any]) -> None:
        self.name = name
        self.admin = False
        self.auth_state = auth_state
        self.orm_user = SimpleNamespace(cookie_id="cookie-1")  # browser sessions' key
        self.db = SimpleNamespace(commit=lambda: None)
        self.saves = 0

    async def get_auth_state(self) -> dict[str, Any] | None:
        await asyncio.sleep(0)  # a database round trip
        return self.auth_state

    async def save_auth_state(self, auth_state: dict[str, Any] | None) -> None:
        await asyncio.sleep(0)
        self.auth_state = auth_state
        self.saves += 1


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    p = start_provider(tmp_path_factory.mktemp("oidc"), HUB)
    yield p
    p.stop()


@pytest.fixture
def authenticator(provider):
    return CheckinAuthenticator(
        issuer=provider.issuer,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        allowed_vos=["vo.access.egi.eu", "vo.notebooks.egi.eu"],
    )


def expired_user(authenticator, provider, account: str) -> StoredUser:
    tokens = code_flow_tokens(provider, HUB, account)
    claims = {**ACCOUNTS[account], "sub": account}
    model = authenticator.user_model(tokens, claims)
    model["auth_state"]["expires_at"] = time.time() - 1
    return StoredUser(model["name"], model["auth_state"])


async def test_fifty_concurrent_refreshes_make_one_token_request(authenticator, provider):
    user = expired_user(authenticator, provider, "alice")
    old_refresh = user.auth_state["refresh_token"]
    before = provider.count("GRANT refresh_token")
    results = await asyncio.gather(*(authenticator.refresh_user(user) for _ in range(50)))
    assert provider.count("GRANT refresh_token") == before + 1
    assert sum(isinstance(r, dict) for r in results) == 1
    assert all(r is True for r in results if not isinstance(r, dict))
    # The rotated refresh token was stored, and the grant still works.
    assert user.auth_state["refresh_token"] != old_refresh
    assert user.auth_state["expires_at"] > time.time()
    assert user.auth_state["entitlements"] == [
        "urn:mace:egi.eu:group:vo.access.egi.eu:role=member#aai.egi.eu"
    ]
    user.auth_state["expires_at"] = time.time() - 1
    again = await authenticator.refresh_user(user)
    assert isinstance(again, dict)
    assert again["groups"] == ["vo.access.egi.eu"]


async def test_fresh_tokens_are_not_refreshed(authenticator, provider):
    user = expired_user(authenticator, provider, "bob")
    user.auth_state["expires_at"] = time.time() + 3600
    before = provider.count("GRANT refresh_token")
    assert await authenticator.refresh_user(user) is True
    assert provider.count("GRANT refresh_token") == before


async def test_revoked_grant_ends_the_session(authenticator, provider):
    user = expired_user(authenticator, provider, "alice")
    async with httpx.AsyncClient() as client:
        r = await client.post(
            f"{provider.issuer}/protocol/openid-connect/revoke",
            data={"token": user.auth_state["refresh_token"]},
            auth=(CLIENT_ID, CLIENT_SECRET),
        )
    assert r.status_code == 200
    assert await authenticator.refresh_user(user) is False
    # Tokens gone, browser sessions ended; the VOs last confirmed (and when) are kept.
    assert set(user.auth_state) == {"entitlements", "entitlements_at", "iss", "sub"}
    assert user.orm_user.cookie_id != "cookie-1"


async def test_reused_rotated_refresh_token_is_refused(authenticator, provider):
    user = expired_user(authenticator, provider, "alice")
    stale = dict(user.auth_state)
    assert isinstance(await authenticator.refresh_user(user), dict)
    # Someone still holding the old refresh token: the provider refuses it.
    other = StoredUser(user.name, stale)
    assert await authenticator.refresh_user(other) is False


async def test_opaque_token_without_expiry_is_refreshed(authenticator, provider):
    user = expired_user(authenticator, provider, "bob")
    user.auth_state["expires_at"] = None
    assert isinstance(await authenticator.refresh_user(user), dict)
    assert user.auth_state["expires_at"] is not None


async def test_rotated_refresh_token_is_kept_when_userinfo_fails_stand_in(provider):
    """The token endpoint (real provider) rotates the refresh token, then userinfo
    (a stand-in failing with HTTP 503) fails: the new refresh token must be kept, since
    the provider now refuses the old one."""
    with json_standin(lambda request: {"error": "unavailable"}, status=503) as broken:
        flaky = CheckinAuthenticator(
            issuer=provider.issuer,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            allowed_vos=["vo.access.egi.eu"],
            userinfo_endpoint=f"{broken}/userinfo",
        )
        user = expired_user(flaky, provider, "alice")
        old = user.auth_state["refresh_token"]
        assert await flaky.refresh_user(user) is True  # the session goes on
    assert user.auth_state["refresh_token"] != old
    assert user.auth_state["expires_at"] > time.time()
    # The saved (rotated) token still works with the real userinfo.
    working = CheckinAuthenticator(
        issuer=provider.issuer,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        allowed_vos=["vo.access.egi.eu"],
    )
    user.auth_state["expires_at"] = time.time() - 1
    assert isinstance(await working.refresh_user(user), dict)
