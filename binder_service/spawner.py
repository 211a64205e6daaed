"""`BinderSpawnerMixin`: a Binder session is a named server of the user, started with
the Binder profile and the environment a signed launch ticket names.

Mixed into `EGILocalSpawner` and `EGIKubeSpawner` before `VOSpawnerMixin`. A start
whose ``user_options`` carry ``binder`` (a ticket from the Binder service, see
`egi_hub.binder_service.ticket`) does not choose from the site's profiles: it gets the
Binder profile (``binder_profile``: resources, and the idle timeout the server enforces
on itself), is charged to the user's VO like any server (so VO quotas count Binder
sessions), gets the user's storage mounts and Check-in token as any server, and runs
the built environment with the fetched content as its root folder. A ticket that is
forged, expired, or made for another user or server is refused with 403 before
anything starts; a user can start only what the service launched for them.

On one machine (`LocalBinderMixin`, in `EGILocalSpawner`) the environment is a
virtualenv of the service's ``venv`` builder and the content a folder the service
fetched: the first start of a session copies it into ``<work dir>/binder/<server
name>``, later starts of the same session keep the user's edits there. In Kubernetes
(`egi_hub.binder_service.kube_launch.KubeBinderMixin`) the environment is an image.
"""

from __future__ import annotations

import asyncio
import copy
import os
import shutil
from pathlib import Path
from typing import Any

from jupyterhub.utils import maybe_future
from tornado import web
from traitlets import Dict, HasTraits, Integer, Unicode

from egi_hub.context import UserContext
from egi_hub.names import path_component

from .guests import is_guest
from .ticket import TicketError, verify_ticket

__all__ = ["BINDER_OPTION", "DEFAULT_BINDER_PROFILE", "BinderSpawnerMixin"]

#: The ``user_options`` key holding the service's ticket.
BINDER_OPTION = "binder"

DEFAULT_BINDER_PROFILE = {
    "display_name": "Binder",
    "slug": "binder",
    # EGI Binder: 2 GB guaranteed, 4 GB at most (design §1).
    "kubespawner_override": {"mem_guarantee": "2G", "mem_limit": "4G", "cpu_limit": 1},
}


class BinderSpawnerMixin(HasTraits):
    """Binder sessions: the Binder profile and a ticket's environment (see the module)."""

    binder_ticket_secret = Unicode(
        "",
        help="""
        The secret the Binder service signs launch tickets with (the same value as
        ``BinderService.ticket_secret``; at least 32 characters). Empty: this hub starts
        no Binder session. The local stack sets both from one generated secret.
        """,
    ).tag(config=True)

    binder_profile = Dict(
        default_value=DEFAULT_BINDER_PROFILE,
        help="""
        The profile of every Binder session, in ``profile_list``'s format
        (``display_name``, ``kubespawner_override``, optionally ``vo``). Default: 2G of
        memory guaranteed, 4G at most, 1 CPU (EGI Binder's sizes).
        """,
    ).tag(config=True)

    binder_idle_timeout = Integer(
        3600,
        min=0,
        help="""
        Seconds without activity after which a Binder session stops itself (its
        kernels are culled after that long idle, then the server shuts down). 0: never.
        """,
    ).tag(config=True)

    _egi_binder: dict[str, Any] | None = None
    handled_user_options = (BINDER_OPTION,)
    #: The settings `apply_binder` changes (each spawner kind says which).
    binder_settings: tuple[str, ...] = ()

    def reset_profile(self) -> None:
        """Also put back, before any start, what a Binder start changed: this kind's
        `binder_settings` and the Binder profile's overrides (a site without profiles
        has none of those in its baseline otherwise)."""
        from egi_hub.spawner.profiles import override_keys

        wanted = {*self.binder_settings, *override_keys(self.binder_profile)}
        missing = wanted - set(self.profile_reset_extra)
        if missing:  # this spawner's own tuple; the class's stays as it is
            self.profile_reset_extra = (*self.profile_reset_extra, *sorted(missing))
        super().reset_profile()

    def binder_launch(self) -> dict[str, Any] | None:
        """The verified launch of this start (None: not a Binder session); 403 otherwise."""
        ticket = (self.user_options or {}).get(BINDER_OPTION)
        if ticket is None:
            return None
        try:
            return verify_ticket(
                self.binder_ticket_secret, ticket, user=self.user.name, server=self.name or ""
            )
        except TicketError as e:
            self._egi_failed_start = True  # stop() puts the last options back
            self.log.warning("%s: Binder start refused: %s", self._log_name, e)
            raise web.HTTPError(403, "%s", f"Binder session refused: {e}") from None

    @property
    def egi_guest(self) -> bool:
        """Whether this server's user is a Binder guest (`guests`): no mounts, no
        other server, Binder sessions only."""
        return is_guest(self.user)

    def _guest_refusal(self, launch: dict[str, Any] | None) -> str | None:
        if not self.egi_guest:
            return None
        if launch is None:
            return "a guest account runs Binder sessions only: sign in to start a server"
        others = [s for s in self.user.spawners.values() if s is not self and s.active]
        if others:
            return "a guest account runs one Binder session at a time"
        return None

    async def load_profile(self) -> Any:
        launch = self.binder_launch()
        refusal = self._guest_refusal(launch)
        if refusal:
            self._egi_failed_start = True
            raise web.HTTPError(403, "%s", refusal)
        if launch is None:
            self._egi_binder = None
            return await super().load_profile()
        from egi_hub.spawner.profiles import Profile

        context: UserContext = await self.user_context()
        profile = Profile(copy.deepcopy(self.binder_profile))
        self.reset_profile()
        await self.apply_profile(profile, [profile])
        self._egi_binder = launch
        await self.apply_binder(launch)
        self._egi_profile = profile
        self._egi_profile_loaded = True
        return profile, context

    def binder_args(self) -> list[str]:
        """The session's self-culling: idle kernels, then the idle server, stop."""
        timeout = self.binder_idle_timeout
        if not timeout:
            return []
        return [
            f"--MappingKernelManager.cull_idle_timeout={timeout}",
            "--MappingKernelManager.cull_interval=60",
            "--MappingKernelManager.cull_connected=True",
            f"--ServerApp.shutdown_no_activity_timeout={timeout}",
        ]

    async def apply_binder(self, launch: dict[str, Any]) -> None:
        """Set this spawner up to run the ticket's environment and content."""
        raise web.HTTPError(501, "%s", "Binder sessions cannot start with this spawner yet")


class LocalBinderMixin(BinderSpawnerMixin):
    """Binder sessions as local processes: the build's virtualenv, the content copied."""

    binder_settings = ("cmd", "args", "notebook_dir", "default_url", "environment")

    def binder_root(self) -> Path:
        return Path(self.work_dir) / "binder" / path_component(self.name or "default")

    async def delete_forever(self) -> None:
        """A deleted Binder session's folder goes with it (a server the service named
        ``binder-...``); a deleted guest's whole work folder and its server's log
        (nothing of a guest outlives it), unless another server of the guest is
        running. Called by the hub once the server is stopped, when the server or its
        user is deleted."""
        await maybe_future(super().delete_forever())
        if self.egi_guest:
            if any(s.active for s in self.user.spawners.values() if s is not self):
                return
            await asyncio.to_thread(self.log_path.unlink, missing_ok=True)
            target = Path(self.work_dir)
        elif (self.name or "").startswith("binder-"):
            target = self.binder_root()
        else:
            return
        await asyncio.to_thread(_remove_folder, target, Path(self.work_dir_root))

    async def apply_binder(self, launch: dict[str, Any]) -> None:
        environment = launch.get("environment") or {}
        python, content = environment.get("python"), (launch.get("content") or {}).get("path")
        if not isinstance(python, str) or not isinstance(content, str):
            raise web.HTTPError(
                400, "%s", "this Binder build has no local environment (needs the venv builder)"
            )
        await asyncio.to_thread(_prepare_content, Path(python), Path(content), self.binder_root())
        self.cmd = [python, "-m", "jupyterhub.singleuser"]
        self.notebook_dir = str(self.binder_root())
        self.args = [*self.args, *self.binder_args()]
        # The environment's commands first in a terminal, its kernel spec found first.
        env = dict(self.environment)
        bin_dir = str(Path(python).parent)
        env["PATH"] = os.pathsep.join(filter(None, [bin_dir, os.environ.get("PATH", "")]))
        # Tools that follow VIRTUAL_ENV (pip, uv) install into the session's environment,
        # never into the hub's (whose VIRTUAL_ENV the hub passes on otherwise).
        env["VIRTUAL_ENV"] = str(Path(bin_dir).parent)
        env["PYTHONPATH"] = ""
        paths = [environment.get("jupyter_path")]
        shared = environment.get("shared_prefix")
        if isinstance(shared, str):  # JupyterLab is the shared installation's: its files
            base = Path(shared)
            paths.append(str(base / "share" / "jupyter"))
            env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(
                filter(None, [env.get("JUPYTER_CONFIG_PATH"), str(base / "etc" / "jupyter")])
            )
            env["JUPYTERLAB_DIR"] = str(base / "share" / "jupyter" / "lab")
        paths.append(env.get("JUPYTER_PATH"))  # the site's own, after the session's
        env["JUPYTER_PATH"] = os.pathsep.join(p for p in paths if isinstance(p, str) and p)
        self.environment = env


def _remove_folder(target: Path, root: Path) -> None:
    """Remove ``target``, a real folder under ``root``: never when a symlink on the way
    (one a user made in their own folder) points anywhere else, another user's files."""
    target, root = Path(os.path.abspath(target)), Path(os.path.abspath(root))
    inside = target.is_relative_to(root) and target != root
    if inside and target.resolve() == root.resolve() / target.relative_to(root):
        shutil.rmtree(target, ignore_errors=True)


def _prepare_content(python: Path, source: Path, target: Path) -> None:
    """Check the build is still here; copy the fetched content (symlinks as links, never
    followed) into the session's folder on its first start, under a temporary name first
    so a failed copy leaves no half session. Later starts keep the user's edits."""
    if not python.is_file() or not source.is_dir():
        raise web.HTTPError(
            410, "%s", "the Binder environment is gone from this machine: launch again"
        )
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    partial = target.with_name(f".{target.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(source, partial, symlinks=True)
    partial.rename(target)
