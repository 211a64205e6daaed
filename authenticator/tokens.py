"""Checking what an OpenID provider returns: ID tokens, userinfo, token expiry."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import jwt

from .errors import OIDCError
from .provider import SIGNING_ALGORITHMS, OpenIDProvider

__all__ = [
    "access_token_expiry",
    "finite_number",
    "merge_userinfo",
    "token_audiences",
    "verify_id_token",
    "verify_jwt",
]


async def verify_jwt(
    token: str,
    provider: OpenIDProvider,
    *,
    audience: str | None,
    algorithms: Sequence[str] = SIGNING_ALGORITHMS,
    leeway: float = 30,
    require: Sequence[str] = ("exp", "iat", "iss", "sub"),
) -> dict[str, Any]:
    """Verify a JWT signed by the provider: signature, ``iss``, ``aud``, ``exp``, ``iat``."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError as e:
        raise OIDCError(f"not a signed JWT: {e}") from e
    alg = header.get("alg")
    if alg not in algorithms:
        raise OIDCError(f"token signed with {alg!r}; allowed: {', '.join(algorithms)}")
    signing = await provider.signing_key(header.get("kid"))
    if signing.alg and signing.alg != alg:
        # A key published for one algorithm is never used with another.
        raise OIDCError(f"key {header.get('kid')!r} is for {signing.alg}, the token says {alg}")
    options = {"require": list(require), "verify_aud": audience is not None}
    try:
        claims = jwt.decode(
            token,
            key=signing.key.key,
            algorithms=[alg],
            audience=audience,
            issuer=provider.issuer,
            leeway=leeway,
            options=options,
        )
    except jwt.PyJWTError as e:
        raise OIDCError(f"token rejected: {e}") from e
    iat = claims.get("iat")
    if isinstance(iat, int | float) and iat > time.time() + leeway:
        raise OIDCError("token rejected: issued in the future")
    return claims


async def verify_id_token(
    token: str,
    provider: OpenIDProvider,
    *,
    client_id: str,
    nonce: str,
    algorithms: Sequence[str] = SIGNING_ALGORITHMS,
    leeway: float = 30,
) -> dict[str, Any]:
    """Verify an ID token (OpenID Connect Core 3.1.3.7), including its ``nonce``."""
    claims = await verify_jwt(
        token, provider, audience=client_id, algorithms=algorithms, leeway=leeway
    )
    if claims.get("nonce") != nonce:
        raise OIDCError("ID token rejected: nonce does not match this login")
    audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise OIDCError("ID token rejected: several audiences and azp is not this client")
    return claims


def token_audiences(claims: Mapping[str, Any]) -> set[str]:
    """The clients a token was issued to or for: its ``aud``, ``azp`` and ``client_id``."""
    aud = claims.get("aud")
    found = set(aud) if isinstance(aud, list) else {aud}
    found.update((claims.get("azp"), claims.get("client_id")))
    return {str(c) for c in found if isinstance(c, str) and c}


def merge_userinfo(id_claims: Mapping[str, Any], userinfo: Mapping[str, Any]) -> dict[str, Any]:
    """ID-token claims completed by userinfo; the two must be about the same subject."""
    if userinfo.get("sub") != id_claims.get("sub"):
        raise OIDCError("userinfo rejected: its sub differs from the ID token's")
    return {**id_claims, **userinfo}


def access_token_expiry(
    token_response: Mapping[str, Any], now: float | None = None
) -> float | None:
    """When the access token expires (epoch seconds): ``expires_in``, else its JWT ``exp``.

    Opaque tokens without ``expires_in`` have no known expiry (None).
    """
    now = time.time() if now is None else now
    expires_in = token_response.get("expires_in")
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool):
        # NaN, infinity, a negative or absurd value: unknown (refreshed at the next chance).
        seconds = finite_number(expires_in)
        return now + seconds if seconds is not None and seconds >= 0 else None
    token = token_response.get("access_token")
    if isinstance(token, str) and token.count(".") == 2:
        try:
            exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
        except jwt.PyJWTError:
            return None
        return finite_number(exp)
    return None


def finite_number(value: Any) -> float | None:
    """``value`` as a finite float; None for anything else (not a number, a boolean,
    NaN, infinity, an int too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None
