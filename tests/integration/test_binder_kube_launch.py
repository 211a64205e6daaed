"""Binder sessions on Kubernetes: EGIKubeSpawner started with a signed launch ticket
against kmock, a Kubernetes API emulator (a stand-in: no cluster runs here; tests.kube
adds what an API server and a kubelet would). Every stored pod is checked with
kubernetes-validate --strict (1.29 and 1.33).

The pod side runs for real: the init container's entry point (``python -m
egi_hub.binder_service.kube_launch``, with the job taken from the pod manifest) fetches
from a real ``git daemon``, and the session container's copy script runs in ``sh``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import kubernetes_validate
import pytest
import yaml
from jupyterhub import orm
from kmock import Response, action
from tornado import web

from egi_hub.binder_service.kube_launch import COPY_SCRIPT, FETCH_CONTAINER, JOB_ENV
from egi_hub.binder_service.ticket import sign_ticket
from egi_hub.spawner.kube import EGIKubeSpawner
from egi_hub.spawner.quota import QuotaPolicy
from tests.gitserver import GitServer, start_git_server
from tests.integration.test_kube_spawner import IMAGE, limits_of, pods, spawner
from tests.kube import kubernetes

SECRET = "k" * 40
SERVER = "binder-0a1b2c-3d4e5f6a"
KEY = "ab" * 20
DIGEST = "sha256:" + "cd" * 32
ENV_IMAGE = f"registry.example.org/binder/env:{KEY}"
OLD, NEW = "1" * 40, "2" * 40
REPO = "https://github.com/owner/repo"


def launch(ref: str, built_from: str, repo: str = REPO) -> dict:
    """What `BinderService._start_session` puts in a ticket for a kubernetes build."""
    return {
        "key": KEY,
        "spec": "v2/gh/owner/repo/main",
        "label": f"owner/repo@{ref[:7]}",
        "environment": {"image": ENV_IMAGE, "digest": DIGEST},
        "content": {
            "path": "/srv/binder/x",
            "ref": ref,
            "fetch": {"provider": "git", "repo": repo, "ref": ref},
        },
        "built_from": built_from,
    }


def binder_spawner(options: dict) -> EGIKubeSpawner:
    """Alice's named server ``SERVER`` (its hub record: JupyterHub's own, without a
    database)."""
    s = spawner("alice", options, binder_ticket_secret=SECRET)
    server = orm.Server(proto="http", ip="", port=0, base_url=f"/user/alice/{SERVER}/",
                        cookie_name="jupyterhub-user-alice")  # fmt: skip
    s.orm_spawner = SimpleNamespace(name=SERVER, server=server)
    return s


def ticket(data: dict, secret: str = SECRET, server: str = SERVER) -> dict:
    return {"binder": sign_ticket(secret, user="alice", server=server, launch=data)}


def stored(pod) -> dict:
    """The pod as the API server keeps it, without its status; checked as valid."""
    raw = json.loads(json.dumps(pod.raw))
    clean = {k: v for k, v in raw.items() if k != "status"}
    for version in ("1.29.0", "1.33.0"):
        kubernetes_validate.validate(clean, version, strict=True)
    return clean


async def start(s: EGIKubeSpawner, api) -> dict:
    await s.start()
    s.server.ip, s.server.port = "127.0.0.1", s.port
    (pod,) = pods(api)
    return stored(pod)


@pytest.fixture(autouse=True)
def fresh_policy():
    QuotaPolicy.clear_instance()
    yield
    QuotaPolicy.clear_instance()


@pytest.fixture
async def api(tmp_path):
    async with kubernetes(tmp_path) as api:
        yield api


async def test_a_session_of_the_images_own_ref_runs_the_image_kmock_emulator(api):
    s = binder_spawner(ticket(launch(OLD, OLD)))
    pod = await start(s, api)
    container = pod["spec"]["containers"][0]
    assert container["image"] == f"{ENV_IMAGE}@{DIGEST}"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["args"][0] == "jupyterhub-singleuser"
    assert "--ServerApp.shutdown_no_activity_timeout=3600" in container["args"]
    assert "initContainers" not in pod["spec"]
    # The Binder profile's resources: 4G at most, 2G guaranteed, 1 CPU.
    assert limits_of(pod) == {"cpu": 1.0, "memory": 4 * 2**30}
    assert container["resources"]["requests"] == {"memory": 2 * 2**30}
    labels = pod["metadata"]["labels"]
    assert labels["egi-hub.eu/binder-key"] == KEY
    assert labels["egi-hub.eu/component"] == "binder-session"
    assert labels["egi.eu/profile"] == "binder"
    assert labels["hub.jupyter.org/servername"] == SERVER
    await s.stop()
    assert pods(api) == []


async def test_newer_content_is_fetched_by_an_init_container_kmock_emulator(api):
    s = binder_spawner(ticket(launch(NEW, OLD)))
    pod = await start(s, api)
    (init,) = pod["spec"]["initContainers"]
    assert init["name"] == FETCH_CONTAINER
    assert init["securityContext"]["runAsNonRoot"] is True
    assert init["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    container = pod["spec"]["containers"][0]
    assert container["image"] == f"{ENV_IMAGE}@{DIGEST}"
    assert container["args"][:3] == ["sh", "-c", COPY_SCRIPT]
    assert limits_of(pod) == {"cpu": 1.0, "memory": 4 * 2**30}
    await s.stop()


@pytest.mark.parametrize(
    "options",
    [
        ticket(launch(OLD, OLD), secret="f" * 40),  # forged
        ticket(launch(OLD, OLD), server="binder-0a1b2c-99999999"),  # another session's
        {"binder": "not-a-ticket"},
    ],
    ids=["forged", "another-server", "malformed"],
)
async def test_a_bad_ticket_is_a_403_and_no_pod_kmock_emulator(api, options):
    s = binder_spawner(options)
    with pytest.raises(web.HTTPError) as info:
        await s.start()
    assert info.value.status_code == 403
    assert pods(api) == []
    assert QuotaPolicy.instance().charge_of("alice", SERVER) is None


def binder_marks(pod: dict) -> list[str]:
    text = json.dumps({k: v for k, v in pod.items() if k != "status"})
    found = [m for m in ("egi-hub.eu/", "egi-binder", ENV_IMAGE, FETCH_CONTAINER, "cull_idle")
             if m in text]  # fmt: skip
    return found


async def test_a_normal_start_after_a_binder_start_keeps_nothing_of_binder_kmock_emulator(api):
    fresh = binder_spawner({"profile": "small"})
    plain = await start(fresh, api)
    await fresh.stop()
    s = binder_spawner(ticket(launch(NEW, OLD)))
    s.hub = fresh.hub  # one hub (Hub() picks its port)
    assert binder_marks(await start(s, api))
    await s.stop()
    s.clear_state()
    s.api_token = fresh.api_token  # the hub gives each start its token
    s.user_options = {"profile": "small"}
    again = await start(s, api)
    assert binder_marks(again) == []
    assert again["spec"] == plain["spec"]
    assert limits_of(again) == {"cpu": 1.0, "memory": 2**30}
    assert again["spec"]["containers"][0]["image"] == IMAGE
    assert again["metadata"]["labels"]["egi.eu/profile"] == "small"
    await s.stop()


async def test_a_failed_fetch_ends_the_start_with_its_reason_kmock_emulator(api, tmp_path):
    """The init container fails (played here: the kubelet's status), and the start ends
    at once with the fetch's last line, instead of waiting until it times out."""
    config = yaml.safe_load((tmp_path / "kubeconfig").read_text())
    base = config["clusters"][0]["cluster"]["server"].rstrip("/")

    def kubelet_says_running(request) -> bool:
        status = (request.data or {}).get("status") if isinstance(request.data, dict) else None
        return request.action == action.UPDATE and (status or {}).get("phase") == "Running"

    api[kubelet_says_running] << Response(status=200, payload={})  # the pod stays Pending
    s = binder_spawner(ticket(launch(NEW, OLD)))
    starting = asyncio.ensure_future(s.start())
    deadline = time.monotonic() + 30
    while not pods(api):
        assert time.monotonic() < deadline, "no pod was made"
        await asyncio.sleep(0.05)
    failed = {"status": {"phase": "Pending", "initContainerStatuses": [{
        "name": FETCH_CONTAINER, "ready": False, "restartCount": 0, "image": "x", "imageID": "",
        "state": {"terminated": {"exitCode": 1, "reason": "Error", "message":
                  f"Cloning...\nthe commit {NEW} is not in {REPO}\n"}}}]}}  # fmt: skip
    url = f"{base}/api/v1/namespaces/default/pods/{s.pod_name}"
    headers = {"Content-Type": "application/merge-patch+json"}
    async with aiohttp.ClientSession() as session, session.patch(url, json=failed,
                                                                 headers=headers) as r:  # fmt: skip
        assert r.status == 200, await r.text()
    with pytest.raises(web.HTTPError) as info:
        await asyncio.wait_for(starting, 20)
    assert info.value.status_code == 502
    assert str(info.value.log_message % info.value.args) == (
        f"the Binder session's content could not be fetched: the commit {NEW} is not in {REPO}"
    )
    await s.stop()
    assert pods(api) == []


# -- the pod side, for real -------------------------------------------------------------


@pytest.fixture(scope="module")
def git(tmp_path_factory) -> GitServer:
    server = start_git_server(tmp_path_factory.mktemp("git"))
    yield server
    server.stop()


def init_job(pod: dict) -> dict:
    (init,) = pod["spec"]["initContainers"]
    (env,) = [e for e in init["env"] if e["name"] == JOB_ENV]
    return json.loads(base64.b64decode(env["value"]))


def run_init(job: dict, env: dict | None = None) -> subprocess.CompletedProcess:
    """The init container's command, with the job the pod manifest gives it."""
    encoded = base64.b64encode(json.dumps(job).encode()).decode()
    return subprocess.run(
        [sys.executable, "-m", "egi_hub.binder_service.kube_launch"],
        env={**os.environ, **(env or {}), JOB_ENV: encoded},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


async def test_the_init_container_fetches_the_newer_commit_kmock_emulator(api, git, tmp_path):
    old = git.commit("demo", {"requirements.txt": "six\n", "index.ipynb": "old\n"})
    new = git.commit("demo", {"requirements.txt": "six\n", "index.ipynb": "new\n"})
    s = binder_spawner(ticket(launch(new, old, repo=git.git_url("demo"))))
    job = init_job(await start(s, api))
    await s.stop()
    assert job["dest"] == "/srv/egi-binder/content"
    job["dest"] = str(tmp_path / "volume" / "content")
    done = run_init(job)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "volume" / "content" / "index.ipynb").read_text() == "new\n"
    assert f"Checked out {new[:12]}" in done.stdout
    assert sorted(p.name for p in (tmp_path / "volume").iterdir()) == ["content"]
    again = run_init(job)  # a restarted init container: the content is there already
    assert again.returncode == 0 and "already fetched" in again.stdout
    # A commit the repository does not have: one line, exit 1, nothing left.
    job["fetch"]["ref"] = job["ref"] = "3" * 40
    job["dest"] = str(tmp_path / "other" / "content")
    failed = run_init(job)
    assert failed.returncode == 1
    assert failed.stderr.strip().splitlines() == [f"the commit {'3' * 40} is not in "
                                                  f"{git.git_url('demo')}"]  # fmt: skip
    assert not (tmp_path / "other" / "content").exists()


def copy_and_start(args: list[str], content: Path, home: Path) -> subprocess.CompletedProcess:
    """The session container's command from the manifest, on local folders, with a
    stand-in for the server that shows it was started with the hub's arguments."""
    assert args[4:6] == ["/srv/egi-binder/content", "/home/jovyan"]
    command = [*args[:4], str(content), str(home), "sh", "-c", 'echo "server $*"', "-"]
    return subprocess.run(command + args[7:], capture_output=True, text=True, timeout=60)


async def test_the_session_copies_the_content_over_the_images_folder_kmock_emulator(api, tmp_path):
    s = binder_spawner(ticket(launch(NEW, OLD)))
    args = (await start(s, api))["spec"]["containers"][0]["args"]
    await s.stop()
    content, home = tmp_path / "content", tmp_path / "home"
    (content / "data").mkdir(parents=True)
    (content / "index.ipynb").write_text("new\n")
    (content / "data" / "a.csv").write_text("1\n")
    (content / "link").symlink_to("index.ipynb")
    (home / "data").mkdir(parents=True)
    (home / "index.ipynb").write_text("old\n")
    (home / "index.ipynb").chmod(0o444)  # as git leaves some files
    (home / "downloaded.csv").write_text("postBuild\n")  # what postBuild made: kept
    done = copy_and_start(args, content, home)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("server ") and "--ServerApp.shutdown_no_activity" in done.stdout
    assert (home / "index.ipynb").read_text() == "new\n"
    assert (home / "data" / "a.csv").read_text() == "1\n"
    assert os.readlink(home / "link") == "index.ipynb"
    assert (home / "downloaded.csv").read_text() == "postBuild\n"
    # Content that cannot be copied: the server does not start, and says why.
    (tmp_path / "clash").mkdir()
    (tmp_path / "clash" / "data").write_text("a file where the content has a folder")
    failed = copy_and_start(args, content, tmp_path / "clash")
    assert failed.returncode == 1 and "server" not in failed.stdout
    assert "egi-hub: the Binder content could not be copied into" in failed.stderr
