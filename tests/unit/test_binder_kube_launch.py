"""Binder sessions on Kubernetes (binder_service/kube_launch.py): the pod KubeSpawner
makes for a ticket: the image pinned by its digest, the Binder profile's resources, the
content init container only when the image was built from another ref, and its
restrictive securityContext; every manifest checked with kubernetes-validate --strict."""

from __future__ import annotations

import base64
import json
from types import SimpleNamespace

import kubernetes_validate
import kubespawner.spawner
import pytest
from jupyterhub.objects import Hub, Server
from kubernetes_asyncio.client import ApiClient
from tornado import web

from egi_hub.binder_service.kube_launch import (
    COPY_SCRIPT,
    FETCH_CONTAINER,
    JOB_ENV,
    content_failure,
    main,
    needs_content,
    session_image,
)
from egi_hub.binder_service.ticket import sign_ticket
from egi_hub.context import UserContext
from egi_hub.spawner.kube import EGIKubeSpawner

SECRET = "t" * 40
NOTEBOOKS = "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu"
IMAGE = "quay.io/jupyterhub/singleuser:5"
KEY = "ab" * 20
DIGEST = "sha256:" + "cd" * 32
OLD, NEW = "1" * 40, "2" * 40
SERVER = "binder-0a1b2c-3d4e5f6a"
VERSIONS = ("1.29.0", "1.33.0")
PROFILES = [{"display_name": "Small", "slug": "small", "default": True,
             "kubespawner_override": {"cpu_limit": 1, "mem_limit": "1G"}}]  # fmt: skip


def launch(ref: str = OLD, built_from: str | None = OLD, **extra) -> dict:
    url = "https://github.com/owner/repo"
    return {
        "key": KEY,
        "spec": "v2/gh/owner/repo/main",
        "label": f"owner/repo@{ref[:7]}",
        "environment": {"image": f"registry.example.org/env:{KEY}", "digest": DIGEST},
        "content": {
            "path": "/srv/binder/content/x",
            "ref": ref,
            "fetch": {"provider": "git", "repo": url, "ref": ref},
        },
        "built_from": built_from,
        **extra,
    }


class HubUser:
    def __init__(self, name: str) -> None:
        self.name = name
        self.id = 1
        self.url = f"/user/{name}/"
        self.admin = False
        self.escaped_name = name
        self._auth_state = UserContext.from_entitlements(name, [NOTEBOOKS]).to_auth_state()

    async def get_auth_state(self) -> dict:
        return self._auth_state


@pytest.fixture(autouse=True)
def no_kubeconfig(monkeypatch):
    """KubeSpawner reads a kubeconfig when made; these tests talk to no API server."""
    monkeypatch.setattr(kubespawner.spawner, "load_config", lambda **kw: None)
    monkeypatch.setattr(kubespawner.spawner, "shared_client", lambda *a, **kw: None)


def spawner(**traits) -> EGIKubeSpawner:
    s = EGIKubeSpawner(
        user=HubUser("alice"), hub=Hub(), namespace="default", profile_list=PROFILES,
        image=IMAGE, binder_ticket_secret=SECRET, _mock=True,
        orm_spawner=SimpleNamespace(name=SERVER, server=None), **traits,
    )  # fmt: skip
    s.api_token = "not-a-secret"
    s.server = Server()
    return s


def ticket(data: dict, user: str = "alice", server: str = SERVER) -> dict:
    return {"binder": sign_ticket(SECRET, user=user, server=server, launch=data)}


async def pod_of(s: EGIKubeSpawner, options: dict) -> dict:
    s.user_options = options
    s._egi_profile_loaded = False
    await s.load_user_options()
    return ApiClient().sanitize_for_serialization(await s.get_pod_manifest())


def notebook(pod: dict) -> dict:
    return pod["spec"]["containers"][0]


def test_the_image_is_pinned_by_the_records_digest():
    assert session_image({"image": "r.example.org/env:k", "digest": DIGEST}) == (
        f"r.example.org/env:k@{DIGEST}"
    )
    assert session_image({"image": "r.example.org/env:k", "digest": ""}) == "r.example.org/env:k"
    assert session_image({"image": "r.example.org/env:k", "digest": "sha256:xyz"}) == (
        "r.example.org/env:k"
    )
    for environment in ({"python": "/envs/k/bin/python"}, {}, None, {"image": "a b"}):
        with pytest.raises(web.HTTPError) as info:
            session_image(environment)
        assert info.value.status_code == 400
        assert "needs the kubernetes builder" in info.value.log_message % info.value.args


def test_content_is_fetched_only_for_another_ref_than_the_images():
    assert not needs_content(launch(OLD, OLD))
    assert needs_content(launch(NEW, OLD))
    assert needs_content(launch(NEW, None))


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_session_of_the_images_own_ref_has_no_init_container(version):
    pod = await pod_of(spawner(), ticket(launch()))
    kubernetes_validate.validate(pod, version, strict=True)
    container = notebook(pod)
    assert container["image"] == f"registry.example.org/env:{KEY}@{DIGEST}"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["args"][0] == "jupyterhub-singleuser"
    assert "--ServerApp.shutdown_no_activity_timeout=3600" in container["args"]
    assert "--MappingKernelManager.cull_idle_timeout=3600" in container["args"]
    assert "initContainers" not in pod["spec"]
    # The Binder profile: 2G guaranteed, 4G at most, 1 CPU.
    assert container["resources"] == {
        "limits": {"cpu": 1.0, "memory": 4 * 2**30},
        "requests": {"memory": 2 * 2**30},
    }
    labels, annotations = pod["metadata"]["labels"], pod["metadata"]["annotations"]
    assert labels["egi-hub.eu/binder-key"] == KEY
    assert labels["egi-hub.eu/component"] == "binder-session"
    assert labels["component"] == "singleuser-server"  # KubeSpawner's watch selects on it
    assert annotations["egi-hub.eu/binder-spec"] == "v2/gh/owner/repo/main"
    assert annotations["egi-hub.eu/binder-ref"] == OLD


@pytest.mark.parametrize("version", VERSIONS)
async def test_newer_content_comes_from_a_restricted_init_container(version):
    s = spawner()
    pod = await pod_of(s, ticket(launch(NEW, OLD)))
    kubernetes_validate.validate(pod, version, strict=True)
    (init,) = pod["spec"]["initContainers"]
    assert init["name"] == FETCH_CONTAINER
    assert init["image"] == s.binder_fetch_image
    assert s.binder_fetch_image.startswith("ghcr.io/egi/egi-hub:")
    assert init["command"] == ["python3", "-m", "egi_hub.binder_service.kube_launch"]
    assert init["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert init["resources"]["limits"] == {"cpu": "1", "memory": "1Gi"}
    assert init["resources"]["requests"] == {"cpu": "100m", "memory": "256Mi"}
    mounts = {m["mountPath"]: m for m in init["volumeMounts"]}
    # No service account token, even in a pod that mounts one: an empty folder over it.
    assert mounts["/var/run/secrets/kubernetes.io/serviceaccount"]["readOnly"] is True
    assert pod["spec"]["automountServiceAccountToken"] is False
    (env,) = [e for e in init["env"] if e["name"] == JOB_ENV]
    job = json.loads(base64.b64decode(env["value"]))
    assert job["fetch"] == {"provider": "git", "repo": "https://github.com/owner/repo", "ref": NEW}
    assert (job["ref"], job["dest"]) == (NEW, "/srv/egi-binder/content")
    assert job["limits"] == {"max_bytes": 2 << 30, "max_files": 100_000, "timeout": 600}
    # The session copies the content over the image's repository folder, then runs
    # the server with the hub's arguments.
    container = notebook(pod)
    args = container["args"]
    assert args[:3] == ["sh", "-c", COPY_SCRIPT]
    assert args[3:7] == ["egi-binder-content", "/srv/egi-binder/content", "/home/jovyan",
                         "jupyterhub-singleuser"]  # fmt: skip
    assert "--ServerApp.shutdown_no_activity_timeout=3600" in args
    assert "$(" not in json.dumps(pod)  # nothing the kubelet would expand
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "egi-binder-content"]
    assert mount == {"name": "egi-binder-content", "mountPath": "/srv/egi-binder",
                     "readOnly": True}  # fmt: skip
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["egi-binder-content"]["emptyDir"]["sizeLimit"] == str(2 * (2 << 30) + (64 << 20))
    assert "sizeLimit" in volumes["egi-binder-fetch-tmp"]["emptyDir"]


async def test_the_sites_own_init_containers_and_volumes_stay_first():
    site_init = {"name": "block-metadata", "image": "busybox:1.36", "command": ["true"]}
    site_volume = {"name": "shared", "emptyDir": {}}
    site_mount = {"name": "shared", "mountPath": "/shared"}
    s = spawner(
        init_containers={"00-block": site_init},
        volumes=[site_volume],
        volume_mounts={"shared": site_mount},
    )
    pod = await pod_of(s, ticket(launch(NEW, OLD)))
    kubernetes_validate.validate(pod, "1.33.0", strict=True)
    assert [c["name"] for c in pod["spec"]["initContainers"]] == ["block-metadata", FETCH_CONTAINER]
    assert pod["spec"]["volumes"][0] == site_volume
    assert notebook(pod)["volumeMounts"][0] == site_mount


async def test_braces_in_a_spec_reach_the_pod_unchanged():
    """KubeSpawner expands ``{username}``-style templates in labels, annotations and
    init containers: a DOI with braces must not be read as one."""
    data = launch(NEW, OLD, spec="v2/doi/10.1000/{x}y")
    pod = await pod_of(spawner(), ticket(data))
    assert pod["metadata"]["annotations"]["egi-hub.eu/binder-spec"] == "v2/doi/10.1000/{x}y"
    (init,) = pod["spec"]["initContainers"]
    (env,) = [e for e in init["env"] if e["name"] == JOB_ENV]
    assert json.loads(base64.b64decode(env["value"]))["spec"] == "v2/doi/10.1000/{x}y"


async def test_a_launch_without_a_fetch_job_for_newer_content_is_a_400():
    data = launch(NEW, OLD)
    data["content"].pop("fetch")
    with pytest.raises(web.HTTPError) as info:
        await pod_of(spawner(), ticket(data))
    assert info.value.status_code == 400


async def test_a_private_launch_runs_its_image_and_is_never_fetched_in_the_pod():
    """A private launch (a user's token: the init container would have none) starts
    only from the image built from its exact commit; another ref is a 400, never a
    fetch, even with a fetch job in the ticket."""
    own = launch(OLD, OLD, private=True)
    own["content"].pop("fetch")  # (the service sends none for a private launch)
    pod = await pod_of(spawner(), ticket(own))
    assert "initContainers" not in pod["spec"]
    assert notebook(pod)["image"] == f"registry.example.org/env:{KEY}@{DIGEST}"
    for data in (launch(NEW, OLD, private=True), launch(NEW, None, private=True)):
        with pytest.raises(web.HTTPError) as info:
            await pod_of(spawner(), ticket(data))
        assert info.value.status_code == 400
        assert "never fetched in the pod" in info.value.log_message % info.value.args


async def test_a_forged_ticket_is_a_403():
    forged = sign_ticket("f" * 40, user="alice", server=SERVER, launch=launch())
    with pytest.raises(web.HTTPError) as info:
        await pod_of(spawner(), {"binder": forged})
    assert info.value.status_code == 403


async def test_a_later_normal_start_keeps_nothing_of_binder():
    s = spawner(args=["--debug"])
    plain = await pod_of(s, {})
    await pod_of(s, ticket(launch(NEW, OLD)))
    again = await pod_of(s, {})
    assert again == plain
    assert notebook(again)["image"] == IMAGE
    assert notebook(again)["resources"]["limits"] == {"cpu": 1.0, "memory": 2**30}
    assert s.args == ["--debug"] and s.cmd is None and s.init_containers == []


def status(*states: dict, name: str = FETCH_CONTAINER) -> dict:
    return {"status": {"phase": "Pending", "initContainerStatuses": [
        {"name": name, **state} for state in states]}}  # fmt: skip


def test_a_failed_fetch_gives_its_last_line_as_the_reason():
    ended = {"exitCode": 1, "reason": "Error",
             "message": "Cloning...\nthe commit 222 is not in https://x/r.git\n"}  # fmt: skip
    assert content_failure(status({"state": {"terminated": ended}})) == (
        "the commit 222 is not in https://x/r.git"
    )
    restarted = {"state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}  # fmt: skip
    assert content_failure(status(restarted)) == "Error"
    assert content_failure(status({"state": {"running": {}}})) is None
    assert content_failure(status({"state": {"terminated": {"exitCode": 0}}})) is None
    assert content_failure(status({"state": {"terminated": ended}}, name="other")) is None
    assert content_failure(None) is None and content_failure({}) is None


def test_the_init_container_refuses_a_broken_job(monkeypatch, capsys):
    monkeypatch.setenv(JOB_ENV, "not base64!")
    assert main() == 1
    assert capsys.readouterr().err.strip() == "the Binder fetch job is not valid (Error)"
    monkeypatch.setenv(JOB_ENV, base64.b64encode(b'{"dest": "/x"}').decode())
    assert main() == 1
    assert "not valid (KeyError)" in capsys.readouterr().err


def test_a_restarted_init_container_keeps_what_it_fetched(monkeypatch, tmp_path, capsys):
    dest = tmp_path / "content"
    dest.mkdir()
    job = {"spec": "v2/gh/o/r/main", "label": "o/r@2222222", "ref": NEW, "dest": str(dest),
           "fetch": {"provider": "git", "repo": "https://github.com/o/r", "ref": NEW},
           "limits": {"max_bytes": 10, "max_files": 1, "timeout": 5}}  # fmt: skip
    monkeypatch.setenv(JOB_ENV, base64.b64encode(json.dumps(job).encode()).decode())
    assert main() == 0
    assert "already fetched" in capsys.readouterr().out
