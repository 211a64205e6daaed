"""The fetch worker: ``python -m egi_hub.binder_service.fetch_worker``, run by
`binder_service.fetch` (read it for the protocol: the job and token on stdin, JSON events
on stdout, the working directories, the environment).

It fetches with repo2docker's content providers, each named explicitly (never
repo2docker's provider list, whose Dataverse provider downloads the list of all
Dataverse installations at start-up):

- git: `CheckedGit` (repo2docker's ``Git`` provider) clones the repository and checks
  out the commit; its submodules are fetched one by one, each URL checked first
  (`binder_service.fetch_submodules`: no internal host, unless the settings'
  ``git_private_hosts``); then ``git rev-parse HEAD`` must be the resolved SHA. A token
  for a private repository is given to git by a credential helper for that repository's
  https origin only, reading it from a 0600 file in the worker's private home (under the service's
  ``<data_dir>/tmp``; never in a command line or an environment variable), removed when
  the fetch ends, and only over https (never in clear, not even to loopback). A clone
  the server refuses for want of credentials (git's ``could not read Username``,
  ``Authentication failed``, an HTTP 401 or 403) is reported as such
  (`NeedsCredentials`, ``"kind": "credentials"``), so the service may try again with
  the user's token. The
  settings' ``git_ca_file`` (the site's CA bundle, see `GitProvider.extra_ca_file`) is
  the only CA setting git gets: the worker reads no user or system config;
- Zenodo, Figshare and Dataverse: subclasses of repo2docker's providers whose sites
  come from the service's settings and whose ``fetch_file`` and requests are replaced
  (`binder_service.record_downloads` says why: repo2docker's own ``fetch_file`` writes
  wherever a record's file names point, without size limits or checksums, and
  extracts a zip without any check).

Whatever the provider, the content is then checked as a whole (bytes and files within
the limits; no symbolic link pointing outside it) before it is renamed into place.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from repo2docker.contentproviders import Git
from repo2docker.contentproviders.base import ContentProviderException
from repo2docker.utils import check_ref, execute_cmd

from .fetch_submodules import update_submodules
from .record_downloads import WorkerError, clean_line, fetch_record

__all__ = [
    "CheckedGit",
    "NeedsCredentials",
    "WorkerError",
    "check_tree",
    "fetch_git",
    "main",
    "run",
]

_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_USERNAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
TOKEN_FILE = ".egi-binder-git-token"
# What git says when a server wants credentials it was not given, or refused them
# (prompts are off: GIT_TERMINAL_PROMPT=0, no askpass, no credential store).
_CREDENTIALS = re.compile(
    r"could not read (username|password)|authentication failed|terminal prompts disabled"
    r"|requested url returned error: 40[13]\b|http basic: access denied",
    re.IGNORECASE,
)


class NeedsCredentials(WorkerError):
    """The git server asked for credentials (or refused the ones given)."""


# -- git --------------------------------------------------------------------------------


class CheckedGit(Git):
    """repo2docker's ``Git`` provider for a full commit SHA, its submodule step (which
    follows every URL in ``.gitmodules``) replaced by `fetch_submodules`' checked one."""

    def __init__(self, *, private_hosts: bool = False) -> None:
        super().__init__()
        self.private_hosts = private_hosts

    def fetch(self, spec: dict, output_dir: str, yield_output: bool = False) -> Iterator[str]:
        repo, ref = spec["repo"], spec["ref"]
        try:
            yield from execute_cmd(
                ["git", "clone", "--no-checkout", "--", repo, output_dir], capture=yield_output
            )
        except subprocess.CalledProcessError as e:
            raise ContentProviderException(f"Failed to clone repository from {repo}") from e
        commit = check_ref(ref, output_dir)
        if commit is None:
            raise ValueError(f"Failed to check out ref {ref}")
        yield from execute_cmd(["git", "reset", "--hard", commit], cwd=output_dir,
                               capture=yield_output)  # fmt: skip
        yield from update_submodules(
            Path(output_dir), repo, private_hosts=self.private_hosts, capture=yield_output
        )


def _git_token_config(repo: str, token: str, username: str) -> dict[str, str]:
    """Give git ``token`` for ``repo``'s host only, through a credential helper that reads
    it from a file in the private home (see the module): the git config that does it."""
    parts = urlsplit(repo)
    if parts.scheme != "https":  # a token never travels in clear, not even to loopback
        raise WorkerError("a token is only sent to a repository over https")
    if not _USERNAME.fullmatch(username):
        raise WorkerError("the fetch job's username is not a plain name")
    home = Path(os.environ["HOME"])
    fd = os.open(home / TOKEN_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    helper = (
        '!f() { test "$1" = get || exit 0; '
        f"echo username={username}; "
        f'printf "password="; cat "$HOME/{TOKEN_FILE}"; echo; }}; f'
    )
    return {f"credential.{parts.scheme}://{parts.netloc}.helper": helper}


def _git_config(config: dict[str, str]) -> None:
    os.environ["GIT_CONFIG_COUNT"] = str(len(config))
    for i, (key, value) in enumerate(config.items()):
        os.environ[f"GIT_CONFIG_KEY_{i}"] = key
        os.environ[f"GIT_CONFIG_VALUE_{i}"] = value


def fetch_git(
    job: dict[str, Any], work: Path, token: str | None, settings: dict[str, Any] | None = None
) -> Iterator[str]:
    repo, sha = job.get("repo"), job.get("ref")
    if not isinstance(repo, str) or urlsplit(repo).scheme not in ("https", "http", "git"):
        raise WorkerError("the fetch job has no https, http or git repository URL")
    if not isinstance(sha, str) or not _SHA.fullmatch(sha):
        raise WorkerError("the fetch job has no full commit SHA")
    # A redirect never takes the clone to another host (an internal one, or one that
    # would get the token).
    config = {"http.followRedirects": "false"}
    if token:
        config.update(_git_token_config(repo, token, job.get("username") or "x-access-token"))
    ca_file = (settings or {}).get("git_ca_file")
    if ca_file:  # the site's CA bundle (GitProvider.extra_ca_file, with the system's)
        if not isinstance(ca_file, str) or not os.path.isabs(ca_file):
            raise WorkerError("the fetch job's CA file is not an absolute path")
        config["http.sslCAInfo"] = ca_file
    _git_config(config)
    provider = CheckedGit(private_hosts=(settings or {}).get("git_private_hosts") is True)
    last: list[str] = []
    checked_out = False  # past the checkout: what fails now is a submodule

    def why() -> str:
        reason = next((x for x in reversed(last) if x.startswith(("fatal:", "remote:"))), "")
        return f" ({reason})" if reason else ""

    try:
        for line in provider.fetch(provider.detect(repo, ref=sha), str(work), yield_output=True):
            line = clean_line(line)
            if line:
                checked_out = checked_out or line.startswith("HEAD is now at")
                last.append(line)
                del last[:-5]
                yield line
    except ContentProviderException:
        if any(_CREDENTIALS.search(line) for line in last):
            what = "refused the token" if token else "asks for credentials (a private repository?)"
            raise NeedsCredentials(f"could not clone {repo}: the server {what}") from None
        raise WorkerError(f"could not clone {repo}{why()}") from None
    except WorkerError as e:  # a submodule's URL refused (fetch_submodules)
        raise WorkerError(f"a submodule of {repo} could not be fetched ({e})") from None
    except (ValueError, subprocess.CalledProcessError):
        if checked_out:
            raise WorkerError(f"a submodule of {repo} could not be fetched{why()}") from None
        raise WorkerError(f"the commit {sha} is not in {repo}") from None
    head = subprocess.run(
        ["git", "rev-parse", "--verify", "HEAD^{commit}"],
        cwd=work,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.strip()
    if head != sha:
        raise WorkerError(f"the checkout of {repo} is at {head[:12] or 'nothing'}, not {sha}")
    yield f"Checked out {sha[:12]}"


# -- the whole --------------------------------------------------------------------------


def check_tree(work: Path, *, max_bytes: int, max_files: int) -> tuple[int, int]:
    """``(files, bytes)`` under ``work``; `WorkerError` over the limits, for a special
    file, or for a symbolic link that points outside ``work``."""
    files = total = 0
    root = os.path.realpath(work)
    for folder, dirs, names in os.walk(root):
        for name, is_dir in [(d, True) for d in dirs] + [(n, False) for n in names]:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            shown = os.path.relpath(path, root)[:80]
            if stat.S_ISLNK(st.st_mode):
                # Where it really ends, through every link on the way (a link inside may
                # point at another one that climbs out: ``a/b/L -> ..``, ``E -> a/b/L/../..``).
                link = os.readlink(path)
                target = os.path.realpath(path)
                if os.path.isabs(link) or not target.startswith(root + os.sep):
                    raise WorkerError(f"refused: {shown!r} is a symbolic link pointing outside")
                continue
            if not is_dir:
                if not stat.S_ISREG(st.st_mode):
                    raise WorkerError(f"refused: {shown!r} is a special file")
                files += 1
                total += st.st_size
        if files > max_files:
            raise WorkerError(f"the content has more than the limit of {max_files} files")
        if total > max_bytes:
            raise WorkerError(f"the content holds more than the limit of {max_bytes} bytes")
    return files, total


def run(job: dict[str, Any], token: str | None, emit: Callable[..., None]) -> None:
    spec = job.get("fetch")
    if not isinstance(spec, dict):
        raise WorkerError("the fetch job is empty")
    dest, work, scratch = Path(job["dest"]), Path(job["work"]), Path(job["scratch"])
    for path, kind in ((work, "partial"), (scratch, "scratch")):
        if path.parent != dest.parent or not path.name.startswith(f".{dest.name}.{kind}-"):
            raise WorkerError("the fetch job's working paths are not beside its destination")
    limits, settings = job["limits"], job.get("settings") or {}
    work.mkdir(mode=0o755)
    try:
        provider = spec.get("provider")
        if provider == "git":
            lines = fetch_git(spec, work, token, settings)
        else:
            lines = fetch_record(spec, work, scratch, limits, settings)
        for line in lines:
            if line:  # the service's paths are not the user's business
                emit(line=line.replace(str(work), ".").replace(str(scratch), "."))
        files, total = check_tree(
            work, max_bytes=limits["max_bytes"], max_files=limits["max_files"]
        )
        emit(line=f"Fetched {files} files ({total} bytes)")
        if dest.exists():
            raise WorkerError(f"the fetch destination {dest.name} appeared meanwhile")
        os.rename(work, dest)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        (Path(os.environ.get("HOME", "/nonexistent")) / TOKEN_FILE).unlink(missing_ok=True)


def main() -> int:
    # Events go to the real stdout; anything else that prints (a library, a child
    # process) goes to stderr, so stdout carries nothing but JSON lines.
    events = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def emit(**event: Any) -> None:
        events.write(json.dumps(event) + "\n")
        events.flush()

    try:
        job = json.loads(sys.stdin.readline())
        secret = json.loads(sys.stdin.readline() or "{}").get("token")
        run(job, secret if isinstance(secret, str) and secret else None, emit)
    except WorkerError as e:
        kind = {"kind": "credentials"} if isinstance(e, NeedsCredentials) else {}
        emit(error=clean_line(str(e)) or "the fetch failed", **kind)
        return 1
    except Exception as e:
        traceback.print_exc()  # to stderr: the service logs its tail
        emit(error=f"the fetch failed unexpectedly ({type(e).__name__})")
        return 1
    emit(done=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
