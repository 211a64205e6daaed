"""EGIKubeSpawner's per-VO namespaces (``vo_namespaces``) and the notebook container's
security defaults, against kmock, a Kubernetes API emulator (a stand-in: no cluster
runs here; tests.kube adds what an API server and a kubelet would, here one kubelet
per namespace)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from kmock import Response
from kubernetes_asyncio.client import Configuration

from egi_hub.spawner.kube import NOTEBOOK_SECURITY_CONTEXT
from egi_hub.spawner.quota import QuotaExceededError, QuotaPolicy
from egi_hub.spawner.refusals import Refusal
from tests.integration.test_kube_spawner import ACCESS, NOTEBOOKS, spawner, start
from tests.kube import _kubelet, kubernetes

HUB_NS = "default"
NAMESPACES = {"vo.access.egi.eu": "vo-access", "vo.notebooks.egi.eu": "vo-notebooks"}
PROFILES = [
    {"display_name": "Small", "slug": "small", "default": True,
     "kubespawner_override": {"cpu_limit": 1, "mem_limit": "1G"}},
    # Open to everyone, charged to vo.notebooks.egi.eu whoever starts it.
    {"display_name": "Notebooks' pool", "slug": "pool", "vo": "vo.notebooks.egi.eu",
     "kubespawner_override": {"cpu_limit": 1, "mem_limit": "1G"}},
    # Asks for another namespace itself: the VO's rule decides, not the profile.
    {"display_name": "Elsewhere", "slug": "elsewhere",
     "kubespawner_override": {"cpu_limit": 1, "mem_limit": "1G", "namespace": "vo-notebooks"}},
]  # fmt: skip


@pytest.fixture(autouse=True)
def fresh_policy():
    QuotaPolicy.clear_instance()
    yield
    QuotaPolicy.clear_instance()


@asynccontextmanager
async def cluster(tmp: Path) -> AsyncIterator:
    """The emulated API with a kubelet in the hub's namespace and in each VO's."""
    async with kubernetes(tmp, HUB_NS) as api:
        base = Configuration.get_default_copy().host.rstrip("/")
        kubelets = [asyncio.create_task(_kubelet(base, ns)) for ns in NAMESPACES.values()]
        try:
            yield api
        finally:
            for kubelet in kubelets:
                kubelet.cancel()


def objects(api, plural: str) -> dict[str, list[str]]:
    """Namespace -> names of the objects of a kind that exist now."""
    found: dict[str, list[str]] = {}
    for (resource, namespace, name), obj in api.objects.items():
        if resource.plural == plural and not obj.deleted:
            found.setdefault(namespace, []).append(name)
    return found


def vo_spawner(name: str, entitlements: tuple[str, ...], profile: str = "small", **traits):
    return spawner(
        name,
        {"profile": profile},
        entitlements=entitlements,
        profile_list=PROFILES,
        vo_namespaces=NAMESPACES,
        **traits,
    )


async def test_a_vo_server_runs_in_its_vo_namespace_kmock_emulator(tmp_path):
    async with cluster(tmp_path) as api:
        s = vo_spawner("alice", (ACCESS,), storage_pvc_ensure=True, storage_capacity="1Gi")
        await start(s)
        assert s.namespace == "vo-access"
        assert objects(api, "pods") == {"vo-access": [s.pod_name]}
        assert objects(api, "persistentvolumeclaims") == {"vo-access": [s.pvc_name]}
        assert await s.poll() is None
        # A restarted hub (a new spawner from the saved state) finds the pod there, and
        # stops it there.
        again = vo_spawner("alice", (ACCESS,))
        again.load_state(s.get_state())
        again.server.ip, again.server.port = s.server.ip, s.server.port
        assert again.namespace == "vo-access"
        assert await again.poll() is None
        await again.stop()
        assert objects(api, "pods") == {}


async def test_a_user_never_lands_in_another_vos_namespace_kmock_emulator(tmp_path):
    """Charged to vo.notebooks.egi.eu by the profile, or asking for its namespace in an
    override: a user who is not in that VO starts in the hub's namespace."""
    async with cluster(tmp_path) as api:
        for profile in ("pool", "elsewhere"):
            s = vo_spawner(f"bob-{profile}", (ACCESS,), profile=profile)
            await start(s)
            assert s.namespace == (HUB_NS if profile == "pool" else "vo-access")
            assert "vo-notebooks" not in objects(api, "pods")
            await s.stop()


async def test_no_vo_or_an_unlisted_vo_runs_in_the_hub_namespace_kmock_emulator(tmp_path):
    other = "urn:mace:egi.eu:group:vo.other.eu:role=member#aai.egi.eu"
    async with cluster(tmp_path) as api:
        for name, entitlements in (("carol", ()), ("dave", (other,))):
            s = vo_spawner(name, entitlements)
            await start(s)
            assert s.namespace == HUB_NS
            await s.stop()
        assert set(objects(api, "pods")) <= {HUB_NS}


async def test_the_next_start_follows_the_vo_it_is_charged_to_kmock_emulator(tmp_path):
    """A member of both VOs: first charged to vo.access (its namespace), then to
    vo.notebooks (the pool profile): the second pod, and a home volume for it, there."""
    async with cluster(tmp_path) as api:
        s = vo_spawner("erin", (ACCESS, NOTEBOOKS), storage_pvc_ensure=True)
        await start(s)
        assert s.namespace == "vo-access"
        await s.stop()
        s.user_options = {"profile": "pool"}
        await start(s)
        assert s.namespace == "vo-notebooks"
        assert objects(api, "pods") == {"vo-notebooks": [s.pod_name]}
        assert objects(api, "persistentvolumeclaims") == {
            "vo-access": [s.pvc_name],
            "vo-notebooks": [s.pvc_name],
        }
        assert s.dns_name.endswith(".vo-notebooks.svc.cluster.local")
        await s.stop()


async def test_a_vo_namespace_quota_refusal_names_that_namespace_kmock_emulator(tmp_path):
    async with cluster(tmp_path) as api:
        refusal = {
            "kind": "Status",
            "status": "Failure",
            "reason": "Forbidden",
            "code": 403,
            "message": 'pods "jupyter-fay" is forbidden: exceeded quota: r-egi-hub-singleuser, '
            "requested: requests.cpu=1, used: requests.cpu=20, limited: requests.cpu=20",
        }
        api["post /api/v1/namespaces/vo-access/pods"] << Response(status=403, payload=refusal)
        s = vo_spawner("fay", (ACCESS,))
        with pytest.raises(QuotaExceededError) as info:
            await s.start()
        assert info.value.jupyterhub_message.startswith(
            "The cluster's quota for namespace vo-access has no room for this server "
        )
        assert QuotaPolicy.instance().usage("vo.access.egi.eu").servers == 0


@pytest.mark.parametrize(
    "message",
    [
        'pods "jupyter-ida" is forbidden: failed quota: r-egi-hub-singleuser: must specify '
        "limits.cpu for: oneclient-dh",
        'pods "jupyter-ida" is forbidden: violates PodSecurity "restricted:latest": '
        'privileged (container "x" must not set securityContext.privileged=true)',
    ],
)
async def test_a_namespace_rule_refusal_is_one_clear_line_kmock_emulator(tmp_path, message):
    async with cluster(tmp_path) as api:
        status = {"kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403}
        api["post /api/v1/namespaces/vo-access/pods"] << Response(
            status=403, payload={**status, "message": message}
        )
        s = vo_spawner("ida", (ACCESS,))
        with pytest.raises(Refusal) as info:
            await s.start()
        assert info.value.jupyterhub_message == (
            "The cluster's rules for namespace vo-access do not admit this server as the hub "
            f"sets it up (Kubernetes says: {message}). Please tell the hub's admins."
        )
        assert "<script" not in info.value.jupyterhub_html_message
        assert QuotaPolicy.instance().usage("vo.access.egi.eu").servers == 0


async def test_the_notebook_container_is_locked_down_kmock_emulator(tmp_path):
    async with cluster(tmp_path) as api:
        s = vo_spawner("gus", (ACCESS,), uid=1000)
        await start(s)
        ((_, _, _), pod) = next(
            (k, o) for k, o in api.objects.items() if k[0].plural == "pods" and not o.deleted
        )
        context = pod["spec"]["containers"][0]["securityContext"]
        assert context == {**NOTEBOOK_SECURITY_CONTEXT, "runAsUser": 1000}
        await s.stop()
    site = vo_spawner("hal", (ACCESS,), container_security_context={"runAsNonRoot": True})
    assert site.container_security_context == {"runAsNonRoot": True}  # the site's own wins
