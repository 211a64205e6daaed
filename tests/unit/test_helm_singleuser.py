"""egi_hub.helm.singleuser: the values' singleuser section as site-file settings, under
hub.config, checked as the site file is and named as the admin wrote it; and the rule
that picks a server's namespace (egi_hub.spawner.kube_namespaces)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from egi_hub import __version__
from egi_hub.config import SiteConfigError
from egi_hub.helm.config import hub_config, load
from egi_hub.helm.singleuser import RELEASE_LABEL, SingleuserSite, site_settings
from egi_hub.spawner.kube_namespaces import VONamespacesTrait, namespace_for

ENV = {"POD_NAMESPACE": "hub", "EGI_HUB_RELEASE": "r"}
A, B = "vo.access.egi.eu", "vo.notebooks.egi.eu"
PROFILES = [
    {"display_name": "Small", "slug": "small", "kubespawner_override": {"cpu_limit": 1}},
    {"display_name": "GPU", "slug": "gpu", "allowed_vos": [B], "vo": B,
     "kubespawner_override": {"extra_resource_limits": {"nvidia.com/gpu": "1"}}},
]  # fmt: skip
SINGLEUSER: dict[str, Any] = {
    "image": {"name": "egi-hub/singleuser", "tag": "", "pullPolicy": "IfNotPresent",
              "pullSecrets": ["pull"]},
    "cpu": {"limit": 2, "guarantee": 0.5},
    "memory": {"limit": "2G", "guarantee": "1G"},
    "extraResource": {"limits": {"nvidia.com/gpu": "0"}, "guarantees": {}},
    "defaultUrl": "/lab",
    "uid": 1000,
    "fsGid": 100,
    "extraEnv": {"A": "b"},
    "nodeSelector": {"pool": "notebooks"},
    "extraLabels": {"site": "x"},
    "extraAnnotations": {"note": "y"},
    "extraTolerations": [{"key": "k", "operator": "Exists"}],
    "startTimeout": 600,
    "profileList": PROFILES,
    "quotas": {"vo_limits": {A: {"max_servers": 3}, B: {"max_gpu": 2}},
               "default_limits": {"max_servers": 0}, "admins_exempt": False},
    "storageMounts": {"mounts": [{"name": "shared", "kind": "nfs", "server": "nfs.example.org",
                                  "export": "/e/{vo}", "path": "/nfs"}]},
    "voNamespaces": {"enabled": True,
                     "namespaces": {A: {"name": "vo-access"}, B: {"name": "vo-nb"}}},
}  # fmt: skip
#: The same settings, written as the site file (hub.config) writes them.
SITE: dict[str, Any] = {
    "KubeSpawner": {
        "image": f"egi-hub/singleuser:{__version__}",
        "image_pull_policy": "IfNotPresent",
        "image_pull_secrets": ["pull"],
        "cpu_limit": 2,
        "cpu_guarantee": 0.5,
        "mem_limit": "2G",
        "mem_guarantee": "1G",
        "extra_resource_limits": {"nvidia.com/gpu": "0"},
        "default_url": "/lab",
        "uid": 1000,
        "fs_gid": 100,
        "environment": {"A": "b"},
        "node_selector": {"pool": "notebooks"},
        "extra_labels": {"site": "x"},
        "extra_annotations": {"note": "y"},
        "tolerations": [{"key": "k", "operator": "Exists"}],
        "start_timeout": 600,
    },
    "EGIKubeSpawner": {"profile_list": PROFILES, "vo_namespaces": {A: "vo-access", B: "vo-nb"}},
    "QuotaPolicy": SINGLEUSER["quotas"],
    "StorageMounts": SINGLEUSER["storageMounts"],
}
SECTIONS = ("KubeSpawner", "EGIKubeSpawner", "QuotaPolicy", "StorageMounts", "Spawner")


def issues(site: dict, singleuser: Any) -> list[str]:
    with pytest.raises(SiteConfigError) as info:
        hub_config(site, ENV, {"singleuser": singleuser})
    return [str(i) for i in info.value.issues]


def test_the_section_is_the_site_file_settings() -> None:
    settings, origins = site_settings(SINGLEUSER)
    assert settings == SITE
    assert origins["KubeSpawner.cpu_limit"] == "singleuser.cpu.limit"
    assert origins["QuotaPolicy.vo_limits"] == "singleuser.quotas.vo_limits"
    assert origins["EGIKubeSpawner.vo_namespaces"] == "singleuser.voNamespaces.namespaces"


def test_the_hub_config_from_values_is_the_one_from_hub_config() -> None:
    from_values = hub_config({}, ENV, {"singleuser": SINGLEUSER})
    # vo_namespaces comes from singleuser.voNamespaces only (egi_hub.helm.owned)
    namespaces = SITE["EGIKubeSpawner"]["vo_namespaces"]
    kube = {k: v for k, v in SITE["EGIKubeSpawner"].items() if k != "vo_namespaces"}
    from_site = hub_config({**SITE, "EGIKubeSpawner": kube}, ENV, {})
    from_site.EGIKubeSpawner.vo_namespaces = namespaces
    for section in SECTIONS:
        assert from_values[section] == from_site[section], section
    # the hub's own settings (template variables are objects: compared by their keys)
    for name, value in from_site.JupyterHub.items():
        if name != "template_vars":
            assert from_values.JupyterHub[name] == value, name
    assert from_values.EGIKubeSpawner.extra_labels == {"site": "x", RELEASE_LABEL: "r"}


def test_nulls_and_empty_values_set_nothing() -> None:
    off = {"enabled": False, "namespaces": {A: {"name": "x"}}}
    empty = {"image": {"name": None}, "cpu": {"limit": None}, "extraEnv": {}, "profileList": [],
             "quotas": {}, "voNamespaces": off}  # fmt: skip
    assert site_settings(empty) == ({}, {})
    assert site_settings(None) == ({}, {})


def test_hub_config_wins_trait_by_trait() -> None:
    site = {
        "KubeSpawner": {"cpu_limit": 8},
        "QuotaPolicy": {"vo_limits": {A: {"max_servers": 1}, B: {}}},
        "Spawner": {"mem_limit": "9G"},
    }
    merged = SingleuserSite.under(site, SINGLEUSER)
    assert merged.site["KubeSpawner"]["cpu_limit"] == 8
    assert merged.site["KubeSpawner"]["cpu_guarantee"] == 0.5  # the rest still applies
    assert merged.site["QuotaPolicy"]["vo_limits"] == {A: {"max_servers": 1}, B: {}}
    assert merged.site["QuotaPolicy"]["default_limits"] == {"max_servers": 0}
    # a site's setting in any of the spawner's classes is the site's: Spawner.mem_limit
    # is not hidden by singleuser.memory.limit's KubeSpawner.mem_limit
    assert "mem_limit" not in merged.site["KubeSpawner"]
    c = hub_config(site, ENV, {"singleuser": SINGLEUSER})
    assert "mem_limit" not in c.KubeSpawner and c.Spawner.mem_limit == "9G"
    egi = SingleuserSite.under({"EGIKubeSpawner": {"cpu_limit": 3}}, SINGLEUSER).site
    assert "cpu_limit" not in egi["KubeSpawner"]


@pytest.mark.parametrize(
    ("singleuser", "expected"),
    [
        ({"quotas": {"vo_limits": {A: {"max_servers": -1}}}},
         f"singleuser.quotas.vo_limits.{A}.max_servers: expected a whole number >= 0"),
        ({"quotas": {"vo_limts": {A: {}}}},
         "singleuser.quotas.vo_limts: unknown setting (did you mean 'vo_limits'?)"),
        ({"quotas": {"default_limits": {"per_user": {"max_cpu": "lots"}}}},
         "singleuser.quotas.default_limits.per_user.max_cpu: "),
        ({"profileList": [{"display_name": "X", "kubespawner_overide": {}}]},
         "singleuser.profileList[0].kubespawner_overide: "),
        ({"storageMounts": {"mounts": [{"name": "s", "kind": "nfs", "path": "/n"}]}},
         "singleuser.storageMounts.mounts[0]"),
        ({"cpu": {"limit": "two"}}, "singleuser.cpu.limit: expected a float"),
        ({"memory": "2G"}, "singleuser.memory: expected a mapping, got string '2G'"),
        ({"voNamespaces": {"enabled": True, "namespaces": {A: {"name": "VO_A"}}}},
         f"singleuser.voNamespaces.namespaces.{A}.name: not a namespace name"),
        ([], "singleuser: expected a mapping, got list []"),
    ],
)  # fmt: skip
def test_a_bad_key_is_named_where_it_was_written(singleuser: Any, expected: str) -> None:
    found = issues({}, singleuser)
    assert any(i.startswith(expected) for i in found), found


def test_a_bad_hub_config_key_is_named_in_hub_config() -> None:
    found = issues({"QuotaPolicy": {"vo_limits": {A: {"max_gpu": -1}}}}, SINGLEUSER)
    where = f"hub.config.QuotaPolicy.vo_limits.{A}.max_gpu"
    assert found == [f"{where}: expected a whole number >= 0, got int -1"]


def test_vo_namespaces_are_the_charts_alone() -> None:
    found = issues({"EGIKubeSpawner": {"vo_namespaces": {A: "elsewhere"}}}, SINGLEUSER)
    assert found[0].startswith("hub.config.EGIKubeSpawner.vo_namespaces: the chart sets it")
    # without the chart's namespaces too: the hub's Roles are in the chart's namespaces only
    off = {**SINGLEUSER, "voNamespaces": {"enabled": False, "namespaces": {}}}
    found = issues({"EGIKubeSpawner": {"vo_namespaces": {A: "mine"}}}, off)
    assert found[0].startswith("hub.config.EGIKubeSpawner.vo_namespaces: the chart sets it")


def test_the_release_label_survives_the_sites_labels() -> None:
    site = {"EGIKubeSpawner": {"extra_labels": {RELEASE_LABEL: "other", "a": "b"}}}
    c = hub_config(site, ENV, {})
    assert c.EGIKubeSpawner.extra_labels == {RELEASE_LABEL: "r", "a": "b"}
    assert "extra_labels" not in hub_config({}, {"POD_NAMESPACE": "hub"}, {}).EGIKubeSpawner


def test_load_names_singleuser_keys(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    site, values = tmp_path / "site.json", tmp_path / "values.json"
    site.write_text(json.dumps({"JupyterHub": {"prot": 1}}))
    values.write_text(json.dumps({"singleuser": {"quotas": {"total_limits": {"per_user": {}}}}}))
    with pytest.raises(SystemExit):
        load(str(site), str(values))
    err = capsys.readouterr().err.splitlines()
    assert "egi-hub: hub.config.JupyterHub.prot: unknown setting (did you mean 'port'?)" in err
    assert any(
        line.startswith("egi-hub: singleuser.quotas.total_limits.per_user: ") for line in err
    )
    assert "Traceback" not in "\n".join(err)


@pytest.mark.parametrize(
    ("vo", "member_of", "expected"),
    [
        (A, [A], "vo-access"),
        (B, [A, B], "vo-nb"),
        (B, [A], "hub"),  # charged to B (a profile's vo, an admin): never B's namespace
        ("vo.unlisted.eu", ["vo.unlisted.eu"], "hub"),
        (None, [], "hub"),
        (None, [A], "hub"),
    ],
)
def test_namespace_for(vo: str | None, member_of: list[str], expected: str) -> None:
    assert namespace_for({A: "vo-access", B: "vo-nb"}, vo, member_of, "hub") == expected


@pytest.mark.parametrize(
    "bad", [{A: "Upper"}, {A: "a" * 64}, {A: "-x"}, {A: "x."}, {A: ""}, {A: 5}, {"a:b": "x"}, []]
)
def test_vo_namespaces_trait_refuses(bad: Any) -> None:
    from traitlets import TraitError

    with pytest.raises(TraitError):
        VONamespacesTrait().validate(None, bad)


@pytest.mark.parametrize(
    ("top", "own", "expected", "origin"),
    [
        (["site-pull"], ["pull"], ["site-pull", "pull"],
         "imagePullSecrets and singleuser.image.pullSecrets"),
        (["pull", "other"], ["pull"], ["pull", "other"],
         "imagePullSecrets and singleuser.image.pullSecrets"),
        (["site-pull"], None, ["site-pull"], "imagePullSecrets"),
        (None, ["pull"], ["pull"], "singleuser.image.pullSecrets"),
        ([], [], None, None),
    ],
)  # fmt: skip
def test_the_servers_pull_with_the_top_level_secrets_first(
    top: list | None, own: list | None, expected: list | None, origin: str | None
) -> None:
    """As z2jh: KubeSpawner.image_pull_secrets is imagePullSecrets, then
    singleuser.image.pullSecrets (a name in both: once)."""
    settings, origins = site_settings({"image": {"pullSecrets": own}}, top)
    assert settings.get("KubeSpawner", {}).get("image_pull_secrets") == expected
    assert origins.get("KubeSpawner.image_pull_secrets") == origin
    if expected:
        c = hub_config(
            {}, ENV, {"singleuser": {"image": {"pullSecrets": own}}, "imagePullSecrets": top}
        )
        assert c.KubeSpawner.image_pull_secrets == expected


def test_top_level_pull_secrets_without_a_singleuser_section() -> None:
    c = hub_config({}, ENV, {"imagePullSecrets": ["site-pull"]})
    assert c.KubeSpawner.image_pull_secrets == ["site-pull"]
    # hub.config wins, as for every trait
    site = {"KubeSpawner": {"image_pull_secrets": ["mine"]}}
    c = hub_config(site, ENV, {"imagePullSecrets": ["site-pull"], "singleuser": SINGLEUSER})
    assert c.KubeSpawner.image_pull_secrets == ["mine"]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({"imagePullSecrets": "pull"},
         "imagePullSecrets: expected a list of Secret names, got string 'pull'"),
        ({"singleuser": {"image": {"pullSecrets": {"name": "pull"}}}},
         "singleuser.image.pullSecrets: expected a list of Secret names, got mapping"),
    ],
)  # fmt: skip
def test_pull_secrets_of_the_wrong_shape_are_named(values: dict, expected: str) -> None:
    with pytest.raises(SiteConfigError) as info:
        hub_config({}, ENV, values)
    assert str(info.value.issues[0]).startswith(expected)


CHECKIN = {"CheckinAuthenticator": {"allowed_vos": [A]}}
UNUSED = "vo.unused.eu"
NOBODY = "no user, login rule or profile mentions this VO"


def test_warnings_name_singleuser_keys(capsys: pytest.CaptureFixture[str]) -> None:
    """validate_site's warnings name the key as the admin wrote it, as its errors do."""
    quotas = {"vo_limits": {A: {"max_servers": 1}, UNUSED: {"max_servers": 2}}}
    hub_config(CHECKIN, ENV, {"singleuser": {"quotas": quotas}})
    err = capsys.readouterr().err.splitlines()
    assert err == [f"egi-hub: warning: singleuser.quotas.vo_limits.{UNUSED}: {NOBODY}"]
    # the same VO written in hub.config: named there
    hub_config({**CHECKIN, "QuotaPolicy": quotas}, ENV, {})
    err = capsys.readouterr().err.splitlines()
    assert err == [f"egi-hub: warning: hub.config.QuotaPolicy.vo_limits.{UNUSED}: {NOBODY}"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("QuotaPolicy.vo_limits.v.eu: why", "singleuser.quotas.vo_limits.v.eu: why"),
        ("JupyterHub.port: why: and more", "hub.config.JupyterHub.port: why: and more"),
        ("a warning that names no key: here", "a warning that names no key: here"),
        ("no colon at all", "no colon at all"),
        (": empty key", ": empty key"),
    ],
)
def test_warning_renaming(text: str, expected: str) -> None:
    merged = SingleuserSite.under({}, {"quotas": {"vo_limits": {"v.eu": {}}}})
    assert merged.warning(text) == expected
