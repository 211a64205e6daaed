"""The kubernetes build backend's pod lifecycle against kmock, a Kubernetes API emulator
(a stand-in: no cluster runs here; tests.kube adds what an API server and a kubelet
would). Its kubelet marks pods Running; these tests play the rest of the kubelet: the
builder container's log (repo2docker's JSON lines, streamed while it runs, ending when
it exits) and the pod's final phase. The stored pod is checked with
kubernetes-validate --strict (1.29 and 1.33); the pod is deleted after success, failure,
timeout and cancellation."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import aiohttp
import kubernetes_validate
import pytest
from kmock import Response
from kubernetes_asyncio.client import Configuration

from egi_hub.binder_service.builders.base import BuildFailed
from egi_hub.binder_service.builders.kubernetes import COMPONENT, KubernetesBuilder, pod_name
from egi_hub.binder_service.providers.base import Resolved
from egi_hub.binder_service.specs import RepoSpec
from tests.kube import kubernetes

SHA = "0123456789abcdef0123456789abcdef01234567"
KEY = "5" * 40
NAME = pod_name(KEY)
DIGEST = "sha256:" + "cd" * 32
GIT = Resolved(
    RepoSpec("gh", "owner/repo", "main"), "git", "https://github.com/owner/repo", SHA, "o/r"
)


def r2d(message: str, phase: str = "building") -> bytes:
    return (json.dumps({"message": message, "phase": phase}) + "\n").encode()


SUCCESS_LOG = [
    r2d("Picked Git content provider.\n", "fetching"),
    r2d("Using PythonBuildPack builder\n"),
    r2d("#9 [5/9] RUN pip install -r requirements.txt\n"),
    r2d(f"#12 pushing manifest for registry.example.org/env:{KEY}@{DIGEST} 0.2s done\n"),
]


class Kubelet:
    """The builder container, played by the test: its log follows ``lines`` and ends
    when `exit` is called, which also sets the pod's final phase."""

    def __init__(self, api, lines: list[bytes]) -> None:
        self.api = api
        self.lines = lines
        self.exited = asyncio.Event()
        api[f"get /api/v1/namespaces/default/pods/{NAME}/log"] << self.log

    async def log(self, request) -> AsyncIterator[bytes]:
        yield b""  # the stream opens before the first line (as the API server's does)
        for line in self.lines:
            yield line
        await self.exited.wait()

    async def exit(self, phase: str, code: int, reason: str = "") -> None:
        terminated = {"exitCode": code, "reason": reason or ("Completed" if code == 0 else "Error")}
        status = {
            "status": {
                "phase": phase,
                "containerStatuses": [
                    {
                        "name": "builder",
                        "ready": False,
                        "restartCount": 0,
                        "image": "quay.io/jupyterhub/repo2docker:2026.04.0",
                        "imageID": "",
                        "state": {"terminated": terminated},
                    }
                ],
            }
        }
        base = Configuration.get_default_copy().host.rstrip("/")
        headers = {"Content-Type": "application/merge-patch+json"}
        async with aiohttp.ClientSession() as session:
            url = f"{base}/api/v1/namespaces/default/pods/{NAME}"
            async with session.patch(url, json=status, headers=headers) as r:
                assert r.status == 200, await r.text()
        self.exited.set()


def pods(api) -> list:
    return [o for (r, _, _), o in api.objects.items() if r.plural == "pods" and not o.deleted]


async def wait_for(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    """Wait until ``condition()`` holds (polled: it reads the emulator's objects)."""
    async with asyncio.timeout(seconds):
        while True:
            if condition():
                return
            await asyncio.sleep(0.02)


def running(api) -> bool:
    return any(
        p["metadata"]["name"] == NAME and (p.get("status") or {}).get("phase") == "Running"
        for p in pods(api)
    )


def builder(**traits) -> KubernetesBuilder:
    return KubernetesBuilder(
        namespace="default",
        image_prefix="registry.example.org/env:",
        push_secret="registry-push",
        poll_interval=0.05,
        **traits,
    )


async def test_build_pod_succeeds_and_is_deleted_kmock_stand_in(tmp_path):
    async with kubernetes(tmp_path) as api:
        kubelet = Kubelet(api, SUCCESS_LOG)
        logged: list[str] = []
        task = asyncio.create_task(builder().build(KEY, tmp_path, GIT, logged.append))
        await wait_for(lambda: running(api))
        (pod,) = pods(api)
        stored = {k: v for k, v in json.loads(json.dumps(pod.raw)).items() if k != "status"}
        for version in ("1.29.0", "1.33.0"):
            kubernetes_validate.validate(stored, version, strict=True)
        assert stored["metadata"]["labels"]["app.kubernetes.io/component"] == COMPONENT
        assert stored["metadata"]["labels"]["egi-hub.eu/build-key"] == KEY
        # The log arrives while the container runs, before it exits.
        await wait_for(lambda: "Using PythonBuildPack builder" in logged)
        assert not task.done()
        await kubelet.exit("Succeeded", 0)
        result = await task
        assert result.environment == {"image": f"registry.example.org/env:{KEY}", "digest": DIGEST}
        assert f"digest: {DIGEST}" in result.resolved and "PythonBuildPack" in result.resolved
        assert "#9 [5/9] RUN pip install -r requirements.txt" in logged
        assert pods(api) == []


async def test_failed_build_gives_repo2dockers_reason_and_deletes_the_pod_kmock_stand_in(
    tmp_path,
):
    failing = [
        *SUCCESS_LOG[:2],
        r2d("ERROR: No matching distribution found for nosuchpkg\n"),
        r2d("Error during build: The command '/bin/sh -c pip install' returned 1", "failed"),
    ]
    async with kubernetes(tmp_path) as api:
        kubelet = Kubelet(api, failing)
        task = asyncio.create_task(builder().build(KEY, tmp_path, GIT, lambda line: None))
        await wait_for(lambda: running(api))
        await kubelet.exit("Failed", 1)
        with pytest.raises(BuildFailed) as info:
            await task
        assert str(info.value) == (
            "repo2docker failed: The command '/bin/sh -c pip install' returned 1"
        )
        assert pods(api) == []


async def test_a_killed_builder_without_log_says_why_kmock_stand_in(tmp_path):
    async with kubernetes(tmp_path) as api:
        kubelet = Kubelet(api, [])
        task = asyncio.create_task(builder().build(KEY, tmp_path, GIT, lambda line: None))
        await wait_for(lambda: running(api))
        await kubelet.exit("Failed", 137, "OOMKilled")
        with pytest.raises(BuildFailed, match=r"^repo2docker failed: OOMKilled$"):
            await task
        assert pods(api) == []


async def test_cancelled_build_deletes_its_pod_kmock_stand_in(tmp_path):
    async with kubernetes(tmp_path) as api:
        kubelet = Kubelet(api, SUCCESS_LOG[:2])
        logged: list[str] = []
        task = asyncio.create_task(builder().build(KEY, tmp_path, GIT, logged.append))
        await wait_for(lambda: "Using PythonBuildPack builder" in logged)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert pods(api) == []
        kubelet.exited.set()


async def test_timed_out_build_deletes_its_pod_kmock_stand_in(tmp_path):
    async with kubernetes(tmp_path) as api:
        kubelet = Kubelet(api, SUCCESS_LOG[:1])
        with pytest.raises(BuildFailed, match=r"^the build took longer than 1 s$"):
            await builder(timeout=1).build(KEY, tmp_path, GIT, lambda line: None)
        assert pods(api) == []
        kubelet.exited.set()


async def test_a_leftover_build_pod_is_replaced_kmock_stand_in(tmp_path):
    async with kubernetes(tmp_path) as api:
        old = builder().pod_manifest(KEY, GIT)
        base = Configuration.get_default_copy().host.rstrip("/")
        async with aiohttp.ClientSession() as session:
            url = f"{base}/api/v1/namespaces/default/pods"
            async with session.post(url, json=old) as r:
                old_uid = (await r.json())["metadata"]["uid"]
        kubelet = Kubelet(api, SUCCESS_LOG)
        task = asyncio.create_task(builder().build(KEY, tmp_path, GIT, lambda line: None))
        await wait_for(lambda: any(p["metadata"]["uid"] != old_uid for p in pods(api)))
        await wait_for(lambda: running(api) and len(pods(api)) == 1)
        await kubelet.exit("Succeeded", 0)
        assert (await task).environment["digest"] == DIGEST
        assert pods(api) == []


async def test_someone_elses_pod_of_that_name_is_left_alone_kmock_stand_in(tmp_path):
    async with kubernetes(tmp_path) as api:
        other = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": NAME, "labels": {"app": "other"}},
            "spec": {"containers": [{"name": "x", "image": "busybox"}]},
        }
        base = Configuration.get_default_copy().host.rstrip("/")
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{base}/api/v1/namespaces/default/pods", json=other) as r:
                assert r.status in (200, 201)
        with pytest.raises(BuildFailed, match=f"a pod named {NAME} exists and is not a build pod"):
            await builder().build(KEY, tmp_path, GIT, lambda line: None)
        (pod,) = pods(api)
        assert pod["metadata"]["labels"] == {"app": "other"}


async def test_a_refused_pod_gives_the_api_servers_message_kmock_stand_in(tmp_path):
    refusal = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": "Forbidden",
        "code": 403,
        "message": f'pods "{NAME}" is forbidden: exceeded quota: builds, requested: '
        "requests.memory=512Mi, used: requests.memory=8Gi, limited: requests.memory=8Gi",
    }
    async with kubernetes(tmp_path) as api:
        api["post /api/v1/namespaces/default/pods"] << Response(status=403, payload=refusal)
        with pytest.raises(BuildFailed) as info:
            await builder().build(KEY, tmp_path, GIT, lambda line: None)
        assert str(info.value) == (
            f'the build pod could not be created: 403 pods "{NAME}" is forbidden: exceeded '
            "quota: builds, requested: requests.memory=512Mi, used: requests.memory=8Gi, "
            "limited: requests.memory=8Gi"
        )
