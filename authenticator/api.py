"""Hub API of the Check-in login: fresh access tokens for servers, token exchange."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.user import User
from tornado import web

from egi_hub.singleuser_config import ACCESS_TOKEN_SCOPE

from .exchange import ExchangeRequest, exchange_note

if TYPE_CHECKING:
    from .checkin import CheckinAuthenticator

__all__ = ["AccessTokenHandler", "TokenExchangeHandler"]


class AccessTokenHandler(APIHandler):
    """``GET /hub/api/egi/token``: the caller's own fresh Check-in access token.

    Only a user's own token with the `ACCESS_TOKEN_SCOPE` scope (a server's
    ``$JUPYTERHUB_API_TOKEN``) gets an answer, about that user alone. The refresh
    token never leaves the hub.
    """

    async def get(self) -> None:
        user = self.current_user
        if not isinstance(user, User):
            raise web.HTTPError(403, "Only a user's own server may read its access token")
        allowed = self.get_scope_filter(ACCESS_TOKEN_SCOPE)
        if not allowed(user.orm_user, kind="user"):
            raise web.HTTPError(403, f"This token lacks the scope {ACCESS_TOKEN_SCOPE}")
        user = await self.refresh_auth(user, force=True)
        if user is None:
            raise web.HTTPError(401, "The Check-in session has ended: log in again")
        auth_state = await user.get_auth_state() or {}
        if not auth_state.get("access_token"):
            raise web.HTTPError(404, "No Check-in access token for this user")
        expires_at = auth_state.get("expires_at")
        if isinstance(expires_at, int | float) and expires_at <= time.time():
            # No refresh token (the provider gave none): only a new login helps.
            raise web.HTTPError(401, "The Check-in access token has expired: log in again")
        authenticator: CheckinAuthenticator = self.authenticator
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(
            json.dumps(
                {
                    "access_token": auth_state["access_token"],
                    "token_type": auth_state.get("token_type", "Bearer"),
                    "expires_at": auth_state.get("expires_at"),
                    "issuer": authenticator.issuer,
                }
            )
        )


class TokenExchangeHandler(APIHandler):
    """``POST /hub/api/egi/token-exchange``: a Check-in access token for a hub API token.

    For scripts and workflow engines, without a browser: ``Authorization: Bearer
    <Check-in access token>``. The token is verified (JWT signature or introspection),
    the user is created or updated exactly as a login would (same VO rules, same
    refusals), and the answer is a hub API token that expires no later than the
    Check-in token, with the site's `CheckinAuthenticator.token_exchange_scopes`
    (which never allow creating tokens). Exchanging the same Check-in token again
    replaces the hub token it gave before; tokens a browser login stored are kept.
    """

    def check_xsrf_cookie(self) -> None:
        # The bearer token is the credential; no cookie is used or set.
        return None

    def get_current_user_cookie(self) -> None:
        return None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        if status_code == 401:  # set here: tornado clears headers before an error page
            self.set_header("WWW-Authenticate", self._www_authenticate)
        super().write_error(status_code, **kwargs)

    _www_authenticate = 'Bearer realm="egi-hub"'

    async def post(self) -> None:
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise web.HTTPError(401, "Send the Check-in access token as 'Authorization: Bearer'")
        authenticator: CheckinAuthenticator = self.authenticator
        request = ExchangeRequest(token)
        try:
            authenticated = await authenticator.get_authenticated_user(self, request)
        except web.HTTPError as e:
            if e.status_code == 401:
                self._www_authenticate = 'Bearer realm="egi-hub", error="invalid_token"'
            raise
        if authenticated is None or request.expires_at is None:
            raise web.HTTPError(403, "This Check-in user may not use this hub")
        expires_in = int(request.expires_at - time.time())
        if expires_in < 1:
            raise web.HTTPError(401, "The Check-in access token has expired")
        user = await self.auth_to_user(authenticated)
        # One hub token per Check-in token: a new exchange replaces the previous one.
        note = exchange_note(token)
        for old in [t for t in user.orm_user.api_tokens if t.note == note]:
            self.db.delete(old)
        self.db.commit()
        api_token = user.new_api_token(
            note=note,
            expires_in=expires_in,
            scopes=list(authenticator.token_exchange_scopes),
        )
        self.set_status(201)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(
            json.dumps(
                {
                    "token": api_token,
                    "user": user.name,
                    "scopes": list(authenticator.token_exchange_scopes),
                    "expires_at": datetime.fromtimestamp(time.time() + expires_in, UTC).isoformat(),
                }
            )
        )
