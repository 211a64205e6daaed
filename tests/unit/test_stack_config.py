"""How the local stack builds the hub config: defaults < site file < flags."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from egi_hub.procs import PortInUseError
from egi_hub.stack import CULLER_SCOPES, build_config, check_ports


def services(config) -> dict:
    return {s["name"]: s for s in config.JupyterHub.get("services", [])}


def test_defaults(tmp_path):
    built = build_config({}, data_dir=str(tmp_path / "d"))
    c = built.config
    assert built.data_dir == (tmp_path / "d").resolve()
    assert c.JupyterHub.authenticator_class == "egi-dev"
    assert c.JupyterHub.spawner_class == "egi-local"
    assert c.JupyterHub.ip == "127.0.0.1"
    assert c.JupyterHub.port == 8000
    assert c.JupyterHub.db_url == f"sqlite:///{built.data_dir / 'jupyterhub.sqlite'}"
    assert c.EGILocalSpawner.work_dir_root == str(built.data_dir / "users")
    # npm configurable-http-proxy (egi_hub.proxy finds it; the bare name if not installed)
    assert Path(c.ConfigurableHTTPProxy.command[0]).name == "configurable-http-proxy"
    assert c.ConfigurableHTTPProxy.log_level == "warn"  # not a line per route check
    assert c.Authenticator.enable_auth_state is True
    culler = services(c)["idle-culler"]
    assert "--timeout=3600" in culler["command"]
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert roles["egi-idle-culler"] == {
        "name": "egi-idle-culler",
        "scopes": CULLER_SCOPES,
        "services": ["idle-culler"],
    }


def test_site_file_wins_over_defaults_and_flags_over_site(tmp_path):
    site = {
        "JupyterHub": {"port": 9000, "authenticator_class": "dummy"},
        "LocalStack": {"idle_timeout": 120, "idle_cull_every": 30},
    }
    c = build_config(site, data_dir=str(tmp_path)).config
    assert c.JupyterHub.port == 9000
    assert c.JupyterHub.authenticator_class == "dummy"
    assert "--timeout=120" in services(c)["idle-culler"]["command"]
    assert "--cull-every=30" in services(c)["idle-culler"]["command"]
    c = build_config(site, port=9100, ip="0.0.0.0", data_dir=str(tmp_path)).config
    assert (c.JupyterHub.port, c.JupyterHub.ip) == (9100, "0.0.0.0")


def test_site_services_are_kept_beside_the_culler(tmp_path):
    site = {
        "JupyterHub": {
            "services": [{"name": "mine", "api_token": "x" * 32}],
            "load_roles": [{"name": "admin", "services": ["mine"]}],
        }
    }
    c = build_config(site, data_dir=str(tmp_path)).config
    assert set(services(c)) == {"mine", "idle-culler", "binder"}
    roles = {r["name"] for r in c.JupyterHub.load_roles}
    assert roles == {"admin", "egi-idle-culler", "egi-binder", "user"}


def test_culler_off_or_replaced(tmp_path):
    c = build_config({"LocalStack": {"idle_timeout": 0}}, data_dir=str(tmp_path)).config
    assert "idle-culler" not in services(c)
    own = {"JupyterHub": {"services": [{"name": "idle-culler", "command": ["my-culler"]}]}}
    c = build_config(own, data_dir=str(tmp_path)).config
    assert services(c)["idle-culler"]["command"] == ["my-culler"]


def test_data_dir_from_site_file(tmp_path):
    built = build_config({"LocalStack": {"data_dir": str(tmp_path / "site-dir")}})
    assert built.data_dir == (tmp_path / "site-dir").resolve()
    built = build_config(
        {"LocalStack": {"data_dir": str(tmp_path / "site-dir")}}, data_dir=str(tmp_path / "flag")
    )
    assert built.data_dir == (tmp_path / "flag").resolve()


def test_crypt_key_is_generated_private_and_kept(tmp_path, monkeypatch):
    monkeypatch.delenv("JUPYTERHUB_CRYPT_KEY", raising=False)
    first = build_config({}, data_dir=str(tmp_path)).config.CryptKeeper["keys"]
    key_file = tmp_path / "crypt_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first) == 1 and len(first[0]) == 32
    assert build_config({}, data_dir=str(tmp_path)).config.CryptKeeper["keys"] == first


def test_crypt_key_from_environment_is_left_to_jupyterhub(tmp_path, monkeypatch):
    monkeypatch.setenv("JUPYTERHUB_CRYPT_KEY", "ab" * 32)
    c = build_config({}, data_dir=str(tmp_path)).config
    assert "keys" not in c.CryptKeeper
    assert not (tmp_path / "crypt_key").exists()


def test_check_ports_names_the_taken_port(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        c = build_config({}, port=port, data_dir=str(tmp_path)).config
        with pytest.raises(PortInUseError) as info:
            check_ports(c)
    assert info.value.port == port
    assert f"port {port} on 127.0.0.1" in str(info.value)


def test_users_and_their_servers_may_read_their_own_access_token(tmp_path):
    c = build_config({}, data_dir=str(tmp_path)).config
    assert "custom:egi:access-token" in c.JupyterHub.custom_scopes
    roles = {r["name"]: r for r in c.JupyterHub.load_roles}
    assert roles["user"]["scopes"] == [
        "self",
        "custom:egi:access-token!user",
        "custom:egi:read-mounts!user",
        "access:services!service=binder",
    ]
    assert "custom:egi:access-token!user" in c.Spawner.server_token_scopes
    assert "custom:egi:read-mounts!user" in c.Spawner.server_token_scopes


def test_a_site_user_role_gets_the_scope_added(tmp_path):
    site = {"JupyterHub": {"load_roles": [{"name": "user", "scopes": ["self", "read:groups"]}]}}
    c = build_config(site, data_dir=str(tmp_path)).config
    (user,) = [r for r in c.JupyterHub.load_roles if r["name"] == "user"]
    assert user["scopes"] == [
        "self",
        "read:groups",
        "custom:egi:access-token!user",
        "custom:egi:read-mounts!user",
        "access:services!service=binder",
    ]


def test_the_binder_service_is_started_with_least_privilege_and_can_be_turned_off(tmp_path):
    """Its own token reads server names only; it launches with each user's login token,
    which its OAuth client may use for that user's own servers only (no tokens: the hub
    would let it mint any token of the user's)."""
    c = build_config({}, data_dir=str(tmp_path)).config
    binder = services(c)["binder"]
    assert binder["oauth_client_allowed_scopes"] == [
        "start:servers!user", "read:servers!user", "read:users:groups!user",
    ]  # fmt: skip
    (role,) = [r for r in c.JupyterHub.load_roles if r["name"] == "egi-binder"]
    assert role["scopes"] == ["list:users", "read:servers"] and role["services"] == ["binder"]
    # Guests on: it may also read and delete guests, and no one else.
    guests = build_config({"BinderGuests": {"enabled": True}}, data_dir=str(tmp_path / "g"))
    (role,) = [r for r in guests.config.JupyterHub.load_roles if r["name"] == "egi-binder"]
    assert role["scopes"][2:] == [
        "read:groups!group=binder-guests", "read:users!group=binder-guests",
        "delete:servers!group=binder-guests", "delete:users!group=binder-guests",
    ]  # fmt: skip
    secret = (tmp_path / "binder_ticket_secret").read_text()
    assert c.EGILocalSpawner.binder_ticket_secret == secret and len(secret) >= 32
    config_file = tmp_path / "binder" / "config.json"
    assert config_file.stat().st_mode & 0o777 == 0o600
    assert secret not in json.dumps(binder)  # in the 0600 file, not the service's env
    assert c.JupyterHub.allow_named_servers is True
    off = build_config({"LocalStack": {"binder": False}}, data_dir=str(tmp_path / "off")).config
    assert "binder" not in services(off)
