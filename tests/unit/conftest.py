"""The unit lane's guard: a unit test starts no process and opens no network connection.

Unit tests run in seconds and need nothing but Python (no hub, no provider, no browser):
`make test-unit` is what a developer runs on every change. A test here that starts a
subprocess (``subprocess``, ``asyncio.create_subprocess_exec``, ``os.fork``/``system``)
or connects a TCP socket (to a hub, a provider, a stand-in server) fails loudly: it
belongs in ``tests/integration``. Binding a socket (to check that a port is taken) is
allowed. The guard raises `UnitLaneError` at the call and, in case the code under test
swallowed that, fails the test again at teardown.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from typing import Any

# Imported before any guard is up: jupyterhub.auth imports pamela, which runs
# `ldconfig -p` once at import time (ctypes.util.find_library("pam")). Not a test's doing.
import jupyterhub.auth  # noqa: F401
import pytest

ADVICE = "unit tests start no processes and open no connections: move it to tests/integration"


class UnitLaneError(RuntimeError):
    """A unit test tried to start a process or open a network connection."""


@pytest.fixture(autouse=True)
def unit_lane_guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Forbid processes and connections for the test; yields the list of attempts."""
    attempts: list[str] = []

    def refuse(what: str) -> None:
        attempts.append(what)
        raise UnitLaneError(f"{what}: {ADVICE}")

    def no_child(self: subprocess.Popen, args: Any, *rest: Any, **kwargs: Any) -> None:
        refuse(f"subprocess {args!r}")

    def no_os_call(name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            refuse(f"os.{name}{args!r}")

        return call

    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded(original: Any) -> Any:
        def method(self: socket.socket, address: Any) -> Any:
            if self.family in (socket.AF_INET, socket.AF_INET6):
                refuse(f"connection to {address!r}")
            return original(self, address)

        return method

    # Popen._execute_child is where every subprocess (asyncio's too) is started.
    monkeypatch.setattr(subprocess.Popen, "_execute_child", no_child)
    for name in ("fork", "forkpty", "system", "posix_spawn", "posix_spawnp"):
        if hasattr(os, name):
            monkeypatch.setattr(os, name, no_os_call(name))
    monkeypatch.setattr(socket.socket, "connect", guarded(connect))
    monkeypatch.setattr(socket.socket, "connect_ex", guarded(connect_ex))
    yield attempts
    if attempts:
        pytest.fail(f"{'; '.join(attempts)}: {ADVICE}", pytrace=False)
