"""A single-user server that dies at start: the reason (its log tail) reaches the user."""

from __future__ import annotations

import httpx

from tests.stackrunner import Stack


def test_api_spawn_failure_names_exit_status_and_log(crashing_stack: Stack):
    api = crashing_stack.api
    api.post("/users/carol")
    r = api.post("/users/carol/server")
    assert r.status_code == 500
    message = r.json()["message"]
    assert "exited with status 3" in message
    assert "egi-test: cannot import module xyz" in message
    # Users read "its log"; the path on the hub's machine is for the hub's own log.
    log_file = crashing_stack.data_dir / "logs" / "carol.log"
    assert "Last lines of its log" in message and str(log_file) not in message
    assert f"(log: {log_file})" in crashing_stack.log()
    # The progress stream (what the spawn page reads) carries the same reason.
    with httpx.stream(
        "GET",
        f"{crashing_stack.url}/hub/api/users/carol/server/progress",
        headers={"Authorization": f"token {crashing_stack.api_token}"},
        timeout=30,
    ) as stream:
        events = [line for line in stream.iter_lines() if line.startswith("data:")]
    assert "egi-test: cannot import module xyz" in events[-1]
    assert '"failed": true' in events[-1]
    # Nothing is left running, and the next attempt is allowed.
    assert crashing_stack.user("carol")["servers"] == {}
