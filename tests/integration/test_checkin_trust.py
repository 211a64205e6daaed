"""Who may log in and as whom, against the real provider (npm oidc-provider).

Regression tests of the trust review: entitlements from other authorities, losing a VO
or an admin role while logged in, one subject per account, malformed callbacks.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.oidcprovider import (
    ACCESS_MEMBER,
    ACCOUNTS,
    OTHER_CLIENT,
    code_flow_tokens,
    login,
    start_checkin_hub,
)
from tests.stackrunner import wait_for

NOTEBOOKS_MANAGER = "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=manager#aai.egi.eu"
NOTEBOOKS_MEMBER = "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu"


def test_entitlements_from_another_authority_give_nothing(checkin):
    """mallory's proxy asserts vo.notebooks.egi.eu:role=manager under its own namespace
    and authority: with the default trust settings that is no VO at all."""
    stack, _ = checkin
    r = login(stack.url, "mallory")
    assert r.status_code == 403
    assert "not a member of a Virtual Organisation" in r.text
    assert stack.api.get("/users/mallory@evil.example").status_code == 404


def test_another_subject_cannot_take_over_an_account(checkin):
    """Subject "alice@egi.eu" has no voperson_id, so its username would be alice's."""
    stack, provider = checkin
    assert login(stack.url, "alice").status_code == 302
    r = login(stack.url, "alice@egi.eu")
    assert r.status_code == 403
    assert "belongs to another Check-in identity" in r.text
    alice = stack.user("alice@egi.eu")
    assert alice["auth_state"]["sub"] == "alice"
    assert alice["user_info"] == {"iss": provider.issuer, "sub": "alice"}
    # Nor through the token exchange.
    token = code_flow_tokens(provider, stack.url, "alice@egi.eu")["access_token"]
    r = httpx.post(
        f"{stack.url}/hub/api/egi/token-exchange", headers={"Authorization": f"Bearer {token}"}
    )
    assert r.status_code == 403, r.text


@pytest.mark.parametrize("state", ["é", "\u0000", "x" * 5000])
def test_malformed_state_is_a_400(checkin, state):
    stack, _ = checkin
    client = httpx.Client(timeout=30)
    start = client.get(f"{stack.url}/hub/oauth_login")
    assert start.status_code == 302
    r = client.get(f"{stack.url}/hub/oauth_callback", params={"state": state, "code": "c"})
    assert r.status_code == 400, r.text


@pytest.fixture
def short_tokens(tmp_path):
    """A hub whose provider issues 4-second access tokens, so refreshes come quickly.

    The site's token portal (OTHER_CLIENT, listed in token_exchange_clients) gets
    10-minute tokens: one exchanged token stays valid through a whole test."""
    stack, provider = start_checkin_hub(
        tmp_path,
        access_token_ttl=4,
        client_ttls={OTHER_CLIENT[0]: 600},
        token_exchange_clients=[OTHER_CLIENT[0]],
    )
    yield stack, provider
    stack.stop()
    provider.stop()


def token_for(stack, username: str) -> dict[str, str]:
    """A hub API token of ``username`` allowed to read its Check-in token (refreshes)."""
    r = stack.api.post(
        f"/users/{username}/tokens", json={"scopes": ["custom:egi:access-token!user"]}
    )
    r.raise_for_status()
    return {"Authorization": f"token {r.json()['token']}"}


def test_losing_the_role_then_the_vo_takes_effect_on_refresh(short_tokens):
    stack, provider = short_tokens
    bob = dict(ACCOUNTS["bob"])
    browser = httpx.Client(timeout=30)
    assert login(stack.url, "bob", browser).status_code == 302
    assert stack.user("bob@egi.eu")["admin"] is True
    headers = token_for(stack, "bob@egi.eu")
    handoff = f"{stack.url}/hub/api/egi/token"

    provider.set_account("bob", {**bob, "eduperson_entitlement": [NOTEBOOKS_MEMBER]})

    def demoted() -> bool:
        assert httpx.get(handoff, headers=headers).status_code == 200
        return stack.user("bob@egi.eu")["admin"] is False

    wait_for(demoted, 30, "bob to lose admin after losing the manager role")
    assert stack.user("bob@egi.eu")["groups"] == ["vo.notebooks.egi.eu"]

    # Before leaving the VO: a running server, and a token whose note imitates a
    # server's (notes are the user's own words).
    stack.start_server("bob@egi.eu")
    sneaky = stack.api.post(
        "/users/bob@egi.eu/tokens", json={"note": "Server at /user/x/", "scopes": ["inherit"]}
    )
    sneaky.raise_for_status()
    sneaky_headers = {"Authorization": f"token {sneaky.json()['token']}"}

    # A Check-in token (from the site's token portal) exchanged now: its verified
    # claims are cached for a while.
    portal = code_flow_tokens(provider, stack.url, "bob", client=OTHER_CLIENT)
    assert portal["expires_in"] >= 60  # valid through the rest of the test
    exchanged = portal["access_token"]
    exchange_url = f"{stack.url}/hub/api/egi/token-exchange"
    bearer = {"Authorization": f"Bearer {exchanged}"}
    assert httpx.post(exchange_url, headers=bearer).status_code == 201

    revoked = provider.count("REVOKED")
    provider.set_account("bob", {**bob, "eduperson_entitlement": []})

    def refused() -> bool:
        httpx.get(handoff, headers=headers)  # 200 until the refresh refuses bob
        return bool((stack.user("bob@egi.eu")["auth_state"] or {}).get("refused"))

    wait_for(refused, 30, "bob to be refused after leaving every VO")
    user = stack.user("bob@egi.eu")
    assert user["groups"] == [] and user["admin"] is False
    assert set(user["auth_state"]) == {"refused", "iss", "sub"}  # no tokens, no VOs
    assert user["user_info"] == {"iss": provider.issuer, "sub": "bob"}
    # bob's API tokens and browser sessions are gone, his server stops; a new login
    # is refused.
    assert httpx.get(handoff, headers=headers).status_code == 403
    assert httpx.get(f"{stack.url}/hub/api/user", headers=sneaky_headers).status_code == 403
    wait_for(lambda: not stack.user("bob@egi.eu")["servers"], 60, "bob's server to be stopped")
    # The hub has no more use for bob's Check-in grant: revoked at the provider too.
    assert provider.count("REVOKED") == revoked + 1
    # Exchanging the same token again asks the provider again (not the cache).
    assert httpx.post(exchange_url, headers=bearer).status_code == 403
    assert browser.get(f"{stack.url}/hub/api/user").status_code == 403
    assert login(stack.url, "bob").status_code == 403
    # Back in the VO: a new login works again.
    provider.set_account("bob", {**bob, "eduperson_entitlement": [ACCESS_MEMBER]})
    assert login(stack.url, "bob").status_code == 302
    assert "refused" not in stack.user("bob@egi.eu")["auth_state"]


def test_logout_ends_every_browser_session_of_the_user(checkin):
    """Two browsers (devices) signed in as carol; logging out in one ends both, as it
    ends the Check-in session."""
    stack, _ = checkin
    first, second = httpx.Client(timeout=30), httpx.Client(timeout=30)
    assert login(stack.url, "carol", first).status_code == 302
    assert login(stack.url, "carol", second).status_code == 302
    assert second.get(f"{stack.url}/hub/api/user").status_code == 200
    assert first.get(f"{stack.url}/hub/logout").status_code == 302
    assert second.get(f"{stack.url}/hub/api/user").status_code == 403


def test_short_tokens_are_not_refreshed_on_every_request(short_tokens):
    """4-second tokens: a burst of hand-off requests refreshes once per half lifetime at
    most (2 s), not on every request, however slow the machine makes the burst."""
    stack, provider = short_tokens
    assert login(stack.url, "alice").status_code == 302
    headers = token_for(stack, "alice@egi.eu")
    before = provider.count("GRANT refresh_token")
    started = time.monotonic()
    with httpx.Client(timeout=30) as client:
        for _ in range(20):
            r = client.get(f"{stack.url}/hub/api/egi/token", headers=headers)
            assert r.status_code == 200
    elapsed = time.monotonic() - started
    assert provider.count("GRANT refresh_token") - before <= 1 + int(elapsed / 2)
