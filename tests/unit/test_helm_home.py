"""egi_hub.helm.home: the values' singleuser.storage (z2jh's keys) as KubeSpawner's
traits, under hub.config (which wins; volumes and their mounts as a pair), and the
name templates that could make two users share a claim refused by their key."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from egi_hub.config import SiteConfigError
from egi_hub.helm.config import hub_config
from egi_hub.helm.singleuser import SingleuserSite, site_settings

ENV = {"POD_NAMESPACE": "hub", "EGI_HUB_RELEASE": "r"}
#: z2jh's defaults, as the chart's values.yaml has them.
STORAGE: dict[str, Any] = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "helm/egi-hub/values.yaml").read_text()
)["singleuser"]["storage"]
HOME = {"name": "volume-{user_server}", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}
HOME_MOUNT = {"name": "volume-{user_server}", "mountPath": "/home/jovyan"}
NFS = {"name": "shared", "kind": "nfs", "server": "nfs.example.org", "export": "/e/{vo}",
       "path": "/nfs"}  # fmt: skip


def storage(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(STORAGE)
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        target = out
        for parent in parents:
            target = target[parent]
        target[key] = value
    return out


def kube(singleuser: dict[str, Any], site: dict[str, Any] | None = None) -> Any:
    return hub_config(site or {}, ENV, {"singleuser": singleuser}).KubeSpawner


def issues(singleuser: dict[str, Any], site: dict[str, Any] | None = None) -> list[str]:
    with pytest.raises(SiteConfigError) as info:
        hub_config(site or {}, ENV, {"singleuser": singleuser})
    return [str(i) for i in info.value.issues]


def test_the_default_is_a_claim_per_server_at_the_home() -> None:
    settings, origins = site_settings({"storage": STORAGE})
    assert settings == {
        "KubeSpawner": {
            "storage_pvc_ensure": True,
            "storage_capacity": "10Gi",
            "storage_access_modes": ["ReadWriteOnce"],
            "volumes": [HOME],
            "volume_mounts": [HOME_MOUNT],
        }
    }
    assert origins["KubeSpawner.storage_capacity"] == "singleuser.storage.capacity"
    c = kube({"storage": STORAGE})
    assert "pvc_name_template" not in c  # KubeSpawner's claim-{user_server}
    assert "storage_class" not in c  # null: the cluster's default class


def test_every_dynamic_key_maps_as_z2jh_maps_it() -> None:
    s = storage(
        capacity="20Gi",
        homeMountPath="/home/user",
        dynamic__storageClass="",  # no class, as in Kubernetes and z2jh
        dynamic__pvcNameTemplate="home-{user_server}",
        dynamic__volumeNameTemplate="home",
        dynamic__storageAccessModes=["ReadWriteMany"],
        dynamic__subPath="{username}/home",
        extraLabels={"backup": "daily"},
        extraVolumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}],
        extraVolumeMounts={"b": {"name": "data", "mountPath": "/data"},
                           "a": {"name": "data", "mountPath": "/a", "subPath": "a"}},
    )  # fmt: skip
    c = kube({"storage": s})
    assert c.storage_pvc_ensure is True
    assert c.pvc_name_template == "home-{user_server}"
    assert c.storage_class == ""
    assert c.storage_capacity == "20Gi"
    assert c.storage_access_modes == ["ReadWriteMany"]
    assert c.storage_extra_labels == {"backup": "daily"}
    assert c.volumes == [
        {"name": "home", "persistentVolumeClaim": {"claimName": "{pvc_name}"}},
        {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
    ]
    assert c.volume_mounts == [  # a mapping's values in key order, as KubeSpawner's
        {"name": "home", "mountPath": "/home/user", "subPath": "{username}/home"},
        {"name": "data", "mountPath": "/a", "subPath": "a"},
        {"name": "data", "mountPath": "/data"},
    ]


def test_static_mounts_one_claim_each_user_in_a_folder() -> None:
    c = kube({"storage": storage(type="static", static__pvcName="homes")})
    assert c.volumes == [{"name": "home", "persistentVolumeClaim": {"claimName": "homes"}}]
    assert c.volume_mounts == [
        {"name": "home", "mountPath": "/home/jovyan", "subPath": "{username}"}
    ]
    for trait in ("storage_pvc_ensure", "storage_capacity", "storage_access_modes"):
        assert trait not in c
    found = issues({"storage": storage(type="static")})
    assert found == [
        "singleuser.storage.static.pvcName: required with type static: the existing claim to mount"
    ]


def test_none_gives_no_home_volume_but_keeps_the_extra_ones() -> None:
    assert site_settings({"storage": storage(type="none")}) == ({}, {})
    extra = {"name": "scratch", "emptyDir": {}}
    c = kube({"storage": storage(type="none", extraVolumes=[extra])})
    assert c.volumes == [extra]
    assert "storage_pvc_ensure" not in c
    assert site_settings({"storage": {}}) == ({}, {})  # no section: nothing


def test_hub_config_wins_trait_by_trait_volumes_with_their_mounts() -> None:
    c = kube({"storage": STORAGE}, {"KubeSpawner": {"storage_capacity": "1Gi"}})
    assert c.storage_capacity == "1Gi"
    assert c.volumes == [HOME]  # the rest still applies
    # in any of the spawner's classes
    merged = SingleuserSite.under({"Spawner": {"x": 1}, "EGIKubeSpawner": {"storage_class": "s"}},
                                  {"storage": STORAGE}).site  # fmt: skip
    assert "storage_class" not in merged["KubeSpawner"]
    # a site's own volumes come without the chart's home mount (which would name a
    # volume the pod lacks), and a site's own mounts without the chart's volumes
    own = [{"name": "mine", "emptyDir": {}}]
    c = kube({"storage": STORAGE}, {"EGIKubeSpawner": {"volumes": own}})
    assert "volumes" not in c and "volume_mounts" not in c
    assert c.storage_pvc_ensure is True
    c = kube({"storage": STORAGE}, {"KubeSpawner": {"volume_mounts": []}})
    assert c.volume_mounts == [] and "volumes" not in c


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"dynamic__pvcNameTemplate": "claim-home"},
         "singleuser.storage.dynamic.pvcNameTemplate: names no user"),
        ({"dynamic__pvcNameTemplate": "claim-{servername}"},
         "singleuser.storage.dynamic.pvcNameTemplate: {servername} joined to a username"),
        ({"dynamic__pvcNameTemplate": "claim-{unescaped_username}"},
         "singleuser.storage.dynamic.pvcNameTemplate: {unescaped_username} is not escaped: "
         "use {username}"),
        ({"dynamic__pvcNameTemplate": "claim-{user}"},
         "singleuser.storage.dynamic.pvcNameTemplate: {user} is not one of "),
        ({"dynamic__pvcNameTemplate": "claim-{username!r}"},
         "singleuser.storage.dynamic.pvcNameTemplate: {username} is not one of "),
        ({"dynamic__pvcNameTemplate": "claim-{username"},
         "singleuser.storage.dynamic.pvcNameTemplate: not a template"),
        ({"dynamic__pvcNameTemplate": "Claim_{username}"},
         "singleuser.storage.dynamic.pvcNameTemplate: only a-z, 0-9, '.', '-' around"),
        ({"dynamic__volumeNameTemplate": "vol.{username}"},
         "singleuser.storage.dynamic.volumeNameTemplate: only a-z, 0-9, '-' around"),
        ({"dynamic__subPath": "../{username}"},
         "singleuser.storage.dynamic.subPath: not a relative path inside the volume"),
        ({"type": "static", "static__pvcName": "h", "static__subPath": "/{username}"},
         "singleuser.storage.static.subPath: not a relative path inside the volume"),
        ({"type": "static", "static__pvcName": "h", "static__subPath": "{unescaped_username}"},
         "singleuser.storage.static.subPath: {unescaped_username} is not escaped"),
        ({"homeMountPath": "/etc"}, "singleuser.storage.homeMountPath: '/etc' would hide"),
        ({"homeMountPath": "home"}, "singleuser.storage.homeMountPath: not a plain absolute"),
        ({"type": "ephemeral"}, "singleuser.storage.type: expected one of dynamic, static, none"),
        ({"extraVolumes": "x"}, "singleuser.storage.extraVolumes: expected a list or a mapping"),
        ({"dynamic": []}, "singleuser.storage.dynamic: expected a mapping"),
    ],
)  # fmt: skip
def test_a_bad_storage_key_is_named(changes: dict[str, Any], expected: str) -> None:
    found = issues({"storage": storage(**changes)})
    assert any(i.startswith(expected) for i in found), found


@pytest.mark.parametrize(
    "template", ["claim-{username}", "claim-{user_server}", "{userid}-home", "h-{safe_username}",
                 "claim-{escaped_user_server}", "c.{hubnamespace}.{username}"],
)  # fmt: skip
def test_escaped_per_user_templates_are_accepted(template: str) -> None:
    assert kube({"storage": storage(dynamic__pvcNameTemplate=template)}).pvc_name_template == (
        template
    )


def test_a_mount_at_the_home_path_is_named_where_it_was_written() -> None:
    at_home = {**NFS, "path": "/home/jovyan"}
    found = issues({"storage": STORAGE, "storageMounts": {"mounts": [NFS, at_home]}})
    assert found == [
        "singleuser.storageMounts.mounts[1].path: singleuser.storage mounts a volume at "
        "/home/jovyan already (the home directory, or one of its extraVolumeMounts)"
    ]
    found = issues({"storage": STORAGE}, {"StorageMounts": {"mounts": [at_home]}})
    assert found[0].startswith("hub.config.StorageMounts.mounts[0].path: ")
    # below the home is fine, and so is the home path with no home volume
    below = {**NFS, "path": "/home/jovyan/shared"}
    kube({"storage": STORAGE, "storageMounts": {"mounts": [below]}})
    kube({"storage": storage(type="none"), "storageMounts": {"mounts": [at_home]}})
