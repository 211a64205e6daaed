"""The second review's hub-side findings (issue 12, review 12c): keys the chart owns
beyond the top-level traits (egi_hub/helm/owned.py), redaction at any depth
(egi_hub/config.py), home names that one user's server cannot share with another user
(egi_hub/helm/home.py), and the MySQL password where the schema upgrade sees it
(egi_hub/helm/config.py). No processes, no chart rendering."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from egi_hub.config import SiteConfigError, check_site, configurable_classes
from egi_hub.helm.config import hub_config, kube_defaults

ENV = {"POD_NAMESPACE": "hub", "EGI_HUB_RELEASE": "r"}
SECRET = "TOPSECRET123"
HUB_SA = "r-egi-hub-hub"


def refused(site: dict[str, Any], values: dict[str, Any] | None = None) -> list[str]:
    with pytest.raises(SiteConfigError) as info:
        hub_config(site, ENV, values or {})
    return [str(i) for i in info.value.issues]


def profile(override: dict[str, Any]) -> dict[str, Any]:
    return {"display_name": "p", "slug": "p", "kubespawner_override": override}


# -- L3: the chart's own traits, the spawner, and a token through pod configs


@pytest.mark.parametrize(
    ("trait", "value"),
    [
        ("hub_bind_url", "http://:9000"),
        ("hub_connect_url", "http://elsewhere:8081"),
        ("hub_ip", "0.0.0.0"),
        ("hub_port", 9000),
        ("cleanup_servers", True),
    ],
)
def test_the_hubs_own_addresses_and_cleanup_are_the_charts(trait: str, value: Any) -> None:
    (issue,) = refused({"JupyterHub": {trait: value}})
    assert issue.startswith(f"hub.config.JupyterHub.{trait}: ")
    assert "chart" in issue


@pytest.mark.parametrize(
    "spawner", ["localprocess", "simple", "jupyterhub.spawner.LocalProcessSpawner"]
)
def test_a_spawner_that_runs_code_in_the_hub_pod_is_refused(spawner: str) -> None:
    (issue,) = refused({"JupyterHub": {"spawner_class": spawner}})
    assert issue.startswith("hub.config.JupyterHub.spawner_class: the chart runs servers as pods")
    assert "hub's pod" in issue


@pytest.mark.parametrize("spawner", ["egi-kube", "kubespawner.KubeSpawner"])
def test_kubernetes_spawners_are_accepted(spawner: str) -> None:
    hub_config({"JupyterHub": {"spawner_class": spawner}}, ENV, {})


def test_a_service_account_through_extra_pod_config_is_refused() -> None:
    pod = {"serviceAccountName": HUB_SA, "automountServiceAccountToken": True}
    found = refused({"KubeSpawner": {"extra_pod_config": pod}})
    assert sorted(found) == [
        "hub.config.KubeSpawner.extra_pod_config.automountServiceAccountToken: a service "
        "account's token would be mounted in every server, where users run any code: set "
        "automount_service_account_token: false with it",
        "hub.config.KubeSpawner.extra_pod_config.serviceAccountName: a service account in a "
        "server's pod gives its user the Kubernetes API: use KubeSpawner.service_account "
        "with automount_service_account_token: false",
    ]
    (issue,) = refused({"Spawner": {"extra_pod_config": {"service_account_name": HUB_SA}}})
    assert issue.startswith("hub.config.Spawner.extra_pod_config.service_account_name: ")
    # automount false through the pod config is harmless
    hub_config({"KubeSpawner": {"extra_pod_config": {"automountServiceAccountToken": False}}},
               ENV, {})  # fmt: skip


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ({"service_account": HUB_SA}, "kubespawner_override.service_account"),
        ({"automount_service_account_token": True},
         "kubespawner_override.automount_service_account_token"),
        ({"service_account": HUB_SA, "automount_service_account_token": True},
         "kubespawner_override.automount_service_account_token"),
        ({"extra_pod_config": {"serviceAccountName": HUB_SA}},
         "kubespawner_override.extra_pod_config.serviceAccountName"),
        ({"namespace": "kube-system"}, "kubespawner_override.namespace"),
    ],
)  # fmt: skip
def test_a_profile_override_is_checked_like_the_spawner(
    override: dict[str, Any], named: str
) -> None:
    (issue,) = refused({"EGIKubeSpawner": {"profile_list": [profile(override)]}})
    assert issue.startswith(f"hub.config.EGIKubeSpawner.profile_list[0].{named}: ")
    # the same in singleuser.profileList, named as the values spell it
    (issue,) = refused({}, {"singleuser": {"profileList": [profile({}), profile(override)]}})
    assert issue.startswith(f"singleuser.profileList[1].{named}: ")


def test_an_options_choice_override_is_checked_too() -> None:
    choice = {
        "display_name": "c",
        "kubespawner_override": {"automount_service_account_token": True},
    }
    p = {
        **profile({}),
        "profile_options": {"image": {"display_name": "i", "choices": {"big": choice}}},
    }
    (issue,) = refused({}, {"singleuser": {"profileList": [p]}})
    assert issue.startswith(
        "singleuser.profileList[0].profile_options.image.choices.big.kubespawner_override."
        "automount_service_account_token: "
    )


def test_a_profiles_account_without_its_token_is_the_sites() -> None:
    own = profile({"service_account": "notebooks", "automount_service_account_token": False})
    hub_config({"EGIKubeSpawner": {"profile_list": [own]}}, ENV, {})
    # or with the spawner's own automount false, which the override does not change
    site = {
        "KubeSpawner": {"automount_service_account_token": False},
        "EGIKubeSpawner": {"profile_list": [profile({"service_account": "notebooks"})]},
    }
    hub_config(site, ENV, {})


# -- L4: a wrong-typed container is described by its type; secrets hidden at any depth


@pytest.mark.parametrize(
    ("site", "named"),
    [
        ({"JupyterHub": {"services": {"name": "x", "api_token": SECRET}}}, "JupyterHub.services"),
        ({"KubeSpawner": {"environment": [f"AWS_SECRET_ACCESS_KEY={SECRET}"]}},
         "KubeSpawner.environment"),
        ({"JupyterHub": {"db_kwargs": f"password={SECRET}"}}, "JupyterHub.db_kwargs"),
        ({"KubeSpawner": {"extra_pod_config": [SECRET]}}, "KubeSpawner.extra_pod_config"),
        ({"CheckinAuthenticator": SECRET}, "CheckinAuthenticator"),
        ({"CheckinAuthenticator": [SECRET]}, "CheckinAuthenticator"),
        ({"CheckinAuthenticator": {"client_secret": [SECRET]}},
         "CheckinAuthenticator.client_secret"),
        ({"JupyterHub": {"api_tokens": [SECRET]}}, "JupyterHub.api_tokens"),
    ],
)  # fmt: skip
def test_the_reviews_cases_never_echo_the_value(site: dict[str, Any], named: str) -> None:
    issues = check_site(site, configurable_classes())
    assert issues, site
    text = "; ".join(str(i) for i in issues)
    assert SECRET not in text and SECRET[:6] not in text
    assert text.startswith(f"{named}: ")
    assert "(value not shown)" in text or "(value hidden: a secret)" in text


def test_a_secret_keys_value_is_hidden_at_any_depth() -> None:
    from egi_hub.config import secret_like

    assert secret_like("JupyterHub.services[0].api_token")
    assert secret_like("X.credentials.aws.secret")  # under a secret's key
    assert secret_like("StorageMounts.mounts[0].credentials")  # given as a plain value
    # what credentials hold has names of its own: an STS endpoint is no secret, and
    # its check's explanation stays whole
    assert not secret_like("StorageMounts.mounts[0].credentials.sts.endpoint_url")
    assert secret_like("StorageMounts.mounts[0].secret_access_key[1]")
    assert not secret_like("StorageMounts.mounts[0].keyfile")
    assert not secret_like("QuotaPolicy.vo_limits.vo.a")


def test_a_nested_check_under_a_secret_key_is_named_not_quoted() -> None:
    from egi_hub.config import TraitPathError, _check_trait

    class Fake:
        @staticmethod
        def class_traits() -> dict[str, Any]:
            class Trait:
                def validate(self, obj: Any, value: Any) -> None:
                    raise TraitPathError("[0].token", f"expected a string, got {value!r}")

            return {"things": Trait()}

        def __new__(cls) -> Fake:
            return object.__new__(cls)

    (issue,) = _check_trait(Fake, "things", [SECRET], "Fake.things")  # type: ignore[arg-type]
    assert str(issue) == "Fake.things[0].token: expected a string (value hidden: a secret)"


def test_scalars_are_still_shown() -> None:
    (issue,) = check_site({"JupyterHub": {"port": "eighty"}}, configurable_classes())
    assert "'eighty'" in issue.message


# -- L5: a server's name only through {user_server}; a static subPath names the user


def storage(**own: Any) -> dict[str, Any]:
    kind = own.pop("type", "dynamic")
    return {"type": kind, "homeMountPath": "/home/jovyan", kind: own}


def home_issues(s: dict[str, Any]) -> list[str]:
    return refused({}, {"singleuser": {"storage": s}})


@pytest.mark.parametrize(
    "template",
    ["claim-{username}{servername}", "claim-{username}-{servername}",
     "claim-{escaped_username}--{escaped_servername}", "{safe_servername}.{userid}"],
)  # fmt: skip
def test_a_claim_with_a_bare_server_name_is_refused(template: str) -> None:
    (issue,) = home_issues(storage(pvcNameTemplate=template))
    assert issue.startswith("singleuser.storage.dynamic.pvcNameTemplate: {")
    assert "use {user_server}" in issue and "user ab, and user a's server b" in issue


@pytest.mark.parametrize("sub_path", [None, "", "homes", "homes/{servername}", "{hubnamespace}"])
def test_a_static_sub_path_must_name_the_user(sub_path: str | None) -> None:
    found = home_issues(storage(type="static", pvcName="homes", subPath=sub_path))
    assert len(found) == 1, found
    assert found[0].startswith("singleuser.storage.static.subPath: ")


@pytest.mark.parametrize("sub_path", ["{username}", "homes/{user_server}", "{userid}/home"])
def test_a_static_sub_path_per_user_is_accepted(sub_path: str) -> None:
    c = hub_config({}, ENV, {"singleuser": {"storage": storage(
        type="static", pvcName="homes", subPath=sub_path)}})  # fmt: skip
    assert c.KubeSpawner.volume_mounts[0]["subPath"] == sub_path


def test_a_dynamic_sub_path_may_be_fixed_but_not_a_bare_server_name() -> None:
    c = hub_config({}, ENV, {"singleuser": {"storage": storage(subPath="home")}})
    assert c.KubeSpawner.volume_mounts[0]["subPath"] == "home"
    (issue,) = home_issues(storage(subPath="{username}{servername}"))
    assert issue.startswith("singleuser.storage.dynamic.subPath: {servername} joined")


# -- L7: the MySQL password where JupyterHub's schema upgrade (alembic) sees it


def test_the_mysql_password_reaches_alembic(tmp_path: Path) -> None:
    from alembic.config import Config as AlembicConfig
    from jupyterhub import dbutil
    from sqlalchemy.engine import make_url

    env = {"EGI_HUB_DB_URL": "mysql://hub@db:3306/hub", "MYSQL_PWD": "s3cr%t@/x"}
    url = kube_defaults(env).JupyterHub.db_url
    ini = tmp_path / "alembic.ini"
    dbutil.write_alembic_ini(str(ini), url)  # what dbutil.upgrade() runs alembic with
    seen = AlembicConfig(str(ini)).get_main_option("sqlalchemy.url")
    assert make_url(seen).password == "s3cr%t@/x"
    assert make_url(seen).drivername == "mysql+pymysql"


@pytest.mark.parametrize(
    ("site", "values", "named"),
    [
        ({"KubeSpawner": {"pvc_name_template": "claim"}}, {},
         "hub.config.KubeSpawner.pvc_name_template: names no user"),
        ({"EGIKubeSpawner": {"pvc_name_template": "claim-{username}{servername}"}}, {},
         "hub.config.EGIKubeSpawner.pvc_name_template: {servername} joined"),
        ({}, {"singleuser": {"profileList": [profile({"pvc_name_template": "shared"})]}},
         "singleuser.profileList[0].kubespawner_override.pvc_name_template: names no user"),
    ],
)  # fmt: skip
def test_a_claim_template_in_hub_config_is_checked_too(
    site: dict[str, Any], values: dict[str, Any], named: str
) -> None:
    (issue,) = refused(site, values)
    assert issue.startswith(named)
    ok = hub_config({"KubeSpawner": {"pvc_name_template": "claim-{user_server}"}}, ENV, {})
    assert ok.KubeSpawner.pvc_name_template == "claim-{user_server}"
