"""Token exchange for `CheckinAuthenticator`: a Check-in access token for a hub user.

Scripts and workflow engines that hold a Check-in access token get a hub API token
without a browser (`egi_hub.authenticator.api.TokenExchangeHandler`). The token is
verified as a JWT against the issuer's keys, or by introspection when it is opaque;
userinfo completes the claims; the login's own rules then apply.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from tornado import web
from traitlets import Integer, List, Unicode
from traitlets.config import LoggingConfigurable

from .handlers import ProviderUnavailableError
from .provider_errors import OIDCError, ProviderUnreachableError
from .tokens import merge_userinfo, verify_jwt

__all__ = ["TokenExchangeMixin"]


class TokenExchangeMixin(LoggingConfigurable):
    """Verifying access tokens presented by scripts (needs the authenticator's provider)."""

    token_exchange_scopes = List(
        Unicode(),
        default_value=["self"],
        help="Scopes of the hub API tokens that /hub/api/egi/token-exchange hands out.",
    ).tag(config=True)

    token_exchange_audiences = List(
        Unicode(),
        help="""
        If set, a JWT access token presented for exchange must name one of these
        audiences. Empty: any audience (the issuer and signature are still checked).
        """,
    ).tag(config=True)

    token_exchange_cache_ttl = Integer(
        60, min=0, help="Seconds to remember a verified access token (or an introspection)."
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._verified_tokens: dict[str, tuple[dict[str, Any], float]] = {}

    async def verify_access_token(self, token: str) -> dict[str, Any]:
        """Claims of a Check-in access token presented by a script; `OIDCError` if invalid.

        A JWT is verified against the provider's keys; an opaque token is introspected.
        Either way its ``exp`` must be known and in the future, and userinfo (fetched
        with the token) completes the claims. Results are cached briefly.
        """
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        cached = self._verified_tokens.get(key)
        if cached and cached[1] > now:
            return cached[0]
        if token.count(".") == 2:
            claims = await verify_jwt(
                token,
                self.provider,
                audience=None,
                algorithms=self.signing_algorithms,
                leeway=self.clock_skew,
            )
            audiences = claims.get("aud") or []
            audiences = audiences if isinstance(audiences, list) else [audiences]
            if self.token_exchange_audiences and not set(audiences) & set(
                self.token_exchange_audiences
            ):
                raise OIDCError("access token rejected: not meant for this hub (aud)")
        else:
            claims = await self.introspect(token)
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp <= time.time():
            raise OIDCError("access token rejected: expired, or its expiry is unknown")
        claims = merge_userinfo(claims, await self.userinfo(token))
        claims["exp"] = exp
        for old in [k for k, (_, until) in self._verified_tokens.items() if until <= now]:
            del self._verified_tokens[old]
        ttl = min(self.token_exchange_cache_ttl, exp - time.time())
        self._verified_tokens[key] = (claims, now + ttl)
        return claims

    async def introspect(self, token: str) -> dict[str, Any]:
        endpoint = await self.provider.endpoint("introspection_endpoint")
        if not endpoint:
            raise OIDCError("opaque access token, and the provider offers no introspection")
        response = await self.http.post(
            endpoint, {"token": token}, auth=(self.client_id, self.client_secret)
        )
        if response.status != 200:
            raise OIDCError(f"introspection endpoint answered HTTP {response.status}")
        result = response.json()
        if result.get("active") is not True:
            raise OIDCError("access token rejected: not active")
        if result.get("iss") and result["iss"].rstrip("/") != self.provider.issuer:
            raise OIDCError("access token rejected: issued by another issuer")
        return result

    async def _authenticate_access_token(self, token: str) -> dict[str, Any]:
        try:
            claims = await self.verify_access_token(token)
        except ProviderUnreachableError as e:
            raise ProviderUnavailableError(e) from None
        except OIDCError as e:
            raise web.HTTPError(401, "%s", str(e)) from None
        tokens = {"access_token": token, "expires_in": claims["exp"] - time.time()}
        model = self.user_model(tokens, claims)
        model["auth_state"]["expires_at"] = claims["exp"]
        return model
