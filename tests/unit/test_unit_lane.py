"""The unit lane's guard itself (tests/unit/conftest.py): processes and connections fail."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys

import pytest

from tests.unit.conftest import UnitLaneError


def test_a_subprocess_is_refused(unit_lane_guard):
    with pytest.raises(UnitLaneError, match="move it to tests/integration"):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    with pytest.raises(UnitLaneError):
        os.system("true")
    assert len(unit_lane_guard) == 2
    unit_lane_guard.clear()  # this test wanted them; others fail at teardown


async def test_an_asyncio_subprocess_is_refused(unit_lane_guard):
    with pytest.raises(UnitLaneError):
        await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    unit_lane_guard.clear()


async def test_a_connection_is_refused_even_when_swallowed(unit_lane_guard):
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))  # binding is fine (port checks do it)
        server.listen()
        port = server.getsockname()[1]
        try:
            await asyncio.open_connection("127.0.0.1", port)
        except Exception:
            pass  # as a retry loop in the code under test might
    assert unit_lane_guard == [f"connection to ('127.0.0.1', {port})"]
    unit_lane_guard.clear()
