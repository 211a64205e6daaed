"""Local processes and ports: finding installed scripts, free ports, log tails."""

from __future__ import annotations

import errno
import os
import shutil
import socket
import sys
from collections import deque
from pathlib import Path

__all__ = ["PortInUseError", "check_port_free", "free_port", "installed_script", "tail_lines"]


class PortInUseError(OSError):
    """A port egi-hub was asked to listen on is taken."""

    def __init__(self, ip: str, port: int, what: str) -> None:
        self.ip, self.port, self.what = ip, port, what
        super().__init__(errno.EADDRINUSE, f"port {port} on {ip} ({what}) is already in use")


def installed_script(name: str) -> str:
    """The absolute path of a console script installed beside this Python, else ``name``.

    The stack is often started as ``.venv/bin/egi-hub`` without the virtualenv on
    PATH; its own proxy and single-user scripts must still be the ones it runs.
    """
    here = Path(sys.executable).parent
    found = shutil.which(name, path=str(here)) or shutil.which(name)
    return found or name


def free_port(ip: str = "127.0.0.1") -> int:
    """A TCP port on ``ip`` that nothing listens on right now."""
    with socket.socket(socket.AF_INET6 if ":" in ip else socket.AF_INET) as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def check_port_free(ip: str, port: int, what: str) -> None:
    """Raise `PortInUseError` if ``ip:port`` cannot be bound (something listens there)."""
    family = socket.AF_INET6 if ":" in ip else socket.AF_INET
    with socket.socket(family) as s:
        # SO_REUSEADDR: a port left in TIME_WAIT by a previous run is free to use.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip or "0.0.0.0", port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise PortInUseError(ip, port, what) from None
            raise


def tail_lines(path: str | os.PathLike, count: int) -> list[str]:
    """The last ``count`` lines of a text file (an empty list if it does not exist)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n") for line in deque(f, maxlen=count)]
    except FileNotFoundError:
        return []
