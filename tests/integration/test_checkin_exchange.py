"""Token exchange: a Check-in access token gives a hub API token (real provider, real hub)."""

from __future__ import annotations

import asyncio
import time
from datetime import datetime

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from tornado import web

from egi_hub.authenticator.checkin import CheckinAuthenticator
from egi_hub.authenticator.errors import OIDCError
from egi_hub.authenticator.exchange import ExchangeRequest
from tests.oidcprovider import CLIENT_ID, CLIENT_SECRET, OTHER_CLIENT, code_flow_tokens, login
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


def jwt_signer(provider):
    now = int(time.time())
    claims = {"iss": provider.issuer, "sub": "s-1", "iat": now, "exp": now + 120}
    key = jwt.PyJWK(provider.signing_jwk).key

    def token(**extra):
        return jwt.encode({**claims, **extra}, key, "RS256", headers={"kid": "test-key-1"})

    return token


async def test_jwt_access_token_must_be_issued_to_the_hub_or_an_allowed_client_stand_in(checkin):
    """The JWT path of the exchange: signature and issuer checked against the real
    provider's keys, and aud/azp must name the hub or a listed client; userinfo from a
    Check-in stand-in."""
    _, provider = checkin
    with json_standin(userinfo_of_bearer_jwt) as userinfo_url:
        auth = CheckinAuthenticator(
            issuer=provider.issuer,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            userinfo_endpoint=f"{userinfo_url}/userinfo",
            token_exchange_clients=["token-portal"],
        )
        token = jwt_signer(provider)
        verified = await auth.verify_access_token(token(aud=CLIENT_ID))
        assert verified["voperson_id"] == "jwt-user@egi.eu"
        assert verified["exp"] == int(verified["exp"])
        # Keycloak-style: aud names other APIs, azp the client that asked for it.
        await auth.verify_access_token(token(aud="account", azp=CLIENT_ID, jti="2"))
        await auth.verify_access_token(token(aud=["account", "token-portal"], jti="3"))
        # Another application's token, or one that names no client at all: refused.
        for other in (
            token(aud="someone-else"),
            token(aud="account", azp="other-app"),
            token(jti="no-audience"),
        ):
            with pytest.raises(OIDCError, match="not to this hub"):
                await auth.verify_access_token(other)
        with pytest.raises(OIDCError, match="issuer"):
            await auth.verify_access_token(token(aud=CLIENT_ID, iss="https://evil.example"))


def test_another_applications_opaque_token_is_refused(checkin):
    """A genuine Check-in token issued to another client (introspection says so)."""
    stack, provider = checkin
    tokens = code_flow_tokens(provider, stack.url, "alice", client=OTHER_CLIENT)
    r = exchange(stack, tokens["access_token"])
    assert r.status_code == 401, r.text
    assert "not to this hub" in r.json()["message"]
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


def test_only_the_exchange_endpoint_exchanges(checkin):
    """A Check-in token in the login form or in the token API's "auth" is refused, and
    the form does not touch the browser login's auth_state."""
    stack, provider = checkin
    browser = httpx.Client(timeout=30)
    assert login(stack.url, "alice", browser).status_code == 302
    before = stack.user("alice@egi.eu")["auth_state"]
    token = code_flow_tokens(provider, stack.url, "alice")["access_token"]
    form = httpx.Client(base_url=stack.url, timeout=30)
    form.get("/hub/login")
    xsrf = form.cookies.get("_xsrf", "")
    r = form.post("/hub/login", data={"checkin_access_token": token, "_xsrf": xsrf})
    assert r.status_code == 403, r.text
    assert "jupyterhub-session-id" not in r.headers.get("set-cookie", "")
    assert form.get("/hub/api/user").status_code == 403
    r = httpx.post(
        f"{stack.url}/hub/api/users/alice@egi.eu/tokens",
        json={"auth": {"checkin_access_token": token}, "scopes": ["inherit"]},
    )
    assert r.status_code == 403, r.text
    assert "token" not in r.json()
    after = stack.user("alice@egi.eu")["auth_state"]
    assert after["refresh_token"] == before["refresh_token"]
    assert after["access_token"] == before["access_token"]


def test_exchanged_token_is_narrow_and_cannot_mint_tokens(checkin):
    stack, provider = checkin
    token = code_flow_tokens(provider, stack.url, "alice")["access_token"]
    r = exchange(stack, token)
    assert r.status_code == 201, r.text
    hub_token = r.json()["token"]
    assert "tokens" not in " ".join(r.json()["scopes"])
    headers = {"Authorization": f"token {hub_token}"}
    minted = httpx.post(
        f"{stack.url}/hub/api/users/alice@egi.eu/tokens",
        json={"scopes": ["inherit"], "expires_in": None},
        headers=headers,
    )
    assert minted.status_code == 403, minted.text
    # Nor may it read the Check-in token that the browser login stored.
    assert httpx.get(f"{stack.url}/hub/api/egi/token", headers=headers).status_code == 403
    me = httpx.get(f"{stack.url}/hub/api/user", headers=headers).json()
    assert me["name"] == "alice@egi.eu"
    assert "admin:users" not in me["scopes"] and "tokens" not in me["scopes"]


def test_repeated_exchanges_keep_one_hub_token_and_the_browser_tokens(checkin):
    stack, provider = checkin
    browser = httpx.Client(timeout=30)
    assert login(stack.url, "bob", browser).status_code == 302
    before = stack.user("bob@egi.eu")["auth_state"]
    token = code_flow_tokens(provider, stack.url, "bob")["access_token"]
    with httpx.Client(timeout=30) as client:
        answers = [
            client.post(
                f"{stack.url}/hub/api/egi/token-exchange",
                headers={"Authorization": f"Bearer {token}"},
            )
            for _ in range(100)
        ]
    assert {a.status_code for a in answers} == {201}
    tokens = stack.api.get("/users/bob@egi.eu/tokens").json()["api_tokens"]
    exchanged = [t for t in tokens if t["note"].startswith("egi-hub token exchange")]
    assert len(exchanged) == 1
    # The last one works; the ones it replaced do not.
    last = {"Authorization": f"token {answers[-1].json()['token']}"}
    first = {"Authorization": f"token {answers[0].json()['token']}"}
    assert httpx.get(f"{stack.url}/hub/api/user", headers=last).status_code == 200
    assert httpx.get(f"{stack.url}/hub/api/user", headers=first).status_code == 403
    after = stack.user("bob@egi.eu")["auth_state"]
    assert after["access_token"] == before["access_token"] != token
    assert after["refresh_token"] == before["refresh_token"]


async def test_introspection_5xx_is_503_not_invalid_token_stand_in(checkin):
    """Introspection answered by a stand-in that fails with HTTP 502 (a proxy in front
    of Check-in): the exchange says Check-in is unreachable (503), not 401."""
    _, provider = checkin
    with json_standin(lambda request: {"error": "bad gateway"}, status=502) as broken:
        auth = CheckinAuthenticator(
            issuer=provider.issuer,
            client_id=CLIENT_ID,
            client_secret=CLIENT_SECRET,
            introspection_endpoint=f"{broken}/introspect",
        )
        with pytest.raises(web.HTTPError) as raised:
            await auth.authenticate_exchange(None, ExchangeRequest("opaque-token"))
        assert raised.value.status_code == 503
        assert "cannot be used right now" in str(raised.value)
        # Not remembered as a refusal: once the provider is back, the token is tried.
        assert not auth._refused_tokens


def counting_authenticator(provider) -> tuple[CheckinAuthenticator, list[str]]:
    """An authenticator for the real provider, and the list of endpoints it calls."""
    auth = CheckinAuthenticator(
        issuer=provider.issuer, client_id=CLIENT_ID, client_secret=CLIENT_SECRET
    )
    calls: list[str] = []
    original = auth.http.call

    async def counting(method, url, what, **kwargs):
        calls.append(what)
        return await original(method, url, what, **kwargs)

    auth.http.call = counting
    return auth, calls


async def test_junk_tokens_cost_one_introspection_each_not_one_per_try(checkin):
    _, provider = checkin
    auth, calls = counting_authenticator(provider)
    for _ in range(50):
        with pytest.raises(OIDCError, match="not active"):
            await auth.verify_access_token("junk-opaque-token")
    assert calls.count("introspection endpoint") == 1


async def test_concurrent_forged_jwts_fetch_the_key_set_once(checkin):
    """200 JWTs with made-up key ids at once: one key-set fetch, not 200."""
    _, provider = checkin
    auth, fetches = counting_authenticator(provider)
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    forged = [
        jwt.encode(
            {"iss": provider.issuer, "sub": "x", "aud": CLIENT_ID, "iat": now, "exp": now + 60},
            forger,
            "RS256",
            headers={"kid": f"made-up-{i}"},
        )
        for i in range(200)
    ]
    results = await asyncio.gather(
        *(auth.verify_access_token(t) for t in forged), return_exceptions=True
    )
    assert all(isinstance(r, OIDCError) for r in results)
    assert fetches.count("key set") == 1


async def test_introspection_refusing_the_hubs_credentials_is_503_stand_in(checkin):
    """A stand-in introspection endpoint answering 401 invalid_client (the hub's secret is
    wrong): the site's trouble, a 503, not the user's token being invalid."""
    _, provider = checkin
    answer = {"error": "invalid_client", "error_description": "bad secret"}
    with json_standin(lambda request: answer, status=401) as broken:
        auth = CheckinAuthenticator(
            issuer=provider.issuer,
            client_id=CLIENT_ID,
            client_secret="wrong",
            introspection_endpoint=f"{broken}/introspect",
        )
        with pytest.raises(web.HTTPError) as raised:
            await auth.authenticate_exchange(None, ExchangeRequest("opaque-token"))
        assert raised.value.status_code == 503
        assert not auth._refused_tokens


def introspection_and_userinfo(claims: dict):
    """A stand-in provider answering introspection with ``claims`` and userinfo with
    their subject (for expiries a real provider does not issue)."""

    def answer(request) -> dict:
        if request.path.endswith("/introspect"):
            return {"active": True, "client_id": CLIENT_ID, **claims}
        return {"sub": claims.get("sub", "s"), "eduperson_entitlement": []}

    return json_standin(answer)


def standin_authenticator(provider, url: str) -> CheckinAuthenticator:
    """The real provider's discovery and keys; introspection and userinfo at ``url``."""
    return CheckinAuthenticator(
        issuer=provider.issuer,
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        introspection_endpoint=f"{url}/introspect",
        userinfo_endpoint=f"{url}/userinfo",
    )


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"sub": "s", "exp": float("nan")}, "expiry is unknown"),
        ({"sub": "s", "exp": float("inf")}, "expiry is unknown"),
        ({"sub": "s", "exp": True}, "expiry is unknown"),
        ({"exp": time.time() + 36000}, "names no subject"),
        ({"sub": "s", "exp": time.time() + 36000, "typ": "ID"}, "not an access token"),
    ],
)
async def test_odd_expiries_and_subjects_are_refused_not_500_stand_in(checkin, claims, reason):
    _, provider = checkin
    with introspection_and_userinfo(claims) as url:
        auth = standin_authenticator(provider, url)
        with pytest.raises(OIDCError, match=reason):
            await auth.verify_access_token("opaque-token")


async def test_a_far_future_expiry_is_capped_stand_in(checkin):
    _, provider = checkin
    with introspection_and_userinfo({"sub": "s", "exp": 1e15}) as url:
        auth = standin_authenticator(provider, url)
        claims = await auth.verify_access_token("opaque-token")
        assert claims["exp"] <= time.time() + 12 * 3600 + 1
