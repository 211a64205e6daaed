"""CheckinAuthenticator's pure pieces: usernames, token expiry, when to refresh."""

from __future__ import annotations

import re
import time

import jwt
import pytest
from hypothesis import given
from hypothesis import strategies as st

from egi_hub.authenticator.checkin import CHECKIN_ISSUERS, CheckinAuthenticator
from egi_hub.authenticator.tokens import access_token_expiry
from egi_hub.authenticator.usernames import username_from_claim


@pytest.mark.parametrize(
    ("claim", "expected"),
    [
        ("0123abcd@egi.eu", "0123abcd@egi.eu"),
        ("alice.smith_1@egi.eu", "alice.smith_1@egi.eu"),
    ],
)
def test_safe_identifiers_are_kept(claim, expected):
    assert username_from_claim(claim) == expected


@pytest.mark.parametrize(
    "claim", ["Alice@EGI.eu", "a--b", "-a", "zoë", "a" * 65, "a b", "0\n", "alice@egi.eu\n"]
)
def test_unsafe_identifiers_get_a_slug_and_digest(claim):
    name = username_from_claim(claim)
    assert re.fullmatch(r"[a-z0-9][a-z0-9._@-]*--[0-9a-f]{16}", name)
    assert len(name) <= 64


@given(st.text(min_size=1), st.text(min_size=1))
def test_usernames_never_collide(a, b):
    if a != b:
        assert username_from_claim(a) != username_from_claim(b)


@given(st.text(min_size=1))
def test_usernames_are_safe(claim):
    name = username_from_claim(claim)
    assert re.fullmatch(r"[a-z0-9][a-z0-9._@-]*", name)
    assert len(name) <= 64


def test_expiry_from_expires_in_then_jwt_exp_then_unknown():
    now = 1_000_000.0
    assert access_token_expiry({"access_token": "opaque", "expires_in": 300}, now) == now + 300
    assert access_token_expiry({"access_token": "opaque", "expires_in": "60"}, now) == now + 60
    token = jwt.encode({"exp": 1_000_500}, "k" * 32, algorithm="HS256")
    assert access_token_expiry({"access_token": token}, now) == 1_000_500
    assert access_token_expiry({"access_token": "opaque"}, now) is None


def test_needs_refresh_uses_leeway_capped_at_half_the_lifetime():
    auth = CheckinAuthenticator(token_refresh_leeway=60)
    now = time.time()
    long_lived = {"issued_at": now - 100, "expires_at": now + 3500}
    assert not auth.needs_refresh(long_lived, now)
    assert auth.needs_refresh({**long_lived, "expires_at": now + 59}, now)
    short = {"issued_at": now, "expires_at": now + 10}  # 10 s tokens: refresh after 5 s
    assert not auth.needs_refresh(short, now)
    assert auth.needs_refresh(short, now + 5)
    assert auth.needs_refresh({"expires_at": None}, now)


def test_issuer_from_instance_and_defaults():
    assert CheckinAuthenticator().issuer == CHECKIN_ISSUERS["production"]
    assert CheckinAuthenticator(checkin_instance="demo").issuer == CHECKIN_ISSUERS["demo"]
    auth = CheckinAuthenticator(issuer="https://idp.example/realms/x")
    assert auth.issuer == "https://idp.example/realms/x"
    assert auth.enable_auth_state and auth.manage_groups and auth.refresh_pre_spawn
    assert "offline_access" in auth.scope and "eduperson_entitlement" in auth.scope


def test_secrets_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("EGI_CHECKIN_CLIENT_ID", "cid")
    monkeypatch.setenv("EGI_CHECKIN_CLIENT_SECRET", "sec")
    auth = CheckinAuthenticator()
    assert (auth.client_id, auth.client_secret) == ("cid", "sec")
