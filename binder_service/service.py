"""`BinderService`: from a link to a running session, as a stream of progress events.

One launch (`BinderService.launch`) goes through the phases mybinder's clients know:

1. the link is parsed;
2. the spec is resolved to immutable content (`Resolver`: a commit, a record version),
   whose repository the site's allow and ban lists must admit;
3. the content is fetched once per content id (``fetching``; shared by every launch of
   it, kept under ``<data_dir>/content``);
4. its environment key is computed from the environment files only (`envkey`), and the
   environment built once per key (``waiting`` in the build queue with a position, then
   ``building`` with the log, then ``built``; a key built before is reused at once, so a
   commit that changes only notebooks starts without a build);
5. the session starts through the hub as the user (``launching``, then ``ready``).

Private repositories (when the site sets ``Resolver.allow_user_tokens``): a user keeps
their own token for a git server's https origin (``host[:port]``) in `user_tokens` (in
memory, see `user_tokens`). A launch of a ``gh``, ``gl`` or ``git`` link first resolves
and fetches as anyone would; only when the resolution fails as "not found, or private"
(401, 403, 404), or the fetch fails because the server asks for credentials (a full
commit SHA needs no remote call to resolve; the site's own token may see a repository
that git cannot clone without credentials), and the user has a token for the link's
origin, does it resolve, and then fetch, with that token. The token goes only to a clone
URL over https whose host and port are the token's origin, and to the site's GitHub or
GitLab API only when that API is https (`token_host_of`). What a token brought is that
user's alone as far as the service shows it (not against code running as the same OS
user: see below): its content folder and its build key carry a keyed hash of the user name
(`private_mark`), its build record is marked ``private`` with its ``owner`` (the API
shows it to no one else but admins), so another user's launch of the same link, even
right after, fails as it did before and finds nothing of it. A public repository stays
shared, whoever launches it and whatever tokens they keep. With the ``kubernetes``
builder the build pod clones with the token (`KubernetesBuilder`: a Secret of the pod's
own), and a private launch's key holds its commit, so its session starts from an image
holding that exact commit and never fetches content in its pod (which has no token):
one image per commit of a private repository.

Where private launches are refused (`private_refusal`, with the setting to change): the
``venv`` builder runs every build and session as this service's OS user, so another
user's build or notebook could read private content (and a token file during a clone):
private launches need `private_repos_on_shared_machine`. A builder that pushes images
(``kubernetes``; ``docker`` with ``push``) needs a ``private_image_prefix``, a
repository only the site can pull from, since anyone who can pull from the public
prefix would get the private repository inside its image.

Any failure ends the stream with ``failed`` and a one-line reason; nothing half-fetched or
half-built is kept, and the service goes on serving. Fetches and builds run as shared
`Jobs`: a browser that goes away does not stop them for the others.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import importlib
import json
import os
import re
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from traitlets import Bool, Enum, Float, Integer, Unicode, default
from traitlets.config import LoggingConfigurable

from egi_hub.traits import PatternList

from .builders.base import BuildFailed, BuildResult
from .envkey import EnvironmentRefused, environment_key
from .fetch import FetchNeedsCredentials, fetch
from .jobs import Job, Jobs
from .launcher import HubLauncher, LaunchFailed, repo_prefix, session_name
from .providers.base import FetchError, Resolved, ResolveError
from .specs import BadSpec, LaunchRequest, parse_launch
from .store import BuildStore
from .ticket import sign_ticket
from .user_tokens import UserTokens, origin_of_url, token_origin

__all__ = ["BUILDERS", "BinderConfigError", "BinderService", "LaunchUser", "canonical_source"]

BUILDERS = {
    "venv": "egi_hub.binder_service.builders.venv:VenvBuilder",
    "docker": "egi_hub.binder_service.builders.docker:DockerBuilder",
    "kubernetes": "egi_hub.binder_service.builders.kubernetes:KubernetesBuilder",
}


def canonical_source(source: str) -> str:
    """``host/path`` of a resolved source, one spelling per repository: host in lower
    case without a trailing dot or a default port, ``//`` collapsed, no trailing ``/``
    or ``.git`` (``https://GitHub.com.:443//org/repo.git/`` -> ``github.com/org/repo``)."""
    parts = urlsplit(source)
    host = (parts.hostname or "").rstrip(".")
    default = {"https": 443, "http": 80, "git": 9418}.get(parts.scheme)
    if parts.port and parts.port != default:
        host = f"{host}:{parts.port}"
    path = re.sub(r"/{2,}", "/", parts.path).strip("/").removesuffix(".git").rstrip("/")
    return f"{host}/{path}"


class BinderConfigError(Exception):
    """A setting the service cannot start with; ``str()`` names the key."""


class LaunchUser:
    """Who launches: the hub user's name and the OAuth token the service acts with."""

    def __init__(self, name: str, token: str) -> None:
        self.name = name
        self.token = token

    def __repr__(self) -> str:  # never the token
        return f"LaunchUser({self.name!r})"


def _failed(reason: str) -> dict[str, Any]:
    return {"phase": "failed", "message": reason.rstrip("\n")[:2000] + "\n"}


class BinderService(LoggingConfigurable):
    """The Binder service's settings and its launches (see the module docstring)."""

    data_dir = Unicode(
        help="""
        Where the service keeps fetched content (``content/``), build records and logs
        (``builds/``) and the venv builder's environments (``envs/``). The local stack
        sets ``<data dir>/binder``. Default: ``~/.local/share/egi-hub/binder``.
        """,
    ).tag(config=True)

    site_name = Unicode(
        "EGI",
        help="Who runs this Binder: its pages say ``<site_name> Binder``. Default: EGI.",
    ).tag(config=True)

    builder = Enum(
        list(BUILDERS),
        "venv",
        help="""
        The build backend: ``venv`` (a virtualenv per environment, on this machine; the
        default), ``docker`` (repo2docker with a local Docker engine) or ``kubernetes``
        (a repo2docker build pod per environment).
        """,
    ).tag(config=True)

    build_concurrency = Integer(
        2, min=1, help="How many builds run at once; the others wait in a fair queue."
    ).tag(config=True)

    max_queued_per_user = Integer(
        3,
        min=1,
        help="""
        How many builds one user may have waiting or running at once; a launch beyond
        that fails with the reason (the queue stays fair for everyone else).
        """,
    ).tag(config=True)

    max_launches_per_user = Integer(
        3,
        min=1,
        help="""
        How many launches (resolving, fetching, building or starting) one user may have
        under way at once; a launch beyond that fails with the reason.
        """,
    ).tag(config=True)

    fetch_concurrency = Integer(
        4, min=1, help="How many fetches run at once (the others wait for a slot)."
    ).tag(config=True)

    max_log_bytes = Integer(
        10 * 1024 * 1024,
        min=1024,
        help="A build's log is kept up to this many bytes (the rest is left out, said so).",
    ).tag(config=True)

    repo_quota = Integer(
        0,
        min=0,
        help="""
        How many Binder sessions of one repository (or record) may run at once,
        across all users; 0: no limit. A launch beyond it fails with the reason.
        """,
    ).tag(config=True)

    allowed_specs = PatternList(
        help="""
        Regular expressions; when given, only repositories that match one of them
        launch. Each must match the start of the canonical ``host/path`` the link
        resolves to, ignoring case: ``github\\.com/my-org/`` (a GitHub organisation,
        however a link spells it), ``gitlab\\.example\\.org/``, ``zenodo\\.org/``
        (records: their API URL's host and path). Default: every repository.
        """,
    ).tag(config=True)

    banned_specs = PatternList(
        help="""
        Regular expressions of repositories that never launch, matched as
        ``allowed_specs`` (the start of the canonical ``host/path``, ignoring case).
        """,
    ).tag(config=True)

    ticket_secret = Unicode(
        help="""
        The secret launch tickets are signed with (the same value as the spawner's
        ``binder_ticket_secret``, at least 32 characters). Default:
        ``$EGI_BINDER_TICKET_SECRET``.
        """,
    ).tag(config=True)

    ticket_ttl = Integer(
        600, min=10, help="Seconds a launch ticket stays valid (the hub starts it at once)."
    ).tag(config=True)

    launch_timeout = Integer(
        600, min=10, help="Seconds a session may take to start before its launch fails."
    ).tag(config=True)

    user_token_ttl = Float(
        8 * 3600,
        min=60,
        help="""
        Seconds the service keeps an access token a user gives for a private repository's
        host (when ``Resolver.allow_user_tokens`` is on), counted from when it was given.
        Tokens are kept in the service's memory (git reads one from a 0600 file only while
        it clones): a restart of the service forgets them all, and users give them again.
        Default: 28800 (8 hours).
        """,
    ).tag(config=True)

    private_repos_on_shared_machine = Bool(
        False,
        help="""
        Let users launch private repositories with their own tokens
        (``Resolver.allow_user_tokens``) on the ``venv`` builder. That builder runs every
        build (a repository's ``setup.py``) and every session as this service's one OS
        user, so another user's build or notebook can read a private repository's fetched
        content, and a token's file while git clones with it. Turn it on only where all
        users trust each other. Off: private launches on the venv builder are refused,
        saying so. Default: False.
        """,
    ).tag(config=True)

    @default("data_dir")
    def _default_data_dir(self) -> str:
        base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
        return os.path.join(base, "egi-hub", "binder")

    @default("ticket_secret")
    def _default_ticket_secret(self) -> str:
        return os.environ.get("EGI_BINDER_TICKET_SECRET", "")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if len(self.ticket_secret) < 32:  # the hub would refuse every launch
            raise BinderConfigError(
                "BinderService.ticket_secret: needs the spawner's binder_ticket_secret "
                "(at least 32 characters; egi-hub up makes one)"
            )
        from .resolver import Resolver

        root = Path(self.data_dir)
        self.content_dir = root / "content"
        self.content_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.tmp_dir = self._clean_tmp(root / "tmp")
        self.store = BuildStore(root / "builds")
        self.resolver = Resolver(parent=self)
        git = self.resolver.provider_for("git")
        if hasattr(git, "temp_dir"):  # its token files go under tmp_dir, not the shared /tmp
            git.temp_dir = str(self.tmp_dir)
        module, _, name = BUILDERS[self.builder].partition(":")
        builder_class = getattr(importlib.import_module(module), name)
        extra = {"envs_dir": str(root / "envs")} if self.builder == "venv" else {}
        self.build_backend = builder_class(parent=self, **extra)
        if hasattr(self.build_backend, "clean"):  # half-built environments of a past run
            self.build_backend.clean()
        self.jobs = Jobs()
        self.queue: list[str] = []  # build keys waiting for a slot, oldest first
        self.queued_by: dict[str, set[str]] = {}  # user -> keys waiting or building
        self._free_slots = self.build_concurrency
        self._fetch_slots = asyncio.Semaphore(self.fetch_concurrency)
        self.launcher = HubLauncher(
            os.environ.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api"),
            timeout=self.launch_timeout,
            service_token=os.environ.get("JUPYTERHUB_API_TOKEN", ""),
        )
        self.builds_started = 0
        self.user_tokens = UserTokens(ttl=self.user_token_ttl)

    @staticmethod
    def _clean_tmp(tmp: Path) -> Path:
        """The service's own temporary folder (0700): where git's token files live while
        a clone runs. What a crash left there (a token file too) is removed now: the
        folder is this service's alone, unlike the machine's /tmp, which is never swept."""
        tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(tmp, 0o700)
        for left in tmp.iterdir():
            if left.is_dir() and not left.is_symlink():
                shutil.rmtree(left, ignore_errors=True)
            else:
                left.unlink(missing_ok=True)
        return tmp

    # -- checks -----------------------------------------------------------------------

    def list_refusal(self, source: str) -> str | None:
        """Why the site's allow and ban lists refuse the repository a launch resolved to,
        or None. Each pattern must match the start of its canonical ``host/path``
        (`canonical_source`: ``github.com/org/repo``), ignoring case: however a link
        spells a repository (provider prefix, port, capitals, ``.git``, a ref that
        looks like a path), it meets the same rules."""
        where = canonical_source(source)
        if self.allowed_specs and not any(
            re.match(p, where, re.IGNORECASE) for p in self.allowed_specs
        ):
            return "this site does not launch this repository (it is not on its allowed list)"
        if any(re.match(p, where, re.IGNORECASE) for p in self.banned_specs):
            return "this site does not launch this repository (it is on its ban list)"
        return None

    # -- private repositories ---------------------------------------------------------

    def private_refusal(self) -> str | None:
        """Why this site's builder settings refuse private launches (the setting to
        change named), or None (see the module)."""
        if self.builder == "venv" and not self.private_repos_on_shared_machine:
            return (
                "this site does not launch private repositories: its venv builder runs "
                "every user's builds and sessions as one user of one machine "
                "(BinderService.private_repos_on_shared_machine is off)"
            )
        refusal = getattr(self.build_backend, "private_refusal", None)
        return refusal() if refusal is not None else None

    def token_host_of(self, spec: Any) -> str | None:
        """The https origin (``host[:port]``) whose token a launch of ``spec`` may use
        (`token_origin`), or None: not a git link, or a ``gh``/``gl`` link whose site API
        is not https (the API gets the token saved for the web origin)."""
        if spec.provider not in ("gh", "gl", "git"):
            return None
        git = self.resolver.provider_for(spec.provider)
        api = {"gh": getattr(git, "github_api_url", ""), "gl": git.gitlab_url}.get(spec.provider)
        if api is not None and urlsplit(api).scheme.lower() != "https":
            return None  # never a token over http
        return token_origin(spec, github_url=git.github_url, gitlab_url=git.gitlab_url)

    def _user_token(self, spec: Any, user: LaunchUser) -> tuple[str, str]:
        """(origin, the user's token for it), or ("", "") where none may be used."""
        if not self.resolver.allow_user_tokens:
            return "", ""
        origin = self.token_host_of(spec)
        token = self.user_tokens.get(user.name, origin) if origin else None
        return (origin, token) if origin and token else ("", "")

    def private_mark(self, user: str) -> str:
        """A keyed hash of ``user``: what makes a private launch's content folder and
        build key that user's own (stable across restarts, meaningless elsewhere)."""
        key = self.ticket_secret.encode()
        return hmac.new(key, b"binder-private\0" + user.encode(), hashlib.sha256).hexdigest()[:24]

    async def _resolve(self, request: LaunchRequest, user: LaunchUser) -> tuple[Resolved, str]:
        """The launch's resolution, and the user's token if it took one ("" if not)."""
        origin, token = self._user_token(request.spec, user)
        try:
            return await self.resolver.resolve(request.spec), ""
        except ResolveError as e:
            if not token or e.status not in (401, 403, 404):
                raise
        return await self._resolve_private(request, origin, token), token

    async def _resolve_private(self, request: LaunchRequest, origin: str, token: str) -> Resolved:
        """The resolution with the user's ``token`` for ``origin``, checked: the site
        launches private repositories, and the content's clone URL is over https at
        that very origin (host and port)."""
        refusal = self.private_refusal()
        if refusal:
            raise ResolveError(refusal, 403)
        resolved = await self.resolver.resolve(request.spec, token=token)
        clone = str(resolved.fetch.get("repo", ""))
        if resolved.provider != "git" or origin_of_url(clone) != origin:
            # never: a token goes to the origin it was given for, over https, and nowhere else
            raise ResolveError("this repository's content is not at the token's https origin", 400)
        return resolved

    # -- the launch -------------------------------------------------------------------

    def launch_job(self, path: str, query: dict[str, str], user: LaunchUser) -> Job:
        """The launch of ``path`` for ``user`` as a shared job: a browser that reconnects
        (or a second tab) follows the launch already under way, from its first event,
        and one that goes away does not stop it."""
        digest = hashlib.sha256(json.dumps([path, sorted(query.items())]).encode()).hexdigest()
        mine = f"launch-{user.name}"
        key = f"{mine}-{digest[:24]}"  # (the digest is hex: no "-" in it)
        running = sum(1 for k in self.jobs.running if k.rsplit("-", 1)[0] == mine)
        if key not in self.jobs.running and running >= self.max_launches_per_user:

            async def refuse(job: Job) -> None:
                job.emit(_failed(
                    f"you already have {running} launches under way; wait until one is "
                    "ready or has failed"
                ))  # fmt: skip

            return self.jobs.run(key, "launch", refuse)

        async def work(job: Job) -> None:
            async for event in self.launch(path, query, user):
                job.emit(event)

        return self.jobs.run(key, "launch", work)

    async def launch(
        self, path: str, query: dict[str, str], user: LaunchUser
    ) -> AsyncIterator[dict[str, Any]]:
        """The events of one launch, ending with ``ready`` or ``failed``."""
        try:
            request = parse_launch(path, query)
        except BadSpec as e:
            yield _failed(f"bad link: {e}")
            return
        unavailable = await asyncio.to_thread(self.build_backend.unavailable)
        if unavailable:
            yield _failed(f"the {self.builder} builder cannot run: {unavailable}")
            return
        try:
            async for event in self._launch(request, user):
                yield event
        except (ResolveError, FetchError, BuildFailed, LaunchFailed) as e:
            yield _failed(str(e))
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug: keep serving, say so in one line
            self.log.exception("Binder launch of %s failed", request.spec.path)
            yield _failed(f"internal error of the Binder service ({type(e).__name__})")

    async def _launch(
        self, request: LaunchRequest, user: LaunchUser
    ) -> AsyncIterator[dict[str, Any]]:
        yield {"phase": "fetching", "message": f"Resolving {request.spec.label}\n"}
        resolved, token = await self._resolve(request, user)
        why = self.list_refusal(resolved.source)
        if why:
            yield _failed(why)
            return
        where = "private: with your token" if token else ""
        yield {"phase": "fetching", "message": f"Resolved to {resolved.label}"
               f"{f' ({where})' if where else ''}\n"}  # fmt: skip
        try:
            async for event in self._content(resolved, user, token):
                yield event
        except FetchNeedsCredentials as e:
            origin, mine = ("", "") if token else self._user_token(request.spec, user)
            if not mine:  # already with a token, or none to try
                hint = self.resolver.user_token_hint
                if token or not self.resolver.allow_user_tokens or self.private_refusal():
                    raise
                raise FetchError(f"{e}; {hint}") from None
            # Public resolution, private content (a full SHA; what the site's own token
            # sees): resolve again with the user's token, and fetch it as theirs.
            resolved, token = await self._resolve_private(request, origin, mine), mine
            why = self.list_refusal(resolved.source)
            if why:
                yield _failed(why)
                return
            yield {"phase": "fetching", "message": "The repository asks for credentials: "
                   "fetching it with your token (private)\n"}  # fmt: skip
            async for event in self._content(resolved, user, token):
                yield event
        # What a token brought is its user's only (see the module).
        private = self.private_mark(user.name) if token else ""
        content = self._content_dir(resolved, private)
        key, reason = await asyncio.to_thread(self._key_and_check, content, resolved, private)
        if reason:
            yield _failed(reason)
            return
        record = await asyncio.to_thread(self.store.get, key)
        if not (record and record.get("state") == "built" and await self._present(record)):
            if key not in self.jobs.running:
                mine = self.queued_by.setdefault(user.name, set())
                if len(mine) >= self.max_queued_per_user:
                    yield _failed(
                        f"you already have {len(mine)} builds waiting or running; "
                        "launch again when one has finished"
                    )
                    return
                mine.add(key)  # reserved now: a burst of launches cannot pass the limit
            name = user.name
            owner = name if private else None
            job = self.jobs.run(
                key, "building",
                lambda job: self._build(job, key, resolved, content, name, owner, token or None),
            )  # fmt: skip
            async for event in job.follow():
                yield event
            record = await job.result()
        else:
            yield {
                "phase": "built",
                "message": f"Reusing environment {key[:12]} (built for {record.get('label')})\n",
            }
        async for event in self._start_session(
            request, resolved, record, content, user, private=bool(private)
        ):
            yield event

    def _content_dir(self, resolved: Resolved, private: str) -> Path:
        """Where ``resolved``'s content is fetched to: its content id, plus the user's
        mark for a ``private`` launch."""
        return self.content_dir / (f"{resolved.content_id}-{private}" if private else
                                   resolved.content_id)  # fmt: skip

    async def _content(
        self, resolved: Resolved, user: LaunchUser, token: str
    ) -> AsyncIterator[dict[str, Any]]:
        """Fetch ``resolved`` (once per folder, shared) unless it is there: with ``token``
        into the user's own folder. `FetchNeedsCredentials` when the server asked for
        credentials."""
        private = self.private_mark(user.name) if token else ""
        content = self._content_dir(resolved, private)
        if await asyncio.to_thread(content.is_dir):
            return
        job = self.jobs.run(
            f"fetch-{content.name}", "fetching",
            lambda job: self._fetch(job, resolved, content, token or None),
        )  # fmt: skip
        async for event in job.follow():
            yield event
        await job.result()

    def _key_and_check(
        self, content: Path, resolved: Resolved, private: str = ""
    ) -> tuple[str, str | None]:
        """(environment key, None), or ("", why this content cannot be built here).

        An image (docker, kubernetes) holds the whole repository it was built from, its
        dotfiles too (``.ipython`` start-up scripts run in every session of the image):
        its key includes the source, so two repositories never share an image. A venv
        holds the environment only (the content is copied beside it per session), so
        repositories with the same environment files share it. A ``private`` launch's key
        holds its user's mark: its environment (built from that user's private files) is
        theirs alone; with an image builder, it holds the content id (the commit) too, so
        the image holds that exact commit and its session never fetches content (a
        session's pod has no token: on Kubernetes, newer content is fetched by the pod's
        init container, without one). The cost: one image per commit of a private
        repository, where a public one's commits share an image while the environment
        files stay the same."""
        try:
            self.build_backend.check(content)
            extra = f"{self.builder}\0{self.build_backend.key_extra()}"
            if self.builder != "venv":
                extra += f"\0{resolved.source}"
            if private:
                extra += f"\0private\0{private}"
                if self.builder != "venv":
                    prefix = getattr(self.build_backend, "private_image_prefix", "")
                    extra += f"\0content\0{resolved.content_id}\0{prefix}"
            return environment_key(content, extra=extra), None
        except (BuildFailed, EnvironmentRefused) as e:
            return "", str(e)

    async def _present(self, record: dict[str, Any]) -> bool:
        """Whether a stored build's environment is still there (the builder knows how:
        a venv's marker, an image in the engine)."""
        result = BuildResult(
            record["key"], record.get("backend", self.builder), record.get("environment") or {}
        )
        return await self.build_backend.present(result)

    async def _fetch(
        self, job: Job, resolved: Resolved, content: Path, token: str | None = None
    ) -> None:
        job.emit({"phase": "fetching", "message": f"Fetching {resolved.label}\n"})
        if self._fetch_slots.locked():
            job.emit({"phase": "fetching", "message": "Waiting for a free fetch slot\n"})
        async with self._fetch_slots:
            await self._fetch_now(job, resolved, content, token)

    async def _fetch_now(
        self, job: Job, resolved: Resolved, content: Path, token: str | None = None
    ) -> None:
        if resolved.provider != "git":  # the record sites this site allows, and no others
            settings = self.resolver.provider_for("doi").fetch_settings()
        else:
            git = self.resolver.provider_for("git")  # its CA bundle, private hosts allowed
            settings = await asyncio.to_thread(git.fetch_settings) or None
        await fetch(
            resolved,
            content,
            on_line=lambda line: job.emit({"phase": "fetching", "message": line.rstrip() + "\n"}),
            token=token,
            settings=settings,
            temp_dir=self.tmp_dir,
        )

    async def _build(
        self, job: Job, key: str, resolved: Resolved, content: Path, user: str,
        owner: str | None = None, token: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Wait in the queue (first come, first served; followers see their place), then
        build in a free slot (with ``owner``'s ``token`` for a private launch)."""
        mine = self.queued_by.setdefault(user, set())
        mine.add(key)  # (reserved already by the launch that started this build)
        self.queue.append(key)
        told = -1
        try:
            while True:
                position = self.queue.index(key)
                if position != told:
                    told = position
                    ahead = f"{position} ahead" if position else "next"
                    job.emit({"phase": "waiting", "position": position,
                              "message": f"Waiting for a build slot ({ahead})\n"})  # fmt: skip
                if position == 0 and self._free_slots > 0:
                    break
                await self._queue_moved()
            self._free_slots -= 1
            self.queue.remove(key)
            self._notify_queue()
            try:
                return await self._run_build(job, key, resolved, content, owner, token)
            finally:
                self._free_slots += 1
                self._notify_queue()
        finally:
            if key in self.queue:
                self.queue.remove(key)
                self._notify_queue()
            mine.discard(key)
            if not mine:
                self.queued_by.pop(user, None)

    _queue_event: asyncio.Event | None = None

    async def _queue_moved(self) -> None:
        if self._queue_event is None:
            self._queue_event = asyncio.Event()
        await self._queue_event.wait()

    def _notify_queue(self) -> None:
        if self._queue_event is not None:
            self._queue_event.set()
            self._queue_event = None

    async def _run_build(
        self, job: Job, key: str, resolved: Resolved, content: Path, owner: str | None = None,
        token: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        """Build ``key``; its record is ``private`` to ``owner`` when one is given (a
        launch with a user's token, which the builder gets: the kubernetes builder's pod
        clones with it; the others build the content fetched with it already)."""
        record: dict[str, Any] = {
            "key": key,
            "backend": self.builder,
            "state": "building",
            "spec": resolved.spec.path,
            "label": resolved.label,
            "source": resolved.source,
            "ref": resolved.ref,
            "started": self.store.now(),
        }
        if owner:
            record.update(private=True, owner=owner)
        await asyncio.to_thread(self.store.save, record)
        log = await asyncio.to_thread(self.store.start_log, key)

        written = 0

        def line(text: str) -> None:
            nonlocal written
            text = self._public_line(text)
            if written > self.max_log_bytes:
                return
            written += len(text)
            if written > self.max_log_bytes:
                text = f"[the log passed {self.max_log_bytes} bytes: the rest is left out]\n"
            log.write(text)
            job.emit({"phase": "building", "message": text})

        self.builds_started += 1
        job.emit({"phase": "building", "message": f"Building environment {key[:12]}\n"})
        try:
            result = await self.build_backend.build(key, content, resolved, line, token=token)
        except BuildFailed as e:
            record.update(state="failed", reason=str(e), finished=self.store.now())
            raise
        except asyncio.CancelledError:
            record.update(state="cancelled", reason="cancelled", finished=self.store.now())
            raise
        finally:
            log.close()
            if record["state"] != "building":
                await asyncio.to_thread(self.store.save, record)
        record.update(
            state="built",
            finished=self.store.now(),
            environment=result.environment,
            resolved=result.resolved,
        )
        await asyncio.to_thread(self.store.save, record)
        job.emit({"phase": "built", "message": f"Built environment {key[:12]}\n"})
        return record

    async def _start_session(
        self, request: LaunchRequest, resolved: Resolved, record: dict[str, Any],
        content: Path, user: LaunchUser, *, private: bool = False,
    ) -> AsyncIterator[dict[str, Any]]:  # fmt: skip
        """Start the session through the hub with a signed ticket. A ``private`` launch's
        ticket says so and carries no fetch job: its image (or the service's folder)
        holds the exact content, and nothing fetches it again without the token."""
        if private and self.builder != "venv" and record.get("ref") != resolved.ref:
            # never: the key of a private launch holds its commit (`_key_and_check`)
            raise LaunchFailed(
                "this private environment was not built from the launched commit, and its "
                "session cannot fetch it without your token"
            )
        repository = canonical_source(resolved.source)
        server = session_name(repository, resolved.content_id)
        if self.repo_quota:
            running = await self.launcher.count_sessions(repo_prefix(repository), besides=server)
            if running >= self.repo_quota:
                raise LaunchFailed(
                    f"this repository already has {running} sessions running, the most this "
                    "site allows at once: try again later"
                )
        # On one machine the fetched folder; in Kubernetes the content is fetched again in
        # the pod when its image was built from another ref (never for a private launch).
        where: dict[str, Any] = {"path": str(content), "ref": resolved.ref}
        if not private:
            where["fetch"] = resolved.fetch
        launch: dict[str, Any] = {
            "key": record["key"],
            "spec": request.spec.path,
            "label": resolved.label,
            "environment": record.get("environment") or {},
            "content": where,
            "built_from": record.get("ref"),
        }
        if private:
            launch["private"] = True
        ticket = sign_ticket(
            self.ticket_secret, user=user.name, server=server, launch=launch, ttl=self.ticket_ttl
        )
        yield {"phase": "launching", "message": f"Starting your session {server}\n"}
        async with asyncio.timeout(self.launch_timeout):
            async for event in self.launcher.launch(
                user=user.name, token=user.token, server=server, ticket=ticket
            ):
                if event["phase"] == "ready":
                    event["url"] = event["url"].rstrip("/") + "/" + request.urlpath
                yield event

    def _public_line(self, text: str) -> str:
        """A build log line as users see it: the service's own folders named, not
        spelled out (the log is shown to every user)."""
        text = text.rstrip("\n").replace(self.data_dir, "$BINDER_DATA")
        return text.replace(sys.base_prefix, "$PYTHON") + "\n"

    def capacity(self) -> dict[str, Any]:
        return {
            "builder": self.builder,
            "build_concurrency": self.build_concurrency,
            "builds_running": self.build_concurrency - self._free_slots,
            "builds_started": self.builds_started,
            "builds_waiting": len(self.queue),
            "fetches_running": sum(1 for j in self.jobs.running.values() if j.kind == "fetching"),
        }
