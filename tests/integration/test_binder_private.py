"""Private repositories launched with a user's own token, and kept that user's own.

Real parts: git's ``http-backend`` behind an HTTPS server on 127.0.0.1 with basic auth
(`tests.gitserver.serve_private_https`, a certificate of a CA made for the test, which
the service trusts through ``GitProvider.extra_ca_file``), the real `BinderService`
(resolver, fetch worker, venv builder installing a wheel made by the test, build store).
Only the hub's API at the very end of a launch is a stand-in (`StandinLauncher`: it
records the signed ticket the service would send the hub, and answers ``ready``).

What these tests hold the service to (issue 10, "private repos with the user's own
token"): alice's token fetches her private repository; bob, launching the same link
right after (everything cached), fails as if it were not there and never gets her
content, environment, build record or token; a public repository stays shared, and no
token is ever sent for it; no token is ever written to the service's disk, its events
or its log.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from kmock import ResourceInfo
from kubernetes_asyncio.client import Configuration
from traitlets.config import Config

from egi_hub.binder_service.service import BinderService, LaunchUser
from egi_hub.binder_service.store import visible_to
from egi_hub.binder_service.ticket import verify_ticket
from tests.gitserver import GitServer, PrivateHttps, serve_private_https, start_git_server
from tests.kube import kubernetes
from tests.wheels import make_wheel

SECRET = "t" * 40
ALICE_TOKEN = "ghp_alice0123456789abcdefALICE"
BOB_TOKEN = "glpat-bob-0123456789-BOB"


class StandinLauncher:
    """A stand-in for the hub's API (`HubLauncher`): the launch's signed ticket is kept
    (verified as the hub would), and the session is "ready" at once."""

    def __init__(self) -> None:
        self.launches: list[dict[str, Any]] = []

    async def launch(
        self, *, user: str, token: str, server: str, ticket: str
    ) -> AsyncIterator[dict[str, Any]]:
        launch = verify_ticket(SECRET, ticket, user=user, server=server)
        self.launches.append({"user": user, "server": server, "launch": launch})
        yield {"phase": "ready", "message": "ready\n", "url": f"/user/{user}/{server}/"}

    async def count_sessions(self, prefix: str, besides: str = "") -> int:
        return 0


@pytest.fixture(scope="module")
def git(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    server = start_git_server(tmp_path_factory.mktemp("git"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def https(git: GitServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateHttps]:
    server = serve_private_https(git, tmp_path_factory.mktemp("tls"), {ALICE_TOKEN, BOB_TOKEN})
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    make_wheel(folder)
    return folder


@pytest.fixture
def binder(tmp_path: Path, https: PrivateHttps, wheels: Path) -> Iterator[BinderService]:
    config = Config()
    config.Resolver.allow_user_tokens = True
    config.GitProvider.allow_private_hosts = True  # the test server is on 127.0.0.1
    config.GitProvider.extra_ca_file = str(https.ca_file)
    config.VenvBuilder.pip_args = ["--no-index", "--find-links", str(wheels)]
    service = BinderService(config=config, data_dir=str(tmp_path / "binder"), ticket_secret=SECRET)
    service.launcher = StandinLauncher()  # type: ignore[assignment]
    yield service


def spec(https: PrivateHttps, name: str, ref: str = "main") -> str:
    return f"v2/git/{quote(https.url(name), safe='')}/{ref}"


async def launch(binder: BinderService, path: str, user: str) -> list[dict[str, Any]]:
    job = binder.launch_job(path, {}, LaunchUser(user, "hub-token-of-" + user))
    return [event async for event in job.follow()]


def text(events: list[dict[str, Any]]) -> str:
    return json.dumps(events)


def everything_on_disk(root: Path) -> bytes:
    out = bytearray()
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            out += path.read_bytes()
    return bytes(out)


async def test_a_private_repository_is_its_owners_alone(binder, https, git, caplog):
    caplog.set_level(logging.DEBUG)
    sha = git.commit(
        "private-alice", {"requirements.txt": "egi_binder_demo\n", "secret.ipynb": "{}"}
    )
    path = spec(https, "private-alice")
    binder.user_tokens.put("alice", "127.0.0.1", ALICE_TOKEN)

    events = await launch(binder, path, "alice")
    assert events[-1]["phase"] == "ready", events[-3:]
    assert "private: with your token" in text(events)
    (alice_launch,) = binder.launcher.launches
    content = Path(alice_launch["launch"]["content"]["path"])
    assert (content / "secret.ipynb").exists()
    assert content.name.endswith(binder.private_mark("alice"))
    record = binder.store.get(alice_launch["launch"]["key"])
    assert record["private"] is True and record["owner"] == "alice" and record["ref"] == sha
    assert visible_to(record, "alice") and not visible_to(record, "bob")
    assert visible_to(record, "bob", admin=True)
    assert any(
        ALICE_TOKEN in h or h.startswith("Basic ") for h in https.headers_for("private-alice")
    )

    # Bob, right after, with everything cached: "not found (or private)", and nothing.
    before = https.headers_for("private-alice")
    for _attempt in range(2):
        events = await launch(binder, path, "bob")
        assert events[-1]["phase"] == "failed", events
        reason = events[-1]["message"]
        assert (
            "asks for credentials (a private repository?)" in reason
            and binder.resolver.user_token_hint in reason
        )
        assert sha[:7] not in text(events) and "secret" not in text(events)
    assert len(binder.launcher.launches) == 1
    sent = https.headers_for("private-alice")[len(before) :]
    assert all(h == "" for h in sent), "bob's launches sent a credential"

    # Bob with a token of his own that cannot read it: his token, refused; never alice's.
    binder.user_tokens.put("bob", "127.0.0.1", "wrong-token-of-bob")
    events = await launch(binder, path, "bob")
    assert events[-1]["phase"] == "failed" and "refused your access token" in text(events)
    assert len(binder.launcher.launches) == 1

    # Bob with a token that can read it: his own copy, his own environment and record.
    binder.user_tokens.put("bob", "127.0.0.1", BOB_TOKEN)
    events = await launch(binder, path, "bob")
    assert events[-1]["phase"] == "ready", events[-3:]
    assert "Reusing environment" not in text(events)  # alice's is hers
    bob_launch = binder.launcher.launches[-1]
    assert bob_launch["launch"]["content"]["path"] != str(content)
    assert bob_launch["launch"]["key"] != alice_launch["launch"]["key"]
    assert binder.store.get(bob_launch["launch"]["key"])["owner"] == "bob"

    # No token anywhere: not on disk, not in any event, not in the log.
    disk = everything_on_disk(Path(binder.data_dir))
    for token in (ALICE_TOKEN, BOB_TOKEN, "wrong-token-of-bob"):
        assert token.encode() not in disk
        assert token not in caplog.text
        assert token not in json.dumps(binder.launcher.launches)


async def test_a_public_repository_stays_shared_for_a_user_with_a_token(binder, https, git):
    git.commit("public-demo", {"requirements.txt": "egi_binder_demo\n"})
    binder.user_tokens.put("alice", "127.0.0.1", ALICE_TOKEN)
    path = spec(https, "public-demo")

    events = await launch(binder, path, "alice")
    assert events[-1]["phase"] == "ready", events[-3:]
    assert "private" not in text(events)
    events = await launch(binder, path, "bob")
    assert events[-1]["phase"] == "ready", events[-3:]
    assert "Reusing environment" in text(events)  # alice's build, shared
    alice_launch, bob_launch = binder.launcher.launches
    assert alice_launch["launch"]["content"] == bob_launch["launch"]["content"]
    assert not binder.store.get(alice_launch["launch"]["key"]).get("private")
    assert all(h == "" for h in https.headers_for("public-demo"))  # no token sent for it


async def test_an_expired_or_forgotten_token_is_not_used(binder, https, git):
    git.commit("private-expiring", {"README.md": "private\n"})
    path = spec(https, "private-expiring")
    now = [1000.0]
    binder.user_tokens.clock = lambda: now[0]
    binder.user_tokens.put("alice", "127.0.0.1", ALICE_TOKEN)
    now[0] += binder.user_token_ttl + 1
    events = await launch(binder, path, "alice")
    assert events[-1][
        "phase"
    ] == "failed" and "asks for credentials (a private repository?)" in text(events)
    binder.user_tokens.put("alice", "127.0.0.1", ALICE_TOKEN)
    binder.user_tokens.delete("alice", "127.0.0.1")
    events = await launch(binder, path, "alice")
    assert events[-1]["phase"] == "failed"
    assert all(h == "" for h in https.headers_for("private-expiring"))


async def test_a_token_for_another_host_is_not_sent(binder, https, git):
    git.commit("private-other-host", {"README.md": "private\n"})
    binder.user_tokens.put("alice", "localhost", ALICE_TOKEN)  # not 127.0.0.1
    events = await launch(binder, spec(https, "private-other-host"), "alice")
    assert events[-1]["phase"] == "failed"
    assert all(h == "" for h in https.headers_for("private-other-host"))


class BuildPods:
    """The kubelet's part for every build pod, played by the test against kmock (a
    Kubernetes API stand-in, tests.kube): a pod's log (repo2docker's JSON lines, with
    the pushed image's digest), then its phase Succeeded. What each build pod had: its
    repo2docker arguments and, if any, the token in its Secret."""

    def __init__(self, api) -> None:
        self.api = api
        self.seen: list[dict[str, Any]] = []
        api[re.compile(r"/api/v1/namespaces/default/pods/[^/]+/log")] << self.log

    async def log(self, request) -> AsyncIterator[bytes]:
        name = request.url.path.split("/")[-2]
        (pod,) = [o for (r, _, n), o in self.api.objects.items()
                  if r.plural == "pods" and n == name and not o.deleted]  # fmt: skip
        secrets = [o for (r, _, _), o in self.api.objects.items()
                   if r.plural == "secrets" and not o.deleted]  # fmt: skip
        args = pod["spec"]["containers"][0]["args"]
        image = args[args.index("--image-name") + 1]
        self.seen.append({
            "pod": json.loads(json.dumps(pod.raw)),
            "tokens": [base64.b64decode(x["data"]["token"]).decode() for x in secrets],
        })  # fmt: skip
        yield b""
        for message in (
            "Using PythonBuildPack builder\n",
            f"#12 pushing manifest for {image}@sha256:{'cd' * 32} 0.2s done\n",
        ):
            yield (json.dumps({"message": message, "phase": "building"}) + "\n").encode()
        base = Configuration.get_default_copy().host.rstrip("/")
        done = {"status": {"phase": "Succeeded"}}
        async with aiohttp.ClientSession() as session:
            url = f"{base}/api/v1/namespaces/default/pods/{name}"
            headers = {"Content-Type": "application/merge-patch+json"}
            async with session.patch(url, json=done, headers=headers) as r:
                assert r.status == 200


async def test_the_kubernetes_builder_gets_the_token_and_a_key_per_commit_kmock_stand_in(
    tmp_path, https, git
):
    """The kubernetes builder against kmock (a Kubernetes API stand-in): alice's private
    launch gives her token to the build pod (in its Secret, removed after), and its key
    holds the commit, so a notebook-only commit builds again and every session's ticket
    says its image holds that commit (no fetch job); a public repository's notebook-only
    commit reuses its image, with no Secret."""
    git.commit("private-kube", {"requirements.txt": "numpy\n", "a.ipynb": "{}"})
    git.commit("public-kube", {"requirements.txt": "numpy\n", "a.ipynb": "{}"})
    config = Config()
    config.Resolver.allow_user_tokens = True
    config.GitProvider.allow_private_hosts = True
    config.GitProvider.extra_ca_file = str(https.ca_file)
    config.KubernetesBuilder.namespace = "default"
    config.KubernetesBuilder.image_prefix = "registry.example.org/binder/env:"
    config.KubernetesBuilder.poll_interval = 0.05
    async with kubernetes(tmp_path) as api:
        api.resources["v1/secrets"] = ResourceInfo(
            namespaced=True, kind="Secret", verbs={"get", "create", "delete", "list"}
        )
        builds = BuildPods(api)
        binder = BinderService(
            config=config, data_dir=str(tmp_path / "binder"), ticket_secret=SECRET,
            builder="kubernetes",
        )  # fmt: skip
        binder.build_backend.unavailable = lambda: None  # (kmock's kubeconfig is in tmp)
        binder.launcher = StandinLauncher()  # type: ignore[assignment]
        binder.user_tokens.put("alice", "127.0.0.1", ALICE_TOKEN)
        keys = []
        for n in range(2):  # a second commit that changes a notebook only (by a tag: the
            ref = "main"  # branch's resolution is cached)
            if n:
                ref = "v2"
                git.commit(
                    "private-kube", {"requirements.txt": "numpy\n", "a.ipynb": "{1}"}, tag=ref
                )
            events = await launch(binder, spec(https, "private-kube", ref), "alice")
            assert events[-1]["phase"] == "ready", events[-3:]
            assert "Reusing environment" not in text(events)
            seen = builds.seen[-1]
            assert seen["tokens"] == [ALICE_TOKEN]
            assert ALICE_TOKEN not in json.dumps(seen["pod"])
            ticket = binder.launcher.launches[-1]["launch"]
            assert ticket["private"] is True and "fetch" not in ticket["content"]
            assert ticket["built_from"] == ticket["content"]["ref"]  # no fetch in the pod
            keys.append(ticket["key"])
            assert not [o for (r, _, _), o in api.objects.items()
                        if r.plural in ("secrets", "pods") and not o.deleted]  # fmt: skip
        assert len(set(keys)) == 2 and len(builds.seen) == 2

        keys = []
        for n in range(2):
            ref = "main"
            if n:
                ref = "v2"
                git.commit(
                    "public-kube", {"requirements.txt": "numpy\n", "a.ipynb": "{1}"}, tag=ref
                )
            events = await launch(binder, spec(https, "public-kube", ref), "alice")
            assert events[-1]["phase"] == "ready", events[-3:]
            ticket = binder.launcher.launches[-1]["launch"]
            assert "private" not in ticket and ticket["content"]["fetch"]["provider"] == "git"
            keys.append(ticket["key"])
        assert "Reusing environment" in text(events)
        assert keys[0] == keys[1] and len(builds.seen) == 3
        assert builds.seen[-1]["tokens"] == []
        assert "GIT_CONFIG" not in json.dumps(builds.seen[-1]["pod"])
        assert ticket["built_from"] != ticket["content"]["ref"]  # fetched in the pod
