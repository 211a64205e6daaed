"""EGILocalSpawner's own decisions, without starting a process."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from egi_hub.spawner.local import EGILocalSpawner, SingleUserExitedError
from tests.spawners import local_vo_spawner


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


# --- VO profiles on the local spawner (admission without starting a process) ----------

ACCESS = "urn:mace:egi.eu:group:vo.access.egi.eu:role=member#aai.egi.eu"
BIG = {
    "display_name": "Big",
    "slug": "big",
    "kubespawner_override": {
        "cpu_limit": 2,
        "mem_limit": "2G",
        "cmd": ["/opt/big/bin/jupyterhub-singleuser"],
        "args": ["--ServerApp.iopub_data_rate_limit=1e10"],
        "environment": {"BIG_ONLY": "1"},
        "default_url": "/tree",
    },
}
SMALL = {
    "display_name": "Small",
    "slug": "small",
    "kubespawner_override": {"cpu_limit": 1, "mem_limit": "1G"},
    "profile_options": {
        "flavour": {
            "display_name": "Flavour",
            "choices": {
                "plain": {"display_name": "Plain", "default": True},
                "lab": {
                    "display_name": "Lab tweaks",
                    "kubespawner_override": {"environment": {"FLAVOUR": "lab"}},
                },
            },
        }
    },
}
RESET = ["cpu_limit", "mem_limit", "cmd", "args", "environment", "default_url"]


@pytest.fixture
def vo_spawner(tmp_path):
    with local_vo_spawner(tmp_path, "alice", [ACCESS], [BIG, SMALL]) as s:
        yield s


async def test_restart_with_another_profile_keeps_nothing_of_the_first(vo_spawner):
    """One spawner object started with "big", stopped, started with "small" keeps
    nothing of "big". Before the fix, "big"'s command, arguments, environment and
    default URL stayed (``setattr`` never undone). (JupyterHub 6 usually makes a new
    spawner after a clean stop; the spawner must not depend on that.)"""
    s = vo_spawner
    before = {name: getattr(s, name) for name in RESET}
    s.user_options = {"profile": "big"}
    charge = await s.admit()
    assert (charge.cpu, charge.memory, charge.profile) == (2.0, 2 * 2**30, "big")
    assert s.cmd == ["/opt/big/bin/jupyterhub-singleuser"] and s.environment == {"BIG_ONLY": "1"}
    s.quota.release(charge.user, charge.server)  # what stop() does
    s.user_options = {"profile": "small"}
    charge = await s.admit()
    assert (charge.cpu, charge.memory, charge.profile) == (1.0, 2**30, "small")
    assert {name: getattr(s, name) for name in RESET} == {
        **before,
        "cpu_limit": 1.0,
        "mem_limit": 2**30,
    }


async def test_profile_options_are_chosen_in_the_form_and_applied(vo_spawner):
    s = vo_spawner
    form = s.render_profiles_form(s.profile_list)
    assert 'name="profile-option-small--flavour" id="profile-option-small--flavour"' in form
    s.user_options = s.options_from_form(
        {"profile": ["small"], "profile-option-small--flavour": ["lab"]}
    )
    assert s.user_options == {"profile": "small", "flavour": "lab"}
    await s.admit()
    assert s.environment == {"FLAVOUR": "lab"}


async def test_an_option_choice_that_does_not_exist_is_a_400(vo_spawner):
    from tornado import web

    s = vo_spawner
    s.user_options = {"profile": "small", "flavour": "gpu"}
    with pytest.raises(web.HTTPError) as info:
        await s.admit()
    assert info.value.status_code == 400
    assert "has no choice 'gpu' (choices: plain, lab)" in str(info.value)
    assert s.quota.charge_of("alice", "") is None
