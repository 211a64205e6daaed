"""The egi-hub command line, run as a real process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.stackrunner import free_port, processes_in

REPO = Path(__file__).resolve().parents[2]


def egi_hub(
    *args: str, timeout: float = 60, env: dict | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "egi_hub", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=env,
    )


def test_version():
    r = egi_hub("version")
    assert r.returncode == 0
    assert r.stdout.startswith("egi-hub ")
    assert "JupyterHub 6." in r.stdout


@pytest.mark.parametrize("args", [(), ("up",), ("config",), ("config", "check")])
def test_help_is_plain_text(args):
    """argparse prints descriptions as they are: no reStructuredText markup in them."""
    r = egi_hub(*args, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: egi-hub")
    assert "``" not in r.stdout and ":class:" not in r.stdout
    if not args:
        assert "The egi-hub command: start the local stack (up)" in r.stdout


def test_config_check_ok():
    r = egi_hub("config", "check", str(REPO / "site.example.yaml"))
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith(": OK")


def test_config_check_names_bad_keys(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text(
        yaml.safe_dump(
            {
                "DevAuthenticator": {"users": {"alice": {"entitlements": "urn:x"}}},
                "JupyterHub": {"prot": 8000},
            }
        )
    )
    r = egi_hub("config", "check", str(site))
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "egi-hub: DevAuthenticator.users.alice.entitlements: expected a list, got string 'urn:x'",
        "egi-hub: JupyterHub.prot: unknown setting (did you mean 'port'?)",
    ]


def test_up_with_bad_site_file_starts_nothing(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text("JupyterHub:\n  port: eighty\n")
    data = tmp_path / "data"
    r = egi_hub("up", "--config", str(site), "--data-dir", str(data))
    assert r.returncode == 2
    assert r.stderr.strip() == "egi-hub: JupyterHub.port: expected an int, got string 'eighty'"
    assert not data.exists()


def test_up_on_a_taken_port_is_one_line_and_leaves_nothing(tmp_path):
    data = tmp_path / "data"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = egi_hub("up", "--port", str(port), "--data-dir", str(data))
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"egi-hub: port {port} on 127.0.0.1 (public port: JupyterHub.port or --port) "
        "is already in use"
    ]
    assert processes_in(data) == []


def test_config_check_warns_about_limits_for_an_unmentioned_vo(tmp_path):
    site = tmp_path / "site.yaml"
    site.write_text(
        yaml.safe_dump(
            {
                "QuotaPolicy": {"vo_limits": {"vo.typo.eu": {"max_servers": 1}}},
                "DevAuthenticator": {
                    "users": {"a": {"entitlements": ["urn:mace:egi.eu:group:vo.x#aai.egi.eu"]}}
                },
            }
        )
    )
    r = egi_hub("config", "check", str(site))
    assert r.returncode == 0
    assert r.stderr.strip() == (
        "egi-hub: warning: QuotaPolicy.vo_limits.vo.typo.eu: "
        "no user, login rule or profile mentions this VO"
    )


@pytest.mark.parametrize(
    "content",
    [b"not a key\n", b"abcd\n", b"\xff\xfe\x00binary", b""],
    ids=["text", "short-hex", "binary", "empty"],
)
def test_up_with_a_corrupt_crypt_key_is_one_line_and_starts_nothing(tmp_path, content):
    """Before the fix: a ValueError traceback from bytes.fromhex."""
    data = tmp_path / "data"
    data.mkdir()
    key_file = data / "crypt_key"
    key_file.write_bytes(content)
    env = {k: v for k, v in os.environ.items() if k != "JUPYTERHUB_CRYPT_KEY"}
    r = egi_hub("up", "--port", str(free_port()), "--data-dir", str(data), env=env)
    assert r.returncode == 1
    assert r.stderr.splitlines() == [
        f"egi-hub: {key_file.resolve()}: not a valid encryption key (expected 64 hex digits); "
        "restore it from a backup, set $JUPYTERHUB_CRYPT_KEY, or delete it to make a new key "
        "(users' stored tokens are then lost: they log in again)"
    ]
    assert key_file.read_bytes() == content  # left as it was, for the admin to look at
    assert processes_in(data) == []
