"""The fetch worker: ``python -m egi_hub.binder_service.fetch_worker``, run by
`binder_service.fetch` (read it for the protocol: the job and token on stdin, JSON events
on stdout, the working directories, the environment).

It fetches with repo2docker's content providers, each named explicitly (never
repo2docker's provider list, whose Dataverse provider downloads the list of all
Dataverse installations at start-up):

- git: ``repo2docker.contentproviders.Git`` clones the repository and checks out the
  commit; then ``git rev-parse HEAD`` must be the resolved SHA. A token for a private
  repository is given to git by a credential helper for that repository's host only,
  reading it from a file in the worker's private home (never in a command line or an
  environment variable), and only over https (or to a loopback test server);
- Zenodo: `SafeZenodo`, a subclass of repo2docker's ``Zenodo`` whose sites come from the
  service's settings and whose ``fetch_file`` and requests are replaced.
  repo2docker's own ``fetch_file`` joins a record's file names into paths unchecked (a
  key ``../../x`` writes outside the content), streams without any size limit, never
  checks a checksum and extracts a single zip with ``ZipFile.extractall``, without
  limits; its requests follow redirects anywhere. Ours checks each name, streams
  within the byte limit, verifies each file's ``md5:`` checksum and its size against
  the list the service resolved, extracts a single zip through
  `binder_service.archives`, and reads only the record's own site.

Whatever the provider, the content is then checked as a whole (bytes and files within
the limits; no symbolic link pointing outside it) before it is renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
import stat
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests
from repo2docker.contentproviders import Git, Zenodo
from repo2docker.contentproviders.base import ContentProviderException
from repo2docker.utils import deep_get

from .archives import ArchiveError, check_member_name, extract_zip

__all__ = ["SafeZenodo", "WorkerError", "main", "zenodo_host"]

MAX_JSON = 8 << 20
MAX_LINE = 1000
CHUNK = 1 << 16
TIMEOUT = (15, 120)  # connect, read (seconds); the whole fetch has the service's deadline
DEFAULT_ZENODO = ["https://zenodo.org/", "https://sandbox.zenodo.org/"]
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_USERNAME = re.compile(r"[A-Za-z0-9._-]{1,100}")
LOOPBACK = ("127.0.0.1", "::1", "localhost")
TOKEN_FILE = ".egi-binder-git-token"


class WorkerError(Exception):
    """The fetch cannot be done; ``str()`` is the one-line reason the user sees."""


def clean_line(text: str) -> str:
    """A progress line fit for a build log: no control characters, not too long."""
    return _CONTROL.sub("", text.rstrip("\r\n"))[:MAX_LINE]


# -- git --------------------------------------------------------------------------------


def _git_token_config(repo: str, token: str, username: str) -> None:
    """Give git ``token`` for ``repo``'s host only, through a credential helper that reads
    it from a file in the private home (see the module)."""
    parts = urlsplit(repo)
    if parts.scheme != "https" and parts.hostname not in LOOPBACK:
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
    origin = f"{parts.scheme}://{parts.netloc}"
    os.environ.update(
        GIT_CONFIG_COUNT="2",
        GIT_CONFIG_KEY_0=f"credential.{origin}.helper",
        GIT_CONFIG_VALUE_0=helper,
        GIT_CONFIG_KEY_1="http.followRedirects",  # the token stays with that host
        GIT_CONFIG_VALUE_1="false",
    )


def fetch_git(job: dict[str, Any], work: Path, token: str | None) -> Iterator[str]:
    repo, sha = job.get("repo"), job.get("ref")
    if not isinstance(repo, str) or urlsplit(repo).scheme not in ("https", "http", "git"):
        raise WorkerError("the fetch job has no https, http or git repository URL")
    if not isinstance(sha, str) or not _SHA.fullmatch(sha):
        raise WorkerError("the fetch job has no full commit SHA")
    if token:
        _git_token_config(repo, token, job.get("username") or "x-access-token")
    provider = Git()
    last: list[str] = []
    try:
        for line in provider.fetch(provider.detect(repo, ref=sha), str(work), yield_output=True):
            line = clean_line(line)
            if line:
                last.append(line)
                del last[:-5]
                yield line
    except ContentProviderException:
        reason = next((x for x in reversed(last) if x.startswith(("fatal:", "remote:"))), "")
        raise WorkerError(f"could not clone {repo}" + (f" ({reason})" if reason else "")) from None
    except (ValueError, subprocess.CalledProcessError):
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


# -- Zenodo -----------------------------------------------------------------------------


def zenodo_host(site: str) -> dict[str, Any]:
    """repo2docker's description of an Invenio/Zenodo site (its ``Zenodo.hosts`` entry)."""
    site = site if site.endswith("/") else site + "/"
    return {
        "hostname": [site + "record/", site + "records/"],
        "api": site + "api/records/",
        "files": "links.files",
        "filepath": "entries",
        "filename": "key",
        "download": "links.content",
        "type": "metadata.upload_type",
    }


class _Response:
    """What repo2docker's providers use of a response (``json()``, ``status_code``)."""

    def __init__(self, status_code: int, body: bytes) -> None:
        self.status_code, self.body = status_code, body

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise WorkerError("the record's site answered something that is not JSON") from None


class SafeZenodo(Zenodo):
    """repo2docker's Zenodo provider with safe requests and a safe ``fetch_file`` (see
    the module for what repo2docker's own does not check)."""

    def __init__(
        self,
        sites: list[str],
        *,
        files: list[dict[str, Any]],
        scratch: Path,
        max_bytes: int,
        max_files: int,
    ) -> None:
        super().__init__()
        self.hosts = [zenodo_host(site) for site in sites]
        self.expected = {f["key"]: f for f in files}
        self.fetched: set[str] = set()
        self.scratch = scratch
        self.max_bytes, self.max_files = max_bytes, max_files
        self.used = 0  # bytes downloaded so far
        self.allowed = [host["api"] for host in self.hosts]

    def _check_url(self, url: Any) -> str:
        if (
            not isinstance(url, str)
            or not any(url.startswith(api) for api in self.allowed)
            or "/../" in url
            or _CONTROL.search(url)
        ):
            raise WorkerError("the record points to a URL outside its site (refused)")
        return url

    def _get(self, url: str, **kwargs: Any) -> requests.Response:
        """A GET on the record's site, following redirects only within it."""
        for _ in range(4):
            response = self.session.get(
                self._check_url(url), timeout=TIMEOUT, allow_redirects=False, **kwargs
            )
            if response.status_code not in (301, 302, 303, 307, 308):
                break
            url = urljoin(url, response.headers.get("Location", ""))
            response.close()
        else:
            raise WorkerError("the record's site redirected too many times")
        if response.status_code != 200:
            response.close()
            raise WorkerError(f"the record's site answered HTTP {response.status_code} for {url}")
        return response

    def _request(self, url: str, **kwargs: Any) -> _Response:
        """repo2docker's request: here only JSON from the record's site, capped."""
        with self._get(url, stream=True, headers=kwargs.get("headers")) as response:
            body = bytearray()
            for chunk in response.iter_content(CHUNK):
                body += chunk
                if len(body) > MAX_JSON:
                    raise WorkerError(f"the record's site answered more than {MAX_JSON} bytes")
        return _Response(200, bytes(body))

    urlopen = _request  # repo2docker's providers call either name

    def fetch_file(
        self, file_ref: dict[str, Any], host: dict[str, Any], output_dir: str, unzip: bool = False
    ) -> Iterator[str]:
        """Download one file of the record into ``output_dir`` (a single ``.zip``:
        extracted there), checked against the resolved list (see the module)."""
        try:
            key = deep_get(file_ref, host["filename"])
            url = deep_get(file_ref, host["download"])
        except (KeyError, IndexError, TypeError):
            raise WorkerError("the record lists a file without a name or link") from None
        if not isinstance(key, str):
            raise WorkerError("the record lists a file without a name")
        try:
            segments = check_member_name(key, "record file")
        except ArchiveError as e:
            raise WorkerError(f"refused: {e}") from None
        expected = self.expected.get(key)
        if expected is None or key in self.fetched:
            raise WorkerError(
                f"the record lists the file {key[:80]!r}, which it did not have when it was "
                "resolved: relaunch to resolve it again"
            )
        self.fetched.add(key)
        size = expected["size"]
        if self.used + size > self.max_bytes:
            raise WorkerError(f"the record holds more than the limit of {self.max_bytes} bytes")
        zipped = unzip and key.lower().endswith(".zip")
        if zipped:
            self.scratch.mkdir(mode=0o700, exist_ok=True)
            target = self.scratch / f"{secrets.token_hex(8)}.zip"
        else:
            target = Path(output_dir).joinpath(*segments)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise WorkerError(f"the record uses a file as a folder in {key[:80]!r}") from None
        yield f"Fetching {key} ({size} bytes)"
        self._download(self._check_url(url), target, key, expected)
        self.used += size
        if zipped:
            yield f"Extracting {key}"
            try:
                done = extract_zip(
                    target, output_dir, max_bytes=self.max_bytes, max_files=self.max_files
                )
            except ArchiveError as e:
                raise WorkerError(f"refused {key[:80]!r}: {e}") from None
            finally:
                target.unlink(missing_ok=True)
            yield f"Extracted {done.files} files ({done.bytes} bytes)" + (
                f" from the folder {done.unwrapped}" if done.unwrapped else ""
            )

    def _download(self, url: str, target: Path, key: str, expected: dict[str, Any]) -> None:
        size, checksum = expected["size"], expected["checksum"]
        digest = hashlib.md5(usedforsecurity=False)
        got = 0
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        try:
            fd = os.open(target, flags, 0o644)
        except FileExistsError:
            raise WorkerError(f"the record has the file {key[:80]!r} twice") from None
        with os.fdopen(fd, "wb") as out, self._get(url, stream=True) as response:
            for chunk in response.iter_content(CHUNK):
                got += len(chunk)
                if got > size:
                    raise WorkerError(f"the file {key[:80]!r} is larger than the record says")
                digest.update(chunk)
                out.write(chunk)
        if got != size:
            raise WorkerError(f"the file {key[:80]!r} is smaller than the record says")
        if f"md5:{digest.hexdigest()}" != checksum:
            raise WorkerError(
                f"the file {key[:80]!r} does not match its checksum: the download was "
                "corrupted or altered"
            )

    def check_complete(self) -> None:
        missing = sorted(set(self.expected) - self.fetched)
        if missing:
            raise WorkerError(
                f"the record no longer lists the file {missing[0][:80]!r} it had when it was "
                "resolved: relaunch to resolve it again"
            )


def fetch_zenodo(
    job: dict[str, Any], work: Path, scratch: Path, limits: dict[str, Any], settings: dict[str, Any]
) -> Iterator[str]:
    api, record, files = job.get("api"), job.get("record"), job.get("files")
    if not isinstance(api, str) or not isinstance(record, str) or not record.isdigit():
        raise WorkerError("the fetch job names no Zenodo record")
    if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
        raise WorkerError("the fetch job lists no files")
    sites = settings.get("zenodo_urls") or [api.removesuffix("api/records/")]
    provider = SafeZenodo(
        list(sites),
        files=files,
        scratch=scratch,
        max_bytes=limits["max_bytes"],
        max_files=limits["max_files"],
    )
    host = next((h for h in provider.hosts if h["api"] == api), None)
    if host is None:
        raise WorkerError("the record's site is not one this service launches records from")
    try:
        for line in provider.fetch({"record": record, "host": host}, str(work), yield_output=True):
            yield clean_line(line)
    except requests.RequestException as e:
        raise WorkerError(f"the record's site could not be reached ({type(e).__name__})") from None
    except (KeyError, IndexError, TypeError):
        raise WorkerError("the record's site answered a record without its file list") from None
    provider.check_complete()


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
                link = os.readlink(path)
                target = os.path.normpath(os.path.join(folder, link))
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
            lines = fetch_git(spec, work, token)
        elif provider == "zenodo":
            lines = fetch_zenodo(spec, work, scratch, limits, settings)
        else:
            raise WorkerError(f"fetching {str(provider)[:40]!r} content is not supported")
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
        emit(error=clean_line(str(e)) or "the fetch failed")
        return 1
    except Exception as e:
        traceback.print_exc()  # to stderr: the service logs its tail
        emit(error=f"the fetch failed unexpectedly ({type(e).__name__})")
        return 1
    emit(done=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
