"""egi_hub.helm_config: the chart's site file becomes the hub's config, or one line per bad key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from egi_hub.helm_config import hub_config, kube_defaults, load

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


def test_the_site_file_wins_over_the_defaults() -> None:
    c = hub_config(
        {"JupyterHub": {"spawner_class": "egi-local"}, "Spawner": {"start_timeout": 9}}, ENV
    )
    assert c.JupyterHub.spawner_class == "egi-local"
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
