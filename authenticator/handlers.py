"""Hub pages of the Check-in login: start, callback, logout; and the VO refusal."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING
from urllib.parse import urlencode

from jupyterhub.handlers import BaseHandler
from jupyterhub.handlers.login import LogoutHandler
from tornado import web

from egi_hub.vo import parse_rule

from .provider import OIDCError

if TYPE_CHECKING:
    from .checkin import CheckinAuthenticator

__all__ = [
    "CheckinCallbackHandler",
    "CheckinLoginHandler",
    "CheckinLogoutHandler",
    "ProviderUnavailableError",
    "VORefusedError",
]


class ProviderUnavailableError(web.HTTPError):
    """The identity provider could not be used (down, or its answers are wrong)."""

    def __init__(self, error: OIDCError) -> None:
        message = f"EGI Check-in cannot be used right now, please try again later ({error})"
        super().__init__(503, "%s", message, reason="EGI Check-in unavailable")
        self.jupyterhub_message = message


class VORefusedError(web.HTTPError):
    """A user who is in none of the VOs that give access (403, with enrolment links)."""

    def __init__(self, username: str, rules: list[str], enrolment_urls: dict[str, str]) -> None:
        names = ", ".join(rules)
        message = (
            f"{username} is not a member of a VO that may use this service. "
            f"Membership of one of these gives access: {names}."
        )
        super().__init__(403, "%s", message, reason="Not a member of an allowed VO")
        self.jupyterhub_message = message
        items = []
        for rule in rules:
            vo = parse_rule(rule).vo
            url = enrolment_urls.get(rule) or enrolment_urls.get(vo)
            text = html.escape(rule)
            if url:
                link = f'<a href="{html.escape(url, quote=True)}">enrol in {text}</a>'
                items.append(f'<li class="egi-vo">{text}: {link}</li>')
            else:
                items.append(f'<li class="egi-vo">{text}</li>')
        self.jupyterhub_html_message = (
            f"<p>Your account ({html.escape(username)}) is not a member of a Virtual "
            "Organisation that may use this service. Membership of one of these gives "
            f'access:</p><ul id="egi-vo-enrolment">{"".join(items)}</ul>'
            "<p>Once your membership is approved, sign in again.</p>"
        )


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
        await user.save_auth_state(None)

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
