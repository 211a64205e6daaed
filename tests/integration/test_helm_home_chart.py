"""The chart's ``singleuser.storage`` (users' homes), rendered by the real helm (the
`helm` fixture): by default a claim per server at /home/jovyan, as the hub loads it from
the rendered values; the schema refusing what cannot work, each by its key; and a VO
name of any characters still a valid ``egi.eu/vo`` label on its namespace."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from egi_hub.helm.config import hub_config
from egi_hub.names import label_value
from tests.integration.test_helm_chart import KUBERNETES_VERSIONS, find, refusal, render

ENV = {"EGI_HUB_DB_URL": "sqlite://", "POD_NAMESPACE": "hub"}
#: A Kubernetes label value.
LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def loaded(docs: list[dict[str, Any]]) -> Any:
    """The hub's config as it loads the rendered Secret (site.json, values.json)."""
    data = find(docs, "Secret", "r-egi-hub-hub-config")["data"]
    site, values = (json.loads(base64.b64decode(data[k])) for k in ("site.json", "values.json"))
    return hub_config(site, ENV, values)


def test_the_default_keeps_each_servers_files_on_its_own_claim(helm: Path) -> None:
    kube = loaded(render(helm)).KubeSpawner
    assert kube.storage_pvc_ensure is True
    assert kube.storage_capacity == "10Gi"
    assert kube.storage_access_modes == ["ReadWriteOnce"]
    assert "storage_class" not in kube and "pvc_name_template" not in kube
    assert kube.volumes == [
        {"name": "volume-{user_server}", "persistentVolumeClaim": {"claimName": "{pvc_name}"}}
    ]
    assert kube.volume_mounts == [{"name": "volume-{user_server}", "mountPath": "/home/jovyan"}]


def test_static_and_none(helm: Path) -> None:
    static = ["--set", "singleuser.storage.type=static",
              "--set", "singleuser.storage.static.pvcName=homes"]  # fmt: skip
    kube = loaded(render(helm, *static)).KubeSpawner
    assert kube.volumes == [{"name": "home", "persistentVolumeClaim": {"claimName": "homes"}}]
    assert kube.volume_mounts[0]["subPath"] == "{username}"
    kube = loaded(render(helm, "--set", "singleuser.storage.type=none")).KubeSpawner
    assert "volumes" not in kube and "storage_pvc_ensure" not in kube


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--set", "singleuser.storage.type=ephemeral"], "singleuser.storage.type: "),
        (["--set", "singleuser.storage.type=static"], "singleuser.storage.static.pvcName: "),
        (["--set", "singleuser.storage.sise=1Gi"],
         "singleuser.storage: Additional property sise is not allowed"),
        (["--set", "singleuser.storage.homeMountPath=home"], "singleuser.storage.homeMountPath: "),
        (["--set", "singleuser.storage.capacity=lots"], "singleuser.storage.capacity: "),
        (["--set", "singleuser.storage.dynamic.pvcNameTemplate=claim {username}"],
         "singleuser.storage.dynamic.pvcNameTemplate: "),
        (["--set", "singleuser.storage.dynamic.storageAccessModes[0]=ReadWriteAll"],
         "singleuser.storage.dynamic.storageAccessModes.0: "),
        (["--set", "singleuser.storage.dynamic.subPath=/abs"],
         "singleuser.storage.dynamic.subPath: "),
    ],
)  # fmt: skip
def test_the_schema_refuses_a_bad_storage_key(helm: Path, args: list[str], expected: str) -> None:
    assert expected in refusal(helm, *args)


def test_a_vo_name_of_any_characters_is_a_valid_namespace_label(helm: Path, tmp_path: Path) -> None:
    """As the pods' egi.eu/vo label (egi_hub.names.label_value): refused by neither
    `helm template` nor the API server."""
    hostile = 'vo"x\ny.' + "z" * 80
    values = {"singleuser": {"voNamespaces": {"enabled": True, "namespaces": {
        hostile: {"name": "vo-x"}, "vo.access.egi.eu": {"name": "vo-access"}}}}}  # fmt: skip
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    docs = render(helm, "-f", str(path))
    for name, vo in (("vo-x", hostile), ("vo-access", "vo.access.egi.eu")):
        namespace = find(docs, "Namespace", name)
        label = namespace["metadata"]["labels"]["egi.eu/vo"]
        assert label == label_value(vo) and LABEL_VALUE.fullmatch(label) and len(label) <= 63
        for version in KUBERNETES_VERSIONS:
            kubernetes_validate.validate(namespace, version, strict=True)
    assert find(docs, "Namespace", "vo-access")["metadata"]["labels"]["egi.eu/vo"] == (
        "vo.access.egi.eu"
    )
