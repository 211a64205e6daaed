"""ID-token verification against a real provider's keys.

The forgery catalogue (claims, algorithms, key confusion) runs in the unit lane with keys
made in the test (``tests/unit/test_token_forgery.py``); here the real provider's keys.
"""

from __future__ import annotations

import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from egi_hub.authenticator.http import ProviderHTTP
from egi_hub.authenticator.provider import OIDCError, OpenIDProvider
from egi_hub.authenticator.tokens import verify_id_token
from tests.oidcprovider import CLIENT_ID, rsa_jwk, start_provider
from tests.standins import json_standin


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    p = start_provider(tmp_path_factory.mktemp("oidc"), "http://127.0.0.1:9")
    yield p
    p.stop()


def sign(provider, *, key=None, headers=None, **overrides) -> str:
    now = int(time.time())
    claims = {
        "iss": provider.issuer,
        "aud": CLIENT_ID,
        "sub": "alice",
        "iat": now,
        "exp": now + 300,
        "nonce": "n-1",
        **overrides,
    }
    private = key or jwt.PyJWK(provider.signing_jwk).key
    return jwt.encode(
        claims, private, algorithm="RS256", headers={"kid": "test-key-1", **(headers or {})}
    )


async def verify(provider, token, nonce="n-1"):
    oidc = OpenIDProvider(provider.issuer, ProviderHTTP())
    return await verify_id_token(token, oidc, client_id=CLIENT_ID, nonce=nonce, leeway=5)


async def test_a_valid_token_passes(provider):
    claims = await verify(provider, sign(provider))
    assert claims["sub"] == "alice"


async def test_unknown_kid_is_refused_after_refetch(provider):
    other = jwt.PyJWK(rsa_jwk("rotated-away")).key
    token = sign(provider, key=other, headers={"kid": "rotated-away"})
    with pytest.raises(OIDCError, match="no signing key with id 'rotated-away'"):
        await verify(provider, token)


async def test_another_key_is_refused(provider):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(OIDCError, match="Signature verification failed"):
        await verify(provider, sign(provider, key=other))


async def test_discovery_naming_another_issuer_is_refused_stand_in():
    """A stand-in for a misconfigured provider: its discovery names another issuer."""
    with json_standin(lambda request: {"issuer": "https://aai.egi.eu/auth/realms/egi"}) as url:
        with pytest.raises(OIDCError, match="names the issuer"):
            await OpenIDProvider(f"{url}/auth/realms/egi", ProviderHTTP()).metadata()


async def test_discovery_is_cached(provider):
    oidc = OpenIDProvider(provider.issuer, ProviderHTTP(), cache_ttl=60)
    first = await oidc.metadata()
    assert await oidc.metadata() is first
