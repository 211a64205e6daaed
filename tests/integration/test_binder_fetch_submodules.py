"""Submodules in the fetch worker (binder_service.fetch_submodules), with real git: a
submodule on the repository's own host is fetched (nested ones too), one on another host
that resolves to an internal address is refused before anything connects there, unless
the site allows private hosts (GitProvider.fetch_settings)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from egi_hub.binder_service.fetch import fetch
from egi_hub.binder_service.fetch_submodules import update_submodules
from egi_hub.binder_service.providers.base import FetchError
from egi_hub.binder_service.providers.git import GitProvider
from egi_hub.binder_service.record_downloads import WorkerError
from tests.integration.test_binder_fetch import git_job, leftovers, run_git


class Listener:
    """A TCP port that counts who connects (and closes at once)."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    found = Listener()
    yield found
    found.close()


def with_submodule(git, outer: str, url: str, path: str = "sub", target: str = "inner") -> str:
    """Commit a submodule ``path`` pointing at ``url`` (repository ``target``'s head)
    into repository ``outer``."""
    return with_submodules(git, outer, [(path, path, url)], target)


def with_submodules(git, outer: str, entries: list[tuple[str, str, str]], target: str = "inner"
                    ) -> str:  # fmt: skip
    """Commit submodules ``(name, path, url)`` (each at repository ``target``'s head)
    into repository ``outer``."""
    git.commit(outer, {"README.md": outer})
    clone = git.work / outer
    inner_sha = run_git(["rev-parse", "HEAD"], git.work / target, git.env)
    for name, path, url in entries:
        run_git(["config", "-f", ".gitmodules", f"submodule.{name}.path", path], clone, git.env)
        run_git(["config", "-f", ".gitmodules", f"submodule.{name}.url", url], clone, git.env)
        run_git(["update-index", "--add", "--cacheinfo", f"160000,{inner_sha},{path}"], clone,
                git.env)  # fmt: skip
    run_git(["add", ".gitmodules"], clone, git.env)
    run_git(["commit", "-qm", "submodule"], clone, git.env)
    run_git(["push", "-q", "origin", "HEAD:main"], clone, git.env)
    return run_git(["rev-parse", "HEAD"], clone, git.env)


async def test_submodules_on_the_repositorys_own_host_are_fetched_nested_too(git, tmp_path):
    git.commit("deepest", {"deep.txt": "deep"})
    git.commit("inner", {"inner.txt": "inner"})
    with_submodule(git, "inner", "../deepest.git", "deeper", "deepest")  # relative, nested
    sha = with_submodule(git, "outer", git.http_url("inner"))
    dest = tmp_path / "content" / "outer"
    lines: list[str] = []
    await fetch(git_job(git.http_url("outer"), sha), dest, on_line=lines.append)
    assert (dest / "sub" / "inner.txt").read_text() == "inner"
    assert (dest / "sub" / "deeper" / "deep.txt").read_text() == "deep"


@pytest.mark.parametrize("scheme", ["http", "git"])
async def test_a_submodule_on_an_internal_host_is_refused_before_connecting(
    git, tmp_path, listener, scheme
):
    git.commit("inner", {"inner.txt": "inner"})
    # "localhost" is not the repository's host (127.0.0.1) and resolves to loopback.
    sha = with_submodule(git, "outer", f"{scheme}://localhost:{listener.port}/x.git")
    dest = tmp_path / "content" / "outer"
    with pytest.raises(FetchError) as e:
        await fetch(git_job(git.http_url("outer"), sha), dest, on_line=lambda _: None)
    reason = str(e.value)
    assert reason.startswith("a submodule of ") and "could not be fetched" in reason
    assert "localhost is an internal address" in reason and "\n" not in reason
    assert listener.connections == 0
    assert not dest.exists() and leftovers(dest.parent) == []


async def test_a_site_that_allows_private_hosts_fetches_them(git, tmp_path):
    git.commit("inner", {"inner.txt": "inner"})
    url = git.http_url("inner").replace("127.0.0.1", "localhost")
    sha = with_submodule(git, "outer", url)
    settings = GitProvider(allow_private_hosts=True).fetch_settings()
    assert settings == {"git_private_hosts": True}
    dest = tmp_path / "content" / "outer"
    await fetch(git_job(git.http_url("outer"), sha), dest, on_line=lambda _: None,
                settings=settings)  # fmt: skip
    assert (dest / "sub" / "inner.txt").read_text() == "inner"
    assert GitProvider().fetch_settings() == {}


async def test_an_ssh_or_scp_like_submodule_is_refused(git, tmp_path):
    git.commit("inner", {"inner.txt": "inner"})
    sha = with_submodule(git, "outer", "git@internal.example:org/x.git")
    dest = tmp_path / "content" / "outer"
    with pytest.raises(FetchError, match="is not an https, http or git URL"):
        await fetch(git_job(git.http_url("outer"), sha), dest, on_line=lambda _: None)


async def test_a_submodule_name_with_spaces_cannot_pass_for_another_ones_key(
    git, tmp_path, listener
):
    # Review 12c M1: the name "x.url https://public.example/" printed by `git config
    # --get-regexp` as "submodule.x.url https://public.example/.url <url>" passed for
    # submodule x with a public URL. x points at a listener on the top repository's host
    # (another port, so its URL is refused too, but the name comes first in .gitmodules
    # and is refused before any URL): nothing may connect there.
    git.commit("inner", {"inner.txt": "inner"})
    internal = f"http://127.0.0.1:{listener.port}/internal-service"
    spaced = ("x.url https://public.example/", "a", git.http_url("inner"))
    sha = with_submodules(git, "outer", [spaced, ("x", "b", internal)])
    dest = tmp_path / "content" / "outer"
    with pytest.raises(FetchError, match="holds whitespace or control characters"):
        await fetch(git_job(git.http_url("outer"), sha), dest, on_line=lambda _: None)
    assert listener.connections == 0
    assert not dest.exists() and leftovers(dest.parent) == []


def test_every_submodule_url_is_checked_before_the_first_is_fetched(git, tmp_path, listener):
    git.commit("inner", {"inner.txt": "inner"})
    internal = f"http://localhost:{listener.port}/x.git"
    sha = with_submodules(git, "outer", [("a", "a", git.http_url("inner")), ("b", "b", internal)])
    clone = tmp_path / "outer"
    run_git(["clone", "-q", git.http_url("outer"), str(clone)], tmp_path, git.env)
    assert run_git(["rev-parse", "HEAD"], clone, git.env) == sha
    with pytest.raises(WorkerError, match="localhost is an internal address"):
        list(update_submodules(clone, git.http_url("outer")))
    assert list((clone / "a").iterdir()) == [] and list((clone / "b").iterdir()) == []
    assert listener.connections == 0
