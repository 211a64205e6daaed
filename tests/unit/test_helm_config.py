"""egi_hub.helm.config: the chart's site file becomes the hub's config, or one line per bad key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from egi_hub.helm.config import hub_config, kube_defaults, load

ENV = {
    "EGI_HUB_CONNECT_URL": "http://r-egi-hub-hub:8081",
    "EGI_HUB_PROXY_API_URL": "http://r-egi-hub-proxy-api:8001",
    "EGI_HUB_DB_URL": "sqlite:////srv/jupyterhub/jupyterhub.sqlite",
    "POD_NAMESPACE": "hub",
}


def test_kube_defaults_follow_the_chart_environment() -> None:
    c = kube_defaults(ENV)
    assert c.JupyterHub.hub_connect_url == ENV["EGI_HUB_CONNECT_URL"]
    assert c.JupyterHub.db_url == ENV["EGI_HUB_DB_URL"]
    assert c.ConfigurableHTTPProxy.api_url == ENV["EGI_HUB_PROXY_API_URL"]
    assert c.ConfigurableHTTPProxy.should_start is False
    assert c.JupyterHub.cleanup_servers is False
    assert c.KubeSpawner.namespace == "hub"
    assert "db_url" not in kube_defaults({}).JupyterHub
    assert "usage_log" not in c.QuotaPolicy  # an external database: no claim to keep it on
    usage = kube_defaults({**ENV, "EGI_HUB_USAGE_LOG": "/srv/jupyterhub/usage.jsonl"})
    assert usage.QuotaPolicy.usage_log == "/srv/jupyterhub/usage.jsonl"


def test_the_site_file_wins_over_the_defaults() -> None:
    c = hub_config(
        {
            "JupyterHub": {"spawner_class": "kubespawner.KubeSpawner"},
            "Spawner": {"start_timeout": 9},
        },
        ENV,
    )
    assert c.JupyterHub.spawner_class == "kubespawner.KubeSpawner"
    assert c.Spawner.start_timeout == 9
    assert c.Authenticator.enable_auth_state is True


def test_load_names_each_bad_key_as_in_the_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"JupyterHub": {"prot": 1}, "Nope": {}}))
    with pytest.raises(SystemExit) as stop:
        load(str(site))
    assert stop.value.code == 2
    err = capsys.readouterr().err.splitlines()
    assert "egi-hub: hub.config.JupyterHub.prot: unknown setting (did you mean 'port'?)" in err
    assert "egi-hub: hub.config.Nope: unknown class" in err


def test_load_of_a_missing_file_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        load(str(tmp_path / "absent.json"))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "absent.json: cannot read" in err[0]


def test_the_culler_runs_with_z2jh_defaults() -> None:
    c = hub_config({}, ENV, {"cull": {}})
    (service,) = [s for s in c.JupyterHub.services if s["name"] == "idle-culler"]
    assert service["command"][1:3] == ["-m", "jupyterhub_idle_culler"]
    flags = service["command"][3:]
    assert "--timeout=3600" in flags and "--cull-every=600" in flags
    assert "--cull-users=false" in flags and "--remove-named-servers=false" in flags
    (role,) = [r for r in c.JupyterHub.load_roles if r["name"] == "egi-idle-culler"]
    assert "admin:users" not in role["scopes"]


def test_the_culler_follows_its_values() -> None:
    c = hub_config({}, ENV, {"cull": {"timeout": 900, "users": True, "maxAge": 86400}})
    (service,) = [s for s in c.JupyterHub.services if s["name"] == "idle-culler"]
    assert {"--timeout=900", "--cull-users=true", "--max-age=86400"} <= set(service["command"])
    (role,) = [r for r in c.JupyterHub.load_roles if r["name"] == "egi-idle-culler"]
    assert "admin:users" in role["scopes"]  # deleting users takes it, as in z2jh
    off = hub_config({}, ENV, {"cull": {"enabled": False}})
    assert not [s for s in off.JupyterHub.get("services", []) if s["name"] == "idle-culler"]


def test_load_reads_the_chart_values_file(tmp_path: Path) -> None:
    site, values = tmp_path / "site.json", tmp_path / "values.json"
    site.write_text("{}")
    values.write_text(json.dumps({"cull": {"enabled": False}}))
    assert not load(str(site), str(values)).JupyterHub.get("services")
    assert load(str(site), str(tmp_path / "none.json")).JupyterHub.services  # defaults: on
