"""Hub API of the Check-in login: fresh access tokens for servers, token exchange."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.user import User
from tornado import web

from egi_hub.token import ACCESS_TOKEN_SCOPE

if TYPE_CHECKING:
    from .checkin import CheckinAuthenticator

__all__ = ["AccessTokenHandler"]


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
