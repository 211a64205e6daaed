"""Hub pages of the Check-in login: start, callback, logout."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlencode

from jupyterhub.handlers import BaseHandler
from jupyterhub.handlers.login import LogoutHandler
from tornado import web

from .errors import OIDCError, ProviderUnavailableError

if TYPE_CHECKING:
    from .checkin import CheckinAuthenticator

__all__ = [
    "CheckinCallbackHandler",
    "CheckinLoginHandler",
    "CheckinLogoutHandler",
    "end_session_redirect",
]


class CheckinLoginHandler(BaseHandler):
    """``/hub/oauth_login``: send the browser to the provider (code flow with PKCE)."""

    async def get(self) -> None:
        authenticator: CheckinAuthenticator = self.authenticator
        try:
            url = await authenticator.authorization_url(self, self.get_argument("next", ""))
        except OIDCError as e:
            self.log.error("Check-in login cannot start: %s", e)
            raise ProviderUnavailableError(e) from None
        self.redirect(url)


class CheckinCallbackHandler(BaseHandler):
    """``/hub/oauth_callback``: finish the login the provider sends back."""

    def append_query_parameters(self, url: str, exclude: list[str] | None = None) -> str:
        # The callback's parameters (code, state, iss) never travel on to the next page.
        return url

    async def get(self) -> None:
        error = self.get_argument("error", None)
        if error:
            description = self.get_argument("error_description", "")
            raise web.HTTPError(403, "%s", f"Check-in refused the login: {error} {description}")
        user = await self.login_user()
        if user is None:
            raise web.HTTPError(403, "Login refused")
        authenticator: CheckinAuthenticator = self.authenticator
        next_url = authenticator.next_url_from_state(self)
        self.redirect(next_url or self.get_next_url(user))


class CheckinLogoutHandler(LogoutHandler):
    """Logout that also ends the Check-in session (RP-initiated logout)."""

    _end_session_url: str | None = None

    async def handle_logout(self) -> None:
        user = self.current_user
        if user is None:
            return
        authenticator: CheckinAuthenticator = self.authenticator
        auth_state = await user.get_auth_state() or {}
        self._end_session_url = await authenticator.end_provider_session(self, auth_state)
        # Tokens go, and every browser session of the user ends (Check-in's session
        # ends too); the VOs last confirmed stay for API tokens, a limited time.
        await authenticator.end_session(user, auth_state)

    async def render_logout_page(self) -> None:
        if self._end_session_url:
            self.redirect(self._end_session_url)
        else:
            await super().render_logout_page()


def end_session_redirect(endpoint: str, id_token: str | None, after: str, client_id: str) -> str:
    """The URL that ends the provider session and comes back to ``after``."""
    params = {"post_logout_redirect_uri": after, "client_id": client_id}
    if id_token:
        params["id_token_hint"] = id_token
    separator = "&" if "?" in endpoint else "?"
    return f"{endpoint}{separator}{urlencode(params)}"
