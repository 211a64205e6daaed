"""CheckinAuthenticator against a real OpenID provider (npm oidc-provider, Check-in-like)."""

from __future__ import annotations

import httpx
import pytest

from tests.oidcprovider import CLIENT_ID, CLIENT_SECRET, login, start_provider
from tests.stackrunner import TEST_SERVICE, free_port, start_stack


def checkin_site(issuer: str, **extra) -> dict:
    return {
        "JupyterHub": {
            "authenticator_class": "egi-checkin",
            "services": [{"name": TEST_SERVICE, "api_token": "__API_TOKEN__"}],
            "load_roles": [{"name": "admin", "services": [TEST_SERVICE]}],
        },
        "CheckinAuthenticator": {
            "issuer": issuer,
            "client_id": CLIENT_ID,
            "allowed_vos": ["vo.access.egi.eu", "vo.notebooks.egi.eu"],
            "admin_vos": ["vo.notebooks.egi.eu:role=manager"],
            "trusted_authorities": ["aai.egi.eu"],
            "enrolment_urls": {"vo.access.egi.eu": "https://aai.egi.eu/registry/enrol/access"},
            # oidc-provider, unlike Check-in, issues refresh tokens only after consent.
            "extra_authorize_params": {"prompt": "consent"},
            **extra,
        },
    }


@pytest.fixture(scope="module")
def checkin(tmp_path_factory):
    """A hub using CheckinAuthenticator and the provider it trusts."""
    tmp = tmp_path_factory.mktemp("checkin")
    port = free_port()
    provider = start_provider(tmp / "oidc", f"http://127.0.0.1:{port}")
    stack = start_stack(
        tmp / "hub",
        checkin_site(provider.issuer),
        port=port,
        env={"EGI_CHECKIN_CLIENT_SECRET": CLIENT_SECRET},
    )
    yield stack, provider
    stack.stop()
    provider.stop()


def test_login_creates_user_with_vo_groups_and_tokens(checkin):
    stack, provider = checkin
    r = login(stack.url, "alice")
    assert r.status_code == 302, r.text
    user = stack.user("alice@egi.eu")
    assert user["groups"] == ["vo.access.egi.eu"]
    assert user["admin"] is False
    state = user["auth_state"]
    assert state["entitlements"] == [
        "urn:mace:egi.eu:group:vo.access.egi.eu:role=member#aai.egi.eu"
    ]
    assert state["access_token"] and state["refresh_token"] and state["id_token"]
    assert state["expires_at"] > 0


def test_admin_by_vo_role_and_subgroup_counts_for_its_vo(checkin):
    stack, _ = checkin
    assert login(stack.url, "bob").status_code == 302
    user = stack.user("bob@egi.eu")
    assert user["admin"] is True
    assert sorted(user["groups"]) == ["vo.access.egi.eu", "vo.notebooks.egi.eu"]


def test_user_outside_the_vos_gets_403_with_enrolment_link(checkin):
    stack, _ = checkin
    r = login(stack.url, "eve")
    assert r.status_code == 403
    assert "not a member of a Virtual Organisation" in r.text
    assert 'href="https://aai.egi.eu/registry/enrol/access"' in r.text
    # Eve's vo.access.egi.eu entitlement comes from an untrusted authority: no access,
    # and nothing stored.
    assert stack.api.get("/users/eve@egi.eu").status_code == 404


def test_unsafe_identifier_gives_a_safe_distinct_username(checkin):
    stack, _ = checkin
    r = login(stack.url, "Zoë Ünicode")
    assert r.status_code == 302
    names = [u["name"] for u in stack.api.get("/users").json()]
    (name,) = [n for n in names if "--" in n]
    assert name.startswith("zo") and len(name) <= 64


def test_replayed_callback_is_refused(checkin):
    stack, _ = checkin
    client = httpx.Client(timeout=30)
    r = login(stack.url, "alice", client)
    assert r.status_code == 302
    replay = client.get(str(r.request.url))
    assert replay.status_code == 400
    assert "no login in progress" in replay.text


def test_callback_without_state_is_refused(checkin):
    stack, _ = checkin
    r = httpx.get(f"{stack.url}/hub/oauth_callback?code=abc")
    assert r.status_code == 400
