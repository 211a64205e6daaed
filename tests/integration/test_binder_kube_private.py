"""A private repository's build pod on the kubernetes builder, against kmock, a Kubernetes
API emulator (a stand-in: no cluster runs here; tests.kube adds what an API server and a
kubelet would, and these tests play the builder container's log and final phase, as
tests/integration/test_binder_kube_build.py does).

What they hold the builder to: the user's token reaches the build pod in a Secret of its
own (the pod's labels, type Opaque, owned by the pod through ``ownerReferences``),
mounted read-only (0400) into the builder container only and read by a git credential
helper set through ``GIT_CONFIG_*`` variables; the token is nowhere in the pod (its
arguments, environment values, labels, annotations); the Secret is deleted after
success, failure, timeout and cancellation; a public build makes no Secret; only https
sources take a token. The credential helper itself is run by a real ``git`` against
git's ``http-backend`` behind HTTPS with basic auth (tests.gitserver), with the file the
Secret would be.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import kubernetes_validate
import pytest
from kmock import ResourceInfo
from kubernetes_asyncio.client import Configuration

from egi_hub.binder_service.builders.base import BuildFailed
from egi_hub.binder_service.builders.kubernetes import (
    COMPONENT,
    TOKEN_MOUNT,
    KubernetesBuilder,
    pod_name,
    token_secret_name,
)
from egi_hub.binder_service.providers.base import Resolved
from egi_hub.binder_service.specs import RepoSpec
from tests.gitserver import GitServer, PrivateHttps, serve_private_https, start_git_server
from tests.integration.test_binder_kube_build import SUCCESS_LOG, r2d, wait_for
from tests.kube import kubernetes

SHA = "0123456789abcdef0123456789abcdef01234567"
KEY = "7" * 40
NAME = pod_name(KEY)
SECRET_NAME = token_secret_name(KEY)
TOKEN = "ghp_private0123456789abcdefTOKEN"
PRIVATE = Resolved(
    RepoSpec("gh", "owner/private", "main"),
    "git",
    "https://github.com/owner/private",
    SHA,
    "owner/private@0123456",
    {"provider": "git", "repo": "https://github.com/owner/private", "ref": SHA},
)
VERSIONS = ("1.29.0", "1.33.0")


class Kubelet:
    """The builder container of ``NAME``, played by the test: its log follows ``lines``
    and ends when `exit` is called, which also sets the pod's final phase."""

    def __init__(self, api, lines: list[bytes]) -> None:
        self.lines = lines
        self.exited = asyncio.Event()
        api[f"get /api/v1/namespaces/default/pods/{NAME}/log"] << self.log

    async def log(self, request) -> AsyncIterator[bytes]:
        yield b""
        for line in self.lines:
            yield line
        await self.exited.wait()

    async def exit(self, phase: str, code: int) -> None:
        terminated = {"exitCode": code, "reason": "Completed" if code == 0 else "Error"}
        status = {"status": {"phase": phase, "containerStatuses": [{
            "name": "builder", "ready": False, "restartCount": 0, "image": "r2d", "imageID": "",
            "state": {"terminated": terminated},
        }]}}  # fmt: skip
        await patch(f"/api/v1/namespaces/default/pods/{NAME}", status)
        self.exited.set()


async def patch(path: str, body: dict) -> None:
    base = Configuration.get_default_copy().host.rstrip("/")
    headers = {"Content-Type": "application/merge-patch+json"}
    async with aiohttp.ClientSession() as session:
        async with session.patch(base + path, json=body, headers=headers) as r:
            assert r.status == 200, await r.text()


async def post(path: str, body: dict) -> dict:
    base = Configuration.get_default_copy().host.rstrip("/")
    async with aiohttp.ClientSession() as session:
        async with session.post(base + path, json=body) as r:
            assert r.status in (200, 201), await r.text()
            return await r.json()


def objects(api, plural: str) -> list:
    return [o for (r, _, _), o in api.objects.items() if r.plural == plural and not o.deleted]


def clean(obj) -> dict:
    return {k: v for k, v in json.loads(json.dumps(obj.raw)).items() if k != "status"}


def running(api) -> bool:
    return any(
        (p.get("status") or {}).get("phase") == "Running" and objects(api, "secrets")
        for p in objects(api, "pods")
    )


def builder(**traits) -> KubernetesBuilder:
    return KubernetesBuilder(
        **{
            "namespace": "default",
            "image_prefix": "registry.example.org/env:",
            "private_image_prefix": "registry.example.org/site-only/env:",
            "push_secret": "registry-push",
            "poll_interval": 0.05,
            **traits,
        }
    )


@pytest.fixture
async def api(tmp_path):
    async with kubernetes(tmp_path) as api:
        api.resources["v1/secrets"] = ResourceInfo(
            namespaced=True, kind="Secret", verbs={"get", "create", "delete", "patch", "list"}
        )
        yield api


def token_forms(token: str) -> list[str]:
    return [token, base64.b64encode(token.encode()).decode()]


async def test_a_private_build_gets_its_token_in_a_secret_of_its_own_kmock_stand_in(api, tmp_path):
    kubelet = Kubelet(api, SUCCESS_LOG)
    logged: list[str] = []
    task = asyncio.create_task(builder().build(KEY, tmp_path, PRIVATE, logged.append, token=TOKEN))
    await wait_for(lambda: running(api))
    (pod,) = objects(api, "pods")
    (secret,) = objects(api, "secrets")
    pod_json, secret_json = clean(pod), clean(secret)
    for version in VERSIONS:
        kubernetes_validate.validate(pod_json, version, strict=True)
        kubernetes_validate.validate(secret_json, version, strict=True)

    # The Secret: the token only, the pod's labels, owned by the pod.
    assert secret_json["metadata"]["name"] == SECRET_NAME
    assert secret_json["type"] == "Opaque"
    assert base64.b64decode(secret_json["data"]["token"]).decode() == TOKEN
    assert list(secret_json["data"]) == ["token"]
    assert secret_json["metadata"]["labels"] == pod_json["metadata"]["labels"]
    assert secret_json["metadata"]["labels"]["app.kubernetes.io/component"] == COMPONENT
    assert secret_json["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Pod", "name": NAME, "uid": pod_json["metadata"]["uid"]}
    ]

    # The pod: the Secret as a read-only 0400 volume of the builder container, git's
    # credential helper in GIT_CONFIG_*, and the token nowhere.
    spec = pod_json["spec"]
    (volume,) = [v for v in spec["volumes"] if "secret" in v and v["secret"].get("secretName")
                 == SECRET_NAME]  # fmt: skip
    assert volume["secret"]["defaultMode"] == 0o400
    (container,) = spec["containers"]
    assert "initContainers" not in spec
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
    assert mount == {"name": volume["name"], "mountPath": TOKEN_MOUNT, "readOnly": True}
    env = {e["name"]: e["value"] for e in container["env"]}
    config = {
        env[f"GIT_CONFIG_KEY_{i}"]: env[f"GIT_CONFIG_VALUE_{i}"]
        for i in range(int(env["GIT_CONFIG_COUNT"]))
    }
    helper = config.pop("credential.https://github.com.helper")
    assert "username=x-access-token" in helper and f"cat {TOKEN_MOUNT}/token" in helper
    assert "$(" not in helper  # the kubelet would expand it
    assert config == {"http.followRedirects": "false"}
    assert all("valueFrom" not in e for e in container["env"])
    everything = json.dumps(pod.raw)
    for form in token_forms(TOKEN):
        assert form not in everything
        assert form not in "\n".join(logged)
    assert container["args"][-1] == "https://github.com/owner/private"
    image = container["args"][container["args"].index("--image-name") + 1]
    assert image == f"registry.example.org/site-only/env:{KEY}"  # never the public prefix

    await kubelet.exit("Succeeded", 0)
    result = await task
    assert result.environment["image"] == f"registry.example.org/site-only/env:{KEY}"
    for form in token_forms(TOKEN):
        assert form not in json.dumps(result.to_json())
    assert objects(api, "secrets") == [] and objects(api, "pods") == []


async def test_the_secret_is_deleted_after_a_failed_build_kmock_stand_in(api, tmp_path):
    failing = [*SUCCESS_LOG[:2], r2d("Error during build: fatal: Authentication failed", "failed")]
    kubelet = Kubelet(api, failing)
    task = asyncio.create_task(builder().build(KEY, tmp_path, PRIVATE, print, token=TOKEN))
    await wait_for(lambda: running(api))
    await kubelet.exit("Failed", 1)
    with pytest.raises(BuildFailed, match="Authentication failed"):
        await task
    assert objects(api, "secrets") == [] and objects(api, "pods") == []


async def test_the_secret_is_deleted_after_a_cancelled_build_kmock_stand_in(api, tmp_path):
    kubelet = Kubelet(api, SUCCESS_LOG[:2])
    logged: list[str] = []
    task = asyncio.create_task(builder().build(KEY, tmp_path, PRIVATE, logged.append, token=TOKEN))
    await wait_for(lambda: "Using PythonBuildPack builder" in logged)
    assert objects(api, "secrets")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert objects(api, "secrets") == [] and objects(api, "pods") == []
    kubelet.exited.set()


async def test_the_secret_is_deleted_after_a_timed_out_build_kmock_stand_in(api, tmp_path):
    kubelet = Kubelet(api, SUCCESS_LOG[:1])
    with pytest.raises(BuildFailed, match=r"^the build took longer than 1 s$"):
        await builder(timeout=1).build(KEY, tmp_path, PRIVATE, print, token=TOKEN)
    assert objects(api, "secrets") == [] and objects(api, "pods") == []
    kubelet.exited.set()


async def test_a_public_build_makes_no_secret_kmock_stand_in(api, tmp_path):
    kubelet = Kubelet(api, SUCCESS_LOG)
    task = asyncio.create_task(builder().build(KEY, tmp_path, PRIVATE, print))
    await wait_for(lambda: any((p.get("status") or {}).get("phase") == "Running"
                               for p in objects(api, "pods")))  # fmt: skip
    (pod,) = objects(api, "pods")
    assert "GIT_CONFIG" not in json.dumps(pod.raw) and "git-token" not in json.dumps(pod.raw)
    await kubelet.exit("Succeeded", 0)
    await task
    assert objects(api, "secrets") == []
    requests = [str(r.url) for r in list(api)]
    assert any("/pods" in url for url in requests)  # (the emulator's record of requests)
    assert not [url for url in requests if "secrets" in url]


@pytest.mark.parametrize(
    "source",
    ["http://git.example.org/owner/private", "git://git.example.org/owner/private"],
)
async def test_a_token_goes_over_https_only_kmock_stand_in(api, tmp_path, source):
    plain = Resolved(PRIVATE.spec, "git", source, SHA, "x", {"provider": "git", "repo": source})
    with pytest.raises(BuildFailed, match="only sent to a git repository over https"):
        await builder().build(KEY, tmp_path, plain, print, token=TOKEN)
    assert objects(api, "secrets") == [] and objects(api, "pods") == []


async def test_a_leftover_secret_is_replaced_and_anothers_left_alone_kmock_stand_in(api, tmp_path):
    leftover = builder().secret_manifest(KEY, "old-token-of-an-earlier-pod", "gone-uid")
    old_uid = (await post("/api/v1/namespaces/default/secrets", leftover))["metadata"]["uid"]
    kubelet = Kubelet(api, SUCCESS_LOG)
    task = asyncio.create_task(builder().build(KEY, tmp_path, PRIVATE, print, token=TOKEN))
    await wait_for(lambda: running(api))
    (secret,) = objects(api, "secrets")
    assert secret["metadata"]["uid"] != old_uid
    assert base64.b64decode(secret["data"]["token"]).decode() == TOKEN
    await kubelet.exit("Succeeded", 0)
    await task
    assert objects(api, "secrets") == []

    other = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
             "metadata": {"name": SECRET_NAME, "labels": {"app": "other"}}}  # fmt: skip
    await post("/api/v1/namespaces/default/secrets", other)
    with pytest.raises(BuildFailed, match=f"a Secret named {SECRET_NAME} exists"):
        await builder().build(KEY, tmp_path, PRIVATE, print, token=TOKEN)
    (secret,) = objects(api, "secrets")
    assert secret["metadata"]["labels"] == {"app": "other"}
    assert objects(api, "pods") == []


# -- the credential helper, run by a real git ------------------------------------------


@pytest.fixture(scope="module")
def private_git(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[GitServer, PrivateHttps]]:
    git = start_git_server(tmp_path_factory.mktemp("git"))
    https = serve_private_https(git, tmp_path_factory.mktemp("tls"), {TOKEN})
    try:
        yield git, https
    finally:
        https.stop()
        git.stop()


def ls_remote_with_pod_env(
    pod: dict, url: str, token_file: Path, ca_file: Path
) -> subprocess.CompletedProcess:
    """``git ls-remote`` with the builder container's environment (its GIT_CONFIG_*), the
    token file where the Secret's volume would put it."""
    env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
    env = {k: v.replace(f"{TOKEN_MOUNT}/token", str(token_file)) for k, v in env.items()}
    env.update(
        PATH=os.environ["PATH"], HOME=str(token_file.parent), GIT_TERMINAL_PROMPT="0",
        GIT_CONFIG_NOSYSTEM="1", GIT_SSL_CAINFO=str(ca_file),
    )  # fmt: skip
    return subprocess.run(
        ["git", "ls-remote", "--", url], env=env, capture_output=True, text=True, timeout=60
    )


def test_gits_credential_helper_reads_the_token_file(private_git, tmp_path):
    git, https = private_git
    sha = git.commit("private-helper", {"README.md": "private\n"})
    url = https.url("private-helper")
    source = Resolved(PRIVATE.spec, "git", url, sha, "x", {"provider": "git", "repo": url})
    pod = builder().pod_manifest(KEY, source, private=True)
    assert TOKEN not in json.dumps(pod)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o400)
    done = ls_remote_with_pod_env(pod, url, token_file, https.ca_file)
    assert done.returncode == 0, done.stderr
    assert sha in done.stdout
    assert any(h.startswith("Basic ") for h in https.headers_for("private-helper"))

    token_file.chmod(0o600)
    token_file.write_text("not-the-token")  # the helper's answer is what git sends
    done = ls_remote_with_pod_env(pod, url, token_file, https.ca_file)
    assert done.returncode != 0 and sha not in done.stdout
    assert re.search(r"Authentication failed|401|could not read", done.stderr), done.stderr


async def test_no_private_build_without_a_private_image_prefix_kmock_stand_in(api, tmp_path):
    """Build pods always push: without ``private_image_prefix`` a private build is
    refused (the setting named) before any pod or Secret exists, never pushed under the
    public prefix; a public build is unaffected."""
    public_only = builder(private_image_prefix="")
    with pytest.raises(BuildFailed, match=r"KubernetesBuilder\.private_image_prefix"):
        await public_only.build(KEY, tmp_path, PRIVATE, lambda _: None, token=TOKEN)
    assert objects(api, "pods") == [] and objects(api, "secrets") == []
    manifest = public_only.pod_manifest(KEY, PRIVATE)
    args = manifest["spec"]["containers"][0]["args"]
    assert args[args.index("--image-name") + 1] == f"registry.example.org/env:{KEY}"
