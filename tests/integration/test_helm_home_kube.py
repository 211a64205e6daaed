"""The chart's users' homes (``singleuser.storage``, egi_hub.helm.home) on EGIKubeSpawner,
against kmock, a Kubernetes API emulator (a stand-in: no cluster runs here; tests.kube
adds what an API server and a kubelet would). The spawner is configured as the chart's
hub is, from the values' section: a started server has its own claim, mounted at the
home beside the storage mounts' volumes; a restart (and a restarted hub) mounts the
same claim; two users whose names escape alike never share one; and a server that
moves to another VO's namespace gets a claim there, its first one kept for its return.
Every manifest passes kubernetes-validate --strict."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kmock import Response
from traitlets.config import Config

from egi_hub.config import site_to_config
from egi_hub.helm.singleuser import SingleuserSite
from egi_hub.spawner.quota import QuotaPolicy
from egi_hub.spawner.refusals import Refusal
from egi_hub.storage_mounts.mounts import StorageMounts
from tests.integration.test_kube_spawner import ACCESS, NOTEBOOKS, spawner, start
from tests.integration.test_kube_spawner_namespaces import cluster, objects, vo_spawner
from tests.kube import kubernetes

#: The chart's default singleuser.storage (values.yaml: z2jh's).
STORAGE: dict[str, Any] = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "helm/egi-hub/values.yaml").read_text()
)["singleuser"]["storage"]
STORAGE = {**STORAGE, "extraLabels": {"example.org/backup": "daily"}}
NFS = {"name": "shared", "kind": "nfs", "server": "nfs.example.org",
       "export": "/exports/{vo}", "path": "/nfs/shared"}  # fmt: skip


def chart_config(**site: Any) -> Config:
    """The spawner's config as the chart's hub gets it from these values (no hub.config)."""
    merged = SingleuserSite.under({}, {"storage": STORAGE, **site})
    return site_to_config(merged.site)


@pytest.fixture(autouse=True)
def fresh_singletons():
    QuotaPolicy.clear_instance()
    StorageMounts.clear_instance()
    StorageMounts.instance().mounts = [NFS]
    yield
    QuotaPolicy.clear_instance()
    StorageMounts.clear_instance()


def live(api, plural: str) -> list:
    return [o for (r, _, _), o in api.objects.items() if r.plural == plural and not o.deleted]


def claim_of(api, s) -> Any:
    (claim,) = [c for c in live(api, "persistentvolumeclaims")
                if c["metadata"]["name"] == s.pvc_name
                and c["metadata"]["namespace"] == s.namespace]  # fmt: skip
    return claim


def home_claim(pod) -> str:
    """The claim the notebook container's /home/jovyan comes from."""
    spec = pod["spec"]
    (mount,) = [
        m for m in spec["containers"][0]["volumeMounts"] if m["mountPath"] == "/home/jovyan"
    ]
    (volume,) = [v for v in spec["volumes"] if v["name"] == mount["name"]]
    return volume["persistentVolumeClaim"]["claimName"]


def pod_of(api, s) -> Any:
    (pod,) = [p for p in live(api, "pods") if p["metadata"]["name"] == s.pod_name]
    return pod


def validate(*manifests) -> None:
    for manifest in manifests:
        stored = json.loads(json.dumps(manifest.raw))  # as the API server keeps it
        clean = {k: v for k, v in stored.items() if k != "status"}
        for version in ("1.29.0", "1.33.0"):
            kubernetes_validate.validate(clean, version, strict=True)


async def test_a_server_has_its_claim_at_home_beside_the_mounts_kmock_emulator(tmp_path):
    async with kubernetes(tmp_path) as api:
        s = spawner("alice", {"profile": "small"}, config=chart_config())
        await start(s)
        claim, pod = claim_of(api, s), pod_of(api, s)
        assert s.pvc_name == "claim-alice"
        assert claim["spec"]["resources"]["requests"] == {"storage": "10Gi"}
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        assert "storageClassName" not in claim["spec"]  # the cluster's default class
        labels = claim["metadata"]["labels"]
        assert labels["hub.jupyter.org/username"] == "alice"
        assert labels["example.org/backup"] == "daily"
        assert home_claim(pod) == "claim-alice"
        # the storage mounts' volumes are still there, beside the home's
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        assert volumes["mount-shared"]["nfs"] == {
            "server": "nfs.example.org",
            "path": "/exports/vo.notebooks.egi.eu",
        }
        assert "egi-storage-credentials" in volumes
        paths = {m["mountPath"] for m in pod["spec"]["containers"][0]["volumeMounts"]}
        assert {"/home/jovyan", "/nfs/shared", "/run/egi-storage"} <= paths
        validate(claim, pod)
        await s.stop()
        assert live(api, "pods") == []
        assert [c["metadata"]["name"] for c in live(api, "persistentvolumeclaims")] == [
            "claim-alice"
        ]  # a stop (a cull) keeps the home


async def test_a_restart_mounts_the_same_claim_kmock_emulator(tmp_path):
    async with kubernetes(tmp_path) as api:
        s = spawner("bob", {"profile": "small"}, config=chart_config())
        await start(s)
        uid = claim_of(api, s)["metadata"]["uid"]
        await s.stop()
        await start(s)  # the same hub
        assert home_claim(pod_of(api, s)) == s.pvc_name
        await s.stop()
        # a restarted hub: a new spawner from the saved state
        again = spawner("bob", {"profile": "small"}, config=chart_config())
        again.load_state(s.get_state())
        await start(again)
        assert home_claim(pod_of(api, again)) == s.pvc_name
        assert claim_of(api, again)["metadata"]["uid"] == uid
        assert len(live(api, "persistentvolumeclaims")) == 1
        await again.stop()


@pytest.mark.parametrize("scheme", ["safe", "escape"])
async def test_users_whose_names_escape_alike_never_share_a_claim_kmock_emulator(tmp_path, scheme):
    """``a.b`` escapes to ``a-2eb`` in KubeSpawner's old scheme, the name of the other
    user; each scheme still tells them apart, and each pod mounts its own claim."""
    async with kubernetes(tmp_path) as api:
        users = [
            spawner(name, {"profile": "small"}, config=chart_config(), slug_scheme=scheme)
            for name in ("a.b", "a-2eb")
        ]
        for s in users:
            await start(s)
        names = {s.user.name: s.pvc_name for s in users}
        assert len(set(names.values())) == 2, names
        assert len(live(api, "persistentvolumeclaims")) == 2
        for s in users:
            assert home_claim(pod_of(api, s)) == names[s.user.name]
            assert (
                claim_of(api, s)["metadata"]["labels"]["hub.jupyter.org/username"]
                == (pod_of(api, s)["metadata"]["labels"]["hub.jupyter.org/username"])
            )
            await s.stop()


async def test_a_server_moving_to_another_vos_namespace_kmock_emulator(tmp_path):
    """A member of two VOs, charged to vo.access (its namespace), then to vo.notebooks
    (the pool profile): the second server gets a new, empty claim in vo-notebooks; back
    in vo-access, the first claim again (same uid): the files are where they were made."""
    async with cluster(tmp_path) as api:
        s = vo_spawner("erin", (ACCESS, NOTEBOOKS), config=chart_config())
        await start(s)
        assert s.namespace == "vo-access"
        first = claim_of(api, s)["metadata"]["uid"]
        await s.stop()
        s.user_options = {"profile": "pool"}
        await start(s)
        assert s.namespace == "vo-notebooks"
        assert home_claim(pod_of(api, s)) == s.pvc_name
        assert claim_of(api, s)["metadata"]["uid"] != first
        await s.stop()
        s.user_options = {"profile": "small"}
        await start(s)
        assert s.namespace == "vo-access"
        assert claim_of(api, s)["metadata"]["uid"] == first
        assert objects(api, "persistentvolumeclaims") == {
            "vo-access": [s.pvc_name],
            "vo-notebooks": [s.pvc_name],
        }
        await s.stop()


async def test_type_none_gives_no_claim_kmock_emulator(tmp_path):
    async with kubernetes(tmp_path) as api:
        none = copy.deepcopy(STORAGE) | {"type": "none"}
        config = site_to_config(SingleuserSite.under({}, {"storage": none}).site)
        s = spawner("carol", {"profile": "small"}, config=config)
        await start(s)
        assert live(api, "persistentvolumeclaims") == []
        paths = {m["mountPath"] for m in pod_of(api, s)["spec"]["containers"][0]["volumeMounts"]}
        assert "/home/jovyan" not in paths and "/nfs/shared" in paths
        await s.stop()


async def test_a_full_storage_quota_is_one_clear_refusal_kmock_emulator(tmp_path):
    """A VO namespace's ResourceQuota on requests.storage refuses the home claim: the
    user reads why (stopping servers frees no storage), and nothing stays charged."""
    async with cluster(tmp_path) as api:
        message = (
            'persistentvolumeclaims "claim-fay" is forbidden: exceeded quota: '
            "r-egi-hub-singleuser, requested: requests.storage=10Gi, used: "
            "requests.storage=100Gi, limited: requests.storage=100Gi"
        )
        status = {"kind": "Status", "status": "Failure", "reason": "Forbidden", "code": 403}
        claims = "/api/v1/namespaces/vo-access/persistentvolumeclaims"
        api[f"post {claims}"] << Response(status=403, payload={**status, "message": message})
        # kmock stores the object whatever its answer: the API server's 404 for the
        # claim KubeSpawner then looks for (it goes on if the claim exists after all)
        absent = {**status, "reason": "NotFound", "code": 404, "message": "not found"}
        api[f"get {claims}/claim-fay"] << Response(status=404, payload=absent)
        s = vo_spawner("fay", (ACCESS,), config=chart_config())
        with pytest.raises(Refusal) as info:
            await s.start()
        assert info.value.jupyterhub_message == (
            "The cluster's storage quota for namespace vo-access has no room for this "
            f"server's home volume (Kubernetes says: {message}). Please tell the hub's admins."
        )
        assert QuotaPolicy.instance().usage("vo.access.egi.eu").servers == 0
        assert objects(api, "pods") == {}
