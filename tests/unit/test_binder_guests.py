"""Binder guests' pure parts: which guests the service deletes, and the folder removal
that never follows a user's symlink."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from egi_hub.binder_service.guest_reaper import _idle, _too_old, launching_users
from egi_hub.binder_service.guests import GUEST_PREFIX, client_address, new_guest_name
from egi_hub.binder_service.spawner import _remove_folder
from egi_hub.context import UserContext, is_guest

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


def ago(seconds: float) -> str:
    return (NOW - timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def test_a_guest_is_too_old_by_its_creation_whatever_its_activity():
    user = {"created": ago(5000), "last_activity": ago(1), "servers": {"binder-x": {}}}
    assert _too_old(user, 4000, NOW) and not _too_old(user, 6000, NOW)


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


def test_a_guest_has_a_guests_name_and_the_group_both():
    class Group:
        def __init__(self, name: str) -> None:
            self.name = name

    class User:
        def __init__(self, name: str, *groups: str) -> None:
            self.name = name
            self.groups = [Group(g) for g in groups]

    guest = new_guest_name()
    assert is_guest(User(guest, "binder-guests"))
    assert is_guest({"name": guest, "groups": ["binder-guests"]})  # an API model
    assert not is_guest(User(guest, "vo.example.org"))
    assert not is_guest(User(guest))
    # In the group but not a guest's name (a VO of that name, an admin's load_groups):
    assert not is_guest(User("alice", "binder-guests"))
    assert not is_guest({"name": "guest--0123456789abcdef", "groups": ["binder-guests"]})
    assert not is_guest({"name": guest.upper(), "groups": ["binder-guests"]})


def test_a_vo_named_like_the_guests_group_is_no_hub_group():
    context = UserContext.from_entitlements(
        "alice", ["urn:mace:egi.eu:group:binder-guests:role=member#aai.egi.eu",
                  "urn:mace:egi.eu:group:vo.example.org:role=member#aai.egi.eu"],
    )  # fmt: skip
    assert "binder-guests" in context.vos
    assert context.hub_groups == ["vo.example.org"]


def test_the_visitors_address_is_the_trusted_proxys_entry_never_its_own_claim():
    # The hub's proxy appends what it saw; what the visitor wrote comes before.
    assert client_address("10.9.8.7, 192.0.2.5", "127.0.0.1", 1) == "192.0.2.5"
    assert client_address("10.9.8.7, 192.0.2.5, 10.0.0.2", "127.0.0.1", 2) == "192.0.2.5"
    assert client_address("", "127.0.0.1", 1) == "127.0.0.1"  # straight to the hub
    assert client_address("192.0.2.5", "127.0.0.1", 0) == "127.0.0.1"
    assert client_address("192.0.2.5", "127.0.0.1", 3) == "127.0.0.1"  # fewer hops
    # One machine's IPv6 /64 is one address; an IPv4-mapped one is the IPv4 one.
    assert client_address("2001:db8:1:2::1", "", 1) == client_address("2001:db8:1:2:ff::9", "", 1)
    assert client_address("2001:db8:1:2::1", "", 1) == "2001:db8:1:2::/64"
    assert client_address("::ffff:192.0.2.5", "", 1) == "192.0.2.5"
    assert client_address("not-an-ip", "", 1) == "not-an-ip"


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
