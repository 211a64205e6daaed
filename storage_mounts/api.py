"""``GET /hub/api/egi/mounts``: a server's storage mounts, with its user's credentials.

The notebook side's keeper calls this with the server's ``$JUPYTERHUB_API_TOKEN`` and
writes the answer to ``~/.egi/mounts.json``. Who is answered:

- only a *user's* API token (a service, or a browser session's cookie, gets 403: a page
  script in the user's browser has no business reading S3 secrets);
- only with the `MOUNTS_SCOPE` scope (the servers' tokens get it, see
  `egi_hub.storage_mounts.hub`);
- only about that user's own servers: ``?server=<name>`` picks a named server, by
  default the server the token was issued to (else the default server). A token of
  user A can never name B's server: servers are looked up among A's alone, and
  ``?user=`` naming anyone else is a 403.

The answer is never cached (``Cache-Control: no-store``) and never logged.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.user import User
from tornado import web

from egi_hub.singleuser_config import MOUNTS_SCOPE

from .credentials import MountCredentials
from .datahub_tokens import DatahubCredentialError

__all__ = ["MountsHandler"]

_SERVER_NOTE = re.compile(r"^Server at (?P<url>\S+)$")
_MAX_SERVER_NAME = 255


class MountsHandler(APIHandler):
    """The mounts document of the caller's own server (see the module docstring)."""

    @property
    def credentials(self) -> MountCredentials:
        return MountCredentials.instance(config=self.settings.get("config"))

    def _caller(self) -> tuple[User, Any]:
        """The calling user and the API token they used (403 otherwise)."""
        user = self.current_user
        token = self.get_token() if isinstance(user, User) else None
        if not isinstance(user, User) or token is None or token.user is None:
            raise web.HTTPError(
                403, "Only a user's server, with its API token, may read its storage mounts"
            )
        allowed = self.get_scope_filter(MOUNTS_SCOPE)
        if not allowed(user.orm_user, kind="user"):
            raise web.HTTPError(403, f"This token lacks the scope {MOUNTS_SCOPE}")
        return user, token

    def _server_name(self, user: User, token: Any) -> str:
        """``?server=`` if given, else the server this token was issued to, else ''."""
        values = self.request.query_arguments.get("server")
        if values:
            name = values[-1].decode("utf-8", "replace")
            if len(name) > _MAX_SERVER_NAME or any(ord(c) < 32 for c in name):
                raise web.HTTPError(400, "Not a server name")
            return name
        match = _SERVER_NOTE.match(token.note or "")
        if match:
            for name, spawner in user.spawners.items():
                server = spawner.server
                if server is not None and server.base_url == match["url"]:
                    return name
        return ""

    async def get(self) -> None:
        user, token = self._caller()
        for asked in self.request.query_arguments.get("user", []):
            if asked.decode("utf-8", "replace") != user.name:
                raise web.HTTPError(403, "A server may read only its own user's storage mounts")
        name = self._server_name(user, token)
        spawner = user.spawners.get(name)
        if spawner is None or not spawner.active:
            label = f"server {name!r}" if name else "default server"
            raise web.HTTPError(404, f"{user.name} has no running {label}")
        egi_mounts = getattr(spawner, "egi_mounts", None)
        resolved = await egi_mounts() if egi_mounts is not None else ()

        async def checkin_token() -> str | None:
            return await self._checkin_token(user)

        document = await self.credentials.document(user.name, resolved, checkin_token)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(json.dumps(document))

    async def _checkin_token(self, user: User) -> str | None:
        """The user's fresh Check-in access token (refreshed as `AccessTokenHandler`
        does), or None for a user who never logged in with Check-in (dev login)."""
        auth_state = await user.get_auth_state() or {}
        if not auth_state.get("access_token"):
            return None
        refreshed = await self.refresh_auth(user, force=True)
        if refreshed is None:
            raise DatahubCredentialError(
                "the Check-in session has ended: log in again", "no_checkin_token"
            )
        auth_state = await refreshed.get_auth_state() or {}
        token = auth_state.get("access_token")
        expires_at = auth_state.get("expires_at")
        if isinstance(expires_at, int | float) and expires_at <= time.time():
            raise DatahubCredentialError(
                "the Check-in access token has expired: log in again", "no_checkin_token"
            )
        return token or None
