"""What every Binder build backend shares: the result, the failure, the interface, and
running a build's child processes.

A backend turns fetched content (a directory) into an environment a session can start
in: a virtualenv (`venv`) or a container image (`docker`, `kubernetes`). The build
manager calls `Builder.check` before any work (a repository this backend cannot build
fails at once, with the reason), then `Builder.build` once per environment key. A build
streams its log lines as they come, records what it resolved (``pip freeze``, the image
digest) so a user can see exactly what ran, and leaves nothing under the key when it
fails, times out or is cancelled: the next request starts clean.

`run_process` runs a child in its own process group, so a cancelled build takes every
process it started with it (pip's build backends, a postBuild's background jobs).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from traitlets import Float
from traitlets.config import LoggingConfigurable

from ..providers.base import Resolved

__all__ = [
    "BuildFailed",
    "BuildResult",
    "Builder",
    "LineSplitter",
    "NeedsContainer",
    "one_line",
    "run_process",
]

MAX_LINE = 4000  # one log line (a progress bar redrawn with \r can be a megabyte long)
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]|\x1b\][^\x07]*\x07")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


@dataclass
class BuildResult:
    """A finished build: the ``key`` it was built for, the ``backend`` (``"venv"``,
    ``"docker"``, ``"kubernetes"``), the ``environment`` a launch needs (JSON-safe:
    ``{"venv": ..., "python": ...}`` or ``{"image": ..., "digest": ...}``) and what it
    ``resolved`` (``pip freeze`` text; the image digest and repo2docker's summary)."""

    key: str
    backend: str
    environment: dict[str, Any] = field(default_factory=dict)
    resolved: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def one_line(text: str, limit: int = 300) -> str:
    """``text`` as one clean line for a user: no escape sequences or control characters,
    whitespace collapsed, at most ``limit`` characters."""
    text = _CONTROL.sub(" ", _ANSI.sub("", text))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class BuildFailed(Exception):
    """A build that could not be made; ``str()`` is the one-line reason a user sees."""

    def __init__(self, reason: str) -> None:
        super().__init__(one_line(reason))


class NeedsContainer(BuildFailed):
    """A repository the virtualenv builder cannot build: the container builder can."""


class LineSplitter:
    """Bytes from a child's output, as text lines: escape sequences and control
    characters removed, ``\\r`` redraws kept as their last state, each line capped."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> list[str]:
        self._buffer += data
        *lines, self._buffer = self._buffer.split(b"\n")
        if len(self._buffer) > MAX_LINE * 4:  # no newline for a long time: cut it here
            lines.append(self._buffer)
            self._buffer = b""
        return [self._clean(line) for line in lines]

    def flush(self) -> list[str]:
        rest, self._buffer = self._buffer, b""
        return [self._clean(rest)] if rest else []

    @staticmethod
    def _clean(raw: bytes) -> str:
        text = raw.decode("utf-8", errors="replace").rstrip("\r").rsplit("\r", 1)[-1]
        text = _CONTROL.sub("", _ANSI.sub("", text.replace("\t", "    ")))
        return text if len(text) <= MAX_LINE else text[:MAX_LINE] + " […]"


async def _kill_group(proc: asyncio.subprocess.Process, grace: float) -> None:
    """End ``proc``'s process group: SIGTERM, then SIGKILL after ``grace`` seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        if sig == signal.SIGTERM and proc.returncode is None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), grace)
    await proc.wait()


async def run_process(
    cmd: Sequence[str],
    *,
    cwd: Path | str,
    env: dict[str, str],
    log: Callable[[str], None] | None = None,
    keep: int = 200,
    grace: float = 5.0,
) -> tuple[int, list[str]]:
    """Run ``cmd`` in a new process group (stdin closed, stderr into stdout), pass each
    output line to ``log`` as it comes; return the exit code and the last ``keep`` lines.

    Cancelled (or on any error), the whole group is ended (SIGTERM, SIGKILL after
    ``grace`` s); when the child exits, processes it left behind in its group are
    killed too.
    """
    proc = await asyncio.create_subprocess_exec(
        *cmd,
        cwd=str(cwd),
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    tail: deque[str] = deque(maxlen=keep)
    splitter = LineSplitter()

    def emit(lines: list[str]) -> None:
        for line in lines:
            tail.append(line)
            if log is not None:
                log(line)

    try:
        assert proc.stdout is not None
        while data := await proc.stdout.read(65536):
            emit(splitter.feed(data))
        emit(splitter.flush())
        code = await proc.wait()
    except BaseException:
        await asyncio.shield(_kill_group(proc, grace))
        raise
    await _kill_group(proc, 0)  # what it left behind in its group
    return code, list(tail)


class Builder(LoggingConfigurable):
    """One build backend. Subclasses set ``name`` and implement the methods below."""

    name = "base"

    timeout = Float(
        900.0,
        help="""Seconds a build may take; a longer one fails ("the build took longer
        than ...") and leaves nothing behind.""",
    ).tag(config=True)

    def unavailable(self) -> str | None:
        """Why this backend cannot run here (no container engine, no cluster access...),
        or ``None``. Quick: at most a short probe, cached by backends that probe."""
        return None

    def key_extra(self) -> str:
        """What, besides the content, the environment depends on with this backend (its
        base, Python, image): passed as ``extra`` to `envkey.environment_key`, so a
        change of it builds anew."""
        return self.name

    def check(self, content: Path) -> None:
        """Raise `BuildFailed` (or `NeedsContainer`) for content this backend cannot
        build, before any work."""

    async def build(
        self, key: str, content: Path, source: Resolved, log: Callable[[str], None],
        *, token: str | None = None,
    ) -> BuildResult:  # fmt: skip
        """Build the environment of ``content`` (fetched from ``source``) under ``key``;
        pass log lines to ``log`` as they come. Raises `BuildFailed` with the reason;
        on failure, timeout or cancellation nothing is left under ``key``.

        ``token``: a user's access token for ``source``'s git host, given for a private
        repository, for a backend that fetches the source itself (``kubernetes``: its
        build pod clones). Backends that build ``content``, which the service fetched
        with the token already (``venv``, ``docker``), ignore it. A backend never writes
        it to a log, a record, a command line or a result."""
        raise NotImplementedError

    async def remove(self, key: str) -> None:
        """Delete the environment built under ``key`` (nothing if there is none)."""

    async def present(self, result: BuildResult) -> bool:
        """Whether the environment of a stored ``result`` still exists."""
        return True
