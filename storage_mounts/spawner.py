"""`StorageSpawnerMixin`: the storage mounts of each server, chosen at admission.

Mixed into `EGILocalSpawner` and `EGIKubeSpawner` before `VOSpawnerMixin`. Which
mounts a server gets depends on the VO it is charged to and its profile, both known
only once the quota policy admitted it; so the mounts are resolved right after
`VOSpawnerMixin.admit` (`StorageMounts.for_user`) and kept on the spawner for the
start (`egi_mounts`: the Kubernetes rendering reads them there).

Each server's keeper gets its own files (``EGI_MOUNTS_FILE``, ``EGI_STORAGE_DIR`` under
``~/.egi/servers/<server>/``), so named servers sharing a home never overwrite or
delete each other's. Credentials are *not* resolved here: a server's keeper asks the hub for them
(``GET /hub/api/egi/mounts``, `egi_hub.storage_mounts.api`), so they can be renewed
while the server runs and never pass through the spawner's state, the database or the
process's command line. The state keeps the mounts' names only; after a hub restart
the mounts are resolved again from the site's list, keeping those names (a mount the
site removed meanwhile is gone, one it added comes with the next start).

Membership is not fixed at admission: `mount_standing` says which of a running server's
mounts its user may *still* have, by running `StorageMounts.for_user` again on the
auth state as the authenticator last refreshed it (the ``refused`` flag included). The
mounts endpoint asks it on every request and the Kubernetes sidecar renewal before
every renewal, so a user who left a mount's VO (or whom the hub refused) gets no new
credential for it from either.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from traitlets import HasTraits

from egi_hub.context import UserContext
from egi_hub.names import path_component
from egi_hub.singleuser_config import MOUNTS_API_PATH

from .mounts import ResolvedMount, StorageMounts

__all__ = [
    "MOUNTS_FILE_ENV",
    "MOUNTS_URL_ENV",
    "STORAGE_DIR_ENV",
    "MountStanding",
    "StorageSpawnerMixin",
    "mount_standing",
    "server_storage_paths",
    "token_fingerprint",
]

#: The environment variable that tells a server's keeper where its mounts document is.
MOUNTS_URL_ENV = "EGI_MOUNTS_URL"
#: Where the keeper writes the mounts document and the credential files
#: (`egi_hub.singleuser.mounts` and ``.s3`` read these names; both expand ``~``).
MOUNTS_FILE_ENV = "EGI_MOUNTS_FILE"
STORAGE_DIR_ENV = "EGI_STORAGE_DIR"
#: Each server's own folder: named servers of one user share a home directory, and a
#: keeper removes credential files its document no longer names, so two servers in one
#: folder would delete each other's.
SERVERS_DIR = "~/.egi/servers"


def server_storage_paths(server_name: str) -> tuple[str, str]:
    """(mounts file, storage dir) of one server: ``~/.egi/servers/default/...`` for the
    default server, ``~/.egi/servers/named-<name>/...`` for a named one (the name escaped
    to one injective path component; the prefix keeps a server named ``default`` apart)."""
    folder = "default" if not server_name else "named-" + path_component(server_name)
    base = posixpath.join(SERVERS_DIR, folder)
    return posixpath.join(base, "mounts.json"), posixpath.join(base, "storage")


_FINGERPRINT = re.compile(r"[0-9a-f]{64}")


def token_fingerprint(token: Any) -> str | None:
    """What tells an API token's database row from a later one that got the same id
    (SQLite hands the highest id out again once its row is deleted, so a user could
    delete their server's token and mint one with its id): a SHA-256 of the row's
    stored hash, which JupyterHub salts per token and never changes. Never the token's
    value; None for a row without a hash."""
    hashed = getattr(token, "hashed", None)
    if not isinstance(hashed, str) or not hashed:
        return None
    return hashlib.sha256(hashed.encode("utf-8")).hexdigest()


#: Why a refused user's mounts are withdrawn (the refusal's reason is not repeated).
REFUSED = "the hub refused this user: log in to the hub again to find out why"
#: Why a mount the user's VOs no longer give is withdrawn.
VO_CHANGED = (
    "VO membership changed: you no longer have this mount "
    "(restart your server to get the mounts you have now)"
)


@dataclass(frozen=True)
class MountStanding:
    """Which of a running server's mounts its user may still have (`mount_standing`)."""

    #: The server's mounts, by the names it started with, in that order.
    names: tuple[str, ...]
    #: Those the user may still have, resolved anew (same VO and settings as before).
    current: Mapping[str, ResolvedMount]
    #: Why every mount is withdrawn (the hub refused the user), or None.
    withdrawn: str | None = None

    def why_not(self, name: str) -> str | None:
        """None when the user may still have mount ``name``; else why not (a message
        for the user, with no secret in it)."""
        if self.withdrawn is not None:
            return self.withdrawn
        return None if name in self.current else VO_CHANGED


def mount_standing(spawner: Any, auth_state: Mapping[str, Any] | None) -> MountStanding:
    """The standing of ``spawner``'s mounts under ``auth_state`` (the user's, as the
    authenticator last refreshed it: the caller refreshes first).

    ``StorageMounts.for_user`` runs again with the server's charged VO and profile; a
    mount counts only if it resolves as it did when the server started (same expanded
    settings, and the same VO where the mount depends on it: a user who left the
    charged VO but is in another of the mount's VOs would otherwise be switched to that
    VO's bucket, export or keys mid-session). After a
    hub restart, when the first resolution is gone, the new one is taken as it is.
    """
    names = tuple(getattr(spawner, "_egi_mount_names", None) or ())
    state = auth_state or {}
    if state.get("refused"):
        return MountStanding(names, {}, withdrawn=REFUSED)
    # The admission's charge: `VOSpawnerMixin` keeps it only once the start returned,
    # and the server's keeper may ask before that.
    charge = getattr(spawner, "_egi_admitted", None) or getattr(spawner, "_egi_charge", None)
    if charge is None or not names:
        return MountStanding(names, {})
    context = UserContext.from_auth_state(spawner.user.name, dict(state))
    storage = StorageMounts.instance(config=spawner.config)
    fresh = {m.name: m for m in storage.for_user(context, charge.vo, charge.profile or None)}
    started = getattr(spawner, "_egi_mounts", None)
    before = {m.name: m for m in started} if started is not None else None
    current = {
        name: fresh[name]
        for name in names
        if name in fresh and (before is None or _same(before.get(name), fresh[name]))
    }
    return MountStanding(names, current)


def _same(before: ResolvedMount | None, now: ResolvedMount) -> bool:
    """Whether ``now`` gives the server what ``before`` gave: same mount and expanded
    settings, and the same VO where that matters (``{vo}``, per-VO keys)."""
    return (
        before is not None
        and before.mount == now.mount
        and before.settings == now.settings
        and (before.vo == now.vo or not now.mount.depends_on_vo)
    )


class StorageSpawnerMixin(HasTraits):
    """Storage mounts per server (put it before `VOSpawnerMixin` in the bases)."""

    # The charge the mounts were resolved with at admission (this process only).
    _egi_admitted: Any = None
    # The mounts of the server being started or running (None: not resolved yet).
    _egi_mounts: tuple[ResolvedMount, ...] | None = None
    # Their names, kept in the spawner state (never credentials).
    _egi_mount_names: tuple[str, ...] | None = None
    # Where the keeper keeps the credential files, when not under the home folder (the
    # Kubernetes spawner: a memory-backed volume of the pod); None: ``~/.egi/servers/...``.
    egi_credentials_dir: str | None = None
    # The database id and `token_fingerprint` (never the value) of this server's API
    # token, kept in the state so that the mounts endpoint still knows the server's
    # token after a hub restart: the id alone could be another token's by then.
    egi_server_token_id: int | None = None
    egi_server_token_fingerprint: str | None = None

    @property
    def storage(self) -> StorageMounts:
        return StorageMounts.instance(config=self.config)

    async def admit(self) -> Any:
        charge = await super().admit()
        mounts = await self._egi_resolve_mounts(charge)
        self._egi_admitted = charge
        self._egi_mounts = tuple(mounts)
        self._egi_mount_names = tuple(m.name for m in mounts)
        if mounts:
            names = ", ".join(f"{m.name} ({m.path})" for m in mounts)
            self.progress_event(None, f"Storage: {names}.")
        return charge

    async def egi_mounts(self) -> tuple[ResolvedMount, ...]:
        """The mounts of this server, resolved for its user (none when not admitted).

        After a hub restart, resolved again with the charged VO and profile from the
        state, keeping only the names the server started with.
        """
        if self._egi_mounts is not None:
            return self._egi_mounts
        names = self._egi_mount_names
        charge = getattr(self, "_egi_charge", None)
        if not names or charge is None:
            return ()
        mounts = await self._egi_resolve_mounts(charge)
        self._egi_mounts = tuple(m for m in mounts if m.name in names)
        return self._egi_mounts

    async def _egi_resolve_mounts(self, charge: Any) -> list[ResolvedMount]:
        """The mounts of a server charged as ``charge``: none for a Binder guest (a
        temporary account, see `egi_hub.binder_service.guests`), whom no site mount is
        for, even one open to every user."""
        if getattr(self, "egi_guest", False):
            return []
        context = await self.user_context()
        return list(self.storage.for_user(context, charge.vo, charge.profile or None))

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        if self._egi_mount_names:
            api_url = env.get("JUPYTERHUB_API_URL") or self.hub.api_url
            env[MOUNTS_URL_ENV] = api_url.rstrip("/") + MOUNTS_API_PATH
            mounts_file, storage_dir = server_storage_paths(self.name or "")
            env[MOUNTS_FILE_ENV] = mounts_file
            env[STORAGE_DIR_ENV] = self.egi_credentials_dir or storage_dir
        return env

    def _server_token_ref(self) -> tuple[int, str] | None:
        """The database id and fingerprint of ``api_token`` (looked up once per start)."""
        if self.egi_server_token_id is None and self.api_token:
            db = getattr(getattr(self, "user", None), "db", None)
            if db is not None:
                from jupyterhub import orm

                found = orm.APIToken.find(db, self.api_token)
                fingerprint = token_fingerprint(found)
                if found is not None and fingerprint is not None:
                    self.egi_server_token_id = found.id
                    self.egi_server_token_fingerprint = fingerprint
        if self.egi_server_token_id is None or self.egi_server_token_fingerprint is None:
            return None
        return self.egi_server_token_id, self.egi_server_token_fingerprint

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self._egi_mount_names is not None:
            state["egi_mounts"] = list(self._egi_mount_names)
        ref = self._server_token_ref()
        if ref is not None:
            state["egi_server_token_id"], state["egi_server_token_fingerprint"] = ref
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        names = state.get("egi_mounts")
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            self._egi_mount_names = tuple(names)
            self._egi_mounts = None  # resolved again on first use
        # Both or neither: an id without its fingerprint (a state from before it was
        # kept) is not trusted; that server's keeper gets 403 until it is restarted.
        token_id = state.get("egi_server_token_id")
        fingerprint = state.get("egi_server_token_fingerprint")
        if (
            isinstance(token_id, int)
            and not isinstance(token_id, bool)
            and isinstance(fingerprint, str)
            and _FINGERPRINT.fullmatch(fingerprint)
        ):
            self.egi_server_token_id = token_id
            self.egi_server_token_fingerprint = fingerprint

    def clear_state(self) -> None:
        super().clear_state()
        self._egi_admitted = None
        self._egi_mounts = None
        self._egi_mount_names = None
        self.egi_server_token_id = None
        self.egi_server_token_fingerprint = None
