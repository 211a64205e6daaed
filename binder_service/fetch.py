"""Bringing a resolved repository or record onto disk, in a worker process.

`fetch` runs ``python -m egi_hub.binder_service.fetch_worker`` (this Python) as an
asyncio subprocess and relays its progress lines to the build log as they come. The work
is done in a process of its own because it runs repo2docker's content providers, which
are blocking code (``subprocess``, ``requests``) that must not stall the service's event
loop, and because a process can be killed whole: the worker starts its own session, and
a timeout or a cancelled launch kills its process group (the worker and every ``git``
it started), then removes what it left.

What the worker gets, and how:

- the job, as one JSON line on stdin: ``resolved.fetch`` (see below), the destination,
  the working paths, the limits (`FetchLimits`) and the site's settings;
- a token for a private repository, as a second JSON line on stdin: never on the command
  line (any user of the machine can read it with ``ps``) nor in the environment;
- an environment of its own: only ``PATH``, locale, proxy and CA settings pass (never
  the service's own secrets, never a ``GIT_*`` variable), plus ``HOME`` set to a fresh
  private directory (no user ``.gitconfig`` or ``.netrc`` is read; the worker keeps a
  token's file there while git clones), made under ``temp_dir`` (the service's own
  ``<data_dir>/tmp``, which it empties when it starts: a crash leaves no token file in
  the machine's shared /tmp) and removed when the worker ends, ``GIT_CONFIG_NOSYSTEM``,
  ``GIT_TERMINAL_PROMPT=0`` (a private repository fails instead of waiting for a
  password) and ``GIT_ALLOW_PROTOCOL=https:http:git`` (a submodule can never be
  ``file://``, ``ssh://`` or ``ext::``).

The worker answers one JSON object per line on stdout: ``{"line": ...}`` for progress,
then ``{"done": true}`` or ``{"error": "<one line>"}``, with ``"kind": "credentials"``
when the git server asked for credentials the worker did not have or that it refused
(`FetchNeedsCredentials`: the service may try again with the user's token). It fetches into
``<dest parent>/.<name>.partial-<random>`` (downloads wait in ``.<name>.scratch-<random>``)
and renames that to ``dest`` only when everything was fetched and checked: nothing half
fetched is ever at ``dest``.

Fetch jobs (``Resolved.fetch``):

- ``{"provider": "git", "repo": <https/http/git URL>, "ref": <full commit SHA>,
  "username": <optional, for a token: "x-access-token" by default, "oauth2" for
  GitLab OAuth tokens>}``: cloned with repo2docker's ``Git`` provider, then ``HEAD``
  must be that commit;
- ``{"provider": "zenodo", "api": <site>api/records/, "record": <version id>, "files":
  [{"key", "size", "checksum", "url"}, ...]}``, ``{"provider": "figshare", "api",
  "article", "version", "downloads", "files"}`` and ``{"provider": "dataverse", "site",
  "dataset", "version", "files"}`` (made by `binder_service.providers`): fetched with
  repo2docker's ``Zenodo``, ``Figshare`` and ``Dataverse`` providers with our own safe
  requests and downloads (`binder_service.record_downloads`), each file checked against
  this list. ``settings`` (`RecordProvider.fetch_settings`) names the sites the worker
  may read; without it, the sites in the job.

For git jobs, ``settings`` may hold ``git_ca_file``: the site's CA bundle
(`GitProvider.ca_bundle`: the system's authorities plus `GitProvider.extra_ca_file`),
the only CA setting git gets.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import sys
import tempfile
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .providers.base import FetchError, Resolved

__all__ = ["WORKER", "FetchLimits", "FetchNeedsCredentials", "fetch", "worker_env"]

log = logging.getLogger(__name__)

WORKER = "egi_hub.binder_service.fetch_worker"
MAX_EVENT = 1 << 20  # bytes of one line from the worker (it keeps its lines far shorter)
STDERR_TAIL = 20  # lines of the worker's stderr kept for the service's log
# What passes from the service's environment to the worker (and to git).
PASS_ENV = (
    "PATH",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "PYTHONPATH",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
)


class FetchNeedsCredentials(FetchError):
    """The git server asked for credentials (a private repository): the worker said so
    (``"kind": "credentials"``), not guessed from the reason's words."""


@dataclass(frozen=True)
class FetchLimits:
    """How much one fetch may bring (bytes on disk, files) and how long it may take."""

    max_bytes: int = 2 << 30
    max_files: int = 100_000
    timeout: float = 600.0


def worker_env(home: Path) -> dict[str, str]:
    """The worker's environment (see the module): nothing of the service's but `PASS_ENV`."""
    env = {k: v for k, v in os.environ.items() if k in PASS_ENV}
    env.update(
        HOME=str(home),
        GIT_ALLOW_PROTOCOL="https:http:git",
        GIT_TERMINAL_PROMPT="0",
        GIT_CONFIG_NOSYSTEM="1",
        PYTHONUNBUFFERED="1",
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def _remove(*paths: Path) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


async def fetch(
    resolved: Resolved,
    dest: Path,
    *,
    on_line: Callable[[str], None],
    token: str | None = None,
    limits: FetchLimits | None = None,
    settings: dict[str, Any] | None = None,
    temp_dir: Path | str | None = None,
) -> None:
    """Fetch ``resolved`` into the new directory ``dest`` (see the module), calling
    ``on_line`` with each progress line as it comes; `FetchError` with a one-line
    reason if it cannot (then nothing is left at ``dest`` or beside it), and
    `FetchNeedsCredentials` when the git server asked for credentials. The worker's
    private home is made under ``temp_dir`` (default: the system's temporary folder)."""
    limits = limits or FetchLimits()
    dest = Path(dest)
    if dest.exists():
        raise FetchError(f"the fetch destination {dest.name} already exists")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tag = secrets.token_hex(8)
    work = dest.parent / f".{dest.name}.partial-{tag}"
    scratch = dest.parent / f".{dest.name}.scratch-{tag}"
    home = Path(tempfile.mkdtemp(prefix="egi-binder-fetch-", dir=temp_dir))  # mode 0700
    job = {
        "fetch": resolved.fetch,
        "label": resolved.label,
        "dest": str(dest),
        "work": str(work),
        "scratch": str(scratch),
        "limits": asdict(limits),
        "settings": settings or {},
    }
    stdin = (json.dumps(job) + "\n" + json.dumps({"token": token}) + "\n").encode()
    proc: asyncio.subprocess.Process | None = None
    stderr: deque[str] = deque(maxlen=STDERR_TAIL)
    result: dict[str, Any] = {}
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            WORKER,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=worker_env(home),
            cwd=home,
            start_new_session=True,
            limit=MAX_EVENT,
        )
        try:
            async with asyncio.timeout(limits.timeout):
                await _talk(proc, stdin, on_line, stderr, result)
        except TimeoutError:
            raise FetchError(
                f"fetching {resolved.label} took longer than {limits.timeout:g} s"
            ) from None
    finally:
        if proc is not None:
            await _kill(proc)
        _remove(home)
        if proc is None or proc.returncode != 0 or "done" not in result:
            await asyncio.shield(asyncio.to_thread(_remove, work, scratch))
        else:
            await asyncio.to_thread(_remove, scratch)
    if "error" in result:
        if result.get("kind") == "credentials":
            raise FetchNeedsCredentials(result["error"])
        raise FetchError(result["error"])
    if proc.returncode != 0 or "done" not in result or not dest.is_dir():
        log.warning(
            "fetch worker for %s ended with %s; its last lines: %s",
            resolved.label,
            proc.returncode,
            " | ".join(stderr),
        )
        raise FetchError(f"fetching {resolved.label} failed (the worker ended unexpectedly)")


async def _talk(
    proc: asyncio.subprocess.Process,
    stdin: bytes,
    on_line: Callable[[str], None],
    stderr: deque[str],
    result: dict[str, Any],
) -> None:
    """Send the job, relay the worker's events, keep its stderr's tail, wait for it."""
    assert proc.stdin and proc.stdout and proc.stderr

    async def send() -> None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(stdin)
            await proc.stdin.drain()
            proc.stdin.close()

    async def errors() -> None:
        while raw := await proc.stderr.readline():
            stderr.append(raw.decode("utf-8", "replace").rstrip()[:500])

    async def events() -> None:
        while True:
            try:
                raw = await proc.stdout.readline()
            except ValueError:  # a line over MAX_EVENT: not our worker's
                result.setdefault("error", "the fetch worker answered an over-long line")
                return
            if not raw:
                return
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if not isinstance(event, dict):
                continue
            if isinstance(event.get("line"), str):
                on_line(event["line"])
            elif event.get("done") is True:
                result["done"] = True
            elif isinstance(event.get("error"), str):
                result["error"] = event["error"].splitlines()[0][:500] if event["error"] else "?"
                if event.get("kind") == "credentials":
                    result["kind"] = "credentials"

    await asyncio.gather(send(), errors(), events())
    await proc.wait()


async def _kill(proc: asyncio.subprocess.Process) -> None:
    """Kill the worker's process group (it leads its own session) and reap it."""
    if proc.returncode is None:  # not reaped yet: its pid is still its group's id
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
    await asyncio.shield(proc.wait())
