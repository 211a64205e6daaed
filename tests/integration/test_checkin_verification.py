"""ID-token verification against a real provider's keys: every forgery is refused."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from egi_hub.authenticator.http import ProviderHTTP
from egi_hub.authenticator.provider import OIDCError, OpenIDProvider
from egi_hub.authenticator.tokens import merge_userinfo, verify_id_token

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


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": "https://evil.example/auth/realms/egi"}, "Invalid issuer"),
        ({"aud": "another-client"}, "(?i)audience"),
        ({"exp": int(time.time()) - 60}, "expired"),
        ({"iat": int(time.time()) + 3600}, "not yet valid"),
        ({"nonce": "n-2"}, "nonce"),
    ],
)
async def test_claims_that_do_not_fit_are_refused(provider, overrides, reason):
    with pytest.raises(OIDCError, match=reason):
        await verify(provider, sign(provider, **overrides))


async def test_missing_nonce_is_refused(provider):
    token = sign(provider, nonce=None)
    with pytest.raises(OIDCError, match="nonce"):
        await verify(provider, token)


async def test_bad_signature_is_refused(provider):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(OIDCError, match="Signature verification failed"):
        await verify(provider, sign(provider, key=other))


async def test_unknown_kid_is_refused_after_refetch(provider):
    other = jwt.PyJWK(rsa_jwk("rotated-away")).key
    token = sign(provider, key=other, headers={"kid": "rotated-away"})
    with pytest.raises(OIDCError, match="no signing key with id 'rotated-away'"):
        await verify(provider, token)


async def test_alg_none_is_refused(provider):
    token = jwt.encode({"sub": "alice", "iss": provider.issuer}, None, algorithm="none")
    with pytest.raises(OIDCError, match="'none'"):
        await verify(provider, token)


async def test_hs256_signed_with_the_public_key_is_refused(provider):
    """The classic key-confusion forgery: HMAC keyed with the provider's public key."""
    public = jwt.PyJWK(provider.signing_jwk).key.public_key()
    pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = {"alg": "HS256", "kid": "test-key-1", "typ": "JWT"}
    payload = {"iss": provider.issuer, "aud": CLIENT_ID, "sub": "alice", "nonce": "n-1"}
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(OIDCError, match="'HS256'"):
        await verify(provider, f"{signing_input}.{b64(signature)}")


def test_userinfo_about_another_subject_is_refused():
    with pytest.raises(OIDCError, match="sub differs"):
        merge_userinfo({"sub": "alice"}, {"sub": "mallory", "eduperson_entitlement": []})
    assert merge_userinfo({"sub": "a", "x": 1}, {"sub": "a", "y": 2}) == {
        "sub": "a",
        "x": 1,
        "y": 2,
    }


async def test_discovery_naming_another_issuer_is_refused_stand_in():
    """A stand-in for a misconfigured provider: its discovery names another issuer."""
    with json_standin(lambda request: {"issuer": "https://aai.egi.eu/auth/realms/egi"}) as url:
        with pytest.raises(OIDCError, match="names the issuer"):
            await OpenIDProvider(f"{url}/auth/realms/egi", ProviderHTTP()).metadata()


async def test_discovery_is_cached(provider):
    oidc = OpenIDProvider(provider.issuer, ProviderHTTP(), cache_ttl=60)
    first = await oidc.metadata()
    assert await oidc.metadata() is first
