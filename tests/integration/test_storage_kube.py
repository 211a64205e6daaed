"""EGIKubeSpawner with storage mounts against kmock, a Kubernetes API emulator (a
stand-in: no cluster runs here; tests.kube adds what an API server and a kubelet
would): a spawn creates the storage Secret, then the pod with the NFS volume and the
oneclient sidecar; a stop deletes the Secret. Every manifest passes
kubernetes-validate --strict."""

from __future__ import annotations

import base64
import json
import time

import kubernetes_validate
import pytest
from kmock import ResourceInfo

from egi_hub.spawner.quota import QuotaPolicy
from egi_hub.storage_mounts.credentials import MountCredentials
from egi_hub.storage_mounts.datahub_tokens import (
    DatahubCredentialError,
    DatahubCredentials,
    DatahubScope,
    DatahubSpace,
    DatahubSupport,
    DatahubToken,
    DatahubUse,
)
from egi_hub.storage_mounts.mounts import StorageMounts
from tests.integration.test_kube_spawner import pods, spawner
from tests.kube import kubernetes

TOKEN = "oneclient-token-of-alice"
MOUNTS = [
    {
        "name": "shared",
        "kind": "nfs",
        "server": "nfs.example.org",
        "export": "/exports/{vo}",
        "path": "/nfs/shared",
        "read_only": True,
    },
    {
        "name": "datahub",
        "kind": "datahub",
        "onezone_url": "https://datahub.example.org",
        "path": "/datahub",
    },
]


class FixedTokens:
    """In place of the hub's DatahubTokens (tested against the Onedata stand-in in its
    own tests): hands out one oneclient token, and records what was asked."""

    def __init__(self, fail: bool = False) -> None:
        self.asked: list[tuple] = []
        self.fail = fail

    async def credentials(self, user, checkin_token, use, read_only):
        self.asked.append((user, await checkin_token(), use, read_only))
        if self.fail:
            raise DatahubCredentialError(
                "Onezone at https://datahub.example.org did not answer (connection refused)",
                "unreachable",
            )
        support = DatahubSupport("p1", "p1", "p1.example.org", "21.02.5", False)
        scope = DatahubScope(None, False, (DatahubSpace("sp1", "space-a", False, (support,)),))
        return DatahubCredentials(DatahubToken(TOKEN, use, read_only, time.time() + 3600), scope)


@pytest.fixture(autouse=True)
def site(monkeypatch):
    QuotaPolicy.clear_instance()
    StorageMounts.clear_instance()
    MountCredentials.clear_instance()
    StorageMounts.instance().mounts = MOUNTS
    tokens = FixedTokens()
    monkeypatch.setattr(MountCredentials, "datahub_tokens", lambda self, mount: tokens)
    yield tokens
    QuotaPolicy.clear_instance()
    StorageMounts.clear_instance()
    MountCredentials.clear_instance()


def secrets(api) -> list:
    return [o for (r, _, _), o in api.objects.items() if r.plural == "secrets" and not o.deleted]


def declare_secrets(api) -> None:
    api.resources["v1/secrets"] = ResourceInfo(
        namespaced=True,
        kind="Secret",
        verbs={"list", "watch", "get", "create", "delete", "patch", "update"},
    )


def user_with_checkin_token(s, token="checkin-access-token"):
    s.user._auth_state = {**s.user._auth_state, "access_token": token}


async def test_spawn_creates_the_secret_and_the_pod_stop_deletes_it_kmock_emulator(tmp_path, site):
    async with kubernetes(tmp_path) as api:
        declare_secrets(api)
        s = spawner("alice", {"profile": "small"})
        user_with_checkin_token(s)
        await s.start()
        assert site.asked == [("alice", "checkin-access-token", DatahubUse.ONECLIENT, False)]
        (pod,) = pods(api)
        (secret,) = secrets(api)
        spec = pod["spec"]
        assert secret["metadata"]["name"] == f"{s.pod_name}-storage"
        assert base64.b64decode(secret["data"]["datahub-datahub"]).decode() == TOKEN
        assert secret["metadata"]["ownerReferences"] == [
            {"apiVersion": "v1", "kind": "Pod", "name": s.pod_name, "uid": pod["metadata"]["uid"]}
        ]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["mount-shared"]["nfs"] == {
            "server": "nfs.example.org",
            "path": "/exports/vo.notebooks.egi.eu",
            "readOnly": True,
        }
        assert volumes["oneclient-token-datahub"]["secret"]["secretName"] == s.pod_name + "-storage"
        notebook, sidecar = spec["containers"]
        assert sidecar["name"] == "oneclient-datahub"
        assert {
            m["mountPath"]: m.get("mountPropagation")
            for m in notebook["volumeMounts"]
            if m["name"].startswith("mount-")
        } == {"/nfs/shared": None, "/datahub": "HostToContainer"}
        assert "oneclient-token-datahub" not in json.dumps(notebook)
        assert TOKEN not in json.dumps(pod.raw) and "checkin-access-token" not in json.dumps(
            pod.raw
        )
        for manifest in (pod, secret):
            stored = json.loads(json.dumps(manifest.raw))
            clean = {k: v for k, v in stored.items() if k != "status"}
            for version in ("1.29.0", "1.33.0"):
                kubernetes_validate.validate(clean, version, strict=True)
        await s.stop()
        assert pods(api) == [] and secrets(api) == []


async def test_onezone_down_still_starts_without_sidecar_kmock_emulator(tmp_path, site):
    site.fail = True
    async with kubernetes(tmp_path) as api:
        declare_secrets(api)
        s = spawner("bob", {"profile": "small"})
        user_with_checkin_token(s)
        await s.start()
        (pod,) = pods(api)
        assert [c["name"] for c in pod["spec"]["containers"]] == ["notebook"]
        assert secrets(api) == []
        assert "mount-shared" in json.dumps(pod["spec"]["volumes"])
        await s.stop()
        assert pods(api) == []


async def test_no_checkin_token_no_sidecar_and_no_secret_kmock_emulator(tmp_path, site):
    async with kubernetes(tmp_path) as api:
        declare_secrets(api)
        s = spawner("carl", {"profile": "small"})  # dev login: no Check-in token
        await s.start()
        assert site.asked == []
        assert [c["name"] for c in pods(api)[0]["spec"]["containers"]] == ["notebook"]
        assert secrets(api) == []
        await s.stop()
