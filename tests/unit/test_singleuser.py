"""The notebook side's token keeper, without a hub: file reading, timing, enabling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import egi_hub.token
from egi_hub.singleuser import token
from egi_hub.singleuser_config import JUPYTER_CONFIG_DIR


def test_the_documented_import_is_the_keepers_function():
    assert egi_hub.token.access_token is token.access_token
    assert egi_hub.token.token_file is token.token_file


def test_access_token_reads_the_file_named_by_the_environment(tmp_path, monkeypatch):
    path = tmp_path / "t"
    monkeypatch.setenv("EGI_TOKEN_FILE", str(path))
    with pytest.raises(RuntimeError, match="No Check-in access token"):
        token.access_token()
    path.write_text("")
    with pytest.raises(RuntimeError, match="empty"):
        token.access_token()
    path.write_text("abc\n")
    assert token.access_token() == "abc"


def test_default_token_file_is_in_home(monkeypatch, tmp_path):
    monkeypatch.delenv("EGI_TOKEN_FILE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert token.token_file() == tmp_path / ".egi" / "access_token"


@pytest.mark.parametrize(
    ("expires_in", "wait"),
    [(None, token.MAX_WAIT), (1, token.MIN_WAIT), (100, 50), (10_000, token.MAX_WAIT)],
)
def test_next_fetch_after_half_the_remaining_life_within_bounds(expires_in, wait):
    data = {"expires_at": None if expires_in is None else 1000 + expires_in}
    assert token.TokenKeeper.wait_after(data, now=1000) == wait


def test_the_shipped_jupyter_config_enables_the_keeper_module():
    config = Path(JUPYTER_CONFIG_DIR) / "jupyter_server_config.d" / "egi_hub.json"
    enabled = json.loads(config.read_text())["ServerApp"]["jpserver_extensions"]
    assert enabled["egi_hub.singleuser.token"] is True
    assert token._jupyter_server_extension_points() == [{"module": "egi_hub.singleuser.token"}]


def test_outside_a_jupyterhub_server_the_extension_does_nothing(monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_API_URL", raising=False)
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    server = type("ServerApp", (), {})()
    token._load_jupyter_server_extension(server)
    assert not hasattr(server, "_egi_token_task")
