"""The hub's side of the chart's hub, database and proxy values (egi_hub/helm/config.py,
egi_hub/helm/owned.py, egi_hub/helm/singleuser.py) and the site-file checks' redaction
of secrets (egi_hub/config.py): no processes, no chart rendering."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from egi_hub.config import SiteConfigError, check_site, configurable_classes, secret_like
from egi_hub.helm.config import hub_config, kube_defaults, load
from egi_hub.helm.owned import CHART_OWNED
from egi_hub.helm.singleuser import site_settings

ENV = {"POD_NAMESPACE": "hub", "EGI_HUB_RELEASE": "r"}
CALLBACK = ("CheckinAuthenticator", "oauth_callback_url")


def refused(site: dict[str, Any]) -> list[str]:
    with pytest.raises(SiteConfigError) as info:
        hub_config(site, ENV, {})
    return [str(i) for i in info.value.issues]


# -- Check-in's redirect URL from the chart's public URL (EGI_HUB_PUBLIC_URL)


@pytest.mark.parametrize(
    ("public", "expected"),
    [
        ("https://notebooks.example.org/", "https://notebooks.example.org/hub/oauth_callback"),
        ("http://hub.test", "http://hub.test/hub/oauth_callback"),
        ("", None),  # no ingress: the chart sets no variable, nothing is set
        ("notebooks.example.org", None),  # not a URL: ignored
    ],
)
def test_the_checkin_callback_follows_the_public_url(public: str, expected: str | None) -> None:
    c = kube_defaults({**ENV, "EGI_HUB_PUBLIC_URL": public})
    section, trait = CALLBACK
    assert c[section].get(trait) == expected


def test_the_sites_own_callback_url_wins() -> None:
    env = {**ENV, "EGI_HUB_PUBLIC_URL": "https://notebooks.example.org/"}
    assert hub_config({}, env, {}).CheckinAuthenticator.oauth_callback_url == (
        "https://notebooks.example.org/hub/oauth_callback"
    )
    mine = "https://other.example.org/hub/oauth_callback"
    c = hub_config({"CheckinAuthenticator": {"oauth_callback_url": mine}}, env, {})
    assert c.CheckinAuthenticator.oauth_callback_url == mine


# -- hub.db: upgrade, password, mysql


def test_db_upgrade_and_the_mysql_password() -> None:
    assert kube_defaults({"EGI_HUB_DB_UPGRADE": "true"}).JupyterHub.upgrade_db is True
    assert kube_defaults({"EGI_HUB_DB_UPGRADE": "false"}).JupyterHub.upgrade_db is False
    assert "upgrade_db" not in kube_defaults({}).JupyterHub
    env = {"EGI_HUB_DB_URL": "mysql://hub@db/hub", "MYSQL_PWD": "p@ss/w:rd%"}
    c = kube_defaults(env)
    # the image's driver; the password in the URL, where alembic's upgrade sees it
    assert c.JupyterHub.db_url == "mysql+pymysql://hub:p%40ss%2Fw%3Ard%25@db/hub"
    assert "db_kwargs" not in c.JupyterHub
    from sqlalchemy.engine import make_url

    assert make_url(c.JupyterHub.db_url).password == "p@ss/w:rd%"
    env["EGI_HUB_DB_URL"] = "mysql://hub:own@db/hub"  # the URL's own password wins
    assert kube_defaults(env).JupyterHub.db_url == "mysql+pymysql://hub:own@db/hub"
    # PostgreSQL: libpq reads $PGPASSWORD itself; nothing is passed
    c = kube_defaults({"EGI_HUB_DB_URL": "postgresql://hub@db/hub", "PGPASSWORD": "pw"})
    assert c.JupyterHub.db_url == "postgresql://hub@db/hub"
    assert "db_kwargs" not in c.JupyterHub


def test_the_hub_extra_has_a_driver_for_every_external_database() -> None:
    """hub.db.type postgres and mysql need drivers in the hub image: its `hub` extra."""
    import tomllib

    root = Path(__file__).resolve().parents[2]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    wanted = " ".join(extras.get("hub", []))
    for driver in ("psycopg", "psycopg2-binary", "pymysql"):  # SQLAlchemy 2.1, z2jh URLs
        assert f"{driver}[" in wanted or f"{driver}>" in wanted, driver
    dockerfile = (root / "helm" / "images" / "hub" / "Dockerfile").read_text()
    assert "-py3-none-any.whl[hub]" in dockerfile


# -- keys the chart owns (egi_hub.helm.owned)


@pytest.mark.parametrize(
    ("site", "named", "instead"),
    [
        ({"KubeSpawner": {"namespace": "x"}}, "KubeSpawner.namespace", "release's namespace"),
        ({"EGIKubeSpawner": {"enable_user_namespaces": True}},
         "EGIKubeSpawner.enable_user_namespaces", "singleuser.voNamespaces"),
        ({"EGIKubeSpawner": {"vo_namespaces": {"vo.a": "a"}}},
         "EGIKubeSpawner.vo_namespaces", "singleuser.voNamespaces"),
        ({"ConfigurableHTTPProxy": {"auth_token": "t" * 32}},
         "ConfigurableHTTPProxy.auth_token", "proxy.secretToken"),
        ({"ConfigurableHTTPProxy": {"api_url": "http://x:8001"}},
         "ConfigurableHTTPProxy.api_url", "proxy API"),
        ({"JupyterHub": {"db_url": "sqlite://"}}, "JupyterHub.db_url", "hub.db.url"),
        ({"JupyterHub": {"cookie_secret": "ab" * 32}}, "JupyterHub.cookie_secret",
         "hub.cookieSecret"),
        ({"CryptKeeper": {"keys": ["k"]}}, "CryptKeeper.keys", "hub.cryptKey"),
        ({"KubeSpawner": {"service_account": "nb"}}, "KubeSpawner.service_account",
         "automount_service_account_token: false"),
        ({"Spawner": {"automount_service_account_token": True}},
         "Spawner.automount_service_account_token", "token"),
    ],
)  # fmt: skip
def test_a_key_the_chart_owns_is_refused_naming_the_value_to_use(
    site: dict[str, Any], named: str, instead: str
) -> None:
    (issue,) = refused(site)
    assert issue.startswith(f"hub.config.{named}: ")
    assert instead in issue
    assert "t" * 32 not in issue and "ab" * 32 not in issue


def test_a_service_account_without_its_token_is_the_sites() -> None:
    site = {
        "KubeSpawner": {"service_account": "notebooks"},
        "EGIKubeSpawner": {"automount_service_account_token": False},
    }
    assert hub_config(site, ENV, {}).KubeSpawner.service_account == "notebooks"


def test_every_owned_trait_exists() -> None:
    """A renamed trait would let the key through: each one the list names is real."""
    classes = configurable_classes()
    for (sections, trait), why in CHART_OWNED.items():
        assert why
        assert any(trait in classes[s].class_trait_names(config=True) for s in sections), trait


def test_load_refuses_an_owned_key_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "site.json"
    site.write_text(json.dumps({"JupyterHub": {"db_url": "postgresql://u:hunter2@db/x"}}))
    with pytest.raises(SystemExit) as info:
        load(str(site), str(tmp_path / "none.json"))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "egi-hub: hub.config.JupyterHub.db_url: use hub.db.url" in err
    assert "hunter2" not in err and "Traceback" not in err


# -- the site-file checks never echo a secret (egi_hub.config)


@pytest.mark.parametrize(
    ("site", "secret"),
    [
        ({"JupyterHub": {"db_url": ["postgresql://u:hunter2@db/x"]}}, "hunter2"),
        ({"JupyterHub": {"cookie_secret": 12345678987}}, "12345678987"),
        ({"CheckinAuthenticator": {"client_secret": {"s": "hunter2"}}}, "hunter2"),
        ({"ConfigurableHTTPProxy": {"auth_token": 98765432123}}, "98765432123"),
    ],
)
def test_a_bad_secret_value_is_named_not_shown(site: dict[str, Any], secret: str) -> None:
    (issue,) = check_site(site, configurable_classes())
    assert secret not in str(issue)
    assert "value hidden" in issue.message


def test_other_values_are_still_shown() -> None:
    (issue,) = check_site({"JupyterHub": {"port": "eighty"}}, configurable_classes())
    assert "'eighty'" in issue.message


@pytest.mark.parametrize(
    ("path", "secret"),
    [
        ("JupyterHub.db_url", True),
        ("CheckinAuthenticator.client_secret", True),
        ("JupyterHub.cookie_secret_file", True),
        ("StorageMounts.mounts[0].secret_access_key", True),
        ("JupyterHub.services[0].api_token", True),
        ("CryptKeeper.keys", True),
        ("JupyterHub.port", False),
        ("KubeMounts.token_check_interval", False),
        ("StorageMounts.mounts[0].keyfile", False),
        ("DevAuthenticator.users.alice.token", True),
        ("QuotaPolicy.vo_limits", False),
    ],
)
def test_secret_like(path: str, secret: bool) -> None:
    assert secret_like(path) is secret


# -- imagePullSecrets: a name or z2jh's {name: x}


def test_pull_secrets_in_either_form() -> None:
    settings, _ = site_settings(
        {"image": {"pullSecrets": [{"name": "own"}, "top"]}}, ["top", {"name": "second"}]
    )
    assert settings["KubeSpawner"]["image_pull_secrets"] == ["top", "second", "own"]
    c = hub_config({}, ENV, {"imagePullSecrets": [{"name": "site-pull"}]})
    assert c.KubeSpawner.image_pull_secrets == ["site-pull"]


@pytest.mark.parametrize("bad", [{"name": ""}, {"name": "a", "x": 1}, 5, {"secret": "a"}])
def test_a_bad_pull_secret_is_named(bad: Any) -> None:
    with pytest.raises(SiteConfigError) as info:
        site_settings({}, ["ok", bad])
    (issue,) = info.value.issues
    assert issue.path == "imagePullSecrets[1]"
