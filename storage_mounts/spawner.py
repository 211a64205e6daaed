"""`StorageSpawnerMixin`: the storage mounts of each server, chosen at admission.

Mixed into `EGILocalSpawner` and `EGIKubeSpawner` before `VOSpawnerMixin`. Which
mounts a server gets depends on the VO it is charged to and its profile, both known
only once the quota policy admitted it; so the mounts are resolved right after
`VOSpawnerMixin.admit` (`StorageMounts.for_user`) and kept on the spawner for the
start (`egi_mounts`: the Kubernetes rendering reads them there).

Credentials are *not* resolved here: a server's keeper asks the hub for them
(``GET /hub/api/egi/mounts``, `egi_hub.storage_mounts.api`), so they can be renewed
while the server runs and never pass through the spawner's state, the database or the
process's command line. The state keeps the mounts' names only; after a hub restart
the mounts are resolved again from the site's list, keeping those names (a mount the
site removed meanwhile is gone, one it added comes with the next start).
"""

from __future__ import annotations

from typing import Any

from traitlets import HasTraits

from egi_hub.singleuser_config import MOUNTS_API_PATH

from .mounts import ResolvedMount, StorageMounts

__all__ = ["MOUNTS_URL_ENV", "StorageSpawnerMixin"]

#: The environment variable that tells a server's keeper where its mounts document is.
MOUNTS_URL_ENV = "EGI_MOUNTS_URL"


class StorageSpawnerMixin(HasTraits):
    """Storage mounts per server (put it before `VOSpawnerMixin` in the bases)."""

    # The mounts of the server being started or running (None: not resolved yet).
    _egi_mounts: tuple[ResolvedMount, ...] | None = None
    # Their names, kept in the spawner state (never credentials).
    _egi_mount_names: tuple[str, ...] | None = None

    @property
    def storage(self) -> StorageMounts:
        return StorageMounts.instance(config=self.config)

    async def admit(self) -> Any:
        charge = await super().admit()
        context = await self.user_context()
        mounts = self.storage.for_user(context, charge.vo, charge.profile or None)
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
        context = await self.user_context()
        mounts = self.storage.for_user(context, charge.vo, charge.profile or None)
        self._egi_mounts = tuple(m for m in mounts if m.name in names)
        return self._egi_mounts

    def get_env(self) -> dict[str, str]:
        env = super().get_env()
        if self._egi_mount_names:
            api_url = env.get("JUPYTERHUB_API_URL") or self.hub.api_url
            env[MOUNTS_URL_ENV] = api_url.rstrip("/") + MOUNTS_API_PATH
        return env

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self._egi_mount_names is not None:
            state["egi_mounts"] = list(self._egi_mount_names)
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        names = state.get("egi_mounts")
        if isinstance(names, list) and all(isinstance(n, str) for n in names):
            self._egi_mount_names = tuple(names)
            self._egi_mounts = None  # resolved again on first use

    def clear_state(self) -> None:
        super().clear_state()
        self._egi_mounts = None
        self._egi_mount_names = None
