"""Renewing the DataHub sidecars' tokens in running servers, without a restart.

A oneclient sidecar (`egi_hub.storage_mounts.kube`) mounts with a temporary Onedata
token that ends after ``MountCredentials.datahub_token_lifetime`` (12 h by default);
its script mounts again whenever the token file changes. This module changes it: one
asyncio task per running server (`SidecarTokenRenewal`) that, for each DataHub token in
the server's storage Secret,

1. sleeps until the hub's token cache would renew that token
   (``MountCredentials.datahub_renew_before`` before it expires: one renewal policy for
   the keeper's REST tokens and the sidecars' tokens, and one cache, so two servers of
   a user share a renewal);
2. refreshes the user's Check-in session through the authenticator (what a spawn and
   the mounts endpoint do through JupyterHub's handlers), and checks that the server
   would still get this mount: a user who left the mount's VO (or whom the hub refused)
   gets no new token for it, ever; the one in the Secret simply expires;
3. asks the cache for a ``oneclient`` token newer than the Secret's and patches only
   that mount's key of only this server's Secret (a merge patch, with the expiry in
   the ``egi.eu/token-expiry`` annotation, which is what a restarted hub reads).

A failure (Onezone down, Check-in session ended, Kubernetes API error) leaves the old
token in place, logs one line without any secret, and is retried after
``KubeMounts.token_retry_min`` seconds, doubling up to ``token_retry_max``; a token that
expired meanwhile is replaced as soon as a retry succeeds (the sidecar mounts again).

The task starts when the server is up (`EGIKubeSpawner.start`) and when a restarted
hub finds it running (`EGIKubeSpawner.poll`, which JupyterHub calls right after
``load_state``); it ends when the server stops (`stop` cancels it before the Secret is
deleted), its Secret is gone, or the Secret of that name is no longer the one it
started with (another uid, or not labelled as this server's: it is never patched), and
never raises into the hub. Running tasks are held
in a module-level set so the event loop's weak references cannot lose them.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .datahub import DatahubMount
from .datahub_tokens import DatahubCredentialError, DatahubUse
from .kube import (
    TOKEN_EXPIRY_ANNOTATION,
    KubeMounts,
    datahub_cache_key,
    is_own_secret,
    secret_key_for,
    secret_name_for,
)
from .mounts import StorageMounts
from .spawner import mount_standing

__all__ = ["SidecarTokenRenewal", "read_expiry"]

log = logging.getLogger(__name__)

#: Tasks of running servers: asyncio keeps only weak references to tasks.
_RUNNING: set[asyncio.Task[None]] = set()
# A wake-up this long after the cache's renewal window opens (timers may fire early).
_EPSILON = 0.05


class _Gone(Exception):
    """The server's Secret is gone (the server stopped): the task ends."""


class _Replaced(Exception):
    """A Secret of that name is there, but not the one the task started with (another
    uid) or not this server's (labels): never patched; the task ends."""


class _NotTheirs(Exception):
    """This user may not have this mount any more: never renew it."""


def read_expiry(annotations: dict[str, str] | None) -> dict[str, float]:
    """The token expiries kept in a storage Secret's annotation (bad values left out)."""
    raw = (annotations or {}).get(TOKEN_EXPIRY_ANNOTATION)
    try:
        data = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        k: float(v)
        for k, v in data.items()
        if isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool)
    }


@dataclass
class _Item:
    """One DataHub token of the server: its mount, and where its renewal stands."""

    mount: DatahubMount
    valid_until: float | None  # of the token in the Secret (None: unknown, renew now)
    failures: int = 0
    retry_at: float | None = None


class SidecarTokenRenewal:
    """The renewal task of one running server (see the module docstring).

    ``spawner`` is an `EGIKubeSpawner` (its ``api``, ``namespace``, ``pod_name``,
    ``user``, the charged VO and profile); ``clock`` gives epoch seconds.
    """

    def __init__(self, spawner: Any, *, clock: Callable[[], float] = time.time) -> None:
        self.spawner = spawner
        self.settings = KubeMounts(config=spawner.config)
        self.namespace: str = spawner.namespace
        self.secret_name = secret_name_for(spawner.pod_name)
        self.where = f"{spawner.user.name}'s server {spawner.name or '(default)'!r}"
        self._clock = clock
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._annotation: dict[str, float] = {}
        self._uid: str | None = None  # of the Secret `_load` found to be this server's

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        """Start the task (once; a no-op while it runs)."""
        if self.running:
            return
        self._stopping = False
        task = asyncio.get_running_loop().create_task(self._run(), name=f"renew {self.where}")
        _RUNNING.add(task)
        task.add_done_callback(_RUNNING.discard)
        self._task = task

    async def stop(self) -> None:
        """Cancel the task and wait until it has ended (no patch after this returns).

        Cancelled again until it is done: code it awaits (an HTTP client's) may turn one
        cancellation into an error the task retries after; ``_stopping`` ends it then."""
        self._stopping = True
        task, self._task = self._task, None
        while task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait({task}, timeout=1)

    # --- the task -------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            items = await self._with_retries(self._load)
            while items and not self._stopping:
                now = self._clock()
                wake = min(self._due(item) for item in items.values())
                await asyncio.sleep(max(0.0, wake - now))
                for key, item in list(items.items()):
                    if self._stopping:
                        return
                    if self._due(item) <= self._clock():
                        if not await self._attempt(key, item):
                            del items[key]
        except _Gone:
            log.info("DataHub token renewal of %s ends: its storage Secret is gone", self.where)
        except _Replaced:
            log.warning(
                "DataHub token renewal of %s ends: %s is no longer this server's storage "
                "Secret (made again by someone else); it is not patched",
                self.where,
                self.secret_name,
            )
        except asyncio.CancelledError:
            raise
        except Exception as e:  # never into the hub; the type only (a message may hold a secret)
            log.error("DataHub token renewal of %s failed (%s)", self.where, type(e).__name__)

    async def _with_retries(self, step: Callable[[], Any]) -> Any:
        failures = 0
        while True:
            try:
                return await step()
            except (_Gone, _Replaced, asyncio.CancelledError):
                raise
            except Exception as e:
                failures += 1
                delay = self._backoff(failures)
                log.warning(
                    "DataHub token renewal of %s: cannot read its storage Secret (%s); "
                    "next try in %.0f s",
                    self.where,
                    _describe(e),
                    delay,
                )
                await asyncio.sleep(delay)

    async def _load(self) -> dict[str, _Item]:
        """The DataHub tokens of this server's Secret, with their mounts (from the
        site's list, by the mount names the server started with).

        Only a Secret that is this server's own (`is_own_secret`: the component label
        and the server's user and server labels, as start and stop check); its uid is
        kept, and every patch carries it (`_patch`)."""
        secret = await self._read_secret()
        meta = secret.metadata
        if not is_own_secret(meta.labels, self.spawner._egi_owner_labels()) or not meta.uid:
            raise _Replaced
        self._uid = str(meta.uid)
        keys = set((secret.data or {}).keys())
        self._annotation = read_expiry(meta.annotations)
        names = set(getattr(self.spawner, "_egi_mount_names", None) or ())
        items = {}
        for mount in StorageMounts.instance(config=self.spawner.config).mounts:
            key = secret_key_for(mount.name)
            if isinstance(mount, DatahubMount) and mount.name in names and key in keys:
                items[key] = _Item(mount, self._annotation.get(key))
        return items

    def _tokens(self, mount: DatahubMount) -> Any:
        from .credentials import MountCredentials

        return MountCredentials.instance(config=self.spawner.config).datahub_tokens(mount)

    def _renew_before(self, mount: DatahubMount) -> float:
        return float(getattr(self._tokens(mount), "renew_before", 0.0))

    def _due(self, item: _Item) -> float:
        if item.retry_at is not None:
            return item.retry_at
        if item.valid_until is None:
            return self._clock()
        return item.valid_until - self._renew_before(item.mount) + _EPSILON

    def _backoff(self, failures: int) -> float:
        low = self.settings.token_retry_min
        high = max(low, self.settings.token_retry_max)
        delay = min(high, low * 2 ** min(failures - 1, 30))
        return delay * random.uniform(0.8, 1.0)  # spreads retries; not a secret

    async def _attempt(self, key: str, item: _Item) -> bool:
        """One renewal of one token; False when this mount must never be renewed again."""
        mount = item.mount
        try:
            checkin = await self._checkin_token(mount)
            tokens = self._tokens(mount)
            creds = await tokens.credentials(
                datahub_cache_key(self.spawner.user),
                checkin,
                DatahubUse.ONECLIENT,
                mount.read_only,
                spaces=mount.spaces,  # the same narrowed token as at start (kube.py)
            )
            token = creds.token
            if item.valid_until is not None and token.valid_until <= item.valid_until:
                window = item.valid_until - self._renew_before(mount)
                if self._clock() < window:
                    return True  # woke early: the cache does not renew yet
                # The cache kept its still-valid token: Onezone issued no new one (the
                # token cache logged why).
                raise DatahubCredentialError("Onezone issued no new token", "unreachable")
            await self._patch(key, token.token, token.valid_until)
        except (_Gone, _Replaced):
            raise
        except _NotTheirs as e:
            log.warning(
                "DataHub mount %r of %s: its sidecar token is not renewed any more (%s); "
                "the current one ends at %s",
                mount.name,
                self.where,
                e,
                _when(item.valid_until),
            )
            return False
        except asyncio.CancelledError:
            raise
        except Exception as e:
            item.failures += 1
            delay = self._backoff(item.failures)
            item.retry_at = self._clock() + delay
            log.warning(
                "DataHub mount %r of %s: sidecar token not renewed (%s); the current one "
                "stays (valid until %s); next try in %.0f s",
                mount.name,
                self.where,
                _describe(e),
                _when(item.valid_until),
                delay,
            )
            return True
        item.valid_until, item.failures, item.retry_at = token.valid_until, 0, None
        log.info(
            "DataHub mount %r of %s: sidecar token renewed, valid until %s",
            mount.name,
            self.where,
            _when(token.valid_until),
        )
        return True

    async def _checkin_token(self, mount: DatahubMount) -> str:
        """The user's fresh Check-in access token, once the hub has checked that the
        user may still have ``mount`` (raises `_NotTheirs` if not)."""
        user = self.spawner.user
        refresh = getattr(getattr(user, "authenticator", None), "refresh_user", None)
        result: Any = True
        if refresh is not None:
            result = refresh(user, None)
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                result = await result
            if isinstance(result, dict) and isinstance(result.get("auth_state"), dict):
                await user.save_auth_state(result["auth_state"])
        state = await user.get_auth_state() or {}
        # The same check as the mounts endpoint's (one function for both).
        why = mount_standing(self.spawner, state).why_not(mount.name)
        if why is not None:
            raise _NotTheirs(why)
        if not result:
            raise DatahubCredentialError(
                "the Check-in session has ended: the user must log in again", "no_checkin_token"
            )
        token = state.get("access_token")
        expires_at = state.get("expires_at")
        if not token or (isinstance(expires_at, int | float) and expires_at <= time.time()):
            raise DatahubCredentialError(
                "no fresh Check-in access token: the user must log in again", "no_checkin_token"
            )
        return str(token)

    # --- Kubernetes -------------------------------------------------------------------
    async def _read_secret(self) -> Any:
        from kubernetes_asyncio.client.rest import ApiException

        try:
            return await asyncio.wait_for(
                self.spawner.api.read_namespaced_secret(self.secret_name, self.namespace),
                self.spawner.k8s_api_request_timeout,
            )
        except ApiException as e:
            if e.status == 404:
                raise _Gone from None
            raise

    async def _patch(self, key: str, token: str, valid_until: float) -> None:
        """Put the new token under ``key`` of this server's Secret (only that key).

        The merge patch carries the uid `_load` read: the API server applies it only to
        that Secret (uid is immutable, so a Secret deleted and made again under the
        name, by anyone, refuses it: 409, or 422 from some servers). On either answer
        the Secret is read again: another uid, or not this server's, ends the task
        (`_Replaced`); the same one is an ordinary failure, retried."""
        from kubernetes_asyncio.client.rest import ApiException

        if self._stopping:  # the server is stopping: its Secret is about to go
            raise asyncio.CancelledError
        if self._uid is None:  # never without the uid of the Secret found to be ours
            raise _Replaced
        expiry = {**self._annotation, key: int(valid_until)}
        annotation = json.dumps(expiry, sort_keys=True)
        body = {
            "metadata": {
                "uid": self._uid,
                "annotations": {TOKEN_EXPIRY_ANNOTATION: annotation},
            },
            "data": {key: base64.b64encode(token.encode()).decode()},
        }
        try:
            await asyncio.wait_for(
                self.spawner.api.patch_namespaced_secret(
                    self.secret_name,
                    self.namespace,
                    body,
                    _content_type="application/merge-patch+json",
                ),
                self.spawner.k8s_api_request_timeout,
            )
        except ApiException as e:
            if e.status == 404:
                raise _Gone from None
            if e.status in (409, 422):
                await self._check_still_ours()
            raise
        self._annotation = expiry

    async def _check_still_ours(self) -> None:
        """After a refused patch: `_Replaced` (or `_Gone`) unless the Secret of that name
        is still the one `_load` found, with this server's labels."""
        meta = (await self._read_secret()).metadata
        if meta.uid != self._uid or not is_own_secret(
            meta.labels, self.spawner._egi_owner_labels()
        ):
            raise _Replaced


def _describe(error: BaseException) -> str:
    """What a log line may say about a failure: never a message that could hold a secret."""
    if isinstance(error, DatahubCredentialError):
        return error.reason
    status = getattr(error, "status", None)
    if status is not None:
        return f"Kubernetes API: HTTP {status} {getattr(error, 'reason', '') or ''}".rstrip()
    return type(error).__name__


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "an unknown time"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
