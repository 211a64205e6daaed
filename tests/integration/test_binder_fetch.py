"""The fetch worker (binder_service.fetch) for real: git repositories served by ``git
daemon`` and ``git http-backend`` (tests/gitserver.py, also behind HTTP basic auth for a
private repository), and Zenodo records from the **stand-in** for Zenodo's records API
(tests/zenodo_standin.py). Checked: the content arrives at the resolved commit or record,
nothing half-fetched is ever left at the destination or beside it, failures are one line,
a cancelled or timed-out fetch leaves no process, and a token is never on a command line,
in an environment, in the progress lines or in the log."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from egi_hub.binder_service.fetch import WORKER, FetchLimits, fetch
from egi_hub.binder_service.providers.base import FetchError, Resolved
from egi_hub.binder_service.providers.records import RecordProvider
from egi_hub.binder_service.specs import RepoSpec
from tests.gitserver import serve_private_https
from tests.stackrunner import wait_for
from tests.zenodo_standin import ZenodoStandin, start_zenodo_standin

TOKEN = "glpat-never-shown-0123456789"


@pytest.fixture
def zenodo():
    standin = start_zenodo_standin()
    yield standin
    standin.stop()


def git_job(url: str, sha: str, **extra) -> Resolved:
    spec = RepoSpec("git", url, "main")
    return Resolved(spec, "git", url, sha, f"demo@{sha[:7]}", {"provider": "git", "repo": url,
                                                            "ref": sha, **extra})  # fmt: skip


async def record_job(standin: ZenodoStandin, record_id: int) -> Resolved:
    """What the RecordProvider resolves for the record (through the stand-in)."""
    provider = RecordProvider(zenodo_urls=[standin.url], doi_resolver_url=standin.doi_url)
    async with httpx.AsyncClient() as client:
        provider.http = client
        return await provider.resolve(RepoSpec("doi", standin.doi(record_id)))


def run_git(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


@dataclass(frozen=True)
class Proc:
    """A process as /proc shows it (what ``ps`` reads)."""

    pid: int

    def _read(self, name: str) -> bytes:
        return Path(f"/proc/{self.pid}/{name}").read_bytes()

    def cmdline(self) -> list[str]:
        return self._read("cmdline").decode(errors="replace").split("\0")

    def environ(self) -> dict[str, str]:
        pairs = self._read("environ").decode(errors="replace").split("\0")
        return dict(p.split("=", 1) for p in pairs if "=" in p)

    def cwd(self) -> str:
        return os.readlink(f"/proc/{self.pid}/cwd")

    def state(self) -> str:
        return self._read("stat").decode().rsplit(")", 1)[1].split()[0]

    def ppid(self) -> int:
        return int(self._read("stat").decode().rsplit(")", 1)[1].split()[1])


def workers() -> list[Proc]:
    """Fetch workers started by this test process (its direct children)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        proc = Proc(int(entry.name))
        try:
            if proc.ppid() == os.getpid() and WORKER in " ".join(proc.cmdline()):
                found.append(proc)
        except (FileNotFoundError, ProcessLookupError, IndexError):
            pass
    return found


def gone(pid: int) -> bool:
    try:
        return Proc(pid).state() == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def zip_bytes(entries: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return buf.getvalue()


# -- git --------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["git", "http"])
async def test_a_git_repository_is_fetched_at_the_resolved_commit(git, tmp_path, scheme):
    first = git.commit("demo", {"requirements.txt": "six\n", "index.ipynb": "{}"})
    git.commit("demo", {"requirements.txt": "six\nattrs\n"})  # the branch moves on
    url = git.git_url("demo") if scheme == "git" else git.http_url("demo")
    lines: list[str] = []
    dest = tmp_path / "content" / "demo"
    await fetch(git_job(url, first), dest, on_line=lines.append)
    assert (dest / "requirements.txt").read_text() == "six\n"
    assert (dest / "index.ipynb").exists()
    assert run_git(["rev-parse", "HEAD"], dest) == first
    assert f"Checked out {first[:12]}" in lines
    assert not any(str(tmp_path) in line for line in lines)  # no service paths in the log
    assert leftovers(dest.parent) == ["demo"]


async def test_an_unknown_commit_fails_and_leaves_nothing(git, tmp_path):
    git.commit("demo", {"a.txt": "a"})
    dest = tmp_path / "content" / "demo"
    with pytest.raises(FetchError) as failed:
        await fetch(git_job(git.git_url("demo"), "1" * 40), dest, on_line=lambda _: None)
    assert str(failed.value) == f"the commit {'1' * 40} is not in {git.git_url('demo')}"
    assert leftovers(dest.parent) == []


async def test_a_repository_that_does_not_exist(git, tmp_path):
    dest = tmp_path / "content" / "nothing"
    with pytest.raises(FetchError, match=r"could not clone .*nothing\.git") as failed:
        await fetch(git_job(git.http_url("nothing"), "2" * 40), dest, on_line=lambda _: None)
    assert "\n" not in str(failed.value)
    assert leftovers(dest.parent) == []


async def test_a_symlink_out_of_the_repository_is_refused(git, tmp_path):
    git.commit("links", {"README.md": "x"})
    clone = git.work / "links"
    (clone / "requirements.txt").symlink_to("/etc/passwd")
    (clone / "inside").symlink_to("README.md")
    for args in (["add", "-A"], ["commit", "-qm", "links"], ["push", "-q", "origin", "HEAD:main"]):
        run_git(args, clone, git.env)
    sha = run_git(["rev-parse", "HEAD"], clone, git.env)
    dest = tmp_path / "content" / "links"
    with pytest.raises(
        FetchError, match=r"'requirements\.txt' is a symbolic link pointing outside"
    ):
        await fetch(git_job(git.git_url("links"), sha), dest, on_line=lambda _: None)
    assert leftovers(dest.parent) == []


async def test_a_file_submodule_is_never_fetched(git, tmp_path):
    """GIT_ALLOW_PROTOCOL: a submodule pointing to the service's own disk (file://, or a
    plain path) is refused by git, and the fetch fails with that reason."""
    git.commit("inner", {"secret.txt": "the service's own file"})
    git.commit("outer", {"README.md": "x"})
    clone = git.work / "outer"
    inner = str(git.root / "inner.git")
    run_git(["-c", "protocol.file.allow=always", "submodule", "add", "-q", inner, "sub"], clone,
            git.env)  # fmt: skip
    run_git(["commit", "-qm", "submodule"], clone, git.env)
    run_git(["push", "-q", "origin", "HEAD:main"], clone, git.env)
    sha = run_git(["rev-parse", "HEAD"], clone, git.env)
    dest = tmp_path / "content" / "outer"
    with pytest.raises(FetchError, match=r"a submodule of .* could not be fetched .*file") as e:
        await fetch(git_job(git.git_url("outer"), sha), dest, on_line=lambda _: None)
    assert "\n" not in str(e.value)
    assert leftovers(dest.parent) == []


async def test_a_repository_over_the_limits_is_refused(git, tmp_path):
    sha = git.commit("big", {f"f{i}.txt": "x" * 1000 for i in range(20)})
    dest = tmp_path / "content" / "big"
    with pytest.raises(FetchError, match="more than the limit of 5000 bytes"):
        await fetch(git_job(git.git_url("big"), sha), dest, on_line=lambda _: None,
                    limits=FetchLimits(max_bytes=5000))  # fmt: skip
    with pytest.raises(FetchError, match="more than the limit of 10 files"):
        await fetch(git_job(git.git_url("big"), sha), dest, on_line=lambda _: None,
                    limits=FetchLimits(max_files=10))  # fmt: skip
    assert leftovers(dest.parent) == []


@pytest.fixture
def private_git(git, tmp_path):
    """``git http-backend`` over HTTPS with basic auth (`tests.gitserver`): repositories
    named ``private-*`` are private; a token travels over https only."""
    server = serve_private_https(git, tmp_path / "tls", {TOKEN})
    yield server
    server.stop()


async def test_a_private_repository_with_and_without_the_token(git, private_git, tmp_path, caplog):
    sha = git.commit("private-secret", {"requirements.txt": "six\n"})
    job = git_job(private_git.url("private-secret"), sha, username="oauth2")
    settings = {"git_ca_file": str(private_git.ca_file)}
    with pytest.raises(FetchError, match="could not clone"):  # no prompt, no hang
        await fetch(job, tmp_path / "a", on_line=lambda _: None, settings=settings)
    assert not (tmp_path / "a").exists()
    lines: list[str] = []
    caplog.set_level(logging.DEBUG)
    await fetch(job, tmp_path / "b", on_line=lines.append, token=TOKEN, settings=settings)
    assert (tmp_path / "b" / "requirements.txt").read_text() == "six\n"
    assert any(s.startswith("Basic ") for s in private_git.seen["private-secret"])
    assert TOKEN not in "\n".join(lines) + caplog.text
    git_config = (tmp_path / "b" / ".git" / "config").read_text()
    assert TOKEN not in git_config and "Basic" not in git_config
    assert not list(tmp_path.glob(".b.*"))


async def test_a_token_is_not_sent_over_plain_http_even_to_loopback(git, tmp_path):
    sha = git.commit("plain", {"requirements.txt": "six\n"})
    job = git_job(git.http_url("plain"), sha)
    with pytest.raises(FetchError, match="only sent to a repository over https"):
        await fetch(job, tmp_path / "d", on_line=lambda _: None, token=TOKEN)


async def test_a_token_is_not_sent_over_plain_http_to_another_host(tmp_path):
    job = git_job("http://example.invalid/repo.git", "3" * 40)
    with pytest.raises(FetchError, match="only sent to a repository over https"):
        await fetch(job, tmp_path / "c", on_line=lambda _: None, token=TOKEN)


# -- Zenodo (stand-in) -----------------------------------------------------------------


async def test_a_record_with_files_is_fetched(zenodo, tmp_path):
    record = zenodo.publish(
        {"requirements.txt": b"six\n", "notebooks/intro.ipynb": b"{}", "data.csv": b"a,b\n"}
    )
    resolved = await record_job(zenodo, record.id)
    dest = tmp_path / "content" / "rec"
    lines: list[str] = []
    settings = RecordProvider(zenodo_urls=[zenodo.url]).fetch_settings()
    await fetch(resolved, dest, on_line=lines.append, settings=settings)
    assert (dest / "requirements.txt").read_bytes() == b"six\n"
    assert (dest / "notebooks" / "intro.ipynb").read_bytes() == b"{}"
    assert "Fetching requirements.txt (4 bytes)" in lines
    assert leftovers(dest.parent) == ["rec"]


async def test_a_record_of_one_zip_is_extracted_and_unwrapped(zenodo, tmp_path):
    """GitHub releases archived by Zenodo arrive as one zip of the repository."""
    release = zip_bytes({"org-repo-1a2b3c/requirements.txt": b"six\n",
                         "org-repo-1a2b3c/binder/runtime.txt": b"python-3.11\n"})  # fmt: skip
    record = zenodo.publish({"org/repo-v1.0.zip": release}, version="v1.0")
    dest = tmp_path / "content" / "rel"
    lines: list[str] = []
    await fetch(await record_job(zenodo, record.id), dest, on_line=lines.append)
    assert sorted(p.name for p in dest.iterdir()) == ["binder", "requirements.txt"]
    assert "Extracted 2 files (16 bytes) from the folder org-repo-1a2b3c" in lines
    assert leftovers(dest.parent) == ["rel"]


async def test_a_zip_with_a_path_escape_is_refused(zenodo, tmp_path):
    record = zenodo.publish({"evil.zip": zip_bytes({"a/../../../escaped.txt": b"x"})})
    dest = tmp_path / "content" / "evil"
    with pytest.raises(FetchError, match=r"refused 'evil.zip': .*'\.\.'"):
        await fetch(await record_job(zenodo, record.id), dest, on_line=lambda _: None)
    assert leftovers(dest.parent) == [] and not list(tmp_path.rglob("escaped.txt"))


async def test_a_checksum_mismatch_fails(zenodo, tmp_path):
    record = zenodo.publish({"a.txt": b"good", "b.txt": b"fine"})
    resolved = await record_job(zenodo, record.id)
    zenodo.tamper[(record.id, "b.txt")] = b"evil"  # same size, other bytes
    dest = tmp_path / "content" / "tampered"
    with pytest.raises(FetchError, match=r"'b\.txt' does not match its checksum"):
        await fetch(resolved, dest, on_line=lambda _: None)
    assert leftovers(dest.parent) == []


async def test_a_record_over_the_size_limit_fails(zenodo, tmp_path):
    record = zenodo.publish({"a.bin": b"x" * 3000, "b.bin": b"y" * 3000})
    dest = tmp_path / "content" / "big"
    with pytest.raises(FetchError, match="more than the limit of 4000 bytes"):
        await fetch(await record_job(zenodo, record.id), dest, on_line=lambda _: None,
                    limits=FetchLimits(max_bytes=4000))  # fmt: skip
    zipped = zenodo.publish({"bomb.zip": zip_bytes({"top/zeros": b"\0" * 100_000})})
    with pytest.raises(FetchError, match="inflates to more than the limit of 50000 bytes"):
        await fetch(await record_job(zenodo, zipped.id), dest, on_line=lambda _: None,
                    limits=FetchLimits(max_bytes=50_000))  # fmt: skip
    assert leftovers(dest.parent) == []


async def test_a_record_changed_since_resolution_fails(zenodo, tmp_path):
    record = zenodo.publish({"a.txt": b"a"})
    resolved = await record_job(zenodo, record.id)
    record.files["b.txt"] = b"b"
    with pytest.raises(FetchError, match=r"'b\.txt', which it did not have when it was resolved"):
        await fetch(resolved, tmp_path / "x", on_line=lambda _: None)
    assert leftovers(tmp_path) == []


async def test_a_record_site_the_settings_do_not_list_is_refused(zenodo, tmp_path):
    record = zenodo.publish({"a.txt": b"a"})
    resolved = await record_job(zenodo, record.id)
    with pytest.raises(FetchError, match="not one this service launches records from"):
        await fetch(resolved, tmp_path / "x", on_line=lambda _: None,
                    settings={"zenodo_urls": ["https://zenodo.org/"]})  # fmt: skip


# -- processes, cancellation, secrets -------------------------------------------------


async def test_cancelling_a_fetch_kills_the_worker_and_cleans_up(zenodo, tmp_path):
    record = zenodo.publish({"a.txt": b"a"})
    resolved = await record_job(zenodo, record.id)
    zenodo.hold.set()  # downloads wait
    dest = tmp_path / "content" / "held"
    task = asyncio.create_task(fetch(resolved, dest, on_line=lambda _: None, token=TOKEN))
    content = f"zenodo /api/records/{record.id}/files/a.txt/content"
    await asyncio.to_thread(wait_for, lambda: content in zenodo.requests, 30, "the download")
    [worker] = workers()
    # The token is on stdin only: not on the worker's command line, not in its environment.
    assert TOKEN not in " ".join(worker.cmdline())
    assert TOKEN not in "\n".join(f"{k}={v}" for k, v in worker.environ().items())
    git_vars = {k for k in worker.environ() if k.startswith("GIT_")}
    assert git_vars == {"GIT_ALLOW_PROTOCOL", "GIT_TERMINAL_PROMPT", "GIT_CONFIG_NOSYSTEM"}
    home = worker.environ()["HOME"]
    assert home != os.environ.get("HOME") and worker.cwd() == home
    assert leftovers(dest.parent)  # the partial directory exists meanwhile
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gone(worker.pid)
    assert leftovers(dest.parent) == []
    assert not await asyncio.to_thread(Path(home).exists)


async def test_a_fetch_over_its_time_is_killed(zenodo, tmp_path):
    record = zenodo.publish({"a.txt": b"a"})
    resolved = await record_job(zenodo, record.id)
    zenodo.hold.set()
    pids: list[int] = []

    def note(line: str) -> None:
        pids.extend(w.pid for w in workers())

    dest = tmp_path / "content" / "slow"
    with pytest.raises(FetchError, match=r"took longer than 3 s"):
        await fetch(resolved, dest, on_line=note, limits=FetchLimits(timeout=3))
    assert pids and all(gone(pid) for pid in pids)
    assert leftovers(dest.parent) == []


async def test_an_unknown_provider_and_an_existing_destination(tmp_path):
    odd = Resolved(RepoSpec("doi", "10.1/x"), "ckan", "s", "1", "ckan", {"provider": "ckan",
                                                                         "files": []})  # fmt: skip
    with pytest.raises(FetchError, match="fetching 'ckan' content is not supported"):
        await fetch(odd, tmp_path / "x", on_line=lambda _: None)
    (tmp_path / "exists").mkdir()
    with pytest.raises(FetchError, match="already exists"):
        await fetch(odd, tmp_path / "exists", on_line=lambda _: None)
    assert leftovers(tmp_path) == ["exists"]
