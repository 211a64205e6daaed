"""`EGILocalSpawner`: single-user servers as local processes, one work directory per user.

The local stack runs every user's server as the hub's own OS user (no system accounts
are needed), each with its own working and home directory under the data dir. A server
that dies while starting is reported with the last lines of its log.
"""

from __future__ import annotations

import asyncio
import html
import math
import os
import resource
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from subprocess import STDOUT
from typing import Any, BinaryIO

from jupyterhub.spawner import LocalProcessSpawner
from tornado import web
from traitlets import Bool, Integer, Unicode, default

from egi_hub.binder_service.spawner import LocalBinderMixin
from egi_hub.names import path_component
from egi_hub.procs import installed_script, tail_lines
from egi_hub.singleuser_config import JUPYTER_CONFIG_DIR
from egi_hub.storage_mounts.spawner import StorageSpawnerMixin

from .progress import ProgressEvents
from .vo_spawning import VOSpawnerMixin

__all__ = ["EGILocalSpawner", "LocalWorkdirSpawner", "SingleUserExitedError"]


class SingleUserExitedError(web.HTTPError):
    """The single-user server exited before it accepted connections.

    An HTTP error (500), so that JupyterHub shows its message, with the log's last
    lines, on the spawn page, the spawn-pending page and in the REST API. What users
    read says "its log": the log's path is the hub machine's, of use to admins only,
    so only the hub's own log (the error's ``log_message``) names it.
    """

    def __init__(self, status: int, log_path: Path, lines: list[str]) -> None:
        text = "\n".join(lines) or "(the log is empty)"
        summary = f"the single-user server exited with status {status} before it was ready"
        super().__init__(500, "%s", f"{summary}. Last lines of {log_path}:\n{text}")
        # Read by JupyterHub to show the reason on the spawn page and in the API.
        self.jupyterhub_message = f"{summary}. Last lines of its log:\n{text}"
        self.jupyterhub_html_message = (
            f"<p>{html.escape(summary.capitalize())}. Last lines of its log:</p>"
            f'<pre class="egi-spawn-log">{html.escape(text)}</pre>'
        )


class LocalWorkdirSpawner(ProgressEvents, LocalProcessSpawner):
    """Run ``jupyterhub-singleuser`` (JupyterLab) locally, as the hub's own OS user.

    Its start reports each step as it happens (`ProgressEvents`): the process started,
    waiting for the server to listen, listening (the hub then checks that it answers).
    """

    work_dir_root = Unicode(
        help="""
        Directory holding one working directory per user (``<root>/<user>``), which is
        also the user's ``HOME``. The local stack sets it to ``<data dir>/users``.
        Default: ``~/.local/share/egi-hub/users``.
        """,
    ).tag(config=True)

    log_dir = Unicode(
        help="""
        Directory for the single-user servers' logs (``<user>.log``, ``<user>~<server>.log``
        for named servers). The local stack sets it to ``<data dir>/logs``.
        Default: ``~/.local/share/egi-hub/logs``.
        """,
    ).tag(config=True)

    log_tail_lines = Integer(
        20,
        help="How many lines of a failed server's log to show on the spawn page.",
    ).tag(config=True)

    @default("work_dir_root")
    def _default_work_dir_root(self) -> str:
        return os.path.expanduser("~/.local/share/egi-hub/users")

    @default("log_dir")
    def _default_log_dir(self) -> str:
        return os.path.expanduser("~/.local/share/egi-hub/logs")

    @default("cmd")
    def _default_cmd(self) -> list[str]:
        return [installed_script("jupyterhub-singleuser")]

    @default("default_url")
    def _default_default_url(self) -> str:
        return "/lab"

    @property
    def work_dir(self) -> Path:
        """This user's working and home directory."""
        return Path(self.work_dir_root) / path_component(self.user.name)

    @property
    def log_path(self) -> Path:
        """Where this server's output goes."""
        name = path_component(self.user.name)
        if self.name:
            name = f"{name}~{path_component(self.name)}"
        return Path(self.log_dir) / f"{name}.log"

    def make_preexec_fn(self, name: str) -> None:
        # No set-uid: every server runs as the hub's OS user. Popen's ``cwd`` does the rest.
        return None

    def user_env(self, env: dict[str, str]) -> dict[str, str]:
        env["USER"] = self.user.name
        env["HOME"] = str(self.work_dir)
        env.setdefault("SHELL", "/bin/bash")
        # egi-hub's Jupyter config: enables its server extensions (the token keeper, which
        # keeps ~/.egi/access_token current) and JupyterLab's quiet defaults. Last on the
        # path, so that a site's own dirs (Spawner.environment) come first and win.
        paths = [*filter(None, [env.get("JUPYTER_CONFIG_PATH")]), JUPYTER_CONFIG_DIR]
        env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(paths)
        return env

    def get_args(self) -> list[str]:
        args = super().get_args()
        if os.geteuid() == 0 and "--allow-root" not in args:
            # Jupyter Server refuses to run as root without it; only add it when needed.
            args = [*args, "--allow-root"]
        return args

    async def move_certs(self, paths: dict[str, str]) -> dict[str, str]:
        # Same OS user as the hub: the certificates are readable where they are.
        return paths

    def _open_log(self) -> BinaryIO:
        """Create the work and log directories; open the server's log for appending."""
        self.work_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        log_file = open(self.log_path, "ab")  # closed by start()
        log_file.write(f"--- start {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n".encode())
        log_file.flush()
        return log_file

    async def progress(self) -> AsyncIterator[dict[str, Any]]:
        async for event in self.follow_progress():
            yield event

    async def start(self) -> tuple[str, int]:
        try:
            # File-system work in a thread: the hub's event loop never waits on a disk.
            log_file = await asyncio.to_thread(self._open_log)
            with log_file:
                configured = self.popen_kwargs
                self.popen_kwargs = {
                    **configured,
                    "cwd": str(self.work_dir),
                    "stdout": log_file,
                    "stderr": STDOUT,
                }
                try:
                    ip, port = await super().start()
                finally:
                    self.popen_kwargs = configured
            self.progress_event(40, f"Server process started (pid {self.pid})")
            self.progress_event(50, f"Waiting for the server to answer on port {port}")
            await self._wait_listening(ip, port, self.log_path)
            self.progress_event(80, "The server is listening; the hub checks that it answers")
        finally:
            self.progress_end()
        return ip, port

    async def _wait_listening(self, ip: str, port: int, log_path: Path) -> None:
        """Return once the server accepts connections; raise if its process exits first."""
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            status = self.proc.poll() if self.proc is not None else None
            if status is not None:
                lines = await asyncio.to_thread(tail_lines, log_path, self.log_tail_lines)
                self.log.error(
                    "Server %s exited with status %s (log: %s)", self._log_name, status, log_path
                )
                raise SingleUserExitedError(status, log_path, lines)
            try:
                _, writer = await asyncio.open_connection(ip, port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            await writer.wait_closed()
            return
        # The hub's own start_timeout handling reports the time-out.


class EGILocalSpawner(LocalBinderMixin, StorageSpawnerMixin, VOSpawnerMixin, LocalWorkdirSpawner):
    """The local stack's spawner: VO profiles and quotas over `LocalWorkdirSpawner`.

    Of a profile's ``kubespawner_override`` it applies what a local process can take:
    ``cpu_limit``/``mem_limit`` (charged to the quota, passed to the server as
    ``CPU_LIMIT``/``MEM_LIMIT`` for JupyterLab's resource display, and enforced as below),
    guarantees, ``environment``, ``cmd``, ``args`` and ``default_url``. Binder sessions
    (`LocalBinderMixin`) run the service's virtualenv with the fetched content.

    Enforcement on one machine: ``mem_limit`` becomes each process's address-space limit
    (``RLIMIT_AS``; the server and every kernel get it separately), and ``cpu_limit``
    pins the server and its kernels to that many CPU cores (rounded up), spread over
    the machine's cores.
    """

    applicable_overrides = (
        "cpu_limit",
        "mem_limit",
        "cpu_guarantee",
        "mem_guarantee",
        "environment",
        "cmd",
        "args",
        "default_url",
    )

    enforce_limits = Bool(
        True,
        help="Enforce mem_limit (RLIMIT_AS) and cpu_limit (CPU affinity) on the processes.",
    ).tag(config=True)

    _next_core = 0  # rotates, so that pinned servers spread over the cores

    def _cores(self) -> list[int] | None:
        """The cores this server may use, or None for all of them."""
        available = sorted(os.sched_getaffinity(0))
        if not self.cpu_limit or self.cpu_limit >= len(available):
            return None
        count = max(1, math.ceil(self.cpu_limit))
        start = EGILocalSpawner._next_core % len(available)
        EGILocalSpawner._next_core += count
        return [available[(start + i) % len(available)] for i in range(count)]

    def make_preexec_fn(self, name: str) -> Callable[[], None] | None:
        if not self.enforce_limits:
            return None
        memory = int(self.mem_limit or 0)
        cores = self._cores()
        if not memory and not cores:
            return None

        def limit() -> None:  # runs in the child, between fork and exec
            if memory:
                resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
            if cores:
                os.sched_setaffinity(0, cores)

        return limit
