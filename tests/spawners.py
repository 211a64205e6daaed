"""An `EGILocalSpawner` for unit tests: no hub, no process; the user is a stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from egi_hub.spawner.local import EGILocalSpawner
from egi_hub.spawner.quota import QuotaPolicy


class HubUser(SimpleNamespace):
    """What the spawner sees of a hub user (stand-in for jupyterhub.user.User)."""

    entitlements: list[str] = []

    async def get_auth_state(self) -> dict:
        return {"entitlements": list(self.entitlements)}


@contextmanager
def local_vo_spawner(
    tmp_path: Path, name: str, entitlements: list[str], profiles: list[Any]
) -> Iterator[EGILocalSpawner]:
    """A spawner for ``name`` (with these entitlements) and a fresh quota policy."""
    QuotaPolicy.clear_instance()
    user = HubUser(name=name, url=f"/user/{name}/", admin=False, entitlements=entitlements)
    try:
        yield EGILocalSpawner(
            user=user,
            orm_spawner=SimpleNamespace(name="", server=None),
            work_dir_root=str(tmp_path / "users"),
            log_dir=str(tmp_path / "logs"),
            profile_list=profiles,
        )
    finally:
        QuotaPolicy.clear_instance()
