"""EGIKubeSpawner against kmock, a Kubernetes API emulator (a stand-in: no cluster here),
and every pod manifest checked with kubernetes-validate --strict (1.29 and 1.33)."""

from __future__ import annotations

import json
import re

import kubernetes_validate
import pytest
from egi_hub.spawner.kube import EGIKubeSpawner
from egi_hub.spawner.quota import QuotaExceededError, QuotaPolicy
from jupyterhub.objects import Hub, Server
from kmock import Response
from kubernetes_asyncio.client import ApiClient

from egi_hub.context import UserContext
from tests.kube import kubernetes

NOTEBOOKS = "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu"
PROFILES = [
    {
        "display_name": "Small",
        "slug": "small",
        "default": True,
        "kubespawner_override": {"cpu_limit": 1, "mem_limit": "1G"},
    },
    {
        "display_name": "GPU",
        "slug": "gpu",
        "allowed_vos": ["vo.notebooks.egi.eu"],
        "vo": "vo.notebooks.egi.eu",
        "kubespawner_override": {
            "cpu_limit": 2,
            "mem_limit": "2G",
            "extra_resource_limits": {"nvidia.com/gpu": "1"},
        },
    },
]


class HubUser:
    """What the spawner sees of a hub user (stand-in for jupyterhub.user.User)."""

    def __init__(self, name: str, entitlements: list[str]) -> None:
        self.name = name
        self.id = 1
        self.url = f"/user/{name}/"
        self.admin = False
        self.escaped_name = name
        self._auth_state = UserContext.from_entitlements(name, entitlements).to_auth_state()

    async def get_auth_state(self) -> dict:
        return self._auth_state


def spawner(name: str, options: dict, **traits) -> EGIKubeSpawner:
    s = EGIKubeSpawner(
        user=HubUser(name, [NOTEBOOKS]),
        hub=Hub(),
        namespace="default",
        profile_list=PROFILES,
        start_timeout=30,
        image="quay.io/jupyterhub/singleuser:5",
        _mock=True,
        **traits,
    )
    s.api_token = "not-a-secret"
    s.server = Server()
    s.user_options = options
    return s


@pytest.fixture(autouse=True)
def fresh_policy():
    QuotaPolicy.clear_instance()
    yield
    QuotaPolicy.clear_instance()


async def test_lifecycle_kmock_emulator(tmp_path):
    async with kubernetes(tmp_path) as api:
        s = spawner("alice", {"profile": "gpu"}, storage_pvc_ensure=True, storage_capacity="1Gi")
        url = await s.start()
        assert url.startswith("http://127.0.0.1:")
        s.server.ip, s.server.port = "127.0.0.1", s.port
        assert await s.poll() is None
        pods = [o for (r, ns, n), o in api.objects.items() if r.plural == "pods"]
        (pod,) = pods
        container = pod["spec"]["containers"][0]
        assert container["resources"]["limits"] == {
            "cpu": 2.0,
            "memory": 2 * 2**30,
            "nvidia.com/gpu": "1",
        }
        (pvc,) = [o for (r, _, _), o in api.objects.items() if r.plural == "persistentvolumeclaims"]
        assert pvc["spec"]["resources"]["requests"] == {"storage": "1Gi"}
        assert pvc["metadata"]["labels"]["hub.jupyter.org/username"] == "alice"
        for manifest in (pod, pvc):
            for version in ("1.29.0", "1.33.0"):
                stored = json.loads(json.dumps(manifest.raw))  # as the API server keeps it
                clean = {k: v for k, v in stored.items() if k != "status"}
                kubernetes_validate.validate(clean, version, strict=True)
        labels = pod["metadata"]["labels"]
        assert labels["egi.eu/vo"] == "vo.notebooks.egi.eu"
        assert labels["egi.eu/profile"] == "gpu"
        assert labels["hub.jupyter.org/username"] == "alice"
        usage = QuotaPolicy.instance().usage("vo.notebooks.egi.eu")
        assert (usage.servers, usage.gpu) == (1, 1)
        await s.stop()
        assert QuotaPolicy.instance().usage("vo.notebooks.egi.eu").servers == 0


async def test_forged_profile_is_refused_before_any_pod_kmock_emulator(tmp_path):
    async with kubernetes(tmp_path) as api:
        s = spawner("bob", {"profile": "gpu"})
        s.user = HubUser("bob", [])  # in no VO: the GPU profile is not his
        with pytest.raises(Exception, match="Profile 'gpu' is not available"):
            await s.start()
        assert not [o for (r, _, _), o in api.objects.items() if r.plural == "pods"]


async def test_exceeded_resource_quota_is_a_clear_refusal_kmock_emulator(tmp_path):
    async with kubernetes(tmp_path) as api:
        refusal = {
            "kind": "Status",
            "status": "Failure",
            "reason": "Forbidden",
            "code": 403,
            "message": 'pods "jupyter-carol" is forbidden: exceeded quota: vo-quota, '
            "requested: limits.memory=1G, used: limits.memory=40G, limited: limits.memory=40G",
        }
        api["post /api/v1/namespaces/default/pods"] << Response(status=403, payload=refusal)
        s = spawner("carol", {"profile": "small"})
        with pytest.raises(QuotaExceededError) as info:
            await s.start()
        assert "ResourceQuota of namespace default" in info.value.message
        assert "exceeded quota: vo-quota" in info.value.message
        assert QuotaPolicy.instance().usage("vo.notebooks.egi.eu").servers == 0


@pytest.mark.parametrize("version", ["1.29.0", "1.33.0"])
@pytest.mark.parametrize("name", ["alice", "jörg@egi.eu", "Zoë.Ünicode+" + "x" * 188])
async def test_pod_manifests_are_valid_kubernetes(name, version):
    s = spawner(name, {"profile": "gpu"})
    await s.load_user_options()
    pod = ApiClient().sanitize_for_serialization(await s.get_pod_manifest())
    kubernetes_validate.validate(pod, version, strict=True)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", pod["metadata"]["name"])
    assert len(pod["metadata"]["name"]) <= 63
