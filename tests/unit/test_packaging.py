"""The installed distribution's metadata: entry points and the editable folder mapping."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_entry_points_are_registered():
    auth = {e.name: e.value for e in entry_points(group="jupyterhub.authenticators")}
    spawners = {e.name: e.value for e in entry_points(group="jupyterhub.spawners")}
    assert auth["egi-dev"] == "egi_hub.authenticator.dev:DevAuthenticator"
    assert spawners["egi-local"] == "egi_hub.spawner.local:EGILocalSpawner"
    assert spawners["egi-kube"] == "egi_hub.spawner.kube:EGIKubeSpawner"
    assert auth["egi-checkin"] == "egi_hub.authenticator.checkin:CheckinAuthenticator"


def test_editable_install_maps_top_level_folders():
    import egi_hub.authenticator
    import egi_hub.singleuser
    import egi_hub.spawner

    assert Path(egi_hub.authenticator.__file__).parent == REPO / "authenticator"
    assert Path(egi_hub.spawner.__file__).parent == REPO / "spawner"
    assert Path(egi_hub.singleuser.__file__).parent == REPO / "egi_hub" / "singleuser"
