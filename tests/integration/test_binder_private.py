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
token is ever sent for it; no token is left on the service's disk (git reads it from a
file under the service's own ``<data_dir>/tmp`` while it runs, removed after, and at the
next start after a crash), nor in its events or its log.

And the review's findings (issue 10, point 2): a token is kept for an https origin
(host and port) and sent to no other port of its host; private launches are refused
on the venv builder unless the site says its users trust each other, and on a builder
that pushes without a private image prefix; a link that resolves without a token (a
full commit SHA) but cannot be cloned without one launches with the user's token; a
user's token never goes to a GitHub API over http.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import tempfile
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
from egi_hub.binder_service.specs import RepoSpec
from egi_hub.binder_service.store import visible_to
from egi_hub.binder_service.ticket import verify_ticket
from tests.githost_standin import Repo, fake_sha, start_githost_standin
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


def venv_config(https: PrivateHttps, wheels: Path, *, trusted: bool = True) -> Config:
    config = Config()
    config.Resolver.allow_user_tokens = True
    config.BinderService.private_repos_on_shared_machine = trusted
    config.GitProvider.allow_private_hosts = True  # the test server is on 127.0.0.1
    config.GitProvider.extra_ca_file = str(https.ca_file)
    config.VenvBuilder.pip_args = ["--no-index", "--find-links", str(wheels)]
    return config


@pytest.fixture
def binder(tmp_path: Path, https: PrivateHttps, wheels: Path) -> Iterator[BinderService]:
    config = venv_config(https, wheels)
    service = BinderService(config=config, data_dir=str(tmp_path / "binder"), ticket_secret=SECRET)
    service.launcher = StandinLauncher()  # type: ignore[assignment]
    yield service


def spec(https: PrivateHttps, name: str, ref: str = "main") -> str:
    return f"v2/git/{quote(https.url(name), safe='')}/{ref}"


def origin(https: PrivateHttps) -> str:
    """The test server's https origin, as a token is kept for it."""
    return f"127.0.0.1:{https.port}"


async def launch(binder: BinderService, path: str, user: str) -> list[dict[str, Any]]:
    job = binder.launch_job(path, {}, LaunchUser(user, "hub-token-of-" + user))
    return [event async for event in job.follow()]


def text(events: list[dict[str, Any]]) -> str:
    return json.dumps(events)


def any_exists(paths: list[str]) -> bool:
    return any(os.path.exists(p) for p in paths)


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
    binder.user_tokens.put("alice", origin(https), ALICE_TOKEN)

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
    binder.user_tokens.put("bob", origin(https), "wrong-token-of-bob")
    events = await launch(binder, path, "bob")
    assert events[-1]["phase"] == "failed" and "refused your access token" in text(events)
    assert len(binder.launcher.launches) == 1

    # Bob with a token that can read it: his own copy, his own environment and record.
    binder.user_tokens.put("bob", origin(https), BOB_TOKEN)
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
    binder.user_tokens.put("alice", origin(https), ALICE_TOKEN)
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
    binder.user_tokens.put("alice", origin(https), ALICE_TOKEN)
    now[0] += binder.user_token_ttl + 1
    events = await launch(binder, path, "alice")
    assert events[-1][
        "phase"
    ] == "failed" and "asks for credentials (a private repository?)" in text(events)
    binder.user_tokens.put("alice", origin(https), ALICE_TOKEN)
    binder.user_tokens.delete("alice", origin(https))
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
    config.KubernetesBuilder.private_image_prefix = "registry.example.org/site-only/env:"
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
        binder.user_tokens.put("alice", origin(https), ALICE_TOKEN)
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
            args = seen["pod"]["spec"]["containers"][0]["args"]
            image = args[args.index("--image-name") + 1]
            assert image.startswith("registry.example.org/site-only/env:")  # never public
            record = binder.store.get(binder.launcher.launches[-1]["launch"]["key"])
            assert record["environment"]["image"] == image
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


# -- the review's findings ----------------------------------------------------------------


async def test_a_token_goes_to_its_origin_only_not_another_port_of_its_host(
    tmp_path, https, git, wheels
):
    """A token saved for one https origin is never sent to another port of the same host
    (a second HTTPS git server on 127.0.0.1, trusted too), nor for the bare host (port
    443)."""
    other = serve_private_https(git, tmp_path / "tls-other", {ALICE_TOKEN})
    try:
        both = tmp_path / "both-cas.pem"
        both.write_text(https.ca_file.read_text() + other.ca_file.read_text())
        config = venv_config(https, wheels)
        config.GitProvider.extra_ca_file = str(both)
        binder = BinderService(
            config=config, data_dir=str(tmp_path / "binder"), ticket_secret=SECRET
        )
        binder.launcher = StandinLauncher()  # type: ignore[assignment]
        sha = git.commit("private-ports", {"README.md": "private\n"})
        binder.user_tokens.put("alice", origin(https), ALICE_TOKEN)  # the first server's
        binder.user_tokens.put("alice", "127.0.0.1", ALICE_TOKEN)  # port 443
        for ref in ("main", sha):  # resolved by ls-remote; a full SHA: by the clone
            events = await launch(binder, spec(other, "private-ports", ref), "alice")
            assert events[-1]["phase"] == "failed", events[-3:]
            assert "asks for credentials" in events[-1]["message"]
        assert other.headers_for("private-ports") and all(
            h == "" for h in other.headers_for("private-ports")
        ), "a token went to another port of its host"
        # Saved for that origin, it is used there.
        binder.user_tokens.put("alice", f"127.0.0.1:{other.port}", ALICE_TOKEN)
        binder.resolver.forget()
        events = await launch(binder, spec(other, "private-ports"), "alice")
        assert events[-1]["phase"] == "ready", events[-3:]
    finally:
        other.stop()


async def test_a_full_sha_link_to_a_private_repository_launches_with_the_token(binder, https, git):
    """A ``git`` link with a full commit SHA resolves with no remote call, as anyone's;
    its clone then asks for credentials (the worker says so), and the launch fetches it
    again with the user's token, as that user's own. Without a token: the reason, and no
    credential sent."""
    sha = git.commit("private-full-sha", {"requirements.txt": "egi_binder_demo\n"})
    path = spec(https, "private-full-sha", sha)
    events = await launch(binder, path, "bob")
    assert events[-1]["phase"] == "failed", events[-3:]
    reason = events[-1]["message"]
    assert "asks for credentials" in reason and binder.resolver.user_token_hint in reason
    assert all(h == "" for h in https.headers_for("private-full-sha"))

    binder.user_tokens.put("alice", origin(https), ALICE_TOKEN)
    events = await launch(binder, path, "alice")
    assert events[-1]["phase"] == "ready", events[-3:]
    assert "fetching it with your token (private)" in text(events)
    (ticket,) = binder.launcher.launches
    assert ticket["launch"]["content"]["path"].endswith(binder.private_mark("alice"))
    assert binder.store.get(ticket["launch"]["key"])["owner"] == "alice"
    # Bob, right after: still nothing (alice's copy is hers).
    events = await launch(binder, path, "bob")
    assert events[-1]["phase"] == "failed" and len(binder.launcher.launches) == 1


async def test_private_launches_are_refused_on_a_shared_venv_machine_by_default(
    tmp_path, https, git, wheels
):
    """With the venv builder every build and session runs as one OS user: unless the
    site says its users trust each other, a private launch is refused with the setting
    named, and no token is sent."""
    config = venv_config(https, wheels, trusted=False)
    binder = BinderService(config=config, data_dir=str(tmp_path / "binder"), ticket_secret=SECRET)
    binder.launcher = StandinLauncher()  # type: ignore[assignment]
    assert "private_repos_on_shared_machine" in (binder.private_refusal() or "")
    sha = git.commit("private-shared", {"README.md": "private\n"})
    binder.user_tokens.put("alice", origin(https), ALICE_TOKEN)
    for ref in ("main", sha):  # refused at resolution, or after a clone asked for credentials
        events = await launch(binder, spec(https, "private-shared", ref), "alice")
        assert events[-1]["phase"] == "failed", events[-3:]
        assert "BinderService.private_repos_on_shared_machine" in events[-1]["message"]
    assert all(h == "" for h in https.headers_for("private-shared"))
    assert binder.launcher.launches == []


async def test_a_builder_that_pushes_refuses_private_launches_without_a_private_prefix(
    tmp_path, https
):
    """kubernetes always pushes, docker with push: without a private image prefix a
    private launch is refused (the setting named); docker without push keeps its images
    in the local engine, allowed."""
    base = {"data_dir": str(tmp_path / "binder"), "ticket_secret": SECRET}
    config = Config()
    config.Resolver.allow_user_tokens = True
    config.KubernetesBuilder.image_prefix = "registry.example.org/binder/env:"
    kube = BinderService(config=config, builder="kubernetes", **base)
    assert "KubernetesBuilder.private_image_prefix" in kube.private_refusal()
    config.DockerBuilder.push = True
    docker = BinderService(config=config, builder="docker", **base)
    assert "DockerBuilder.private_image_prefix" in docker.private_refusal()
    config.DockerBuilder.push = False
    assert BinderService(config=config, builder="docker", **base).private_refusal() is None

    kube.launcher = StandinLauncher()  # type: ignore[assignment]
    kube.build_backend.unavailable = lambda: None
    kube.resolver.provider_for("git").allow_private_hosts = True
    kube.resolver.provider_for("git").extra_ca_file = str(https.ca_file)
    kube.user_tokens.put("alice", origin(https), ALICE_TOKEN)
    events = await launch(kube, spec(https, "private-alice"), "alice")
    assert events[-1]["phase"] == "failed"
    assert "KubernetesBuilder.private_image_prefix" in events[-1]["message"]


async def test_no_user_token_goes_to_a_github_api_over_http_stand_in(tmp_path):
    """A site whose GitHub API URL is http (a GitHub API stand-in on 127.0.0.1): a user's
    token saved for the GitHub web origin is not used (the service never offers it), so
    no request carries it."""
    host = start_githost_standin()
    try:
        host.github["o/private"] = Repo({"main": fake_sha("x")}, private=True, readers={"t0k"})
        config = Config()
        config.Resolver.allow_user_tokens = True
        config.BinderService.private_repos_on_shared_machine = True
        config.GitProvider.github_api_url = host.url
        binder = BinderService(
            config=config, data_dir=str(tmp_path / "binder"), ticket_secret=SECRET
        )
        binder.launcher = StandinLauncher()  # type: ignore[assignment]
        assert binder.token_host_of(RepoSpec("gh", "o/private", "main")) is None
        binder.user_tokens.put("alice", "github.com", "t0k")
        events = await launch(binder, "v2/gh/o/private/main", "alice")
        assert events[-1]["phase"] == "failed"
        assert host.requests and all("t0k" not in json.dumps(r) for r in host.requests)
    finally:
        host.stop()


async def test_token_files_live_under_the_services_own_tmp_and_a_crash_leaves_none(
    binder, https, git, monkeypatch, tmp_path
):
    """git's token files are made under ``<data_dir>/tmp`` (0700), never the shared /tmp,
    and removed after; what a crash left there is removed when the service starts."""
    made: list[str] = []
    real = tempfile.mkdtemp

    def recording(*args, **kwargs):
        path = real(*args, **kwargs)
        made.append(path)
        return path

    monkeypatch.setattr(tempfile, "mkdtemp", recording)
    git.commit("private-tmp", {"README.md": "private\n"})
    binder.user_tokens.put("alice", origin(https), ALICE_TOKEN)
    events = await launch(binder, spec(https, "private-tmp"), "alice")
    assert events[-1]["phase"] == "ready", events[-3:]
    tmp = Path(binder.data_dir) / "tmp"
    assert os.stat(tmp).st_mode & 0o777 == 0o700
    ours = [p for p in made if Path(p).name.startswith(("egi-binder-cred-", "egi-binder-fetch-"))]
    assert {Path(p).name.split("-")[2] for p in ours} == {"cred", "fetch"}
    assert all(Path(p).parent == tmp for p in ours), ours
    assert not any_exists(ours)

    # A crash mid-clone: its token file is left; the next start removes it.
    left = tmp / "egi-binder-fetch-crashed"
    left.mkdir()
    (left / ".egi-binder-git-token").write_text(ALICE_TOKEN)
    (tmp / "stray").write_text("x")
    elsewhere = tmp_path / "shared-tmp"
    elsewhere.mkdir()
    (elsewhere / "egi-binder-fetch-other").mkdir()  # another service's: not ours to sweep
    monkeypatch.setenv("TMPDIR", str(elsewhere))
    BinderService(config=binder.config, data_dir=binder.data_dir, ticket_secret=SECRET)
    assert list(tmp.iterdir()) == [] and (elsewhere / "egi-binder-fetch-other").is_dir()
