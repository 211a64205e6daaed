"""Binder guests' pure parts: which guests the service deletes, and the folder removal
that never follows a user's symlink."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from egi_hub.binder_service.guest_reaper import _idle, launching_users
from egi_hub.binder_service.guests import GUEST_PREFIX, is_guest, new_guest_name
from egi_hub.binder_service.spawner import _remove_folder

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def ago(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def test_a_guest_is_idle_only_without_servers_and_past_its_grace():
    old = {"created": ago(900), "last_activity": ago(700), "servers": {}}
    assert _idle(old, 600, NOW)
    assert not _idle({**old, "servers": {"binder-x": {}}}, 600, NOW)
    assert not _idle({**old, "last_activity": ago(10)}, 600, NOW)
    assert not _idle({**old, "created": ago(10), "last_activity": None}, 600, NOW)
    assert _idle({"created": None, "last_activity": None, "servers": {}}, 600, NOW)
    assert _idle({"created": "not a date", "servers": {}}, 600, NOW)


def test_launching_users_come_from_the_services_launch_keys():
    keys = ["launch-guest--0a1b2c3d4e5f-0123abcd", "launch-alice-ffff", "fetch-abc", "k" * 64]
    assert launching_users(keys) == {"guest--0a1b2c3d4e5f", "alice"}


def test_guest_names_never_meet_a_checkin_name():
    name = new_guest_name()
    assert name.startswith(GUEST_PREFIX) and len(name) == len(GUEST_PREFIX) + 12
    # Check-in's hashed names end in "--" and 16 hex digits; its plain ones have no "--".
    assert len(name.rsplit("--", 1)[1]) != 16


def test_is_guest_goes_by_the_group_not_the_name():
    class Group:
        def __init__(self, name: str) -> None:
            self.name = name

    class User:
        def __init__(self, *groups: str) -> None:
            self.groups = [Group(g) for g in groups]

    assert is_guest(User("binder-guests"))
    assert not is_guest(User("vo.example.org"))
    assert not is_guest(User())


def test_remove_folder_removes_a_real_folder_under_the_root(tmp_path: Path):
    root = tmp_path / "users"
    target = root / "guest--abc" / "binder" / "s"
    target.mkdir(parents=True)
    (target / "f").write_text("x")
    _remove_folder(root / "guest--abc", root)
    assert not (root / "guest--abc").exists()


def test_remove_folder_never_follows_a_symlink_out(tmp_path: Path):
    root = tmp_path / "users"
    bob = root / "bob"
    bob.mkdir(parents=True)
    (bob / "precious").write_text("x")
    alice = root / "alice"
    alice.mkdir()
    (alice / "binder").symlink_to(bob)  # alice's own link, pointing at bob's files
    _remove_folder(alice / "binder" / "precious", root)
    _remove_folder(alice / "binder", root)
    assert (bob / "precious").exists()
    _remove_folder(root, root)
    _remove_folder(tmp_path, root)  # outside the root
    assert (bob / "precious").exists()
