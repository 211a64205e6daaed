"""The JSON API through which users give, list and remove their own access tokens.

Routes (relative to the service's prefix; `binder_service.app` adds them):

- ``GET api/v1/tokens``: ``{"tokens": [{"host", "expires"}...], "ttl": seconds}``, the
  hosts the logged-in user keeps a token for and when each expires (never a token);
- ``PUT api/v1/tokens/<host>`` with ``{"token": "..."}``: keep it (`UserTokens.put`)
  for `BinderService.user_token_ttl` seconds; answers the host and its expiry;
- ``DELETE api/v1/tokens/<host>``: forget it (204; 404 if there was none);
- ``tokens/login``: a page that logs a visitor in (hub OAuth), then goes back to the
  landing page (whose private-repository part offers it to visitors not logged in).

All of it answers 404 with the reason when the site does not let users launch private
repositories (``Resolver.allow_user_tokens`` off). A token is a secret that launches
will send to a git host, so writes are guarded as the hub guards its own API: a
browser's request (cookie login) must carry the page's XSRF token (the hub's OAuth
login checks it: without it there is no user, and the answer is 403) and come from the
service's own origin (``Origin``, ``Sec-Fetch-Site``); an API client sends its own hub
token in ``Authorization`` instead. A bad host or token, a body that is not a small
JSON object, are 400 with the reason, which never quotes the token.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import urlsplit

from jupyterhub.services.auth import HubOAuthenticated
from tornado import web

from .user_tokens import BadToken, check_host

__all__ = ["MAX_BODY", "TokenHandler", "TokenLoginHandler", "TokensHandler", "landing_tokens"]

log = logging.getLogger(__name__)

MAX_BODY = 4096  # bytes of a PUT body (a token is at most 512 characters)


def landing_tokens(handler: Any) -> dict[str, Any] | None:
    """What the landing page's private-repository part needs, or None when the site
    takes no user tokens: how many hours a token is kept, the GitHub and GitLab hosts
    of the site, and either the API URL and the page's XSRF token (a user logged in) or
    ``login``, where a visitor logs in first."""
    binder = handler.settings["binder"]
    if not binder.resolver.allow_user_tokens:
        return None
    git = binder.resolver.provider_for("gh")
    prefix = handler.settings["prefix"]
    out = {
        "hours": f"{binder.user_token_ttl / 3600:g}",
        "github": urlsplit(git.github_url).hostname or "",
        "gitlab": urlsplit(git.gitlab_url).hostname or "",
        "api": "",
        "xsrf": "",
        "login": "",
    }
    if not handler.get_current_user():
        return {**out, "login": f"{prefix}tokens/login"}
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
        user = self.current_user
        if not user:
            raise web.HTTPError(
                403,
                "log in to the hub first (a page's request must carry its XSRF token; "
                "an API client sends its hub token in the Authorization header)",
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
            return check_host(raw)
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
