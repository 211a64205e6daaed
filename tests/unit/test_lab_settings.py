"""JupyterLab's quiet defaults and the resource display, as the installed Jupyter reads them.

The override files are read here by the installed jupyterlab_server's own loader, from
the places each install puts them: the package's config dir on ``JUPYTER_CONFIG_PATH``
(the local spawner, an editable install) and the wheel's ``overrides.d`` file in
JupyterLab's app settings. A site's own files must win over both.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from jupyter_resource_usage.config import ResourceUseDisplay
from jupyterlab.commands import get_app_dir
from jupyterlab_server.settings_utils import _get_overrides
from traitlets.config import Config

from egi_hub.singleuser import defaults
from egi_hub.singleuser_config import JUPYTER_CONFIG_DIR
from egi_hub.spawner.local import EGILocalSpawner

NOTIFICATION = "@jupyterlab/apputils-extension:notification"
QUIET = {"fetchNews": "false", "checkForUpdates": False}
CONFIG = Path(JUPYTER_CONFIG_DIR)
WHEEL_OVERRIDES = CONFIG / "lab-settings" / "overrides.d" / "egi_hub.json"


@pytest.fixture
def config_path(tmp_path, monkeypatch):
    """Only the Jupyter config dirs a test names (no user's ~/.jupyter), set per test."""
    monkeypatch.setenv("JUPYTER_CONFIG_DIR", str(tmp_path / "user-config"))
    monkeypatch.setenv("JUPYTER_NO_CONFIG", "")
    monkeypatch.delenv("JUPYTER_CONFIG_PATH", raising=False)

    def use(*dirs: Path) -> None:
        monkeypatch.setenv("JUPYTER_CONFIG_PATH", ":".join(map(str, dirs)))

    return use


def site_labconfig(folder: Path, overrides: dict) -> Path:
    (folder / "labconfig").mkdir(parents=True)
    (folder / "labconfig" / "default_setting_overrides.json").write_text(json.dumps(overrides))
    return folder


def test_the_overrides_name_settings_of_the_installed_jupyterlab():
    """A renamed setting would be ignored silently: check them against Lab's schema."""
    schema_file = Path(get_app_dir()) / "schemas" / f"{NOTIFICATION.replace(':', '/')}.json"
    properties = json.loads(schema_file.read_text())["properties"]
    assert properties["checkForUpdates"]["type"] == "boolean"
    assert "false" in [choice["const"] for choice in properties["fetchNews"]["oneOf"]]
    assert json.loads(WHEEL_OVERRIDES.read_text()) == {NOTIFICATION: QUIET}


def test_local_servers_read_the_overrides_from_the_package_config_dir(tmp_path, config_path):
    config_path(CONFIG)
    overrides, error = _get_overrides(str(tmp_path / "no-app-settings"))
    assert error == ""
    assert overrides[NOTIFICATION] == QUIET


def test_wheel_installs_read_them_from_jupyterlab_app_settings(tmp_path, config_path):
    config_path(tmp_path / "empty")
    overrides, error = _get_overrides(str(WHEEL_OVERRIDES.parent.parent))
    assert error == ""
    assert overrides[NOTIFICATION] == QUIET


def test_the_wheel_puts_the_file_where_jupyterlab_looks(monkeypatch):
    """pyproject's data-files land in ``<prefix>/share/jupyter/lab``: Lab's app dir.

    Its settings dir (``<app dir>/settings``, LabApp's default) is checked with a real
    LabApp in tests/integration/test_packaging.py (importing LabApp runs yarn).
    """
    monkeypatch.delenv("JUPYTERLAB_DIR", raising=False)
    assert Path(get_app_dir()) == Path(sys.prefix) / "share" / "jupyter" / "lab"
    pyproject = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert '"share/jupyter/lab/settings/overrides.d" = [' in pyproject


def test_a_site_config_dir_ahead_on_the_path_turns_the_news_prompt_back_on(tmp_path, config_path):
    site = site_labconfig(tmp_path / "site", {NOTIFICATION: {"fetchNews": "none"}})
    config_path(site, CONFIG)
    overrides, _ = _get_overrides(str(WHEEL_OVERRIDES.parent.parent))
    assert overrides[NOTIFICATION] == {"fetchNews": "none", "checkForUpdates": False}


def test_jupyterlab_overrides_json_beats_the_wheel_file(tmp_path, config_path):
    config_path(tmp_path / "empty")
    settings = tmp_path / "settings"
    (settings / "overrides.d").mkdir(parents=True)
    (settings / "overrides.d" / "egi_hub.json").write_text(WHEEL_OVERRIDES.read_text())
    (settings / "overrides.json").write_text(json.dumps({NOTIFICATION: {"fetchNews": "true"}}))
    overrides, _ = _get_overrides(str(settings))
    assert overrides[NOTIFICATION]["fetchNews"] == "true"


def test_the_local_spawner_puts_the_package_config_last_after_the_sites(tmp_path):
    spawner = EGILocalSpawner(
        user=SimpleNamespace(name="alice", url="/user/alice/"),
        orm_spawner=SimpleNamespace(name="", server=None),
        work_dir_root=str(tmp_path),
    )
    assert spawner.user_env({})["JUPYTER_CONFIG_PATH"] == JUPYTER_CONFIG_DIR
    env = spawner.user_env({"JUPYTER_CONFIG_PATH": "/srv/site-jupyter"})
    assert env["JUPYTER_CONFIG_PATH"] == f"/srv/site-jupyter:{JUPYTER_CONFIG_DIR}"


def test_the_shipped_server_config_enables_the_defaults_extension():
    drop_in = CONFIG / "jupyter_server_config.d" / "egi_hub.json"
    enabled = json.loads(drop_in.read_text())["ServerApp"]["jpserver_extensions"]
    assert enabled["egi_hub.singleuser.defaults"] is True
    points = defaults._jupyter_server_extension_points()
    assert points == [{"module": "egi_hub.singleuser.defaults"}]
    # Linked before the extensions it configures (Jupyter Server links alphabetically).
    assert sorted(["jupyter_resource_usage", "jupyterlab", points[0]["module"]])[0] == (
        "egi_hub.singleuser.defaults"
    )


def test_defaults_fill_in_cpu_tracking_and_reach_the_resource_display():
    config = Config()
    assert defaults.apply_defaults(config) == [
        "ResourceUseDisplay.track_cpu_percent",
        "ResourceUseDisplay.cpu_warning_threshold",
    ]
    display = ResourceUseDisplay(config=config)
    assert (display.track_cpu_percent, display.cpu_warning_threshold) == (True, 0)
    own = ResourceUseDisplay()  # the extension's own defaults, for contrast
    assert (own.track_cpu_percent, own.cpu_warning_threshold) == (False, 0.1)


def test_defaults_leave_what_the_site_set():
    config = Config({"ResourceUseDisplay": {"track_cpu_percent": False}})
    assert defaults.apply_defaults(config) == ["ResourceUseDisplay.cpu_warning_threshold"]
    assert ResourceUseDisplay(config=config).track_cpu_percent is False


def test_the_resource_display_reads_the_spawner_limits(monkeypatch):
    """JupyterHub's Spawner sets MEM_LIMIT (bytes) and CPU_LIMIT: the display's limits."""
    monkeypatch.setenv("MEM_LIMIT", "1073741824")
    monkeypatch.setenv("CPU_LIMIT", "1.0")
    display = ResourceUseDisplay()
    assert (display.mem_limit, display.cpu_limit) == (1073741824, 1.0)
