"""The chart's Binder service on the hub's side (egi_hub.helm.binder): the values'
``binder`` section registered as an external service with the local stack's role and
scopes, its secrets from the environment only, and the ``binder.config`` schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from traitlets.config import Config

from egi_hub.config import SiteConfigError
from egi_hub.helm import config as helm_config
from egi_hub.helm.binder import (
    API_TOKEN_ENV,
    CHART_KEYS,
    CHART_SECTIONS,
    TICKET_SECRET_ENV,
    BinderValuesError,
    add_binder,
    config_schema,
)
from egi_hub.helm.config import hub_config
from egi_hub.stack import (
    BINDER_GUEST_SCOPES,
    BINDER_OAUTH_SCOPES,
    BINDER_SECTIONS,
    BINDER_SERVICE_SCOPES,
    build_config,
)

SCHEMA = Path(__file__).resolve().parents[2] / "helm" / "egi-hub" / "values.schema.json"
TOKEN = "a" * 64
SECRET = "b" * 64
ENV = {API_TOKEN_ENV: TOKEN, TICKET_SECRET_ENV: SECRET, "POD_NAMESPACE": "hub"}
URL = "http://r-egi-hub-binder:8890"
SITE = {"JupyterHub": {"authenticator_class": "egi-checkin", "spawner_class": "egi-kube"}}


def binder_values(**guests: object) -> dict:
    return {"enabled": True, "url": URL, "BinderGuests": dict(guests)}


def roles(config: Config) -> dict[str, dict]:
    return {r["name"]: r for r in config.JupyterHub.load_roles}


def services(config: Config) -> dict[str, dict]:
    return {s["name"]: s for s in config.JupyterHub.services}


def test_the_service_is_registered_as_an_external_one() -> None:
    config = hub_config(SITE, ENV, {"binder": binder_values()})
    service = services(config)["binder"]
    assert service == {
        "name": "binder",
        "url": URL,
        "api_token": TOKEN,
        "oauth_no_confirm": True,
        "oauth_client_allowed_scopes": BINDER_OAUTH_SCOPES,
        "display": True,
    }
    assert "command" not in service  # not started by the hub: a Deployment of its own
    assert config.JupyterHub.allow_named_servers is True
    assert config.EGIKubeSpawner.binder_ticket_secret == SECRET
    assert roles(config)["egi-binder"] == {
        "name": "egi-binder",
        "scopes": BINDER_SERVICE_SCOPES,
        "services": ["binder"],
    }
    assert "access:services!service=binder" in roles(config)["user"]["scopes"]
    assert "BinderGuests" not in config or not config.BinderGuests.get("enabled")


def test_guests_get_the_guest_scopes_and_the_hub_serves_their_page() -> None:
    config = hub_config(SITE, ENV, {"binder": binder_values(enabled=True, max_guests=5)})
    scopes = roles(config)["egi-binder"]["scopes"]
    assert scopes == [
        *BINDER_SERVICE_SCOPES,
        *(f"{scope}!group=binder-guests" for scope in BINDER_GUEST_SCOPES),
    ]
    assert config.BinderGuests.enabled is True and config.BinderGuests.max_guests == 5


@pytest.mark.parametrize("guests", [False, True])
def test_the_chart_and_the_local_stack_give_the_same_role_and_scopes(tmp_path, guests) -> None:
    site = {"BinderGuests": {"enabled": guests}}
    local = build_config(site, data_dir=str(tmp_path)).config
    chart = hub_config(SITE, ENV, {"binder": binder_values(enabled=guests)})
    assert roles(chart)["egi-binder"] == roles(local)["egi-binder"]
    for key in ("oauth_no_confirm", "oauth_client_allowed_scopes", "display"):
        assert services(chart)["binder"][key] == services(local)["binder"][key]
    assert roles(chart)["user"]["scopes"] == roles(local)["user"]["scopes"]


def test_disabled_adds_nothing() -> None:
    for values in ({}, {"binder": {"enabled": False}}):
        config = hub_config(SITE, {}, values)
        assert "binder" not in services(config)
        assert "egi-binder" not in roles(config)


#: One valid setting of each Binder section (valid as a site file's: refused only for where it is).
SETTING = {"BinderGuests": "enabled", "BinderService": "repo_quota", "Resolver": "cache_ttl",
           "RecordProvider": "request_timeout"}  # fmt: skip


@pytest.mark.parametrize("section", BINDER_SECTIONS)
def test_binder_sections_in_hub_config_are_refused_with_where_they_go(section) -> None:
    name = SETTING.get(section, "timeout")
    site = {**SITE, section: {name: True if name == "enabled" else 5}}
    with pytest.raises(SiteConfigError) as e:
        hub_config(site, ENV, {"binder": binder_values()})
    assert [str(i) for i in e.value.issues] == [
        f"hub.config.{section}: the Binder service's settings go in binder.config"
    ]


def test_a_ticket_secret_of_the_sites_own_is_refused() -> None:
    site = {**SITE, "EGIKubeSpawner": {"binder_ticket_secret": "c" * 40}}
    with pytest.raises(SiteConfigError) as e:
        hub_config(site, ENV, {"binder": binder_values()})
    assert str(e.value.issues[0]).startswith(
        "hub.config.EGIKubeSpawner.binder_ticket_secret: the chart makes the Binder ticket"
    )
    hub_config(site, ENV, {"binder": {"enabled": False}})  # no Binder: the site's business


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({TICKET_SECRET_ENV: SECRET}, f"binder.enabled: ${API_TOKEN_ENV} is not set"),
        ({API_TOKEN_ENV: TOKEN}, f"binder.enabled: ${TICKET_SECRET_ENV} is not set"),
        ({API_TOKEN_ENV: TOKEN, TICKET_SECRET_ENV: "s3cr3t"}, f"${TICKET_SECRET_ENV} is too short"),
    ],
)
def test_missing_secrets_are_one_line_without_the_secret(env, message) -> None:
    with pytest.raises(BinderValuesError) as e:
        add_binder(Config(), binder_values(), env)
    assert message in str(e.value) and "\n" not in str(e.value)
    assert "s3cr3t" not in str(e.value) and TOKEN not in str(e.value)


@pytest.mark.parametrize("url", ["", "r-egi-hub-binder:8890", "javascript:alert(1)"])
def test_a_bad_service_url_is_refused(url) -> None:
    with pytest.raises(BinderValuesError, match=r"^binder\.url: "):
        add_binder(Config(), {"enabled": True, "url": url}, ENV)


def test_load_stops_the_hub_with_one_line(tmp_path, monkeypatch, capsys) -> None:
    site, values = tmp_path / "site.json", tmp_path / "values.json"
    site.write_text(json.dumps(SITE))
    values.write_text(json.dumps({"binder": binder_values()}))
    monkeypatch.delenv(API_TOKEN_ENV, raising=False)
    monkeypatch.delenv(TICKET_SECRET_ENV, raising=False)
    with pytest.raises(SystemExit) as e:
        helm_config.load(str(site), str(values))
    assert e.value.code == 2
    assert capsys.readouterr().err == (
        f"egi-hub: binder.enabled: ${API_TOKEN_ENV} is not set "
        "(the chart's Binder Secret gives it to the hub)\n"
    )


def test_the_chart_schema_is_the_traits_schema() -> None:
    """values.schema.json's binder.config is config_schema() (no drift from the traits)."""
    schema = json.loads(SCHEMA.read_text())
    assert schema["properties"]["binder"]["properties"]["config"] == config_schema()


def test_the_config_schema_has_every_binder_trait_but_the_charts() -> None:
    from egi_hub.config import configurable_classes

    schema = config_schema()
    classes = configurable_classes()
    assert schema["additionalProperties"] is False
    assert set(schema["properties"]) == set(CHART_SECTIONS)
    assert "VenvBuilder" not in schema["properties"]  # the chart builds with kubernetes
    for section, part in schema["properties"].items():
        assert part["additionalProperties"] is False
        expected = set(classes[section].class_traits(config=True)) - set(
            CHART_KEYS.get(section, ())
        )
        assert set(part["properties"]) == expected, section
        for name, trait in part["properties"].items():
            assert trait["description"], f"{section}.{name}"
    service = schema["properties"]["BinderService"]["properties"]
    assert service["repo_quota"] == {**service["repo_quota"], "type": "integer", "minimum": 0}
    ttl = service["user_token_ttl"]
    assert ttl["type"] == "number" and ttl["minimum"] == 60 and "maximum" not in ttl
    assert schema["properties"]["BinderGuests"]["properties"]["enabled"]["type"] == "boolean"
    kube = schema["properties"]["KubernetesBuilder"]["properties"]
    assert "pattern" in kube["private_image_prefix"]
    for key in ("builder", "data_dir", "ticket_secret", "build_concurrency"):
        assert key not in service
