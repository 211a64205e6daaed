"""`Resolver`: a spec pinned to immutable content, through its provider, with a cache.

Every launch and every badge view resolves its link, and a popular link is opened by
many people at once, so resolution is cached and shared:

- **Cached with expiry.** A moving ref (a branch, a tag, a concept DOI) is kept for
  `cache_ttl`, so a push shows up within minutes; a ref that can never change (a full
  commit SHA, a record version) for `immutable_ttl`; a failure for `negative_ttl`, so a
  flood of bad links does not become a flood of remote calls. The cache holds at most
  `max_entries`, the oldest dropped first.
- **Single flight.** Concurrent resolutions of one spec make one remote call; it is
  shielded, so a caller that gives up (a closed browser tab) does not cancel it for the
  others, and every call is bounded by `timeout`.
- **Tokens.** A user's own token (for a private repository) is used only when
  `allow_user_tokens` is on. A resolution made with it is cached under a keyed hash of
  the token (never the token itself) and served to no one else; a public answer is
  served to everyone, token or not.

Providers (`ContentProvider`) are chosen by the spec's provider name and imported when
first needed: `providers.git.GitProvider` for ``gh``, ``gl`` and ``git``;
`providers.records.RecordProvider` for ``zenodo`` and ``doi``. Each is made with this
Resolver as its parent (so the site's config reaches it) and shares its HTTP client.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import importlib
import inspect
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Protocol

import httpx
from traitlets import Bool, Callable, Float, Integer, Unicode
from traitlets.config import LoggingConfigurable

from egi_hub import __version__

from .providers.base import Resolved, ResolveError
from .specs import RepoSpec

__all__ = ["PROVIDER_CLASSES", "ContentProvider", "Resolver"]

#: Which class resolves each provider name (``module:Class``, relative to this package).
PROVIDER_CLASSES = {
    "gh": ".providers.git:GitProvider",
    "gl": ".providers.git:GitProvider",
    "git": ".providers.git:GitProvider",
    "zenodo": ".providers.records:RecordProvider",
    "doi": ".providers.records:RecordProvider",
}


class ContentProvider(Protocol):
    """What the Resolver needs of a provider (a `LoggingConfigurable` made with
    ``parent=`` the Resolver, its ``http`` set to the Resolver's client)."""

    providers: tuple[str, ...]  # the spec.provider values it handles

    async def resolve(self, spec: RepoSpec, *, token: str | None = None) -> Resolved: ...

    def immutable(self, spec: RepoSpec) -> bool: ...  # True: never resolves differently


@dataclass(frozen=True)
class _Entry:
    expires: float
    resolved: Resolved | None = None
    reason: str = ""  # a failure: its reason and status
    status: int = 0

    def result(self) -> Resolved:
        if self.resolved is None:
            raise ResolveError(self.reason, self.status)
        return self.resolved


class Resolver(LoggingConfigurable):
    """Resolves `RepoSpec` to `Resolved`, cached, one remote call per spec at a time."""

    allow_user_tokens = Bool(
        False,
        help="Let users resolve (and launch) private repositories with their own GitHub or "
        "GitLab token. Default: off (public repositories only, with the site's token).",
    ).tag(config=True)
    user_token_hint = Unicode(
        "to launch a private repository, save an access token for its host on the Binder "
        "page (Private repository), then launch again",
        help="What a user is told to do when a repository may be private and "
        "`allow_user_tokens` is on. Default: a sentence saying to give a token.",
    ).tag(config=True)
    cache_ttl = Float(
        300, help="Seconds a branch, tag or concept DOI stays resolved. Default: 300."
    ).tag(config=True)
    immutable_ttl = Float(
        86400,
        help="Seconds an immutable ref (a full commit SHA, a record version) stays "
        "resolved. Default: 86400 (a day).",
    ).tag(config=True)
    negative_ttl = Float(
        30,
        help="Seconds a failed resolution is remembered, so many requests for a bad link "
        "make one remote call. Default: 30.",
    ).tag(config=True)
    timeout = Float(
        20, help="Seconds one resolution may take, all remote calls included. Default: 20."
    ).tag(config=True)
    max_entries = Integer(
        10000, help="Resolutions kept in the cache at most (the oldest go first). Default: 10000."
    ).tag(config=True)
    clock = Callable(time.monotonic, help="Seconds, for expiry (tests pass their own clock).")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cache: OrderedDict[tuple[str, ...], _Entry] = OrderedDict()
        self._inflight: dict[tuple[str, ...], asyncio.Task[Resolved]] = {}
        self._providers: dict[str, ContentProvider] = {}
        self._http: httpx.AsyncClient | None = None
        self._salt = secrets.token_bytes(32)  # token hashes mean nothing outside this process
        self._counts = {"hits": 0, "misses": 0, "shared": 0, "errors": 0}

    # --- providers ----------------------------------------------------------------------

    @property
    def http(self) -> httpx.AsyncClient:
        """The HTTP client providers share: TLS checked, no redirects followed (a token
        is never re-sent to where a redirect points)."""
        if self._http is None:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout),
                follow_redirects=False,
                headers={"User-Agent": f"egi-hub-binder/{__version__}"},
            )
        return self._http

    def use(self, provider: ContentProvider) -> None:
        """Resolve the names in ``provider.providers`` with ``provider`` (tests, or a
        site's own provider); it gets the shared HTTP client if it has none."""
        if getattr(provider, "http", None) is None:
            provider.http = self.http  # type: ignore[attr-defined]
        for name in provider.providers:
            self._providers[name] = provider

    def provider_for(self, name: str) -> ContentProvider:
        """The provider of ``name`` (made, with this Resolver as parent, on first use)."""
        if name not in self._providers:
            if name not in PROVIDER_CLASSES:
                raise ResolveError(f"no provider resolves {name[:40]!r} links", 400)
            module, _, cls = PROVIDER_CLASSES[name].partition(":")
            try:
                made = getattr(importlib.import_module(module, __package__), cls)(parent=self)
            except ImportError as e:
                self.log.error("Binder: the %s provider cannot be loaded: %s", name, e)
                raise ResolveError(f"{name} links cannot be resolved on this site", 501) from None
            self.use(made)
        return self._providers[name]

    # --- resolution ---------------------------------------------------------------------

    def _key(self, spec: RepoSpec, token: str | None) -> tuple[str, ...]:
        mark = hmac.new(self._salt, token.encode(), hashlib.sha256).hexdigest() if token else ""
        return (spec.provider, spec.repo, spec.ref, mark)

    def _fresh(self, key: tuple[str, ...]) -> _Entry | None:
        entry = self._cache.get(key)
        if entry is not None and self.clock() >= entry.expires:
            del self._cache[key]
            return None
        return entry

    async def resolve(self, spec: RepoSpec, *, token: str | None = None) -> Resolved:
        """``spec`` pinned to immutable content, or `ResolveError` with a one-line reason.
        ``token`` is the user's own (ignored unless `allow_user_tokens`)."""
        if token and not self.allow_user_tokens:
            token = None
        key = self._key(spec, token)
        entry = self._fresh(key)
        if token and entry is None:  # what anyone may see, anyone may be served
            public = self._fresh(self._key(spec, None))
            entry = public if public is not None and public.resolved else None
        if entry is not None:
            self._counts["hits"] += 1
            return entry.result()
        task = self._inflight.get(key)
        if task is None:
            self._counts["misses"] += 1
            task = asyncio.get_running_loop().create_task(self._remote(spec, token, key))
            self._inflight[key] = task
            task.add_done_callback(lambda t, k=key: self._settle(k, t))
        else:
            self._counts["shared"] += 1
        try:
            # Shielded: a caller that gives up does not cancel the call for the others.
            return await asyncio.shield(task)
        except ResolveError as e:  # a copy each: one exception object is not shared
            raise ResolveError(str(e), e.status) from None

    async def _remote(self, spec: RepoSpec, token: str | None, key: tuple[str, ...]) -> Resolved:
        started = self.clock()
        try:
            provider = self.provider_for(spec.provider)
            async with asyncio.timeout(self.timeout):
                resolved = await provider.resolve(spec, token=token)
            if not isinstance(resolved, Resolved) or not resolved.ref:
                raise ResolveError(f"the {spec.provider} provider resolved nothing", 502)
        except TimeoutError:
            error = ResolveError(f"resolving took longer than {self.timeout:g} s", 504)
            return self._failed(spec, key, error, token)
        except ResolveError as e:
            return self._failed(spec, key, e, token)
        except Exception:
            self.log.exception("Binder: resolving %s failed", spec.path)
            error = ResolveError("resolving failed on the service's side (logged)", 500)
            return self._failed(spec, key, error, token)
        ttl = self.immutable_ttl if provider.immutable(spec) else self.cache_ttl
        self._store(key, _Entry(self.clock() + ttl, resolved), ttl)
        took = (self.clock() - started) * 1000
        self.log.info("Binder: resolved %s to %s (%.0f ms)", spec.path, resolved.label, took)
        return resolved

    def _failed(
        self, spec: RepoSpec, key: tuple[str, ...], error: ResolveError, token: str | None
    ) -> Resolved:
        reason = str(error)
        if getattr(error, "maybe_private", False) and not token and self.allow_user_tokens:
            reason = f"{reason}; {self.user_token_hint}"
        self._counts["errors"] += 1
        self._store(key, _Entry(self.clock() + self.negative_ttl, None, reason, error.status),
                    self.negative_ttl)  # fmt: skip
        self.log.info("Binder: cannot resolve %s: %s", spec.path, reason)
        raise ResolveError(reason, error.status)

    def _store(self, key: tuple[str, ...], entry: _Entry, ttl: float) -> None:
        self._cache.pop(key, None)
        if ttl <= 0 or self.max_entries <= 0:
            return
        self._cache[key] = entry
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)

    def _settle(self, key: tuple[str, ...], task: asyncio.Task[Resolved]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved, so a task nobody awaited logs no warning

    @property
    def stats(self) -> dict[str, int]:
        """Counts since start: ``hits`` (answered from the cache), ``misses`` (remote
        calls), ``shared`` (callers that joined a call under way), ``errors`` (failed
        calls), and ``entries`` (cached now)."""
        return {**self._counts, "entries": len(self._cache)}

    def forget(self) -> None:
        """Drop every cached resolution (counts stay)."""
        self._cache.clear()

    async def close(self) -> None:
        """Cancel calls under way, close the providers and the HTTP client."""
        for task in list(self._inflight.values()):
            task.cancel()
        for provider in {id(p): p for p in self._providers.values()}.values():
            close = getattr(provider, "close", None)
            if close is not None:
                result = close()
                if inspect.isawaitable(result):
                    await result
        if self._http is not None:
            await self._http.aclose()
            self._http = None
