"""Storage credentials over a Kubernetes server's life: where the keeper keeps them, and
whose storage Secrets the hub may replace or delete.

The Kubernetes API is kmock, an emulator (plus a fake kubelet, tests/kube.py); manifests
are checked with kubernetes-validate --strict. Onezone is not asked: the hub's DataHub
token cache is replaced by `FixedTokens` (see tests/integration/test_storage_kube.py).
"""

from __future__ import annotations

import base64
import json

import kubernetes_validate
import pytest

from egi_hub.storage_mounts.kube import CREDENTIALS_DIR, secret_name_for
from tests.integration.test_kube_spawner import pods, spawner
from tests.integration.test_storage_kube import (  # noqa: F401  (site: autouse fixture)
    TOKEN,
    declare_secrets,
    secrets,
    site,
    user_with_checkin_token,
)
from tests.kube import kubernetes


def env_of(container: dict) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env") or []}


async def test_credential_files_live_on_a_memory_volume_of_the_notebook_kmock_emulator(
    tmp_path,
):
    async with kubernetes(tmp_path) as api:
        declare_secrets(api)
        s = spawner("alice", {"profile": "small"})
        user_with_checkin_token(s)
        await s.start()
        (pod,) = pods(api)
        spec = pod["spec"]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["egi-storage-credentials"]["emptyDir"] == {
            "medium": "Memory",
            "sizeLimit": "4Mi",
        }
        notebook, *sidecars = spec["containers"]
        assert {
            m["mountPath"]
            for m in notebook["volumeMounts"]
            if m["name"] == "egi-storage-credentials"
        } == {CREDENTIALS_DIR}
        for sidecar in sidecars:  # the sidecars never see the notebook's credentials
            assert "egi-storage-credentials" not in json.dumps(sidecar)
        env = env_of(notebook)
        assert env["EGI_STORAGE_DIR"] == CREDENTIALS_DIR
        # The document (no secrets in it) stays beside the checkpoints in the home.
        assert env["EGI_MOUNTS_FILE"] == "~/.egi/servers/default/mounts.json"
        clean = {k: v for k, v in json.loads(json.dumps(pod.raw)).items() if k != "status"}
        for version in ("1.29.0", "1.33.0"):
            kubernetes_validate.validate(clean, version, strict=True)
        await s.stop()


async def test_a_server_without_mounts_gets_no_credential_volume_kmock_emulator(tmp_path):
    from egi_hub.storage_mounts.mounts import StorageMounts

    StorageMounts.instance().mounts = []
    async with kubernetes(tmp_path) as api:
        declare_secrets(api)
        s = spawner("alice", {"profile": "small"})
        await s.start()
        (pod,) = pods(api)
        assert "egi-storage-credentials" not in json.dumps(pod.raw)
        assert "EGI_STORAGE_DIR" not in env_of(pod["spec"]["containers"][0])
        await s.stop()
        assert secrets(api) == []


# -- whose storage Secret ---------------------------------------------------------------


def foreign_secret(name: str, namespace: str, labels: dict[str, str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "type": "Opaque",
        "data": {"password": base64.b64encode(b"the admin's").decode()},
    }


def secret_named(api, name: str):
    found = [o for o in secrets(api) if o["metadata"]["name"] == name]
    return found[0] if found else None


@pytest.mark.parametrize(
    "labels",
    [
        {},  # an admin's Secret that happens to be called jupyter-<user>.egi-storage
        {"app.kubernetes.io/component": "egi-storage"},  # ours, but whose?
        {  # another user's (or another server's) storage Secret
            "app.kubernetes.io/component": "egi-storage",
            "hub.jupyter.org/username": "bob",
            "hub.jupyter.org/servername": "",
        },
    ],
)
async def test_a_secret_of_that_name_that_is_not_the_servers_is_never_touched_kmock_emulator(
    tmp_path, labels
):
    async with kubernetes(tmp_path) as api:
        declare_secrets(api)
        s = spawner("alice", {"profile": "small"})
        user_with_checkin_token(s)
        name = secret_name_for(s.pod_name)
        await s.api.create_namespaced_secret(s.namespace, foreign_secret(name, s.namespace, labels))
        with pytest.raises(Exception, match="is not this server's") as failed:
            await s.start()
        assert TOKEN not in str(failed.value)
        await s.stop()  # JupyterHub's clean-up after a failed start
        left = secret_named(api, name)
        assert left is not None and left["data"] == {"password": "dGhlIGFkbWluJ3M="}
        assert pods(api) == []


async def test_the_servers_own_secret_from_an_earlier_start_is_replaced_kmock_emulator(
    tmp_path,
):
    async with kubernetes(tmp_path) as api:
        declare_secrets(api)
        s = spawner("alice", {"profile": "small"})
        user_with_checkin_token(s)
        name = secret_name_for(s.pod_name)
        labels = {
            "app.kubernetes.io/component": "egi-storage",
            **s._egi_owner_labels(),
        }
        await s.api.create_namespaced_secret(s.namespace, foreign_secret(name, s.namespace, labels))
        await s.start()
        (secret,) = secrets(api)
        assert "password" not in secret["data"]
        assert base64.b64decode(secret["data"]["datahub-datahub"]).decode() == TOKEN
        await s.stop()
        assert secrets(api) == []


async def test_stop_deletes_no_secret_when_the_server_made_none_kmock_emulator(tmp_path):
    """A server with an NFS mount only (no sidecar, so no Secret): a Secret of its
    pod's name, even one labelled as its own, is not its to delete."""
    from egi_hub.storage_mounts.mounts import StorageMounts

    StorageMounts.instance().mounts = [
        m for m in StorageMounts.instance().mounts if m.kind == "nfs"
    ]
    async with kubernetes(tmp_path) as api:
        declare_secrets(api)
        s = spawner("alice", {"profile": "small"})
        await s.start()
        assert secrets(api) == []
        name = secret_name_for(s.pod_name)
        labels = {"app.kubernetes.io/component": "egi-storage", **s._egi_owner_labels()}
        await s.api.create_namespaced_secret(s.namespace, foreign_secret(name, s.namespace, labels))
        await s.stop()
        assert secret_named(api, name) is not None


HOSTILE_NAMES = [
    "alice-storage",
    "alice.egi-storage",
    "Alice.EGI-Storage",
    "alice..egi",
    "a" * 80,
    "ünïcøde.egi-storage",
    "-alice-",
]


async def test_no_pod_or_kubespawner_secret_name_is_ever_a_storage_secret_name_kmock_emulator(
    tmp_path,
):
    """Storage Secrets are ``<pod>.egi-storage``; KubeSpawner's pod names (either slug
    scheme) never hold a dot, so no user's pod, and no internal_ssl Secret KubeSpawner
    names after a pod, can be called like another server's storage Secret."""
    async with kubernetes(tmp_path):
        for scheme in ("safe", "escape"):
            names = set()
            for user in ["alice", *HOSTILE_NAMES]:
                s = spawner(user, {"profile": "small"}, slug_scheme=scheme)
                pod = s._expand_user_properties(s.pod_name_template)
                ssl_secret = s._expand_user_properties(s.secret_name_template).replace(
                    "{pod_name}", pod
                )
                assert "." not in pod and "." not in ssl_secret, (scheme, user, pod)
                names |= {pod, ssl_secret}
            storage = {secret_name_for(n) for n in names}
            assert not storage & names


async def test_a_user_whose_pod_has_another_users_old_secret_name_kmock_emulator(tmp_path):
    """User ``alice-storage``'s pod is ``jupyter-alice-storage``: what alice's storage
    Secret used to be called. KubeSpawner with internal_ssl deletes and makes a Secret
    of its pod's name before the notebook starts, and deletes it at stop; run for
    ``alice-storage`` (KubeSpawner's own calls), none of that reaches alice's Secret,
    and ``alice-storage``'s pod mounts no Secret of hers."""
    from kubernetes_asyncio.client import V1ObjectMeta, V1Secret

    async with kubernetes(tmp_path) as api:
        declare_secrets(api)
        alice = spawner("alice", {"profile": "small"})
        user_with_checkin_token(alice, "alices-checkin-token")
        await alice.start()
        mallory = spawner("alice-storage", {"profile": "small"})
        user_with_checkin_token(mallory, "mallorys-checkin-token")
        assert mallory.pod_name == f"{alice.pod_name}-storage"  # the old name
        alices = secret_name_for(alice.pod_name)
        assert alices not in (mallory.pod_name, mallory.secret_name)
        before = secret_named(api, alices)
        # What KubeSpawner's start does with internal_ssl, before the pod runs.
        await mallory._ensure_not_exists("secret", mallory.secret_name)
        manifest = V1Secret(
            metadata=V1ObjectMeta(name=mallory.secret_name, labels={"component": "ssl"}),
            data={"ssl.key": base64.b64encode(b"mallory's key").decode()},
        )
        assert await mallory._make_create_resource_request("secret", manifest)
        await mallory.start()
        mallory_pod = next(p for p in pods(api) if p["metadata"]["name"] == mallory.pod_name)
        mounted = {
            v["secret"]["secretName"] for v in mallory_pod["spec"]["volumes"] if "secret" in v
        }
        assert alices not in mounted
        # What KubeSpawner's stop does with internal_ssl, then ours.
        await mallory._ensure_not_exists("secret", mallory.secret_name)
        await mallory.stop()
        after = secret_named(api, alices)
        assert after is not None and after["metadata"]["uid"] == before["metadata"]["uid"]
        assert after["data"] == before["data"]
        await alice.stop()
        assert secret_named(api, alices) is None


async def test_a_stale_delete_never_removes_a_secret_made_again_kmock_emulator(tmp_path):
    """The stand-in's uid precondition, as the API server's: a delete naming the uid
    of a Secret that was deleted and made again meanwhile is refused (409)."""
    from kubernetes_asyncio.client import V1DeleteOptions, V1Preconditions
    from kubernetes_asyncio.client.rest import ApiException

    async with kubernetes(tmp_path) as api:
        declare_secrets(api)
        s = spawner("alice", {"profile": "small"})
        name = secret_name_for(s.pod_name)
        labels = {"app.kubernetes.io/component": "egi-storage", **s._egi_owner_labels()}
        made = await s.api.create_namespaced_secret(
            s.namespace, foreign_secret(name, s.namespace, labels)
        )
        await s.api.delete_namespaced_secret(name, s.namespace)
        await s.api.create_namespaced_secret(s.namespace, foreign_secret(name, s.namespace, labels))
        stale = V1DeleteOptions(preconditions=V1Preconditions(uid=made.metadata.uid))
        with pytest.raises(ApiException) as refused:
            await s.api.delete_namespaced_secret(name, s.namespace, body=stale)
        assert refused.value.status == 409
        assert secret_named(api, name) is not None
