"""The Binder service's web application: pages, the launch event stream, the JSON API.

Served by the hub's proxy at the service's prefix (``/services/binder/``), logged in
through the hub (`HubOAuthenticated`): the landing page and the badge are public; a
launch, its events and the API need a hub login, and the launch acts with that login's
own token (see `launcher`). Routes, relative to the prefix:

- ``""``: the landing page; ``badge.svg``: the badge; ``static/...``.
- ``v2/<provider>/<spec>``: the launch page (progress, then the session).
- ``build/<provider>/<spec>``: the launch's events (EventSource, mybinder's shape).
- ``api/v1/check/<v2 path>``: is this link valid here (200 with the path, 400 reason).
- ``api/v1/builds`` (list), ``api/v1/builds/<key>`` (one, with its log; DELETE cancels
  it), ``api/v1/capacity``. A private build (of a launch with a user's own token) is
  shown to its owner and admins only (`store.visible_to`).
- ``api/v1/tokens`` and ``api/v1/tokens/<host>``: users' own tokens for private
  repositories (`token_api`).

With a public URL (``$JUPYTERHUB_PUBLIC_URL``, which the Helm chart sets to the hub's
host), these routes answer on that host only, and a request on any other host is sent
there (`ElsewhereHandler`): the chart's Binder host (``binder.example.org``, routed to
this service) then takes mybinder-style links (``/v2/gh/...``, ``/badge_logo.svg``, ``/``)
to the same page on the hub's host, where the hub's login, its OAuth and the user's
servers share one origin (their cookies are that host's).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import time
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from jupyterhub.services.auth import HubOAuth, HubOAuthCallbackHandler, HubOAuthenticated
from tornado import web

from . import pages
from .badge import badge_svg
from .guests import GUEST_PAGE, is_guest
from .service import BinderService, LaunchUser
from .specs import PROVIDERS, BadSpec, parse_launch
from .store import KEY_PATTERN, visible_to
from .token_api import TokenHandler, TokenLoginHandler, TokensHandler, landing_tokens

__all__ = ["make_app"]

KEEPALIVE = 15.0  # seconds between comments on a quiet event stream (proxies close idle ones)
LAUNCH_TOKEN = "launch_token"  # the query argument of a launch page's event stream
LAUNCH_TOKEN_TTL = 3600  # seconds a launch page's token is good for


def launch_token(key: bytes, user: str, path: str, now: float | None = None) -> str:
    """What the launch page puts in its event stream's URL: proof that the stream was
    opened by this service's own page, for this user and link (an ``<img>`` or a form of
    another page, even one of the same site, cannot know it)."""
    issued = int(time.time() if now is None else now)
    mac = hmac.new(key, f"{issued}\0{user}\0{path}".encode(), hashlib.sha256).hexdigest()
    return f"{issued}.{mac[:32]}"


def check_launch_token(key: bytes, token: str, user: str, path: str) -> bool:
    issued, _, _ = token.partition(".")
    if not (issued.isascii() and issued.isdigit()) or not token.isascii():
        return False
    if time.time() - int(issued) > LAUNCH_TOKEN_TTL:
        return False
    return hmac.compare_digest(token, launch_token(key, user, path, now=int(issued)))


class BinderHandler(HubOAuthenticated, web.RequestHandler):
    """Common to the service's handlers: the service, the prefix, JSON errors."""

    @property
    def binder(self) -> BinderService:
        return self.settings["binder"]

    @property
    def prefix(self) -> str:
        return self.settings["prefix"]

    def set_default_headers(self) -> None:
        self.set_header("X-Content-Type-Options", "nosniff")
        self.set_header("Referrer-Policy", "same-origin")
        self.set_header(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
            "connect-src 'self'; frame-ancestors 'self'; base-uri 'none'; form-action 'self'",
        )

    def raw_rest(self, route: str) -> str:
        """The request's path after ``<prefix><route>``, still percent-escaped: tornado
        decodes path arguments, and a git link's URL is one escaped segment
        (``git/https%3A%2F%2F.../main``) that decoding would split."""
        return self.request.path[len(self.prefix) + len(route) :]

    def query(self) -> dict[str, str]:
        """The link's query (``labpath``, ``urlpath``...), without the launch and XSRF
        tokens."""
        own = (LAUNCH_TOKEN, "_xsrf")
        return {k: self.get_argument(k) for k in self.request.query_arguments if k not in own}

    def site_name(self) -> str:
        return self.binder.site_name

    def get_login_url(self) -> str:
        """Where a visitor who is not logged in goes: the hub's login (its OAuth, which
        comes back here); for a launch page, when the site lets guests in, the hub's
        guest page first (it offers the login too), which sends the browser on to that
        OAuth once it is logged in to the hub, as a guest or not."""
        login = super().get_login_url()
        if self.settings.get("guests") and self.request.path.startswith(f"{self.prefix}v2/"):
            page = self.settings["hub_prefix"] + GUEST_PAGE.lstrip("/")
            return f"{page}?{urlencode({'next': login})}"
        return login

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        reason = self._reason
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, web.HTTPError) and exc.log_message:
            reason = exc.log_message % exc.args if exc.args else exc.log_message
        if self.request.path.startswith(f"{self.prefix}api/") or self.request.path.startswith(
            f"{self.prefix}build/"
        ):
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps({"status": status_code, "reason": reason}))
            return
        self.finish(
            pages.render_error(
                base_url=self.prefix, status=status_code, reason=reason, site_name=self.site_name()
            )
        )


class LandingHandler(BinderHandler):
    def get(self) -> None:
        user = self.get_current_user()
        self.finish(
            pages.render_landing(
                base_url=self.prefix,
                user=user["name"] if user else None,
                hub_url=self.settings["hub_prefix"],
                site_name=self.site_name(),
                providers=PROVIDERS,
                tokens=landing_tokens(self),
            )
        )


class BadgeHandler(BinderHandler):
    def get(self) -> None:
        self.set_header("Content-Type", "image/svg+xml")
        self.set_header("Cache-Control", "public, max-age=86400")
        self.finish(badge_svg())


class LaunchPageHandler(BinderHandler):
    @web.authenticated
    def get(self, _: str) -> None:
        path = self.raw_rest("v2/")
        query = self.query()
        try:
            request = parse_launch(f"v2/{path}", query)
        except BadSpec as e:
            raise web.HTTPError(400, "bad link: %s", str(e)) from None
        user = self.current_user["name"]
        suffix = f"?{urlencode(query)}" if query else ""
        token = launch_token(self.settings["launch_key"], user, f"v2/{path}{suffix}")
        # _xsrf: a browser's EventSource is a same-origin "cors" fetch, on which the hub's
        # OAuth login checks the XSRF token before it names the user.
        stream_query = urlencode({**query, LAUNCH_TOKEN: token, "_xsrf": self.xsrf_token})
        self.finish(
            pages.render_launch(
                base_url=self.prefix,
                link=f"{self.request.protocol}://{self.request.host}{self.prefix}v2/{path}{suffix}",
                label=request.spec.label,
                build_url=f"{self.prefix}build/{path}?{stream_query}",
                user=user,
                site_name=self.site_name(),
                # Unless the user came from this service's own pages, they confirm before
                # code of that repository runs in their account (their data, their token).
                confirm=not self._from_own_pages(),
                guest=is_guest(self.current_user),
            )
        )

    def _from_own_pages(self) -> bool:
        """A navigation from one of the service's pages (same origin, and a Referer
        under its prefix: a link in a notebook or on another user's server on the hub's
        origin is same-origin too, and still asks)."""
        if self.request.headers.get("Sec-Fetch-Site") != "same-origin":
            return False
        referer = urlsplit(self.request.headers.get("Referer", ""))
        own = f"{self.request.protocol}://{self.request.host}"
        return f"{referer.scheme}://{referer.netloc}" == own and referer.path.startswith(
            self.prefix
        )


class EventsHandler(BinderHandler):
    """A launch's events as a server-sent event stream, through the proxy as they come."""

    _task: asyncio.Task[None] | None = None

    async def get(self, _: str) -> None:
        path = self.raw_rest("build/")
        user = self.current_user
        if not user:
            raise web.HTTPError(403, "log in to the hub to launch")
        if not self._from_own_page(path, user["name"]):
            # Another page (of another site, or of this one) cannot launch code in this
            # user's account (their mounts, their token) with their cookie: a launch's
            # events are for this service's own launch page (its token in the URL), or
            # for API clients that send their own token in the Authorization header.
            raise web.HTTPError(403, "launches start from this service's own pages")
        token = self.hub_auth.get_token(self)
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.set_header("X-Accel-Buffering", "no")  # nginx-style proxies: do not buffer
        events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        job = self.binder.launch_job(f"v2/{path}", self.query(), LaunchUser(user["name"], token))

        async def pump() -> None:
            try:
                async for event in job.follow():
                    await events.put(event)
            finally:
                await events.put(None)

        self._task = asyncio.ensure_future(pump())
        # Every follower of a launch gets its events from the first one, in one order: the
        # count is a stable id, and a page that reconnects skips the ids it has seen.
        sent = 0
        try:
            while True:
                try:
                    event = await asyncio.wait_for(events.get(), KEEPALIVE)
                except TimeoutError:
                    self.write(": keepalive\n\n")
                    await self.flush()
                    continue
                if event is None:
                    break
                sent += 1
                self.write(f"id: {sent}\ndata: {json.dumps(event)}\n\n")
                await self.flush()
        finally:
            await self._stop()

    def _from_own_page(self, path: str, user: str) -> bool:
        if getattr(self, "_token_authenticated", False):
            return True  # a token the client holds itself (header), not a browser cookie
        if self.request.headers.get("Sec-Fetch-Site", "same-origin") != "same-origin":
            return False
        query = self.query()
        suffix = f"?{urlencode(query)}" if query else ""
        given = self.get_argument(LAUNCH_TOKEN, "")
        return check_launch_token(self.settings["launch_key"], given, user, f"v2/{path}{suffix}")

    async def _stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    def on_connection_close(self) -> None:
        if self._task is not None:
            self._task.cancel()


class CheckHandler(BinderHandler):
    def get(self, _: str) -> None:
        path = self.raw_rest("api/v1/check/")
        try:
            request = parse_launch(path, self.query())
        except BadSpec as e:
            raise web.HTTPError(400, "%s", str(e)) from None
        self.finish({"path": request.spec.path, "label": request.spec.label})


_PUBLIC = ("key", "backend", "state", "spec", "label", "source", "ref", "started", "finished",
           "reason", "resolved", "private")  # fmt: skip


def _public(record: dict[str, Any]) -> dict[str, Any]:
    """A build record as the API shows it (no paths on the service's disk)."""
    out = {k: record.get(k) for k in _PUBLIC}
    out["private"] = bool(record.get("private"))
    environment = record.get("environment") or {}
    if "image" in environment:
        out["image"] = environment["image"]
        out["digest"] = environment.get("digest")
    return out


class BuildsHandler(BinderHandler):
    @web.authenticated
    async def get(self) -> None:
        records = await asyncio.to_thread(self.binder.store.records)
        user = self.current_user
        admin = bool(user.get("admin"))
        records = [r for r in records if visible_to(r, user["name"], admin=admin)]
        running = self.binder.jobs.running
        for record in records:
            if record.get("state") == "building" and record.get("key") not in running:
                record["state"] = "failed"
        self.finish({"builds": [_public(r) for r in records]})


class BuildHandler(BinderHandler):
    def _key(self, key: str) -> str:
        if not KEY_PATTERN.fullmatch(key):
            raise web.HTTPError(404, "no such build")
        return key

    @web.authenticated
    async def get(self, key: str) -> None:
        record = await asyncio.to_thread(self.binder.store.get, self._key(key))
        user = self.current_user
        if record is None or not visible_to(record, user["name"], admin=bool(user.get("admin"))):
            raise web.HTTPError(404, "no such build")
        out = _public(record)
        out["log"] = await asyncio.to_thread(self.binder.store.log_text, key)
        self.finish(out)

    @web.authenticated
    async def delete(self, key: str) -> None:
        job = self.binder.jobs.get(self._key(key))
        if job is None or job.kind != "building":
            raise web.HTTPError(404, "no build of this key is waiting or running")
        user = self.current_user
        if not user.get("admin") and key not in self.binder.queued_by.get(user["name"], set()):
            raise web.HTTPError(403, "only who started a build, or an admin, may cancel it")
        job.cancel()
        self.set_status(204)
        self.finish()


#: What stays as the client sent it in a path or query that is sent on: every printable
#: ASCII character ("%" too, so each escape such as %2F, %23 or %3F keeps its meaning).
_AS_SENT = "".join(chr(c) for c in range(0x21, 0x7F))


def _as_sent(raw: str) -> str:
    """``raw`` (as the request line had it: tornado reads it as latin-1) for a Location:
    its bytes, with only those that cannot be in a URL (non-ASCII, spaces, controls)
    percent-encoded; nothing decoded, nothing dropped."""
    return quote(raw.encode("latin-1", "replace"), safe=_AS_SENT)


class ElsewhereHandler(web.RequestHandler):
    """A request on a host other than the public one: the same page at the public URL
    (a path outside the prefix is taken as under it: ``/v2/gh/a/b/HEAD``).

    The path and query go on exactly as the client sent them (``request.path`` and
    ``request.query``, still percent-encoded, never the decoded path argument): a GitLab
    subgroup's ``group%2Fsub%2Frepo``, a ``git`` link's encoded URL, an encoded ``#``
    or ``?`` keep their meaning. Whatever the path holds, it follows the public URL's
    own path, so it never leaves the public host (``//evil`` is ``<public>evil``). On
    the public host itself (a path none of its routes has) it answers 404, never a
    redirect to the same page."""

    def get(self, path: str) -> None:
        prefix, public = self.settings["prefix"], self.settings["public_url"]
        if self.request.host_name.lower() == (urlsplit(public).hostname or "").lower():
            raise web.HTTPError(404)  # a page the public host has not: never a loop
        full = _as_sent(self.request.path)
        rest = full[len(prefix) :] if (full + "/").startswith(prefix) else full
        query = f"?{_as_sent(self.request.query)}" if self.request.query else ""
        self.redirect(public + rest.lstrip("/") + query)

    head = get


class CapacityHandler(BinderHandler):
    @web.authenticated
    def get(self) -> None:
        self.finish(self.binder.capacity())


def make_app(
    binder: BinderService,
    *,
    prefix: str,
    hub_prefix: str = "/hub/",
    guests: bool = False,
    public_url: str | None = None,
) -> web.Application:
    """The service's application, its routes under ``prefix`` (ending in ``/``);
    ``guests``: send visitors of launch pages who are not logged in to the hub's guest
    page (`BinderGuests.enabled`); ``public_url`` (default: ``$JUPYTERHUB_PUBLIC_URL``,
    as JupyterHub gives it to its services): where requests on other hosts are sent."""
    if public_url is None:
        public_url = os.environ.get("JUPYTERHUB_PUBLIC_URL", "")
    public_host = urlsplit(public_url).hostname if public_url else None
    # SameSite=Lax: other sites' requests (images, scripts, event streams) carry no login.
    auth = HubOAuth(cache_max_age=60, cookie_options={"samesite": "Lax"})
    p = prefix
    routes = [
        (rf"{p}", LandingHandler),
        (rf"{p}badge\.svg", BadgeHandler),
        (rf"{p}badge_logo\.svg", BadgeHandler),
        (rf"{p}oauth_callback", HubOAuthCallbackHandler),
        (rf"{p}static/(.*)", web.StaticFileHandler, {"path": str(pages.STATIC_DIR)}),
        (rf"{p}v2/(.+)", LaunchPageHandler),
        (rf"{p}build/(.+)", EventsHandler),
        (rf"{p}api/v1/check/(.+)", CheckHandler),
        (rf"{p}api/v1/builds", BuildsHandler),
        (rf"{p}api/v1/builds/([^/]+)", BuildHandler),
        (rf"{p}api/v1/capacity", CapacityHandler),
        (rf"{p}api/v1/tokens", TokensHandler),
        (rf"{p}api/v1/tokens/([^/]+)", TokenHandler),
        (rf"{p}tokens/login", TokenLoginHandler),
    ]
    if public_host:  # the routes on the public host; any other is sent there
        routes, elsewhere = [(r"/(.*)", ElsewhereHandler)], routes
    app = web.Application(
        routes,
        binder=binder,
        prefix=prefix,
        hub_prefix=hub_prefix,
        guests=guests,
        hub_auth=auth,
        cookie_secret=secrets.token_bytes(32),  # a restart asks browsers to log in again
        login_url=auth.login_url,
        xsrf_cookies=False,
        launch_key=secrets.token_bytes(32),  # launch pages of a restarted service reload
        public_url=public_url.rstrip("/") + "/" if public_url else "",
    )
    if public_host:
        app.add_handlers(re.escape(public_host), elsewhere)
    return app
