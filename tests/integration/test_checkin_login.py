"""CheckinAuthenticator against a real OpenID provider (npm oidc-provider, Check-in-like)."""

from __future__ import annotations

import os
import subprocess
from urllib.parse import urljoin

import httpx
import pytest

from egi_hub.procs import installed_script
from tests.oidcprovider import _Form, checkin_site, login
from tests.stackrunner import free_port, plain_hub_config, start_stack


def test_login_creates_user_with_vo_groups_and_tokens(checkin):
    stack, _ = checkin
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


def test_admin_users_still_works_beside_admin_vos(checkin):
    stack, _ = checkin
    assert login(stack.url, "carol").status_code == 302
    assert stack.user("carol@egi.eu")["admin"] is True


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


def test_logout_ends_provider_session_and_revokes(checkin):
    stack, provider = checkin
    client = httpx.Client(timeout=30)
    assert login(stack.url, "alice", client).status_code == 302
    revoked, ended = provider.count("REVOKED"), provider.count("END_SESSION")
    r = client.get(f"{stack.url}/hub/logout")
    assert r.status_code == 302
    end_session = r.headers["location"]
    assert end_session.startswith(f"{provider.issuer}/protocol/openid-connect/logout?")
    assert "id_token_hint=" in end_session
    assert "post_logout_redirect_uri=http%3A%2F%2F127.0.0.1" in end_session
    assert provider.count("REVOKED") == revoked + 1
    # The tokens are gone; the account stays bound to its Check-in identity.
    alice = stack.user("alice@egi.eu")
    assert set(alice["auth_state"]) == {"entitlements", "entitlements_at", "iss", "sub"}
    assert alice["user_info"] == {"iss": provider.issuer, "sub": "alice"}
    # The provider asks to confirm the logout (a form), then sends the browser back.
    page = client.get(end_session)
    form = _Form()
    form.feed(page.text)
    back = client.post(urljoin(str(page.url), form.action), data={**form.fields, "logout": "yes"})
    assert back.status_code in (302, 303)
    assert back.headers["location"].startswith(f"{stack.url}/hub/login")
    assert provider.count("END_SESSION") == ended + 1
    # The next login shows the provider's login page again.
    again = client.get(f"{stack.url}/hub/oauth_login", follow_redirects=True)
    assert 'name="login"' in again.text


def test_provider_down_at_login_is_a_clear_503_and_the_hub_keeps_running(tmp_path):
    closed = f"http://127.0.0.1:{free_port()}/auth/realms/egi"
    stack = start_stack(tmp_path, checkin_site(closed), env={"EGI_CHECKIN_CLIENT_SECRET": "x"})
    try:
        r = httpx.get(f"{stack.url}/hub/oauth_login")
        assert r.status_code == 503
        assert "EGI Check-in cannot be used right now" in r.text
        assert httpx.get(f"{stack.url}/hub/health").status_code == 200
    finally:
        stack.stop()


def test_missing_crypt_key_stops_the_hub_with_a_clear_message(tmp_path):
    """Tokens live in encrypted auth_state: without a key the hub does not start."""
    config = plain_hub_config(tmp_path, free_port())
    config += 'c.JupyterHub.authenticator_class = "egi-checkin"\n'
    (tmp_path / "jupyterhub_config.py").write_text(config)
    env = {k: v for k, v in os.environ.items() if k != "JUPYTERHUB_CRYPT_KEY"}
    r = subprocess.run(
        [installed_script("jupyterhub"), "-f", str(tmp_path / "jupyterhub_config.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode != 0
    assert "auth_state is enabled, but encryption is not available" in r.stderr
    assert "JUPYTERHUB_CRYPT_KEY" in r.stderr


def test_missing_client_id_stops_the_hub_naming_the_key(tmp_path):
    site = checkin_site("https://aai-demo.egi.eu/auth/realms/egi")
    del site["CheckinAuthenticator"]["client_id"]
    with pytest.raises(RuntimeError) as info:
        start_stack(tmp_path, site)
    assert "CheckinAuthenticator.client_id is not set" in str(info.value)


def test_next_url_is_kept_only_when_local(checkin):
    stack, _ = checkin
    client = httpx.Client(timeout=30)
    cases = [
        ("/hub/token", "/hub/token"),
        ("//evil.example/x", "/hub/spawn"),
        ("/\\evil.example/x", "/hub/spawn"),
        # Browsers drop tabs and newlines: "/\t/evil.example" is "//evil.example".
        ("/\t/evil.example", "/hub/spawn"),
        ("/%09/evil.example", "/hub/spawn"),
        ("/\n/evil.example", "/hub/spawn"),
        ("https://evil.example/", "/hub/spawn"),
        (None, "/hub/spawn"),
    ]
    for next_url, expected in cases:
        r = login(stack.url, "alice", client, next_url=next_url)
        assert r.status_code == 302
        location = r.headers["location"]
        assert location == expected or location.startswith(expected + "?"), location
        assert "code=" not in location and "state=" not in location
