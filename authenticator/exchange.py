"""Token exchange for `CheckinAuthenticator`: a Check-in access token for a hub API token.

Scripts and workflow engines that hold a Check-in access token get a hub API token
without a browser (``POST /hub/api/egi/token-exchange``,
`egi_hub.authenticator.api.TokenExchangeHandler`). Only that handler can start an
exchange: it passes an `ExchangeRequest`, a type no form or JSON body can produce, so a
login form or the hub's token API never treats a field as a Check-in token.

A token is accepted only when it was issued to this hub (``aud``, ``azp`` or
``client_id`` is the hub's ``client_id``) or to a client the site lists in
`token_exchange_clients`; the same rule holds for JWTs (verified against the issuer's
keys) and for opaque tokens (introspected). Refusals are cached briefly, so junk tokens
cannot make the hub call the provider for each one. The exchange never touches the
tokens a browser login stored: it only updates the user's VOs.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from traitlets import Integer, List, Unicode
from traitlets.config import LoggingConfigurable

from egi_hub.config import TraitPathError, describe, expect

from .errors import OIDCError, ProviderError, TokenRefusedError, http_error
from .tokens import finite_number, merge_userinfo, token_audiences, verify_jwt

__all__ = [
    "DEFAULT_EXCHANGE_SCOPES",
    "ExchangeRequest",
    "ExchangeScopes",
    "TokenExchangeMixin",
    "exchange_note",
]

# Read one's own user, start and stop one's own servers. Not access:servers: code run
# in a server can read the server's API token, which outlives the exchanged token.
DEFAULT_EXCHANGE_SCOPES = ["read:users!user", "servers!user", "users:activity!user"]
# What an exchanged token may carry: the user's own model, servers and activity.
EXCHANGE_SCOPES = frozenset(
    {
        "read:users",
        "read:users:name",
        "read:users:groups",
        "read:users:activity",
        "users:activity",
        "read:servers",
        "servers",
        "start:servers",
        "delete:servers",
        "access:servers",
    }
)
EXCHANGE_NOTE = "egi-hub token exchange"  # and the digest of the Check-in token
REFUSAL_TTL = 10.0  # seconds to remember that a token was refused
MAX_CACHED = 10_000  # verified or refused tokens remembered at once (oldest dropped)
# The "typ" of access tokens (Keycloak/Check-in: Bearer; RFC 9068: at+jwt); an ID
# token ("ID") or anything else is refused. Tokens without "typ" are judged as usual.
ACCESS_TOKEN_TYPES = ("bearer", "at+jwt", "application/at+jwt", "access_token")
VERIFIED_AT = "egi_hub_verified_at"  # added to the claims: when the provider said so
MAX_EXCHANGE_LIFETIME = 12 * 3600  # seconds; Check-in's access tokens live far less


@dataclass
class ExchangeRequest:
    """An exchange asked for by `TokenExchangeHandler` (never built from user input)."""

    token: str
    expires_at: float | None = None


def _token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def exchange_note(token: str) -> str:
    """The note of the hub token that one Check-in token was exchanged for."""
    return f"{EXCHANGE_NOTE} {_token_key(token)[:16]}"


class ExchangeScopes(List):
    """Scopes for exchanged tokens: a user's own, from an allow-list, each filtered.

    Never a scope that creates tokens, shares servers, or acts as admin (those would
    let an exchanged token outlive the Check-in token it came from, or reach other
    users). Each is filtered ``!user``: the token's own user only.
    """

    info_text = "a list of hub scopes"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(Unicode(), **kwargs)

    def validate(self, obj: Any, value: Any) -> list[str]:
        values = expect(value, list | tuple, "", "a list of scopes")
        for i, scope in enumerate(values):
            if not isinstance(scope, str) or not scope:
                raise TraitPathError(f"[{i}]", f"expected a scope, got {describe(scope)}")
            base, bang, where = scope.partition("!")
            if base not in EXCHANGE_SCOPES:
                raise TraitPathError(
                    f"[{i}]",
                    f"{scope!r} is not a scope an exchanged token may carry (scopes that "
                    "create tokens, share servers or act as admin never are); allowed: "
                    + ", ".join(sorted(EXCHANGE_SCOPES)),
                )
            if not bang or where != "user":
                raise TraitPathError(
                    f"[{i}]",
                    f"{scope!r} needs the filter !user (the token's own user; unfiltered "
                    f"it would reach every user for an admin): write {base}!user",
                )
        return super().validate(obj, list(values))


class ClientIds(List):
    """OAuth client ids, each named: there is no wildcard ("any client" is never safe)."""

    info_text = "a list of OAuth client ids"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(Unicode(), **kwargs)

    def validate(self, obj: Any, value: Any) -> list[str]:
        values = expect(value, list | tuple, "", "a list of client ids")
        for i, client in enumerate(values):
            if not isinstance(client, str) or not client.strip() or client == "*":
                raise TraitPathError(
                    f"[{i}]", f"expected a client id (no wildcard), got {describe(client)}"
                )
        return super().validate(obj, list(values))


class TokenExchangeMixin(LoggingConfigurable):
    """Verifying access tokens presented by scripts (needs the authenticator's provider)."""

    token_exchange_scopes = ExchangeScopes(
        default_value=DEFAULT_EXCHANGE_SCOPES,
        help="""
        Scopes of the hub API tokens that /hub/api/egi/token-exchange hands out.
        Default: read one's own user model, start and stop one's own servers, report
        activity. Only the user's own model, servers and activity may be given, each
        with the filter !user: never scopes that create tokens, share servers or act
        as admin, so an exchanged token cannot outlive the Check-in token it came
        from. Adding access:servers!user lets scripts use their servers, where code
        can read the server's own (longer-lived) API token: a site's choice.
        """,
    ).tag(config=True)

    token_exchange_clients = ClientIds(
        help="""
        OAuth clients, besides this hub's own client_id, whose Check-in access tokens
        may be exchanged (for example the site's token portal or an oidc-agent
        client). A token is accepted only when its aud, azp or client_id names the
        hub or one of these. Default: none.
        """,
    ).tag(config=True)

    token_exchange_cache_ttl = Integer(
        60, min=0, help="Seconds to remember a verified access token (or an introspection)."
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._verified_tokens: OrderedDict[str, tuple[dict[str, Any], float]] = OrderedDict()
        self._refused_tokens: OrderedDict[str, tuple[str, float]] = OrderedDict()

    @property
    def exchange_clients(self) -> set[str]:
        """Client ids whose tokens this hub exchanges: its own, and the allow-list."""
        return {self.client_id, *self.token_exchange_clients} - {""}

    def _check_client(self, claims: dict[str, Any]) -> None:
        issued_to = token_audiences(claims)
        if not issued_to & self.exchange_clients:
            named = ", ".join(sorted(issued_to)) or "no client"
            raise TokenRefusedError(
                f"access token rejected: issued to {named}, not to this hub "
                "(CheckinAuthenticator.token_exchange_clients lists the others accepted)"
            )

    @staticmethod
    def _remember(
        cache: OrderedDict[str, tuple[Any, float]], key: str, value: Any, until: float
    ) -> None:
        cache.pop(key, None)
        cache[key] = (value, until)
        while len(cache) > MAX_CACHED:
            cache.popitem(last=False)  # the oldest entry, in constant time

    async def verify_access_token(self, token: str, fresh: bool = False) -> dict[str, Any]:
        """Claims of a Check-in access token presented by a script; `OIDCError` if invalid.

        A JWT is verified against the provider's keys; an opaque token is introspected.
        Either way it must be issued to an accepted client, its ``exp`` must be known
        and in the future, and userinfo (fetched with the token) completes the claims.
        Results, refusals included, are cached briefly (``fresh`` skips the cache of
        verified tokens); a provider that is down or unusable is not a refusal and is
        never cached. ``VERIFIED_AT`` in the claims says when the provider confirmed
        them.
        """
        key = _token_key(token)
        now = time.monotonic()
        cached = self._verified_tokens.get(key)
        if cached and cached[1] > now and not fresh:
            return cached[0]
        refused = self._refused_tokens.get(key)
        if refused and refused[1] > now:
            raise TokenRefusedError(refused[0])
        try:
            claims = await self._verify(token)
        except ProviderError:
            raise  # the provider's trouble (503), not the token's: never remembered
        except OIDCError as e:
            self._remember(self._refused_tokens, key, str(e), now + REFUSAL_TTL)
            raise TokenRefusedError(str(e)) from None
        ttl = min(self.token_exchange_cache_ttl, claims["exp"] - time.time())
        self._remember(self._verified_tokens, key, claims, now + ttl)
        return claims

    async def _verify(self, token: str) -> dict[str, Any]:
        if token.count(".") == 2:
            claims = await verify_jwt(
                token,
                self.provider,
                audience=None,  # checked below, with azp and client_id too
                algorithms=self.signing_algorithms,
                leeway=self.clock_skew,
            )
        else:
            claims = await self.introspect(token)
        if "typ" in claims and str(claims["typ"]).lower() not in ACCESS_TOKEN_TYPES:
            raise TokenRefusedError(f"not an access token (typ {claims['typ']!r})")
        self._check_client(claims)
        exp = finite_number(claims.get("exp"))
        now = time.time()
        if exp is None:
            raise TokenRefusedError("access token rejected: its expiry is unknown")
        if exp <= now:
            raise TokenRefusedError("access token rejected: expired")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise TokenRefusedError("access token rejected: it names no subject")
        claims = merge_userinfo(claims, await self.userinfo(token))
        claims[VERIFIED_AT] = now
        # A provider's far-future expiry never makes a hub token live that long.
        claims["exp"] = min(exp, now + MAX_EXCHANGE_LIFETIME)
        return claims

    async def introspect(self, token: str) -> dict[str, Any]:
        """RFC 7662 introspection of an opaque token, as this hub's client."""
        endpoint = await self.provider.endpoint("introspection_endpoint")
        if not endpoint:
            raise OIDCError("opaque access token, and the provider offers no introspection")
        result = await self.http.call(
            "POST",
            endpoint,
            "introspection endpoint",
            data={"token": token},
            auth=(self.client_id, self.client_secret),
        )
        if result.get("active") is not True:
            raise TokenRefusedError("access token rejected: not active")
        if result.get("iss") and str(result["iss"]).rstrip("/") != self.provider.issuer:
            raise TokenRefusedError("access token rejected: issued by another issuer")
        return result

    async def _verified_or_401(self, token: str, fresh: bool = False) -> dict[str, Any]:
        """`verify_access_token`, its refusals as 401 (503 for provider trouble)."""
        try:
            return await self.verify_access_token(token, fresh=fresh)
        except OIDCError as e:
            raise http_error(e, refused_status=401) from None

    async def authenticate_exchange(self, handler: Any, request: ExchangeRequest) -> dict[str, Any]:
        """The user model for an exchanged token: VOs updated, browser tokens kept."""
        claims = await self._verified_or_401(request.token)
        username = self.username_for(claims)
        issuer = self.provider.issuer
        await self.check_identity(handler, username, issuer, claims["sub"])
        existing = handler.find_user(username)
        previous = (await existing.get_auth_state() or {}) if existing else {}
        if previous.pop("refused", None) and claims[VERIFIED_AT] < time.time() - 1:
            # Refused since these claims were cached: only the provider may say again.
            claims = await self._verified_or_401(request.token, fresh=True)
        request.expires_at = float(claims["exp"])
        context = self.user_context(username, claims.get("eduperson_entitlement"))
        return self.vo_model(
            username, context, issuer, claims["sub"], previous, claims[VERIFIED_AT]
        )
