"""``GET /hub/api/egi/mounts``: a server's storage mounts, with its user's credentials.

The notebook side's keeper calls this with the server's ``$JUPYTERHUB_API_TOKEN`` and
writes the answer to ``~/.egi/mounts.json``. The answer holds S3 secrets and DataHub
tokens, so it goes to one caller only: **the API token the hub made for one of the
caller's own active servers**, and it is about that server. Concretely:

- the presented token must be the ``api_token`` of one of the token owner's active
  spawners (compared in constant time; after a hub restart, when JupyterHub no longer
  holds the token's value, by the token's database id *and* `token_fingerprint` (a
  digest of the row's salted hash) that `StorageSpawnerMixin` kept in the server's
  state: on SQLite a deleted token's id can be handed out again, so the id alone
  could name a token the user minted after deleting the server's). Any other token
  of the same user is refused with 403: one minted with ``POST /users/<name>/tokens``
  (whose default role inherits all of the owner's scopes, `MOUNTS_SCOPE` included), a
  browser session's cookie, a service's token, and the server token of another user
  who was given access to this user's server (sharing: their token is theirs, not the
  server's);
- the token must also hold `MOUNTS_SCOPE`. JupyterHub gives a server token only scopes
  its owner holds (``Spawner.server_token_scopes`` is intersected with the owner's
  roles), so the ``user`` role holds it too (`egi_hub.storage_mounts.hub`): the scope
  alone would let any token of the user in; the token check above is what makes the
  endpoint answer servers only;
- ``?server=<name>`` is not needed (the token says which server); given, it must name
  that same server (else 403). ``?user=`` naming anyone else is a 403.

Which mounts: those the server started with, checked again on every request. The
user's session is refreshed first (``refresh_auth(force=True)``: the authenticator
asks Check-in when the access token is due, and applies the VO rules again), then
`mount_standing` runs ``StorageMounts.for_user`` again on the refreshed auth state. A
mount the user may no longer have (left its VO; or the hub refused the user, or could
not confirm their VOs) is an entry with ``error`` and no credentials: no S3 keys, no
STS credentials, no DataHub token. Keys the server already read stay valid until the
site rotates them (static S3 keys) or they expire (STS credentials, DataHub tokens).

The answer is never cached (``Cache-Control: no-store``) and never logged.
"""

from __future__ import annotations

import hmac
import json
import time
from typing import Any

from jupyterhub.apihandlers.base import APIHandler
from jupyterhub.user import User
from tornado import web

from egi_hub.singleuser_config import MOUNTS_SCOPE

from .credentials import MountCredentials
from .datahub_tokens import DatahubCredentialError
from .mounts import StorageMounts
from .spawner import MountStanding, mount_standing, token_fingerprint

__all__ = ["MountsHandler", "is_server_token"]

_NOT_A_SERVER = (
    "Only a server's own API token ($JUPYTERHUB_API_TOKEN of a running server of this "
    "user) may read its storage mounts"
)
_UNCONFIRMED = "the hub could not confirm your VO membership with Check-in: log in to the hub again"


def is_server_token(spawner: Any, presented: str, token: Any) -> bool:
    """Whether the presented token (``token``: its database row) is the API token the
    hub made for this spawner's server: its value (constant time) when the spawner
    still holds it, else the row's id and `token_fingerprint`, both as the spawner kept
    them in its state (the id alone may have been handed out again)."""
    own = getattr(spawner, "api_token", "") or ""
    if own:
        return hmac.compare_digest(own.encode("utf-8"), presented.encode("utf-8"))
    kept_id = getattr(spawner, "egi_server_token_id", None)
    kept_print = getattr(spawner, "egi_server_token_fingerprint", None)
    token_id = getattr(token, "id", None)
    fingerprint = token_fingerprint(token)
    if kept_id is None or not kept_print or token_id is None or fingerprint is None:
        return False
    return kept_id == token_id and hmac.compare_digest(kept_print, fingerprint)


class MountsHandler(APIHandler):
    """The mounts document of the calling server (see the module docstring)."""

    @property
    def credentials(self) -> MountCredentials:
        return MountCredentials.instance(config=self.settings.get("config"))

    def _caller(self) -> tuple[User, Any, Any]:
        """The calling user, the name and spawner of the server whose token this is."""
        user = self.current_user
        token = self.get_token() if isinstance(user, User) else None
        presented = self.get_auth_token() if token is not None else None
        if (
            not isinstance(user, User)
            or token is None
            or token.user is None
            or token.user.id != user.id
            or not presented
        ):
            raise web.HTTPError(403, _NOT_A_SERVER)
        allowed = self.get_scope_filter(MOUNTS_SCOPE)
        if not allowed(user.orm_user, kind="user"):
            raise web.HTTPError(403, f"This token lacks the scope {MOUNTS_SCOPE}")
        for name, spawner in list(user.spawners.items()):
            if spawner.active and is_server_token(spawner, presented, token):
                return user, name, spawner
        raise web.HTTPError(403, _NOT_A_SERVER)

    async def get(self) -> None:
        user, name, spawner = self._caller()
        for asked in self.request.query_arguments.get("user", []):
            if asked.decode("utf-8", "replace") != user.name:
                raise web.HTTPError(403, "A server may read only its own user's storage mounts")
        for asked in self.request.query_arguments.get("server", []):
            if asked.decode("utf-8", "replace") != name:
                raise web.HTTPError(403, "A server may read only its own storage mounts")
        standing = await self._standing(user, spawner)
        current = [standing.current[n] for n in standing.names if n in standing.current]

        async def checkin_token() -> str | None:
            return await self._checkin_token(user)

        document = await self.credentials.document(
            user.name, current, checkin_token, user_id=user.id
        )
        if len(current) != len(standing.names):
            document["mounts"] = self._with_withdrawn(standing, document["mounts"])
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.write(json.dumps(document))

    async def _standing(self, user: User, spawner: Any) -> MountStanding:
        """Which of the server's mounts the user may still have, on the auth state as
        refreshed now (see the module docstring)."""
        refreshed = await self.refresh_auth(user, force=True)
        auth_state = await user.get_auth_state() or {}
        standing = mount_standing(spawner, auth_state)
        if refreshed is None and standing.withdrawn is None:
            # Strict refresh said no (session over, VOs confirmed too long ago):
            # nothing is confirmed, so nothing is given.
            return MountStanding(standing.names, {}, withdrawn=_UNCONFIRMED)
        return standing

    def _with_withdrawn(
        self, standing: MountStanding, entries: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The document's entries in the server's order, with an error entry (no
        credentials) for each mount the user may no longer have. A mount the site
        removed from its list meanwhile is left out, as after a hub restart."""
        given = {entry["name"]: entry for entry in entries}
        configured = {
            m.name: m for m in StorageMounts.instance(config=self.settings.get("config")).mounts
        }
        result = []
        for name in standing.names:
            if name in given:
                result.append(given[name])
            elif name in configured:
                mount = configured[name]
                why = standing.why_not(name) or "withdrawn"
                result.append(
                    {
                        "name": name,
                        "kind": mount.kind,
                        "path": mount.path,
                        "read_only": mount.read_only,
                        "error": f"{mount.kind}: {why}",
                    }
                )
        return result

    async def _checkin_token(self, user: User) -> str | None:
        """The user's Check-in access token as `_standing` just refreshed it, or None
        for a user who never logged in with Check-in (dev login)."""
        auth_state = await user.get_auth_state() or {}
        token = auth_state.get("access_token")
        if not token:
            return None
        expires_at = auth_state.get("expires_at")
        if isinstance(expires_at, int | float) and expires_at <= time.time():
            raise DatahubCredentialError(
                "the Check-in access token has expired: log in again", "no_checkin_token"
            )
        return str(token)
