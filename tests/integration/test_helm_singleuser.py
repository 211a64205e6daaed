"""The chart's singleuser section, rendered by the real helm binary (the `helm` fixture):
per-VO Namespaces (Pod Security labels that follow the storage mounts), ResourceQuotas
and the hub's Roles there, validated with kubernetes-validate --strict; the schema's
refusals, each naming its key; the hub's environment; and the hub config made from the
rendered values.json equal to the one from the same settings written in hub.config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from egi_hub.helm.config import hub_config
from tests.integration.test_helm_chart import (
    KUBERNETES_VERSIONS,
    find,
    refusal,
    render,
    secret_data,
)

A, B = "vo.access.egi.eu", "vo.notebooks.egi.eu"
NAMESPACES = {
    A: {
        "name": "vo-access",
        "labels": {"team": "access"},
        "annotations": {"owner": "access"},
        "resourceQuota": {"hard": {"requests.cpu": "20", "requests.memory": "40Gi", "pods": 40}},
    },
    B: {"name": "vo-notebooks", "create": False},
}
NFS = {"name": "shared", "kind": "nfs", "server": "nfs.example.org", "export": "/e", "path": "/n"}
DATAHUB = {"name": "dh", "kind": "datahub", "onezone_url": "https://datahub.egi.eu", "path": "/d"}
ENV = {"POD_NAMESPACE": "hub", "EGI_HUB_RELEASE": "r"}


def singleuser(**extra: Any) -> list[str]:
    """--set-json arguments for these singleuser keys (per-VO namespaces on)."""
    values = {"voNamespaces": {"enabled": True, "namespaces": NAMESPACES}, **extra}
    args = []
    for key, value in values.items():
        args += ["--set-json", f"singleuser.{key}={json.dumps(value)}"]
    return args


def vo_namespaces(namespaces: dict[str, Any]) -> list[str]:
    value = {"enabled": True, "namespaces": namespaces}
    return ["--set-json", f"singleuser.voNamespaces={json.dumps(value)}"]


def in_namespace(docs: list[dict[str, Any]], namespace: str) -> dict[str, dict[str, Any]]:
    return {
        f"{d['kind']}/{d['metadata']['name']}": d
        for d in docs
        if d["metadata"].get("namespace") == namespace or d["metadata"]["name"] == namespace
    }


def test_per_vo_namespaces_quotas_and_roles(helm: Path) -> None:
    docs = render(helm, *singleuser())
    access = in_namespace(docs, "vo-access")
    rbac = {"Role/r-egi-hub-hub-spawner", "RoleBinding/r-egi-hub-hub-spawner"}
    assert {"Namespace/vo-access", "ResourceQuota/r-egi-hub-singleuser", *rbac} <= set(access)
    namespace = access["Namespace/vo-access"]["metadata"]
    assert namespace["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert namespace["labels"]["pod-security.kubernetes.io/audit"] == "restricted"
    assert namespace["labels"]["team"] == "access"
    assert namespace["labels"]["egi.eu/vo"] == A
    assert namespace["annotations"] == {"owner": "access", "helm.sh/resource-policy": "keep"}
    quota = access["ResourceQuota/r-egi-hub-singleuser"]["spec"]
    assert quota == {"hard": {"requests.cpu": "20", "requests.memory": "40Gi", "pods": "40"}}
    # create: false, no quota: only the hub's rights there
    notebooks = in_namespace(docs, "vo-notebooks")
    assert rbac <= set(notebooks)
    assert not {"Namespace/vo-notebooks", "ResourceQuota/r-egi-hub-singleuser"} & set(notebooks)
    # the same rules as the hub's own Role, bound to the hub's ServiceAccount, never more
    hub_rules = find(docs, "Role", "r-egi-hub-hub")["rules"]
    for namespaced in (access, notebooks):
        assert namespaced["Role/r-egi-hub-hub-spawner"]["rules"] == hub_rules
        binding = namespaced["RoleBinding/r-egi-hub-hub-spawner"]
        assert binding["subjects"] == [
            {"kind": "ServiceAccount", "name": "r-egi-hub-hub", "namespace": "hub"}
        ]
        assert binding["roleRef"]["name"] == "r-egi-hub-hub-spawner"
    assert not [d for d in docs if d["kind"].startswith("Cluster")]
    for doc in docs:
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize(
    ("where", "mounts", "level"),
    [
        ("singleuser", [NFS], "baseline"),
        ("singleuser", [NFS, DATAHUB], "privileged"),
        ("hub.config", [DATAHUB], "privileged"),
        ("singleuser", [], "restricted"),
    ],
)
def test_pod_security_follows_the_storage_mounts(
    helm: Path, where: str, mounts: list, level: str
) -> None:
    if where == "singleuser":
        args = singleuser(storageMounts={"mounts": mounts})
    else:
        site = json.dumps({"mounts": mounts})
        args = [*singleuser(), "--set-json", f"hub.config.StorageMounts={site}"]
    namespace = find(render(helm, *args), "Namespace", "vo-access")
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == level
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/warn"] == "restricted"


def test_nothing_per_vo_unless_enabled(helm: Path) -> None:
    off = {"enabled": False, "namespaces": NAMESPACES}
    docs = render(helm, "--set-json", f"singleuser.voNamespaces={json.dumps(off)}")
    assert not [d for d in docs if d["kind"] in ("Namespace", "ResourceQuota")]
    assert not [d for d in docs if d["metadata"].get("namespace") in ("vo-access", "vo-notebooks")]
    env = hub_env(docs)
    assert env["EGI_HUB_CONNECT_URL"] == "http://r-egi-hub-hub:8081"


def hub_env(docs: list[dict[str, Any]]) -> dict[str, Any]:
    hub = find(docs, "Deployment", "r-egi-hub-hub")["spec"]["template"]["spec"]
    return {e["name"]: e.get("value") for e in hub["containers"][0]["env"]}


def test_the_hub_is_reachable_from_the_vo_namespaces(helm: Path) -> None:
    env = hub_env(render(helm, *singleuser()))
    assert env["EGI_HUB_CONNECT_URL"] == "http://r-egi-hub-hub.hub.svc:8081"
    assert env["EGI_HUB_RELEASE"] == "r"


def test_the_hub_config_from_values_is_the_one_from_hub_config(helm: Path) -> None:
    """The rendered values.json, read by the hub, means what the same settings written
    in hub.config (the site file) mean."""
    quotas = {"vo_limits": {A: {"max_servers": 3, "per_user": {"max_cpu": "1500m"}}, B: {}},
              "default_limits": {"max_servers": 0}}  # fmt: skip
    profiles = [{"display_name": "S", "slug": "s", "kubespawner_override": {"cpu_limit": 1}}]
    mounts = {"mounts": [NFS]}
    docs = render(
        helm,
        *singleuser(quotas=quotas, profileList=profiles, storageMounts=mounts),
        "--set-json", 'singleuser.image={"name": "reg.example.org/su", "tag": "1"}',
        "--set", "singleuser.cpu.limit=3",
    )  # fmt: skip
    data = secret_data(find(docs, "Secret", "r-egi-hub-hub-config"))
    site, values = json.loads(data["site.json"]), json.loads(data["values.json"])
    from_values = hub_config(site, ENV, {"singleuser": values["singleuser"]})
    written = {
        **site,
        "KubeSpawner": {"image": "reg.example.org/su:1", "image_pull_policy": "IfNotPresent",
                        "cpu_limit": 3, "cpu_guarantee": 0.5, "mem_limit": "2G",
                        "mem_guarantee": "1G", "uid": 1000, "fs_gid": 100,
                        "start_timeout": 300,
                        # the home claim (singleuser.storage's defaults: dynamic, 10Gi)
                        "storage_pvc_ensure": True, "storage_capacity": "10Gi",
                        "storage_access_modes": ["ReadWriteOnce"],
                        "volumes": [{"name": "volume-{user_server}",
                                     "persistentVolumeClaim": {"claimName": "{pvc_name}"}}],
                        "volume_mounts": [{"name": "volume-{user_server}",
                                           "mountPath": "/home/jovyan"}]},
        "EGIKubeSpawner": {"profile_list": profiles},
        "QuotaPolicy": quotas,
        "StorageMounts": mounts,
    }  # fmt: skip
    from_site = hub_config(written, ENV, {})
    # The namespaces are the chart's own (hub.config may not set them: egi_hub.helm.owned).
    namespaces = from_values["EGIKubeSpawner"].pop("vo_namespaces")
    assert namespaces == {A: "vo-access", B: "vo-notebooks"}
    for section in ("KubeSpawner", "EGIKubeSpawner", "QuotaPolicy", "StorageMounts"):
        assert from_values[section] == from_site[section], section


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "singleuser.imgae.name=x"], "singleuser: Additional property imgae"),
        (["--set-json", f'singleuser.quotas={{"vo_limits":{{"{A}":{{"max_cpu":-1}}}}}}'],
         f"singleuser.quotas.vo_limits.{A}.max_cpu: Must validate one and only one schema"),
        (["--set-json", 'singleuser.quotas={"total_limits":{"max_gpu":-2}}'],
         "singleuser.quotas.total_limits.max_gpu: Must be greater than or equal to 0"),
        (["--set-json", 'singleuser.quotas={"vo_limts":{}}'],
         "singleuser.quotas: Additional property vo_limts is not allowed"),
        (["--set-json", 'singleuser.profileList=[{"display_name":"X","kubespawner_overide":{}}]'],
         "singleuser.profileList.0: Additional property kubespawner_overide"),
        (["--set", "singleuser.memory.limit=2GB"], "singleuser.memory.limit: Must validate"),
        (["--set", "singleuser.uid=0"], "singleuser.uid: Must validate"),
        (vo_namespaces({A: {"name": "VO_Access"}}),
         f"singleuser.voNamespaces.namespaces.{A}.name: Does not match pattern"),
        (vo_namespaces({A: {"name": "x" * 64}}),
         f"singleuser.voNamespaces.namespaces.{A}.name: Does not match pattern"),
        (vo_namespaces({"vo:a": {"name": "a"}}),
         "singleuser.voNamespaces.namespaces: Does not match pattern"),
        (vo_namespaces({A: {"name": "a", "quota": {}}}),
         f"singleuser.voNamespaces.namespaces.{A}: Additional property quota"),
    ],
)  # fmt: skip
def test_schema_refuses(helm: Path, args: list[str], message: str) -> None:
    assert message in refusal(helm, *args)


@pytest.mark.parametrize(
    ("namespaces", "message"),
    [
        ({A: {"name": "default"}},
         f'singleuser.voNamespaces.namespaces.{A}.name: "default" is the release\'s own namespace'),
        ({A: {"name": "shared"}, B: {"name": "shared"}},
         f'singleuser.voNamespaces.namespaces: {A} and {B} share the namespace "shared"'),
    ],
)  # fmt: skip
def test_templates_refuse(helm: Path, namespaces: dict, message: str) -> None:
    assert message in refusal(helm, *vo_namespaces(namespaces))


def test_no_roles_where_the_site_grants_them_itself(helm: Path) -> None:
    docs = render(helm, *singleuser(), "--set", "hub.rbac.create=false")
    assert not [d for d in docs if d["kind"] in ("Role", "RoleBinding")]
    assert find(docs, "Namespace", "vo-access")  # the namespaces are still the chart's
