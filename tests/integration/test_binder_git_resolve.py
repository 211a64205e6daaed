"""Binder resolution of plain git URLs against real git servers (issue 10, point 2):
``git daemon`` (``git://``) and ``git http-backend`` (``http://``) on 127.0.0.1, with
real commits, branches, tags and a branch that moves."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from traitlets.config import Config

from egi_hub.binder_service.providers import git as git_module
from egi_hub.binder_service.providers.base import ResolveError
from egi_hub.binder_service.providers.git import GitProvider
from egi_hub.binder_service.resolver import Resolver
from egi_hub.binder_service.specs import RepoSpec, parse_launch
from egi_hub.procs import free_port
from tests.gitserver import GitServer, start_git_server

# The test git servers listen on 127.0.0.1, which sites refuse by default.
LOCAL_GIT = Config({"GitProvider": {"allow_private_hosts": True}})


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    running = start_git_server(tmp_path_factory.mktemp("git"))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def demo(server: GitServer) -> dict[str, str]:
    """A repository with a branch, a lightweight tag and an annotated tag."""
    shas = {"first": server.commit("demo", {"requirements.txt": "six\n"}, tag="light")}
    shas["main"] = server.commit("demo", {"index.ipynb": "{}"})
    shas["dev"] = server.commit("demo", {"dev.txt": "x"}, branch="dev")
    clone = server.work / "demo"
    for args in (["checkout", "-q", "main"], ["tag", "-a", "v1.0", "-m", "release", shas["main"]],
                 ["push", "-q", "origin", "v1.0"]):  # fmt: skip
        subprocess.run(["git", *args], cwd=clone, env=server.env, check=True, timeout=60)
    return shas


@pytest.fixture
async def resolver() -> Iterator[Resolver]:
    made = Resolver(config=LOCAL_GIT)
    yield made
    await made.close()


def spec(url: str, ref: str) -> RepoSpec:
    return RepoSpec("git", url, ref)


@pytest.mark.parametrize("scheme", ["git", "http"])
async def test_branches_tags_and_head_resolve_to_commits(server, demo, resolver, scheme):
    url = server.git_url("demo") if scheme == "git" else server.http_url("demo")
    assert (await resolver.resolve(spec(url, "main"))).ref == demo["main"]
    assert (await resolver.resolve(spec(url, "dev"))).ref == demo["dev"]
    assert (await resolver.resolve(spec(url, "light"))).ref == demo["first"]
    # An annotated tag names its commit, not the tag object.
    assert (await resolver.resolve(spec(url, "v1.0"))).ref == demo["main"]
    assert (await resolver.resolve(spec(url, "refs/tags/v1.0"))).ref == demo["main"]
    head = await resolver.resolve(spec(url, "HEAD"))  # the default branch
    assert head.ref == demo["main"]
    assert head.provider == "git" and head.source == url
    assert head.fetch == {"provider": "git", "repo": url, "ref": demo["main"]}
    assert head.label == f"127.0.0.1:{url.split(':')[2].split('/')[0]}/demo@{demo['main'][:7]}"


async def test_a_link_resolves_as_parsed(server, demo, resolver):
    link = parse_launch(f"v2/git/{server.http_url('demo').replace('/', '%2F')}/v1.0")
    assert (await resolver.resolve(link.spec)).ref == demo["main"]


async def test_a_full_sha_is_taken_as_it_is(server, demo, resolver):
    resolved = await resolver.resolve(spec(server.git_url("demo"), demo["first"]))
    assert resolved.ref == demo["first"]
    assert resolver.provider_for("git").immutable(resolved.spec)


async def test_abbreviated_shas_say_to_use_the_full_one(server, demo, resolver):
    with pytest.raises(ResolveError) as e:
        await resolver.resolve(spec(server.git_url("demo"), demo["first"][:7]))
    assert "use the full 40-character commit id" in str(e.value) and e.value.status == 404


async def test_unknown_refs_and_repositories_are_one_line(server, demo, resolver):
    place = server.git_url("demo").removeprefix("git://").removesuffix(".git")
    with pytest.raises(ResolveError) as e:
        await resolver.resolve(spec(server.git_url("demo"), "no-such-branch"))
    assert (str(e.value), e.value.status) == (f"{place} has no branch or tag 'no-such-branch'", 404)
    for url in (server.git_url("nothing"), server.http_url("nothing")):
        with pytest.raises(ResolveError, match="is not a git repository") as e:
            await resolver.resolve(spec(url, "main"))
        assert e.value.status == 404 and "\n" not in str(e.value)


async def test_a_repository_without_a_default_branch(server, resolver):
    server.commit("headless", {"a.txt": "a"}, branch="work")
    bare = server.root / "headless.git"
    await asyncio.to_thread(
        subprocess.run, ["git", "symbolic-ref", "HEAD", "refs/heads/gone"], cwd=bare,
        env=server.env, check=True, timeout=30,
    )  # fmt: skip
    with pytest.raises(ResolveError, match="has no default branch; name a branch, tag or commit"):
        await resolver.resolve(spec(server.git_url("headless"), "HEAD"))
    assert (await resolver.resolve(spec(server.git_url("headless"), "work"))).ref


async def test_a_moved_branch_resolves_anew_after_the_ttl(server):
    now = [1000.0]
    resolver = Resolver(config=LOCAL_GIT, clock=lambda: now[0])
    url = server.http_url("moving")
    first = server.commit("moving", {"a.txt": "1"})
    assert (await resolver.resolve(spec(url, "main"))).ref == first
    second = server.commit("moving", {"a.txt": "2"})
    assert (await resolver.resolve(spec(url, "main"))).ref == first  # cached
    now[0] += resolver.cache_ttl + 1
    assert (await resolver.resolve(spec(url, "main"))).ref == second
    assert resolver.stats["misses"] == 2
    await resolver.close()


@pytest.mark.parametrize("scheme", ["git", "http"])
async def test_an_unreachable_host_fails_fast(resolver, scheme):
    port = free_port()  # nothing listens there
    started = time.monotonic()
    with pytest.raises(ResolveError) as e:
        await resolver.resolve(spec(f"{scheme}://127.0.0.1:{port}/x.git", "main"))
    assert str(e.value) == f"cannot reach 127.0.0.1:{port}/x: the connection was refused or failed"
    assert e.value.status == 502
    assert time.monotonic() - started < 10


async def test_a_silent_server_ends_at_the_timeout_and_git_is_killed():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        provider = GitProvider(allow_private_hosts=True, timeout=1)
        started = time.monotonic()
        with pytest.raises(ResolveError) as e:
            await provider.resolve(spec(f"git://127.0.0.1:{port}/x.git", "main"))
        assert time.monotonic() - started < 10
        assert e.value.status == 504 and "did not answer within 1 s" in str(e.value)
        await provider.close()
    pgrep = ["pgrep", "-f", f"127.0.0.1:{port}/x.git"]
    gits = await asyncio.to_thread(subprocess.run, pgrep, capture_output=True, timeout=30)
    assert gits.stdout == b""  # no git left behind


async def test_file_and_ext_urls_never_reach_git(server, demo, monkeypatch, tmp_path):
    """Defence in depth: handed to the provider directly, they start no git at all; and
    were the URL check bypassed, git itself refuses those transports."""
    started: list[tuple[str, ...]] = []
    real = asyncio.create_subprocess_exec

    async def record(*args, **kwargs):
        started.append(args)
        return await real(*args, **kwargs)

    monkeypatch.setattr(git_module.asyncio, "create_subprocess_exec", record)
    provider = GitProvider(allow_private_hosts=True)
    marker = tmp_path / "pwned"
    bare = server.root / "demo.git"
    for url in (f"file://{bare}", str(bare), f"ext::sh -c touch% {marker}", "fd::0"):
        with pytest.raises(ResolveError, match="only https://, http:// and git://"):
            await provider.resolve(spec(url, "main"))
    assert started == []
    for url in (f"file://{bare}", f"ext::sh -c touch% {marker}"):
        with pytest.raises(ResolveError, match="only https://, http:// and git://"):
            await provider.ls_remote(url, ["main"])
    assert len(started) == 2 and not marker.exists()
    await provider.close()


async def test_git_runs_without_the_services_git_config(server, demo, monkeypatch, tmp_path):
    """A ``url.<base>.insteadOf`` in the service user's config (or GIT_* variables) would
    send git elsewhere; the provider's git sees neither."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text('[url "file:///"]\n\tinsteadOf = http://\n')
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GIT_DIR", "/nonexistent")
    monkeypatch.setenv("GIT_CONFIG_PARAMETERS", "'protocol.allow'='always'")
    provider = GitProvider(allow_private_hosts=True)
    assert (await provider.resolve(spec(server.http_url("demo"), "main"))).ref == demo["main"]
    await provider.close()


@pytest.mark.parametrize(
    "url",
    [
        "git://127.0.0.1:9/x.git",
        "http://169.254.169.254/latest.git",
        "https://10.1.2.3/internal.git",
        "http://localhost:9/x.git",
    ],
)
async def test_by_default_git_links_cannot_reach_internal_addresses(url):
    """A link must not make the service probe or clone from the site's own network (the
    cluster's services, a cloud's metadata address): refused before git runs."""
    spec = parse_launch(f"v2/git/{quote(url, safe='')}/main").spec
    with pytest.raises(ResolveError) as e:
        await GitProvider().resolve(spec)
    assert e.value.status == 403 and "public hosts only" in str(e.value)
