"""One distribution, one import namespace: a real wheel build, checked in a fresh Python."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

from tests.layering import HUB_MODULES

REPO = Path(__file__).resolve().parents[2]

SUBPACKAGES = ["authenticator", "spawner", "storage_mounts", "binder_service", "singleuser"]


def source_copy(dest: Path) -> Path:
    """The source tree without build output, caches or installs.

    setuptools builds in ``build/`` of the tree it is given and never empties it: a module
    removed since an earlier build would still land in the wheel, and two test runs
    building in the same checkout at once would race. A copy avoids both.
    """
    skip = shutil.ignore_patterns(
        ".git",
        ".venv",
        ".egi-hub",
        ".hypothesis",
        ".*cache",
        "node_modules",
        "build",
        "dist",
        "*.egg-info",
        "__pycache__",
        ".cache",
    )
    shutil.copytree(REPO, dest, ignore=skip, symlinks=True)
    return dest


def test_wheel_holds_every_subpackage_under_egi_hub(tmp_path):
    source = source_copy(tmp_path / "src")
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(tmp_path), "."],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    # setuptools warns when package data sits in a package it was not told about.
    assert "absent from the `packages` configuration" not in build.stdout + build.stderr
    (wheel,) = tmp_path.glob("egi_hub-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        z.extractall(tmp_path / "unpacked")
    for sub in SUBPACKAGES:
        assert f"egi_hub/{sub}/__init__.py" in names
    assert not any(n.split("/")[0] in SUBPACKAGES for n in names)
    config = "jupyter_server_config.d/egi_hub.json"
    assert f"egi_hub/jupyter_config/{config}" in names
    assert any(n.endswith(f".data/data/etc/jupyter/{config}") for n in names)
    assert "egi_hub/singleuser/defaults.py" in names
    # The hub's page templates and the spawn form's cards (the pages break without them).
    for template in ("page", "login", "spawn", "spawn_pending", "home", "error", "not_running"):
        assert f"egi_hub/templates/{template}.html" in names
    assert "egi_hub/spawner/form_templates/profile_cards.html" in names
    # JupyterLab's quiet defaults: in the package (the local spawner's config dir) and in
    # JupyterLab's app settings of the environment the wheel is installed into.
    assert "egi_hub/jupyter_config/labconfig/default_setting_overrides.json" in names
    assert "egi_hub/jupyter_config/lab-settings/overrides.d/egi_hub.json" in names
    (lab_overrides,) = [
        n
        for n in names
        if n.endswith(".data/data/share/jupyter/lab/settings/overrides.d/egi_hub.json")
    ]
    assert_lab_reads_quiet_defaults(tmp_path, tmp_path / "unpacked" / lab_overrides)
    (ep_file,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    entry_points_text = (tmp_path / "unpacked" / ep_file).read_text()
    assert "egi-dev = egi_hub.authenticator.dev:DevAuthenticator" in entry_points_text
    assert "egi-local = egi_hub.spawner.local:EGILocalSpawner" in entry_points_text
    # The unpacked wheel, first on sys.path, is what gets imported.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import egi_hub.authenticator.dev, egi_hub.spawner.local, egi_hub.token;"
        "print(egi_hub.authenticator.dev.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "unpacked")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith(str(tmp_path / "unpacked" / "egi_hub" / "authenticator"))


def assert_lab_reads_quiet_defaults(tmp_path: Path, overrides_file: Path) -> None:
    """A real LabApp whose app dir is the wheel's ``share/jupyter/lab`` reads the file.

    Run in a fresh Python with no other Jupyter config dirs, so only the wheel's file
    can say it (creating a LabApp runs yarn: not in the unit lane).
    """
    app_dir = overrides_file.parents[2]  # <data>/share/jupyter/lab
    code = (
        "import json\n"
        "from jupyterlab.labapp import LabApp\n"
        "from jupyterlab_server.settings_utils import _get_overrides\n"
        "app = LabApp()\n"
        "print(json.dumps([app.app_settings_dir, _get_overrides(app.app_settings_dir)]))\n"
    )
    empty = tmp_path / "no-config"
    env = {
        **os.environ,
        "JUPYTERLAB_DIR": str(app_dir),
        "JUPYTER_CONFIG_DIR": str(empty),
        "JUPYTER_CONFIG_PATH": str(empty),
    }
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert run.returncode == 0, run.stderr
    settings_dir, (overrides, error) = json.loads(run.stdout.strip().splitlines()[-1])
    assert Path(settings_dir) == app_dir / "settings"
    assert error == ""
    assert overrides["@jupyterlab/apputils-extension:notification"] == {
        "fetchNews": "false",
        "checkForUpdates": False,
    }


def test_hub_modules_do_not_import_the_notebook_side():
    """What a real import loads (lazy and dynamic imports included): never the notebook side.

    `tests/unit/test_layering.py` checks the same statically; this catches what the
    source does not show (an import by name, a plugin).
    """
    code = (
        "import importlib, sys\n"
        f"for name in {HUB_MODULES!r}:\n"
        "    importlib.import_module(name)\n"
        "print(' '.join(m for m in sys.modules if m == 'egi_hub.token'"
        " or m.split('.')[:2] == ['egi_hub', 'singleuser']))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "", f"hub modules imported the notebook side: {run.stdout}"
