"""ID-token and access-token forgeries, checked without any process or socket.

The provider's discovery document and key set are served from memory (`MemoryHTTP`)
with keys made in the test; the same checks run against the real provider in
``tests/integration/test_checkin_verification.py``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from egi_hub.authenticator.errors import OIDCError, ProviderUnreachableError
from egi_hub.authenticator.http import ProviderHTTP
from egi_hub.authenticator.provider import OpenIDProvider
from egi_hub.authenticator.tokens import merge_userinfo, verify_id_token
from tests.oidcprovider import rsa_jwk

ISSUER = "https://checkin.test/auth/realms/egi"
CLIENT_ID = "egi-hub"
JWK = rsa_jwk("key-1")


class MemoryHTTP(ProviderHTTP):
    """Discovery and keys of `ISSUER`, answered from memory; counts key-set fetches."""

    def __init__(self) -> None:
        super().__init__()
        self.key_fetches = 0

    async def call(self, method: str, url: str, what: str, **kwargs: Any) -> dict[str, Any]:
        if url == f"{ISSUER}/.well-known/openid-configuration":
            return {
                "issuer": ISSUER,
                "authorization_endpoint": f"{ISSUER}/auth",
                "token_endpoint": f"{ISSUER}/token",
                "jwks_uri": f"{ISSUER}/certs",
            }
        if url == f"{ISSUER}/certs":
            self.key_fetches += 1
            public = {k: v for k, v in JWK.items() if k in ("kty", "n", "e", "kid", "use", "alg")}
            return {"keys": [public]}
        raise AssertionError(f"unexpected request to {url}")


def sign(*, key: Any = None, headers: dict | None = None, **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": CLIENT_ID, "sub": "alice", "iat": now, "exp": now + 300}
    claims["nonce"] = "n-1"
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    private = key or jwt.PyJWK(JWK).key
    return jwt.encode(
        claims, private, algorithm="RS256", headers={"kid": "key-1", **(headers or {})}
    )


async def verify(token: str, provider: OpenIDProvider | None = None) -> dict[str, Any]:
    provider = provider or OpenIDProvider(ISSUER, MemoryHTTP())
    return await verify_id_token(token, provider, client_id=CLIENT_ID, nonce="n-1", leeway=5)


async def test_a_valid_token_passes():
    assert (await verify(sign()))["sub"] == "alice"


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": "https://evil.example/auth/realms/egi"}, "Invalid issuer"),
        ({"aud": "another-client"}, "(?i)audience"),
        ({"aud": ["another-client", CLIENT_ID]}, "azp"),
        ({"exp": int(time.time()) - 60}, "expired"),
        ({"iat": int(time.time()) + 3600}, "not yet valid"),
        ({"nonce": "n-2"}, "nonce"),
        ({"nonce": None}, "nonce"),
        ({"sub": None}, "sub"),
    ],
)
async def test_claims_that_do_not_fit_are_refused(overrides, reason):
    with pytest.raises(OIDCError, match=reason):
        await verify(sign(**overrides))


async def test_bad_signature_is_refused():
    other = jwt.PyJWK(rsa_jwk("key-1")).key
    with pytest.raises(OIDCError, match="Signature verification failed"):
        await verify(sign(key=other))


async def test_unknown_kid_is_refused_after_one_refetch():
    http = MemoryHTTP()
    provider = OpenIDProvider(ISSUER, http)
    await verify(sign(), provider)
    token = sign(key=jwt.PyJWK(rsa_jwk("gone")).key, headers={"kid": "gone"})
    with pytest.raises(OIDCError, match="no signing key with id 'gone'"):
        await verify(token, provider)
    # Made-up key ids in a burst: the key set is not fetched again within the gap.
    for _ in range(20):
        with pytest.raises(OIDCError):
            await verify(token, provider)
    assert http.key_fetches <= 2


async def test_alg_none_is_refused():
    token = jwt.encode({"sub": "alice", "iss": ISSUER}, None, algorithm="none")
    with pytest.raises(OIDCError, match="'none'"):
        await verify(token)


async def test_hs256_signed_with_the_public_key_is_refused():
    """The classic key-confusion forgery: HMAC keyed with the provider's public key."""
    public = jwt.PyJWK(JWK).key.public_key()
    pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = {"alg": "HS256", "kid": "key-1", "typ": "JWT"}
    payload = {"iss": ISSUER, "aud": CLIENT_ID, "sub": "alice", "nonce": "n-1"}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(OIDCError, match="'HS256'"):
        await verify(f"{signing_input}.{b64(signature)}")


def test_userinfo_about_another_subject_is_refused():
    with pytest.raises(OIDCError, match="sub differs"):
        merge_userinfo({"sub": "alice"}, {"sub": "mallory", "eduperson_entitlement": []})
    assert merge_userinfo({"sub": "a", "x": 1}, {"sub": "a", "y": 2}) == {
        "sub": "a",
        "x": 1,
        "y": 2,
    }


class FailingAfter(MemoryHTTP):
    """The endpoint whose URL ends with ``suffix`` fails (the provider down) after
    ``good`` answers; ``calls`` counts the requests it got."""

    def __init__(self, suffix: str, good: int = 0) -> None:
        super().__init__()
        self.suffix, self.good, self.calls = suffix, good, 0

    async def call(self, method: str, url: str, what: str, **kwargs: Any) -> dict[str, Any]:
        if url.endswith(self.suffix):
            self.calls += 1
            if self.calls > self.good:
                raise ProviderUnreachableError(f"{what} down")
        return await super().call(method, url, what, **kwargs)


async def test_a_failed_key_fetch_is_not_retried_by_every_waiting_request():
    http = FailingAfter("/certs")
    provider = OpenIDProvider(ISSUER, http)
    results = await asyncio.gather(
        *(verify(sign(), provider) for _ in range(50)), return_exceptions=True
    )
    assert all(isinstance(r, ProviderUnreachableError) for r in results)
    assert http.calls == 1


async def test_a_failed_discovery_is_not_retried_by_every_waiting_request():
    http = FailingAfter("/openid-configuration")
    provider = OpenIDProvider(ISSUER, http)
    results = await asyncio.gather(
        *(provider.metadata() for _ in range(20)), return_exceptions=True
    )
    assert all(isinstance(r, ProviderUnreachableError) for r in results)
    assert http.calls == 1


async def test_the_last_good_discovery_serves_while_the_provider_is_down():
    http = FailingAfter("/openid-configuration", good=1)
    provider = OpenIDProvider(ISSUER, http, cache_ttl=0)
    first = await provider.metadata()
    assert await provider.metadata() is first  # the fetch failed: the last good one
    assert http.calls == 2
