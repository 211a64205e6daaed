"""EGILocalSpawner's own decisions, without starting a process."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from egi_hub.spawner.local import EGILocalSpawner, SingleUserExitedError


def spawner(tmp_path, name: str = "alice", server: str = "") -> EGILocalSpawner:
    user = SimpleNamespace(name=name, url=f"/user/{name}/")
    return EGILocalSpawner(
        user=user,
        orm_spawner=SimpleNamespace(name=server, server=None),
        work_dir_root=str(tmp_path / "users"),
        log_dir=str(tmp_path / "l"),
    )


@pytest.mark.parametrize(("euid", "expected"), [(0, True), (1000, False)])
def test_allow_root_only_as_root(tmp_path, monkeypatch, euid, expected):
    monkeypatch.setattr("os.geteuid", lambda: euid)
    assert ("--allow-root" in spawner(tmp_path).get_args()) is expected


def test_allow_root_not_doubled(tmp_path, monkeypatch):
    monkeypatch.setattr("os.geteuid", lambda: 0)
    s = spawner(tmp_path)
    s.args = ["--allow-root"]
    assert s.get_args().count("--allow-root") == 1


def test_work_dir_is_home_and_escaped(tmp_path):
    s = spawner(tmp_path, "Jörg@egi.eu")
    assert s.work_dir == tmp_path / "users" / "-4a-c3-b6rg-40egi.eu"
    env = s.user_env({})
    assert env["HOME"] == str(s.work_dir)
    assert env["USER"] == "Jörg@egi.eu"


def test_log_paths_for_default_and_named_servers(tmp_path):
    assert spawner(tmp_path).log_path == tmp_path / "l" / "alice.log"
    assert spawner(tmp_path, server="gpu").log_path == tmp_path / "l" / "alice~gpu.log"


def test_defaults_open_jupyterlab_with_the_installed_singleuser(tmp_path):
    s = spawner(tmp_path)
    assert s.default_url == "/lab"
    assert s.cmd[0].endswith("jupyterhub-singleuser")


def test_exit_error_message_has_status_and_log_tail(tmp_path):
    err = SingleUserExitedError(3, tmp_path / "a.log", ["line one", "<b>two</b>"])
    assert err.status_code == 500
    assert "exited with status 3" in err.jupyterhub_message
    assert err.jupyterhub_message.endswith("line one\n<b>two</b>")
    assert "&lt;b&gt;two&lt;/b&gt;" in err.jupyterhub_html_message
    assert "(the log is empty)" in SingleUserExitedError(1, tmp_path, []).jupyterhub_message
