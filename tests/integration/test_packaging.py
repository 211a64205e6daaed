"""One distribution, one import namespace: a real wheel build and an editable install."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from importlib.metadata import entry_points
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SUBPACKAGES = ["authenticator", "spawner", "storage_mounts", "binder_service"]


def test_entry_points_are_registered():
    auth = {e.name: e.value for e in entry_points(group="jupyterhub.authenticators")}
    spawners = {e.name: e.value for e in entry_points(group="jupyterhub.spawners")}
    assert auth["egi-dev"] == "egi_hub.authenticator.dev:DevAuthenticator"
    assert spawners["egi-local"] == "egi_hub.spawner.local:EGILocalSpawner"
    assert spawners["egi-kube"] == "egi_hub.spawner.kube:EGIKubeSpawner"
    assert auth["egi-checkin"] == "egi_hub.authenticator.checkin:CheckinAuthenticator"


def test_editable_install_maps_top_level_folders():
    import egi_hub.authenticator
    import egi_hub.spawner

    assert Path(egi_hub.authenticator.__file__).parent == REPO / "authenticator"
    assert Path(egi_hub.spawner.__file__).parent == REPO / "spawner"


def test_wheel_holds_every_subpackage_under_egi_hub(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), "."],
        cwd=REPO,
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("egi_hub-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        z.extractall(tmp_path / "unpacked")
    for sub in SUBPACKAGES:
        assert f"egi_hub/{sub}/__init__.py" in names
    assert not any(n.split("/")[0] in SUBPACKAGES for n in names)
    (ep_file,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    entry_points_text = (tmp_path / "unpacked" / ep_file).read_text()
    assert "egi-dev = egi_hub.authenticator.dev:DevAuthenticator" in entry_points_text
    assert "egi-local = egi_hub.spawner.local:EGILocalSpawner" in entry_points_text
    # The unpacked wheel, first on sys.path, is what gets imported.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import egi_hub.authenticator.dev, egi_hub.spawner.local;"
        "print(egi_hub.authenticator.dev.__file__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "unpacked")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.startswith(str(tmp_path / "unpacked" / "egi_hub" / "authenticator"))
