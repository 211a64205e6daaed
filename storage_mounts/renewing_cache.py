"""`RenewingCache`: per-user credentials that expire, made once and renewed before expiry.

DataHub tokens (`datahub_tokens.DatahubTokens`) and STS credentials
(`sts.StsCredentialCache`) follow one set of rules, kept here so they cannot drift:

- **Keyed by user first.** A key is a tuple whose first item is the user's cache key
  (hub name and database id), so `forget` finds everything of one user.
- **Single flight.** Concurrent requests for one key share one exchange; the exchange is
  shielded, so one caller giving up does not cancel it for the others.
- **Renewed early.** A cached value is replaced once ``margin`` seconds are left before
  it expires; a renewal that fails while the old value is still valid serves the old
  value (the failure goes to the log, not to the user).
- **Forget wins.** `forget` (logout, user deleted) drops the user's values, and an
  exchange already under way for that user does not put its result back.
- **Expired values are pruned** whenever a new one is stored, so the cache stays bounded
  by the users with live credentials.

The HTTP client is made here too (TLS always checked, a site's CA file, no redirects
followed: a credential is never re-sent to where a redirect points), with ``deadline``,
the bound subclasses put on each whole call (``asyncio.timeout``).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

import httpx

__all__ = ["RenewingCache", "make_http_client"]

V = TypeVar("V")


def make_http_client(
    *, timeout: float, verify: bool = True, ca_file: str | None = None
) -> httpx.AsyncClient:
    """An async client that checks TLS (``ca_file``: a private CA) and follows no redirect."""
    tls: bool | ssl.SSLContext = verify
    if ca_file:
        tls = ssl.create_default_context(cafile=ca_file)
    return httpx.AsyncClient(verify=tls, timeout=httpx.Timeout(timeout), follow_redirects=False)


class RenewingCache(Generic[V]):
    """Values of type ``V`` per key, renewed before they expire (see the module's rules).

    Subclasses say when a value expires (`expires_at`) and how long before that it is
    replaced (`margin`, default ``renew_before``), and call `_get` with the exchange to
    run when the cache has no fresh value.
    """

    #: The error an exchange raises when it fails; a still-valid old value is served then.
    failure: type[Exception] = Exception

    def __init__(
        self,
        *,
        renew_before: float,
        clock: Callable[[], float] = time.time,
        http_client: httpx.AsyncClient | None = None,
        timeout: float = 10,
        deadline: float | None = None,
        verify: bool = True,
        ca_file: str | None = None,
    ) -> None:
        # httpx's timeout restarts with every byte read: ``deadline`` (default three
        # times ``timeout``) bounds each whole call to the remote service, so one that
        # sends a byte at a time cannot hold an exchange (and its waiters) for days.
        self.deadline = float(deadline if deadline is not None else 3 * timeout)
        if self.deadline <= 0:
            raise ValueError(f"The deadline must be above 0 seconds, not {deadline}")
        self.renew_before = float(renew_before)
        self._clock = clock
        self._own_client = http_client is None
        self._client = http_client or make_http_client(
            timeout=timeout, verify=verify, ca_file=ca_file
        )
        self._cache: dict[tuple[Hashable, ...], V] = {}
        self._inflight: dict[tuple[Hashable, ...], asyncio.Task[V]] = {}
        self._forgotten: dict[str, int] = {}  # per user: how many times `forget` was called

    def expires_at(self, value: V) -> float:
        """Epoch seconds at which ``value`` stops working."""
        raise NotImplementedError

    def margin(self, value: V) -> float:
        """Seconds before ``value`` expires at which the cache replaces it."""
        return self.renew_before

    async def aclose(self) -> None:
        """Close the HTTP client if this object made it; exchanges under way are cancelled."""
        for task in list(self._inflight.values()):
            task.cancel()
        if self._own_client:
            await self._client.aclose()

    def forget(self, user: str) -> None:
        """Drop a user's cached values (logout, user deleted); they still expire on time."""
        for key in [k for k in self._cache if k[0] == user]:
            del self._cache[key]
        # An exchange under way for the user must not put its value back in the cache.
        self._forgotten[user] = self._forgotten.get(user, 0) + 1

    async def _get(self, key: tuple[Hashable, ...], exchange: Callable[[], Awaitable[V]]) -> V:
        """The fresh cached value of ``key``, or the result of the one ``exchange`` under
        way or started now for it."""
        cached = self._cache.get(key)
        if cached is not None and self._clock() < self.expires_at(cached) - self.margin(cached):
            return cached
        task = self._inflight.get(key)
        if task is None:
            generation = self._forgotten.get(str(key[0]), 0)
            task = asyncio.get_running_loop().create_task(self._keep(key, exchange, generation))
            self._inflight[key] = task
            task.add_done_callback(lambda t, k=key: self._settle(k, t))
        try:
            # Shielded: one caller giving up does not cancel the exchange for the others.
            return await asyncio.shield(task)
        except self.failure:
            cached = self._cache.get(key)
            if cached is not None and self._clock() < self.expires_at(cached):
                return cached  # still valid: a failed renewal goes unnoticed
            raise

    async def _keep(
        self, key: tuple[Hashable, ...], exchange: Callable[[], Awaitable[V]], generation: int
    ) -> V:
        value = await exchange()
        now = self._clock()
        for stale in [k for k, v in self._cache.items() if self.expires_at(v) <= now]:
            del self._cache[stale]
        if self._forgotten.get(str(key[0]), 0) == generation:
            self._cache[key] = value
        return value

    def _settle(self, key: tuple[Hashable, ...], task: asyncio.Task[V]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved here, so a task nobody awaited logs no warning
