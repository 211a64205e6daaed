"""The build pod's push credentials: the Secret a site makes with the documented command
is the one the build pod mounts, with no key to set.

`kubectl create secret docker-registry` (what docs/admin/helm.md and binder.md show)
makes a Secret of type kubernetes.io/dockerconfigjson whose one key is
``.dockerconfigjson``, holding a docker config.json. The builder's default
`KubernetesBuilder.push_secret_key` is that key, projected to ``config.json`` under
/root/.docker, where docker (and repo2docker through it) reads it. The kubelet refuses to
start a pod whose secret volume names a key the Secret lacks, so the key is checked here
against the Secret as kubectl makes it.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

from egi_hub.binder_service.builders.kubernetes import KubernetesBuilder
from egi_hub.binder_service.providers.base import Resolved
from egi_hub.binder_service.specs import RepoSpec

ROOT = Path(__file__).resolve().parents[2]
AUTH = base64.b64encode(b"robot:password").decode()


def kubectl_docker_registry_secret(name: str) -> dict:
    """The Secret ``kubectl create secret docker-registry NAME --docker-server=...
    --docker-username=... --docker-password=...`` makes (its documented shape)."""
    config = {"auths": {"registry.example.org": {"username": "robot", "auth": AUTH}}}
    data = base64.b64encode(json.dumps(config).encode()).decode()
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": data},
    }


def projected_files(pod: dict, secret: dict, volume: str) -> dict[str, str]:
    """What the kubelet puts in ``volume``'s directory from ``secret`` (its items)."""
    (spec,) = [v["secret"] for v in pod["spec"]["volumes"] if v["name"] == volume]
    assert spec["secretName"] == secret["metadata"]["name"]
    files = {}
    for item in spec["items"]:
        assert item["key"] in secret["data"], f"the kubelet would refuse: no key {item['key']}"
        files[item["path"]] = base64.b64decode(secret["data"][item["key"]]).decode()
    return files


def build_pod(**traits) -> dict:
    builder = KubernetesBuilder(
        namespace="binder", image_prefix="registry.example.org/env-", **traits
    )
    source = Resolved(
        RepoSpec("gh", "owner/repo", "main"),
        "git",
        "https://github.com/owner/repo",
        "0" * 40,
        "o/r",
    )
    return builder.pod_manifest("k" * 40, source)


def test_the_default_key_is_the_one_kubectl_docker_registry_makes() -> None:
    secret = kubectl_docker_registry_secret("binder-push")
    pod = build_pod(push_secret="binder-push")
    files = projected_files(pod, secret, "docker-config")
    assert list(files) == ["config.json"]  # where docker reads it, under /root/.docker
    assert json.loads(files["config.json"])["auths"]["registry.example.org"]["auth"] == AUTH
    (mount,) = [
        m for m in pod["spec"]["containers"][0]["volumeMounts"] if m["name"] == "docker-config"
    ]
    assert mount == {"name": "docker-config", "mountPath": "/root/.docker", "readOnly": True}


def test_a_generic_secret_with_a_config_json_key_needs_that_key_named() -> None:
    secret = {
        "metadata": {"name": "binder-push"},
        "type": "Opaque",
        "data": {"config.json": base64.b64encode(b'{"auths": {}}').decode()},
    }
    pod = build_pod(push_secret="binder-push", push_secret_key="config.json")
    assert projected_files(pod, secret, "docker-config") == {"config.json": '{"auths": {}}'}


def test_no_push_secret_mounts_nothing() -> None:
    pod = build_pod()
    assert all(v["name"] != "docker-config" for v in pod["spec"]["volumes"])


def test_the_docs_give_the_command_that_makes_the_default_key() -> None:
    """The admin docs' push Secret command is kubectl's docker-registry, in the build
    namespace, named as in the Binder example's pushSecret."""
    helm = (ROOT / "docs" / "admin" / "helm.md").read_text()
    command = re.search(
        r"kubectl --namespace notebooks-notebooks-egi-hub-build "
        r"create secret docker-registry (\S+)",
        helm,
    )
    assert command, "docs/admin/helm.md: the push Secret's command"
    assert f"pushSecret: {command[1]}" in helm
    binder = (ROOT / "docs" / "admin" / "binder.md").read_text()
    assert "create secret docker-registry" in binder
