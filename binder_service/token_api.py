"""The JSON API through which users give, list and remove their own access tokens.

Routes (relative to the service's prefix; `binder_service.app` adds them):

- ``GET api/v1/tokens``: ``{"tokens": [{"host", "expires"}...], "ttl": seconds}``, the
  https origins (``host`` or ``host:port``) the logged-in user keeps a token for and
  when each expires (never a token);
- ``PUT api/v1/tokens/<host>`` with ``{"token": "..."}``: keep it (`UserTokens.put`)
  for `BinderService.user_token_ttl` seconds, for that origin only (``host`` alone is
  port 443); answers the origin and its expiry;
- ``DELETE api/v1/tokens/<host>``: forget it (204; 404 if there was none);
- ``tokens/login``: a page that logs a visitor in (hub OAuth), then goes back to the
  landing page (whose private-repository part offers it to visitors not logged in).

All of it answers 404 with the reason when the site does not let users launch private
repositories (``Resolver.allow_user_tokens`` off, or its builder's settings refuse
them: `BinderService.private_refusal`), and 403 to a Binder guest (a temporary account,
deleted with its session: it has no private repositories to launch). A token is a secret
that launches
will send to a git host, so writes are guarded as the hub guards its own API: a
browser's request (cookie login) must carry the page's XSRF token (the hub's OAuth
login checks it: without it there is no user, and the answer is 403) and come from the
service's own origin (``Origin``, ``Sec-Fetch-Site``); an API client sends its own hub
token in ``Authorization`` instead. A bad host or token, a body that is not a small
JSON object, are 400 with the reason, which never quotes the token. The service's HTTP
server takes bodies of `MAX_REQUEST_BODY` bytes at most (``__main__``), so a large body
is refused before it is read whole.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlsplit

from jupyterhub.services.auth import HubOAuthenticated
from tornado import web

from egi_hub.context import GUEST_NAME, is_guest

from .specs import RepoSpec
from .user_tokens import BadToken, check_origin

__all__ = [
    "MAX_BODY",
    "MAX_REQUEST_BODY",
    "TokenHandler",
    "TokenLoginHandler",
    "TokensHandler",
    "landing_tokens",
]

log = logging.getLogger(__name__)

MAX_BODY = 4096  # bytes of a PUT body (a token is at most 512 characters)
#: The most bytes of any request body the service's HTTP server reads (it takes no large
#: bodies; tornado's default would buffer 100 MB before a handler could refuse it).
MAX_REQUEST_BODY = 64 * 1024


def guest(user: Any) -> bool:
    """A Binder guest: by the hub's model (name and group), or by a guest's name alone (a
    token without the scope to read groups still names the user)."""
    name = user.get("name") if isinstance(user, dict) else None
    return is_guest(user) or (isinstance(name, str) and bool(GUEST_NAME.fullmatch(name)))


def landing_tokens(handler: Any) -> dict[str, Any] | None:
    """What the landing page's private-repository part needs, or None when the site
    takes no user tokens: how many hours a token is kept, the GitHub and GitLab hosts
    of the site, and either the API URL and the page's XSRF token (a user logged in) or
    ``login``, where a visitor logs in first."""
    binder = handler.settings["binder"]
    if not binder.resolver.allow_user_tokens or binder.private_refusal():
        return None
    prefix = handler.settings["prefix"]
    out = {
        "hours": f"{binder.user_token_ttl / 3600:g}",
        # the origins of gh and gl links, empty where no token may be sent (not https)
        "github": binder.token_host_of(RepoSpec("gh", "")) or "",
        "gitlab": binder.token_host_of(RepoSpec("gl", "")) or "",
        "api": "",
        "xsrf": "",
        "login": "",
    }
    user = handler.get_current_user()
    if not user:
        return {**out, "login": f"{prefix}tokens/login"}
    if guest(user):
        return None
    xsrf = handler.xsrf_token
    return {
        **out,
        "api": f"{prefix}api/v1/tokens",
        "xsrf": xsrf.decode() if isinstance(xsrf, bytes) else str(xsrf),
    }


class _TokenAPI(HubOAuthenticated, web.RequestHandler):
    """Common to the token handlers: the site's switch, the user, JSON in and out."""

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Cache-Control", "no-store")
        self.set_header("Content-Type", "application/json")

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        reason = self._reason
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            reason = exc.log_message % exc.args if exc.args else exc.log_message
        self.finish(json.dumps({"status": status_code, "reason": reason}))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        if isinstance(value, web.HTTPError):  # one line, no request body in it
            return
        super().log_exception(typ, value, tb)

    def user_name(self, *, write: bool = False) -> str:
        binder = self.settings["binder"]
        if not binder.resolver.allow_user_tokens:
            raise web.HTTPError(404, "this site does not launch private repositories")
        refusal = binder.private_refusal()
        if refusal:
            raise web.HTTPError(404, "%s", refusal)
        user = self.current_user
        if not user:
            raise web.HTTPError(
                403,
                "log in to the hub first (a page's request must carry its XSRF token; "
                "an API client sends its hub token in the Authorization header)",
            )
        if guest(user):
            raise web.HTTPError(
                403,
                "a guest session cannot use access tokens: sign in with your account to "
                "launch a private repository",
            )
        if write and not getattr(self, "_token_authenticated", False):
            self._same_origin()
        return user["name"]

    def _same_origin(self) -> None:
        """A browser's write comes from the service's own origin (the cookie logged it in)."""
        site = self.request.headers.get("Sec-Fetch-Site")
        if site is not None and site != "same-origin":
            raise web.HTTPError(403, "tokens are given from this service's own pages")
        origin = self.request.headers.get("Origin")
        if origin is not None and urlsplit(origin).netloc != self.request.host:
            raise web.HTTPError(403, "tokens are given from this service's own pages")

    @property
    def tokens(self) -> Any:
        return self.settings["binder"].user_tokens


class TokensHandler(_TokenAPI):
    """``GET api/v1/tokens``: the user's hosts and expiry times."""

    def get(self) -> None:
        user = self.user_name()
        ttl = self.settings["binder"].user_token_ttl
        self.finish({"tokens": self.tokens.hosts(user), "ttl": ttl})


class TokenHandler(_TokenAPI):
    """``PUT`` and ``DELETE api/v1/tokens/<host>``."""

    def _host(self, raw: str) -> str:
        try:
            return check_origin(raw)
        except BadToken as e:
            raise web.HTTPError(400, "%s", str(e)) from None

    def put(self, raw: str) -> None:
        user = self.user_name(write=True)
        host = self._host(raw)
        body = self.request.body
        if len(body) > MAX_BODY:
            raise web.HTTPError(400, "the request body is too large for a token")
        try:
            data = json.loads(body)
        except ValueError:
            raise web.HTTPError(400, 'send a JSON object: {"token": "..."}') from None
        if not isinstance(data, dict) or set(data) != {"token"}:
            raise web.HTTPError(400, 'send a JSON object: {"token": "..."}')
        try:
            expires = self.tokens.put(user, host, data["token"])
        except BadToken as e:
            raise web.HTTPError(400, "%s", str(e)) from None
        log.info("Binder: %s gave a token for %s", user, host)
        self.finish({"host": host, "expires": expires})

    def delete(self, raw: str) -> None:
        user = self.user_name(write=True)
        host = self._host(raw)
        if not self.tokens.delete(user, host):
            raise web.HTTPError(404, "you keep no token for this host")
        log.info("Binder: %s removed the token for %s", user, host)
        self.set_status(204)
        self.finish()


class TokenLoginHandler(HubOAuthenticated, web.RequestHandler):
    """``tokens/login``: log in through the hub, then back to the landing page."""

    @web.authenticated
    def get(self) -> None:
        self.redirect(self.settings["prefix"])
