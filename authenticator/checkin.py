"""`CheckinAuthenticator`: EGI Check-in (or any OpenID Connect issuer) for JupyterHub.

Authorization-code flow with PKCE, ``state`` and ``nonce``; ID tokens verified against
the issuer's keys; VOs from ``eduperson_entitlement`` (`VOAccessMixin`); tokens kept in
encrypted ``auth_state`` and refreshed under a per-user lock (`RefreshMixin`); the
token exchange for scripts (`TokenExchangeMixin`); logout that ends the provider
session. Entry point: ``egi-checkin``.

A login is accepted in exactly two places: the OAuth callback (`CheckinCallbackHandler`)
and the token exchange endpoint (`TokenExchangeHandler`, with an `ExchangeRequest`).
JupyterHub's password form and its token API (``{"auth": {...}}``) reach
`authenticate` too; they are refused, whatever they send.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from jupyterhub.auth import Authenticator
from jupyterhub.utils import url_path_join
from tornado import web
from traitlets import Dict, Enum, Float, Integer, List, Unicode, default, validate

from .access import VOAccessMixin
from .api import AccessTokenHandler, TokenExchangeHandler
from .errors import InvalidGrantError, OIDCError, ProviderError, http_error
from .exchange import ExchangeRequest, TokenExchangeMixin
from .handlers import (
    CheckinCallbackHandler,
    CheckinLoginHandler,
    CheckinLogoutHandler,
    end_session_redirect,
)
from .http import ProviderHTTP
from .provider import SIGNING_ALGORITHMS, OpenIDProvider
from .refresh import RefreshMixin
from .tokens import access_token_expiry, merge_userinfo, verify_id_token
from .urls import local_next_url
from .usernames import username_from_claim

__all__ = ["CHECKIN_ISSUERS", "CheckinAuthenticator", "InvalidGrantError"]

CHECKIN_ISSUERS = {
    "production": "https://aai.egi.eu/auth/realms/egi",
    "demo": "https://aai-demo.egi.eu/auth/realms/egi",
    "development": "https://aai-dev.egi.eu/auth/realms/egi",
}
STATE_COOKIE = "egi-checkin-state"
STATE_MAX_AGE_DAYS = 10 / (24 * 60)  # a login must come back within 10 minutes


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class CheckinAuthenticator(TokenExchangeMixin, RefreshMixin, VOAccessMixin, Authenticator):
    """Log in with EGI Check-in or another OpenID Connect provider."""

    checkin_instance = Enum(
        list(CHECKIN_ISSUERS),
        default_value="production",
        help="Which EGI Check-in to use when `issuer` is not set: production, demo, development.",
    ).tag(config=True)

    issuer = Unicode(
        help="""
        The OpenID Connect issuer. Default: the issuer of `checkin_instance`
        (production: https://aai.egi.eu/auth/realms/egi). Its discovery document must
        name exactly this issuer.
        """,
    ).tag(config=True)

    @default("issuer")
    def _default_issuer(self) -> str:
        return CHECKIN_ISSUERS[self.checkin_instance]

    client_id = Unicode(
        help="OAuth client id registered at the provider. Default: $EGI_CHECKIN_CLIENT_ID.",
    ).tag(config=True)

    @default("client_id")
    def _default_client_id(self) -> str:
        return os.environ.get("EGI_CHECKIN_CLIENT_ID", "")

    client_secret = Unicode(
        help="OAuth client secret. Default: $EGI_CHECKIN_CLIENT_SECRET (keep it out of files).",
    ).tag(config=True)

    @default("client_secret")
    def _default_client_secret(self) -> str:
        return os.environ.get("EGI_CHECKIN_CLIENT_SECRET", "")

    scope = List(
        Unicode(),
        default_value=[
            "openid",
            "profile",
            "email",
            "eduperson_entitlement",
            "voperson_id",
            "offline_access",
        ],
        help="Scopes requested at login (offline_access gives the refresh token).",
    ).tag(config=True)

    extra_authorize_params = Dict(
        value_trait=Unicode(),
        help="""
        Extra parameters for the authorization request, e.g. ``{prompt: consent}`` for
        providers that only issue refresh tokens (offline_access) with explicit consent.
        """,
    ).tag(config=True)

    oauth_callback_url = Unicode(
        help="""
        The redirect URL registered at the provider. Default: derived from the request,
        ``<scheme>://<host><hub base>oauth_callback``.
        """,
    ).tag(config=True)

    authorization_endpoint = Unicode(help="Override the discovered endpoint.").tag(config=True)
    token_endpoint = Unicode(help="Override the discovered endpoint.").tag(config=True)
    userinfo_endpoint = Unicode(help="Override the discovered endpoint.").tag(config=True)
    end_session_endpoint = Unicode(help="Override the discovered endpoint.").tag(config=True)
    revocation_endpoint = Unicode(help="Override the discovered endpoint.").tag(config=True)
    introspection_endpoint = Unicode(help="Override the discovered endpoint.").tag(config=True)

    discovery_cache_ttl = Integer(
        3600, min=0, help="Seconds to keep the discovery document and the keys."
    ).tag(config=True)

    http_timeout = Float(10, min=0.1, help="Seconds before a request to the provider fails.").tag(
        config=True
    )

    signing_algorithms = List(
        Enum(list(SIGNING_ALGORITHMS)),
        default_value=list(SIGNING_ALGORITHMS),
        help="Accepted ID-token algorithms (asymmetric only; never none or HMAC).",
    ).tag(config=True)

    clock_skew = Integer(30, min=0, help="Seconds of leeway when checking exp, iat and nbf.").tag(
        config=True
    )

    username_claim = Unicode(
        "voperson_id",
        help="Claim that names the user (falls back to sub), normalised to a safe name.",
    ).tag(config=True)

    post_logout_redirect_url = Unicode(
        help="Where the provider sends the browser after logout. Default: the hub login page.",
    ).tag(config=True)

    @default("login_service")
    def _default_login_service(self) -> str:
        return "EGI Check-in"

    @default("manage_groups")
    def _default_manage_groups(self) -> bool:
        return True

    @default("enable_auth_state")
    def _default_enable_auth_state(self) -> bool:
        return True

    @default("auth_refresh_strict")
    def _default_auth_refresh_strict(self) -> bool:
        # A refresh that says "no" (refused, session over) holds for API tokens too.
        return True

    @default("allow_existing_users")
    def _default_allow_existing_users(self) -> bool:
        # Otherwise every user ever created joins allowed_users, which would then
        # admit them whatever their VOs (allowed_vos would stop refusing anyone).
        return False

    @default("refresh_pre_spawn")
    def _default_refresh_pre_spawn(self) -> bool:
        return True

    @validate("signing_algorithms")
    def _check_algorithms(self, proposal: Any) -> list[str]:
        if not proposal.value:
            raise ValueError("signing_algorithms: at least one algorithm is needed")
        return proposal.value

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._http: ProviderHTTP | None = None
        self._provider: OpenIDProvider | None = None

    # --- the provider ---------------------------------------------------------------

    @property
    def http(self) -> ProviderHTTP:
        if self._http is None:
            self._http = ProviderHTTP(timeout=self.http_timeout)
        return self._http

    @property
    def provider(self) -> OpenIDProvider:
        if self._provider is None:
            overrides = {
                name: getattr(self, name)
                for name in (
                    "authorization_endpoint",
                    "token_endpoint",
                    "userinfo_endpoint",
                    "end_session_endpoint",
                    "revocation_endpoint",
                    "introspection_endpoint",
                )
            }
            self._provider = OpenIDProvider(
                self.issuer, self.http, cache_ttl=self.discovery_cache_ttl, overrides=overrides
            )
        return self._provider

    def get_handlers(self, app: Any) -> list[tuple[str, type]]:
        from egi_hub.binder_service.guests import guest_handlers

        return [
            (r"/api/egi/token", AccessTokenHandler),
            (r"/api/egi/token-exchange", TokenExchangeHandler),
            (r"/oauth_login", CheckinLoginHandler),
            (r"/oauth_callback", CheckinCallbackHandler),
            (r"/logout", CheckinLogoutHandler),
            *guest_handlers(app),  # the Binder guest page, when the site lets guests in
        ]

    def login_url(self, base_url: str) -> str:
        return url_path_join(base_url, "oauth_login")

    def callback_url(self, handler: web.RequestHandler) -> str:
        if self.oauth_callback_url:
            return self.oauth_callback_url
        request = handler.request
        path = url_path_join(handler.hub.base_url, "oauth_callback")
        return f"{request.protocol}://{request.host}{path}"

    # --- login ----------------------------------------------------------------------

    async def authorization_url(self, handler: web.RequestHandler, next_url: str = "") -> str:
        """Start a login: remember state, nonce and PKCE verifier; the provider's URL."""
        endpoint = await self.provider.endpoint("authorization_endpoint")
        state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        verifier = secrets.token_urlsafe(64)
        next_url = local_next_url(next_url, handler.base_url)  # checked again at the end
        flow = {"state": state, "nonce": nonce, "verifier": verifier, "next": next_url}
        handler.set_secure_cookie(
            STATE_COOKIE,
            json.dumps(flow),
            expires_days=STATE_MAX_AGE_DAYS,
            path=handler.hub.base_url,
            httponly=True,
            samesite="Lax",
            secure=handler.request.protocol == "https",
        )
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.callback_url(handler),
            "scope": " ".join(self.scope),
            "state": state,
            "nonce": nonce,
            "code_challenge": _b64url(hashlib.sha256(verifier.encode()).digest()),
            "code_challenge_method": "S256",
            **self.extra_authorize_params,
        }
        separator = "&" if "?" in endpoint else "?"
        return f"{endpoint}{separator}{urlencode(params)}"

    def _take_flow(self, handler: web.RequestHandler) -> dict[str, str]:
        """The login's state cookie, checked against the callback and then cleared."""
        raw = handler.get_secure_cookie(STATE_COOKIE, max_age_days=STATE_MAX_AGE_DAYS)
        handler.clear_cookie(STATE_COOKIE, path=handler.hub.base_url)
        if raw is None:
            raise web.HTTPError(400, "Login refused: no login in progress (expired or replayed)")
        flow = json.loads(raw)
        # Bytes: compare_digest refuses str with non-ASCII characters (a 500, not a 400).
        expected = str(flow.get("state", "")).encode()
        if not secrets.compare_digest(expected, handler.get_argument("state", "").encode()):
            raise web.HTTPError(400, "Login refused: state does not match this login")
        handler._egi_checkin_next = flow.get("next", "")
        return flow

    def next_url_from_state(self, handler: web.RequestHandler) -> str:
        """The hub page the user wanted before logging in ("" if none, or not one)."""
        return local_next_url(getattr(handler, "_egi_checkin_next", ""), handler.base_url)

    async def token_request(self, data: dict[str, str]) -> dict[str, Any]:
        """POST to the token endpoint with client authentication; the JSON answer."""
        endpoint = await self.provider.endpoint("token_endpoint")
        body = await self.http.call(
            "POST", endpoint, "token endpoint", data=data, auth=(self.client_id, self.client_secret)
        )
        if not body.get("access_token"):
            raise ProviderError("the token endpoint answered without an access_token")
        return body

    async def userinfo(self, access_token: str) -> dict[str, Any]:
        """The userinfo claims for an access token ({} if the provider has no endpoint)."""
        endpoint = await self.provider.endpoint("userinfo_endpoint")
        if not endpoint:
            return {}
        return await self.http.call(
            "GET",
            endpoint,
            "userinfo endpoint",
            headers={"Authorization": f"Bearer {access_token}"},
            bearer=True,
        )

    async def authenticate(self, handler: web.RequestHandler, data: Any = None) -> dict[str, Any]:
        if isinstance(data, ExchangeRequest) and isinstance(handler, TokenExchangeHandler):
            return await self.authenticate_exchange(handler, data)
        if not isinstance(handler, CheckinCallbackHandler) or data is not None:
            # JupyterHub's login form and its token API ({"auth": ...}) end here.
            self.log.warning("Refused a login attempt outside the Check-in flow")
            raise web.HTTPError(
                403, "This hub signs in with EGI Check-in only: use the sign-in button"
            )
        return await self._authenticate_code(handler)

    async def _authenticate_code(self, handler: web.RequestHandler) -> dict[str, Any]:
        """Finish the code flow: tokens, verified ID token, userinfo, identity binding."""
        flow = self._take_flow(handler)
        code = handler.get_argument("code", "")
        if not code:
            raise web.HTTPError(400, "Login refused: no authorization code")
        try:
            tokens = await self.token_request(
                {
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": self.callback_url(handler),
                    "code_verifier": flow["verifier"],
                }
            )
            if "id_token" not in tokens:
                raise ProviderError("the provider sent no ID token (is 'openid' in the scope?)")
            id_claims = await verify_id_token(
                tokens["id_token"],
                self.provider,
                client_id=self.client_id,
                nonce=flow["nonce"],
                algorithms=self.signing_algorithms,
                leeway=self.clock_skew,
            )
            claims = merge_userinfo(id_claims, await self.userinfo(tokens["access_token"]))
        except OIDCError as e:
            self.log.warning("Check-in login failed: %s", e)
            raise http_error(e, prefix="Login refused: ") from None
        model = self.user_model(tokens, claims)
        await self.check_identity(handler, model["name"], self.provider.issuer, claims["sub"])
        return model

    # --- users, VOs and tokens ------------------------------------------------------

    def username_for(self, claims: dict[str, Any]) -> str:
        """The hub username for verified claims: `username_claim`, else ``sub``."""
        return username_from_claim(str(claims.get(self.username_claim) or claims["sub"]))

    def token_fields(
        self, tokens: dict[str, Any], previous: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The auth_state entries for a token response (refresh and ID token kept if absent)."""
        previous = previous or {}
        now = time.time()
        return {
            "access_token": tokens["access_token"],
            "refresh_token": tokens.get("refresh_token") or previous.get("refresh_token"),
            "id_token": tokens.get("id_token") or previous.get("id_token"),
            "token_type": tokens.get("token_type", "Bearer"),
            "scope": tokens.get("scope", " ".join(self.scope)),
            "issued_at": now,
            "expires_at": access_token_expiry(tokens, now),
        }

    def user_model(
        self, tokens: dict[str, Any], claims: dict[str, Any], previous: dict | None = None
    ) -> dict[str, Any]:
        """The JupyterHub user model for a verified token response and its claims."""
        username = self.username_for(claims)
        context = self.user_context(username, claims.get("eduperson_entitlement"))
        tokens_state = self.token_fields(tokens, previous)
        return self.vo_model(
            username, context, self.provider.issuer, claims["sub"], tokens_state, time.time()
        )

    def check_allow_config(self) -> None:
        # Called by JupyterHub at start-up: a hub that cannot log anyone in stops here.
        if not self.client_id:
            raise ValueError(
                "CheckinAuthenticator.client_id is not set (nor $EGI_CHECKIN_CLIENT_ID): "
                "register the hub as a client of the issuer first"
            )
        super().check_allow_config()

    # --- logout ---------------------------------------------------------------------

    async def revoke_refresh_token(self, refresh_token: str | None) -> None:
        """Revoke a refresh token at the provider, best effort (logged when it fails)."""
        if not refresh_token:
            return
        try:
            revocation = await self.provider.endpoint("revocation_endpoint")
            if revocation:
                await self.http.call(
                    "POST",
                    revocation,
                    "revocation endpoint",
                    data={"token": refresh_token, "token_type_hint": "refresh_token"},
                    auth=(self.client_id, self.client_secret),
                    empty_ok=True,
                )
        except OIDCError as e:
            self.log.warning("Could not revoke a refresh token: %s", e)

    async def end_provider_session(
        self, handler: web.RequestHandler, auth_state: dict[str, Any]
    ) -> str | None:
        """Revoke the refresh token; the URL that ends the provider session (or None)."""
        await self.revoke_refresh_token(auth_state.get("refresh_token"))
        try:
            end_session = await self.provider.endpoint("end_session_endpoint")
        except OIDCError as e:
            self.log.warning("Check-in unavailable at logout: %s", e)
            return None
        if not end_session:
            return None
        after = self.post_logout_redirect_url
        if not after:
            request = handler.request
            after = f"{request.protocol}://{request.host}{handler.settings['login_url']}"
        return end_session_redirect(end_session, auth_state.get("id_token"), after, self.client_id)
