"""Token exchange: a Check-in access token gives a hub API token (real provider, real hub)."""

from __future__ import annotations

import time
from datetime import datetime

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from egi_hub.authenticator.checkin import CheckinAuthenticator
from egi_hub.authenticator.provider import OIDCError

from tests.oidcprovider import CLIENT_ID, CLIENT_SECRET, code_flow_tokens
from tests.standins import json_standin


def exchange(stack, token: str) -> httpx.Response:
    return httpx.post(
        f"{stack.url}/hub/api/egi/token-exchange", headers={"Authorization": f"Bearer {token}"}
    )


def test_valid_checkin_token_gives_a_working_hub_token(checkin):
    stack, provider = checkin
    tokens = code_flow_tokens(provider, stack.url, "alice")  # an opaque token: introspected
    r = exchange(stack, tokens["access_token"])
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["user"] == "alice@egi.eu"
    expires_at = datetime.fromisoformat(body["expires_at"]).timestamp()
    assert expires_at <= time.time() + tokens["expires_in"] + 1
    me = httpx.get(f"{stack.url}/hub/api/user", headers={"Authorization": f"token {body['token']}"})
    assert me.status_code == 200
    assert me.json()["name"] == "alice@egi.eu"
    assert me.json()["groups"] == ["vo.access.egi.eu"]


def test_user_outside_the_vos_is_refused_and_not_created(checkin):
    stack, provider = checkin
    tokens = code_flow_tokens(provider, stack.url, "eve")
    r = exchange(stack, tokens["access_token"])
    assert r.status_code == 403
    assert stack.api.get("/users/eve@egi.eu").status_code == 404


def test_forged_expired_or_unknown_tokens_get_401_and_create_nobody(checkin):
    stack, provider = checkin
    now = int(time.time())
    claims = {"iss": provider.issuer, "sub": "mallory", "aud": "x", "iat": now, "exp": now + 300}
    forged = jwt.encode(
        {**claims, "voperson_id": "mallory@egi.eu"},
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        algorithm="RS256",
        headers={"kid": "test-key-1"},
    )
    expired = jwt.encode(
        {**claims, "iat": now - 600, "exp": now - 300},
        jwt.PyJWK(provider.signing_jwk).key,
        algorithm="RS256",
        headers={"kid": "test-key-1"},
    )
    for token in (forged, expired, "not-a-token-the-provider-issued"):
        r = exchange(stack, token)
        assert r.status_code == 401, (token[:20], r.text)
        assert "Bearer" in r.headers.get("WWW-Authenticate", "")
    users = [u["name"] for u in stack.api.get("/users").json()]
    assert "mallory" not in users and "mallory@egi.eu" not in users


def test_missing_bearer_token_is_401(checkin):
    stack, _ = checkin
    r = httpx.post(f"{stack.url}/hub/api/egi/token-exchange")
    assert r.status_code == 401


def userinfo_of_bearer_jwt(request) -> dict:
    """Check-in's userinfo (unlike oidc-provider's) also accepts JWT access tokens: this
    stand-in answers with the subject of the bearer JWT it gets."""
    token = request.headers["Authorization"].split(" ", 1)[1]
    claims = jwt.decode(token, options={"verify_signature": False})
    return {"sub": claims["sub"], "voperson_id": "jwt-user@egi.eu", "eduperson_entitlement": []}


async def test_jwt_access_token_verified_with_the_providers_keys_userinfo_stand_in(checkin):
    """The JWT path of the exchange: signature and issuer checked against the real
    provider's keys; userinfo from a Check-in stand-in."""
    _, provider = checkin
    with json_standin(userinfo_of_bearer_jwt) as userinfo_url:
        auth = CheckinAuthenticator(
            issuer=provider.issuer,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            userinfo_endpoint=f"{userinfo_url}/userinfo",
            token_exchange_audiences=["egi-hub"],
        )
        now = int(time.time())
        claims = {"iss": provider.issuer, "sub": "s-1", "iat": now, "exp": now + 120}
        key = jwt.PyJWK(provider.signing_jwk).key

        def token(**extra):
            return jwt.encode({**claims, **extra}, key, "RS256", headers={"kid": "test-key-1"})

        verified = await auth.verify_access_token(token(aud="egi-hub"))
        assert verified["voperson_id"] == "jwt-user@egi.eu"
        assert verified["exp"] == now + 120
        with pytest.raises(OIDCError, match="aud"):
            await auth.verify_access_token(token(aud="someone-else"))
        with pytest.raises(OIDCError, match="issuer"):
            await auth.verify_access_token(token(aud="egi-hub", iss="https://evil.example"))
