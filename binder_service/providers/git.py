"""`GitProvider`: a GitHub, GitLab or plain git link's branch, tag or commit pinned to
the full commit SHA it names now.

- ``gh``: GitHub's REST API, ``GET /repos/{owner}/{repo}/commits/{ref}`` with the
  ``application/vnd.github.sha`` media type (the answer is the bare SHA). GitHub answers
  404 both for a repository that does not exist and for a private one it will not show,
  so the reason says both.
- ``gl``: GitLab's ``GET /api/v4/projects/{url-encoded path}/repository/commits/{ref}``,
  whose JSON ``id`` is the SHA.
- ``git``: ``git ls-remote`` against any ``https``, ``http`` or ``git`` URL, as a child
  process in an environment of its own (no user or system config, no prompts, only
  those three transports, whatever the URL says). A full SHA is taken as it is (the
  fetch checks that it exists); an abbreviated one cannot be seen by ``ls-remote``.

Tokens: the site's own (`github_token`, `gitlab_token`) for every call, or a user's own
(for private repositories, when the Resolver lets it through), which wins. A token goes
in a header, never in a URL, a reason, a label or the log. The Binder service gives a
user's token for ``gh`` and ``gl`` links only when `github_api_url` or `gitlab_url` is
https (`BinderService.token_host_of`): the API host gets the token the user saved for the
web origin. For ``git ls-remote`` a user's token
reaches git as the worker's clone does (`fetch_worker`): a credential helper for that
URL's origin reads it from a 0600 file in a 0700 folder under `temp_dir` (the
service's ``<data_dir>/tmp``), removed right after, and only over https (never in
clear, not even to loopback).

`extra_ca_file`: certificate authorities git trusts besides the system's (a site whose
git server has a certificate of its own CA; the tests' HTTPS server). Empty by default:
the system's only.

Remote answers are hostile input: bodies and ``ls-remote`` output are read up to a few
hundred KiB, every SHA must be full-length hex, JSON must have the documented shape, and
anything else is a `ResolveError` (status 502) naming the host, never quoting the body.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import ssl
import tempfile
import time
import weakref
from shlex import quote as shlex_quote
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from traitlets import Bool, Float, Instance, Unicode, default
from traitlets.config import LoggingConfigurable

from egi_hub.traits import URL

from ..specs import RepoSpec
from .base import Resolved, ResolveError

__all__ = [
    "GitProvider",
    "MaybePrivate",
    "check_git_url",
    "is_public_address",
    "parse_ls_remote",
    "pick_ref",
]

FULL_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")  # SHA-1 and SHA-256 object names
_ABBREV = re.compile(r"[0-9a-fA-F]{4,39}")
_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_CONTROL = re.compile(r"[\x00-\x20\x7f-\x9f]")  # control characters and spaces
_BAD_REF = re.compile(r"\.\.|@\{|[\\~^:?*\[]|^[-/]|/$|//|\.lock$|^\.|/\.")
GIT_SCHEMES = ("https", "http", "git")
MAX_ANSWER = 256 * 1024  # an API answer (a commit's JSON is a few KiB)
MAX_REFS = 256 * 1024  # git ls-remote output (two patterns: a handful of lines)
MAX_REF = 255
MAX_REFNAME = 1024


class MaybePrivate(ResolveError):
    """Not found, or private and not shown without a token (the Resolver may add how a
    user gives one)."""

    maybe_private = True


def is_full_sha(ref: str) -> bool:
    return FULL_SHA.fullmatch(ref.lower()) is not None


def check_ref(ref: str) -> str:
    """``ref`` if it can name a branch, tag or commit; else a `ResolveError` (400)."""
    if not ref or len(ref) > MAX_REF or _CONTROL.search(ref) or _BAD_REF.search(ref):
        raise ResolveError("the ref is not a valid git branch, tag or commit name", 400)
    return ref


def _check_path(path: str, least: int, most: int, what: str) -> str:
    parts = path.split("/")
    if not least <= len(parts) <= most or any(
        not _NAME.fullmatch(p) or p in (".", "..") for p in parts
    ):
        raise ResolveError(f"{path[:100]!r} is not a {what}", 400)
    return path


def check_git_url(url: str) -> str:
    """``url`` if ``git`` may be pointed at it: ``https``, ``http`` or ``git``, a host, no
    credentials, no spaces or control characters (``file://``, ``ext::``, ``ssh`` and
    option-like URLs never reach git); else a `ResolveError` (400)."""
    refused = ResolveError("only https://, http:// and git:// repository URLs are allowed", 400)
    if not url or len(url) > 2048 or _CONTROL.search(url) or url.startswith("-"):
        raise refused
    try:
        parts = urlsplit(url)
        host = parts.hostname
        creds = parts.username or parts.password
    except ValueError:
        raise refused from None
    if parts.scheme not in GIT_SCHEMES or not host or creds or "::" in url:
        raise refused
    return url


def place_of(url: str) -> str:
    """A repository URL for people: host and path, without scheme and ``.git``."""
    parts = urlsplit(url)
    return (parts.netloc + parts.path).rstrip("/").removesuffix(".git")


def parse_ls_remote(data: bytes, where: str) -> dict[str, str]:
    """``git ls-remote`` output as {ref name: SHA}; `ResolveError` (502) for anything
    that is not ``<full hex SHA><TAB><ref name>`` lines."""
    bad = ResolveError(f"{where} answered something that is not a list of git refs", 502)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise bad from None
    refs: dict[str, str] = {}
    for line in text.split("\n"):
        if not line:
            continue
        sha, tab, name = line.partition("\t")
        if not tab or not FULL_SHA.fullmatch(sha) or not name or len(name) > MAX_REFNAME:
            raise bad
        if _CONTROL.search(name):
            raise bad
        refs.setdefault(name, sha)
    return refs


def pick_ref(refs: dict[str, str], ref: str) -> str | None:
    """The commit ``ref`` names in ``refs``, in ``git rev-parse``'s order: the exact name
    (``HEAD``, ``refs/...``), then ``refs/<ref>``, a tag (peeled: an annotated tag's
    commit, not the tag object), a branch."""
    for name in (ref, f"refs/{ref}", f"refs/tags/{ref}", f"refs/heads/{ref}"):
        sha = refs.get(f"{name}^{{}}") or refs.get(name)
        if sha:
            return sha
    return None


async def _read_capped(stream: asyncio.StreamReader, cap: int) -> tuple[bytes, bool]:
    """Up to ``cap`` bytes of ``stream``; True when there was more (reading stops)."""
    data = bytearray()
    while chunk := await stream.read(65536):
        data += chunk
        if len(data) > cap:
            return bytes(data[:cap]), True
    return bytes(data), False


async def _read_tail(stream: asyncio.StreamReader, keep: int) -> bytes:
    """The last ``keep`` bytes of ``stream``, read to its end (git never blocks on it)."""
    data = b""
    while chunk := await stream.read(65536):
        data = (data + chunk)[-keep:]
    return data


def _git_failure(stderr: str, where: str, with_token: bool = False) -> ResolveError:
    """The reason a failed ``git ls-remote`` gives a user (git's own words stay in the log:
    a server's ``remote error:`` text is the server's, not ours to show)."""
    text = stderr.lower()
    if "not allowed" in text and "transport" in text:
        return ResolveError("only https://, http:// and git:// repository URLs are allowed", 400)
    if any(s in text for s in ("could not resolve host", "name or service not known")):
        return ResolveError(f"cannot reach {where}: unknown host", 502)
    if any(s in text for s in ("unable to connect", "failed to connect", "connection refused")):
        return ResolveError(f"cannot reach {where}: the connection was refused or failed", 502)
    if any(s in text for s in ("could not read username", "authentication failed", " 401")):
        if with_token:
            return ResolveError(f"{where} refused your access token (expired or revoked?)", 403)
        return MaybePrivate(f"{where} asks for credentials (a private repository?)", 403)
    if any(s in text for s in ("not found", "no such repository", "not appear to be a git")):
        return MaybePrivate(f"{where} is not a git repository (or it is private)", 404)
    return ResolveError(f"git could not list the branches and tags of {where}", 502)


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """A global unicast address, also inside the IPv6 forms that carry an IPv4 one
    (mapped, 6to4, Teredo, NAT64), whose IPv4 address must be public too (the fetch
    worker checks submodules' hosts with it: `binder_service.fetch_submodules`)."""
    if not address.is_global or address.is_multicast:
        return False
    if isinstance(address, ipaddress.IPv6Address):
        inner = address.ipv4_mapped or address.sixtofour
        if address.teredo:
            inner = address.teredo[1]
        if address in _NAT64:
            inner = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if inner is not None:
            return is_public_address(inner)
    return True


async def check_public_host(url: str) -> None:
    """`ResolveError` (403) unless every address ``url``'s host resolves to is public."""
    host = urlsplit(url).hostname or ""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, None)
    except OSError:
        raise ResolveError(f"the host {host[:80]!r} does not resolve", 404) from None
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if not is_public_address(address):
            raise ResolveError(
                f"{host[:80]} is an internal address ({address}): this site launches "
                "repositories from public hosts only",
                403,
            )


class GitProvider(LoggingConfigurable):
    """Resolves ``gh``, ``gl`` and ``git`` specs to a full commit SHA."""

    providers: tuple[str, ...] = ("gh", "gl", "git")

    github_api_url = URL(
        "https://api.github.com",
        help="GitHub's REST API (GitHub Enterprise: https://<host>/api/v3). "
        "Default: https://api.github.com.",
    ).tag(config=True)
    github_url = URL(
        "https://github.com",
        help="Where GitHub repositories are cloned from. Default: https://github.com.",
    ).tag(config=True)
    gitlab_url = URL(
        "https://gitlab.com",
        help="The GitLab instance of ``gl`` links (API and clones). Default: https://gitlab.com.",
    ).tag(config=True)
    github_token = Unicode(
        help="A GitHub token the site sends with every API call (raises the rate limit "
        "from 60 to 5,000 calls an hour; needs no scopes). "
        "Default: $EGI_BINDER_GITHUB_TOKEN, else none.",
    ).tag(config=True)
    gitlab_token = Unicode(
        help="A GitLab token (``read_api``) the site sends with every API call. "
        "Default: $EGI_BINDER_GITLAB_TOKEN, else none.",
    ).tag(config=True)
    timeout = Float(
        15,
        help="Seconds one remote call (an API request or a git ls-remote) may take. Default: 15.",
    ).tag(config=True)
    allow_private_hosts = Bool(
        False,
        help="""
        Let ``git`` links, and submodules on a host other than their repository's,
        reach hosts whose addresses are private, loopback, link-local or otherwise not
        public (10.0.0.0/8, 127.0.0.1, 169.254.0.0/16, fc00::/7...). Off: a link or a
        repository's .gitmodules cannot make the service probe or clone from the site's
        internal network (the cluster's services, a cloud's metadata address). A site
        whose own git server is internal turns it on. Default: False.
        """,
    ).tag(config=True)
    extra_ca_file = Unicode(
        "",
        help="""
        A PEM file of certificate authorities that ``git`` (``ls-remote`` and the fetch
        worker's clones) trusts besides the system's, for a git server whose certificate
        comes from the site's own CA. It adds to the system's authorities, never replaces
        them. Default: empty (the system's only).
        """,
    ).tag(config=True)
    http = Instance(httpx.AsyncClient, allow_none=True, help="The HTTP client (the Resolver's).")
    temp_dir = Unicode(
        "",
        help="Where git's private folders (a token's file while ls-remote runs) are made: "
        "the Binder service sets its own <data_dir>/tmp. Empty: the system's temporary folder.",
    )

    @default("github_token")
    def _default_github_token(self) -> str:
        return os.environ.get("EGI_BINDER_GITHUB_TOKEN", "")

    @default("gitlab_token")
    def _default_gitlab_token(self) -> str:
        return os.environ.get("EGI_BINDER_GITLAB_TOKEN", "")

    def immutable(self, spec: RepoSpec) -> bool:
        """A full commit SHA names the same content for ever; a branch or tag may move."""
        return is_full_sha(spec.ref)

    async def resolve(self, spec: RepoSpec, *, token: str | None = None) -> Resolved:
        """``spec`` pinned to a full commit SHA; `ResolveError` with a one-line reason."""
        ref = check_ref(spec.ref)
        if spec.provider == "gh":
            repo = _check_path(spec.repo, 2, 2, "GitHub repository (owner/name)")
            sha = await self._github(repo, ref, token)
            return self._resolved(spec, f"{self.github_url.rstrip('/')}/{repo}", sha, repo)
        if spec.provider == "gl":
            project = _check_path(spec.repo, 2, 20, "GitLab project path (group/.../name)")
            sha = await self._gitlab(project, ref, token)
            source = f"{self.gitlab_url.rstrip('/')}/{project}.git"
            return self._resolved(spec, source, sha, project)
        if spec.provider == "git":
            url = check_git_url(spec.repo)
            if not self.allow_private_hosts:
                await check_public_host(url)
            sha = ref.lower() if is_full_sha(ref) else await self._ls_remote(url, ref, token)
            return self._resolved(spec, url, sha, place_of(url))
        raise ResolveError(f"the git provider cannot resolve {spec.provider!r} links", 400)

    @staticmethod
    def _resolved(spec: RepoSpec, source: str, sha: str, name: str) -> Resolved:
        fetch = {"provider": "git", "repo": source, "ref": sha}
        return Resolved(spec, "git", source, sha, f"{name}@{sha[:7]}", fetch)

    # --- GitHub and GitLab APIs ---------------------------------------------------------

    async def _get(self, url: str, headers: dict[str, str], where: str) -> tuple[int, Any, bytes]:
        """Status, headers and body (at most `MAX_ANSWER` bytes) of a GET."""
        if self.http is None:  # used alone, without a Resolver
            self.http = self._own_http = httpx.AsyncClient(follow_redirects=False)
        headers = {"Accept-Encoding": "identity", **headers}  # no decompression bombs
        try:
            async with asyncio.timeout(self.timeout):
                async with self.http.stream("GET", url, headers=headers) as response:
                    body = bytearray()
                    async for chunk in response.aiter_raw():
                        body += chunk
                        if len(body) > MAX_ANSWER:
                            raise ResolveError(f"{where} answered far more than expected", 502)
                    return response.status_code, response.headers, bytes(body)
        except TimeoutError:
            raise ResolveError(f"{where} did not answer within {self.timeout:g} s", 504) from None
        except httpx.HTTPError as e:
            raise ResolveError(f"cannot reach {where} ({type(e).__name__})", 502) from None

    async def _github(self, repo: str, ref: str, user_token: str | None) -> str:
        api = self.github_api_url.rstrip("/")
        where = f"GitHub ({urlsplit(api).netloc})"
        token = user_token or self.github_token
        headers = {"Accept": "application/vnd.github.sha", "X-GitHub-Api-Version": "2022-11-28"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        url = f"{api}/repos/{repo}/commits/{quote(ref, safe='/')}"
        status, answer, body = await self._get(url, headers, where)
        if status == 200:
            return _sha(body.decode("ascii", "replace").strip(), where)
        if status == 422:
            raise _no_ref(f"GitHub repository {repo}", ref)
        if status == 409:  # GitHub's answer for a repository without commits
            raise ResolveError(f"GitHub repository {repo} is empty", 404)
        if status == 404:
            raise _not_found(f"GitHub has no repository {repo} or no branch, tag or commit "
                             f"{ref!r}", user_token)  # fmt: skip
        raise _refused("GitHub", where, status, answer, repo, user_token, "github_token")

    async def _gitlab(self, project: str, ref: str, user_token: str | None) -> str:
        base = self.gitlab_url.rstrip("/")
        where = f"GitLab ({urlsplit(base).netloc})"
        token = user_token or self.gitlab_token
        headers = {"Accept": "application/json"}
        if token:
            headers["PRIVATE-TOKEN"] = token
        url = (f"{base}/api/v4/projects/{quote(project, safe='')}/repository/commits/"
               f"{quote(ref, safe='')}")  # fmt: skip
        status, answer, body = await self._get(url, headers, where)
        data = _json(body) if status in (200, 404) else None
        if status == 200:
            if not isinstance(data, dict) or not isinstance(data.get("id"), str):
                raise ResolveError(f"{where} answered something that is not a commit", 502)
            return _sha(data["id"], where)
        if status == 404:
            if isinstance(data, dict) and data.get("message") == "404 Commit Not Found":
                raise _no_ref(f"GitLab project {project}", ref)
            raise _not_found(f"GitLab has no project {project}", user_token)
        raise _refused("GitLab", where, status, answer, project, user_token, "gitlab_token")

    # --- git ls-remote ------------------------------------------------------------------

    async def _ls_remote(self, url: str, ref: str, token: str | None = None) -> str:
        where = place_of(url)
        patterns = ["HEAD"] if ref == "HEAD" else [ref, f"{ref}^{{}}"]
        sha = pick_ref(await self.ls_remote(url, patterns, token=token), ref)
        if sha:
            return sha
        if ref == "HEAD":
            raise ResolveError(f"{where} has no default branch; name a branch, tag or commit")
        if _ABBREV.fullmatch(ref):
            raise ResolveError(
                f"{where} has no branch or tag {ref!r}, and abbreviated commit ids cannot be "
                "resolved for git URLs: use the full 40-character commit id"
            )
        raise ResolveError(f"{where} has no branch or tag {ref!r}")

    async def ls_remote(
        self, url: str, patterns: list[str], *, token: str | None = None
    ) -> dict[str, str]:
        """``git ls-remote -- <url> <patterns>`` as {ref name: SHA}, with a user's
        ``token`` if given (see the module). The URL is checked by the caller; git
        itself is also limited to https, http and git (``GIT_ALLOW_PROTOCOL``)."""
        if not token:
            return await self._ls_remote_with(url, patterns, self._git_env(), False)
        parts = urlsplit(url)
        if parts.scheme != "https":  # a token never travels in clear, not even to loopback
            raise ResolveError("a token is only sent to a repository over https", 400)
        secret_dir = tempfile.mkdtemp(prefix="egi-binder-cred-", dir=self.temp_dir or None)
        try:
            secret = os.path.join(secret_dir, "token")
            fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(token)
            helper = (
                '!f() { test "$1" = get || exit 0; echo username=x-access-token; '
                f'printf "password="; cat {shlex_quote(secret)}; echo; }}; f'
            )
            env = self._git_env({f"credential.{parts.scheme}://{parts.netloc}.helper": helper})
            return await self._ls_remote_with(url, patterns, env, True)
        finally:
            shutil.rmtree(secret_dir, ignore_errors=True)

    async def _ls_remote_with(
        self, url: str, patterns: list[str], env: dict[str, str], with_token: bool
    ) -> dict[str, str]:
        where = place_of(url)
        proc = await asyncio.create_subprocess_exec(
            "git", "ls-remote", "--", url, *patterns,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=env, start_new_session=True,
        )  # fmt: skip
        readers = [
            asyncio.ensure_future(_read_capped(proc.stdout, MAX_REFS)),  # type: ignore[arg-type]
            asyncio.ensure_future(_read_tail(proc.stderr, 4096)),  # type: ignore[arg-type]
        ]
        try:
            async with asyncio.timeout(self.timeout):
                out, overflow = await readers[0]
                if overflow:
                    raise ResolveError(f"{where} answered far more refs than expected", 502)
                err = await readers[1]
                code = await proc.wait()
        except TimeoutError:
            raise ResolveError(f"{where} did not answer within {self.timeout:g} s", 504) from None
        finally:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                await proc.wait()
            for reader in readers:
                reader.cancel()
        if code != 0:
            stderr = err.decode("utf-8", "replace")
            last = _CONTROL.sub(" ", stderr.strip().splitlines()[-1] if stderr.strip() else "")
            self.log.info("git ls-remote %s failed (exit %s): %s", where, code, last[:300])
            raise _git_failure(stderr, where, with_token)
        return parse_ls_remote(out, where)

    def _git_env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """No user or system config, no prompt, no askpass, English messages, three
        transports; the proxy settings of the service pass through; ``extra`` config."""
        keep = ("PATH", "http_proxy", "https_proxy", "no_proxy", "all_proxy")
        env = {k: v for k, v in os.environ.items() if k in keep or k.lower() in keep[1:]}
        home = self._home()
        env.update(
            HOME=home, XDG_CONFIG_HOME=home, GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull,
            GIT_TERMINAL_PROMPT="0", GIT_ALLOW_PROTOCOL=":".join(GIT_SCHEMES), LC_ALL="C",
        )  # fmt: skip
        # a redirect never takes ls-remote to another (an internal) host
        config = {"http.followRedirects": "false", **(extra or {})}
        bundle = self.ca_bundle()
        if bundle:
            config["http.sslCAInfo"] = bundle
        env.update(git_config_env(config))
        return env

    def fetch_settings(self) -> dict[str, Any]:
        """What the fetch worker needs of this configuration for git jobs
        (`binder_service.fetch`): the CA bundle, and whether submodules may be fetched
        from private hosts (`allow_private_hosts`, see `binder_service.fetch_submodules`)."""
        settings: dict[str, Any] = {}
        bundle = self.ca_bundle()
        if bundle:
            settings["git_ca_file"] = bundle
        if self.allow_private_hosts:
            settings["git_private_hosts"] = True
        return settings

    def ca_bundle(self) -> str:
        """The CA file git uses: the system's authorities and `extra_ca_file`'s, in one
        file made once (in git's private HOME); "" without `extra_ca_file`."""
        if not self.extra_ca_file:
            return ""
        made = getattr(self, "_ca_bundle", None)
        if made and os.path.isfile(made):
            return made
        try:
            with open(self.extra_ca_file, encoding="ascii") as f:
                extra = f.read()
        except (OSError, UnicodeDecodeError):
            self.log.error("GitProvider.extra_ca_file %s cannot be read", self.extra_ca_file)
            raise ResolveError("the site's extra CA file cannot be read (logged)", 500) from None
        paths = ssl.get_default_verify_paths()
        system = ""
        for candidate in (paths.cafile, paths.openssl_cafile):
            if candidate and os.path.isfile(candidate):
                with open(candidate, encoding="ascii", errors="replace") as f:
                    system = f.read()
                break
        made = os.path.join(self._home(), "ca-bundle.pem")
        with open(made, "w", encoding="ascii") as f:
            f.write(system.rstrip("\n") + "\n" + extra)
        self._ca_bundle = made
        return made

    def _home(self) -> str:
        home = getattr(self, "_git_home", None)
        if home is None or not os.path.isdir(home):
            home = self._git_home = tempfile.mkdtemp(
                prefix="egi-binder-git-", dir=self.temp_dir or None
            )
            weakref.finalize(self, shutil.rmtree, home, True)
        return home

    async def close(self) -> None:
        """Remove the empty HOME git ran with; close the HTTP client if it is this one's."""
        home = getattr(self, "_git_home", None)
        if home:
            shutil.rmtree(home, ignore_errors=True)
        own = getattr(self, "_own_http", None)
        if own is not None:
            await own.aclose()


def git_config_env(config: dict[str, str]) -> dict[str, str]:
    """git config as ``GIT_CONFIG_COUNT``/``KEY_n``/``VALUE_n`` variables (values that are
    never secrets: a path, a helper that reads a file)."""
    env = {"GIT_CONFIG_COUNT": str(len(config))}
    for i, (key, value) in enumerate(config.items()):
        env[f"GIT_CONFIG_KEY_{i}"] = key
        env[f"GIT_CONFIG_VALUE_{i}"] = value
    return env


def _sha(value: str, where: str) -> str:
    if not FULL_SHA.fullmatch(value.lower()):
        raise ResolveError(f"{where} answered something that is not a commit id", 502)
    return value.lower()


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return None


def _no_ref(what: str, ref: str) -> ResolveError:
    return ResolveError(f"{what} has no branch, tag or commit {ref!r}", 404)


def _not_found(reason: str, user_token: str | None) -> ResolveError:
    if user_token:
        return ResolveError(f"{reason}, or the token given cannot read it", 404)
    return MaybePrivate(f"{reason} (or it is private)", 404)


def _refused(
    host: str, where: str, status: int, headers: Any, repo: str, user_token: str | None,
    site_trait: str,
) -> ResolveError:  # fmt: skip
    """The reason for a 401, 403, 429 or other answer of GitHub or GitLab."""
    whose = "your token" if user_token else "this site"
    limited = headers.get("x-ratelimit-remaining") == "0" or "retry-after" in headers
    if status == 429 or (status == 403 and limited):
        return ResolveError(
            f"{host}'s API rate limit for {whose} is used up{_when(headers)}",
            429 if user_token else 503,
        )
    if status == 401:
        if user_token:
            return ResolveError(f"{host} refused your access token (expired or revoked?)", 403)
        return ResolveError(f"{host} refused the site's token ({site_trait}); tell the admins", 502)
    if status == 403:
        return ResolveError(f"{host} refused access to {repo}", 403)
    return ResolveError(f"{where} answered status {status} for {repo}", 502)


def _when(headers: Any) -> str:
    """``; try again at 14:05 UTC (in 12 min)`` from ``retry-after`` or a reset time."""
    now = time.time()
    for name, relative in (("retry-after", True), ("x-ratelimit-reset", False),
                           ("ratelimit-reset", False)):  # fmt: skip
        value = headers.get(name, "")
        if value.isdigit() and len(value) <= 12:
            at = now + int(value) if relative else int(value)
            if now - 60 <= at <= now + 86400:
                clock = time.strftime("%H:%M UTC", time.gmtime(at))
                return f"; try again at {clock} (in {max(1, round((at - now) / 60))} min)"
    return "; try again later"
