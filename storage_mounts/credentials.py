"""Credentials per user: the mounts document a server's keeper reads from the hub.

For each mount a server got at admission (`egi_hub.storage_mounts.spawner`), the hub
builds one entry of the mounts document (the contract between hub and notebook side)::

    {"mounts": [{"name", "kind", "path", "read_only", "<kind>": {...}} | {..., "error"}],
     "refresh_at": <epoch>}   # refresh_at only when a credential expires

- **S3**: the site's static keys, from the hub's environment variables the mount names:
  the key of the VO the server is charged to (``credentials.per_vo``) or the one
  site-wide key (``credentials.from_env``; `egi_hub.storage_mounts.s3` says what each
  can isolate). They are read once, when the hub starts
  (`check_s3_environment` refuses to start without them, naming each variable), so a
  changed environment never gives a running hub different keys halfway. Or, with
  ``credentials.sts``, the user's own temporary credentials (key, secret, session token,
  ``expires_at``) from the S3 service's STS endpoint, exchanged for the user's fresh
  Check-in token (`StsCredentialCache`), like DataHub's; failures are held
  ``s3_sts_failure_hold`` seconds.
- **DataHub**: a REST-interface Onedata token made from the user's own fresh Check-in
  access token (`DatahubTokens`, one per Onezone), with the spaces it reaches. A user
  without a Check-in token (the dev login) gets an error entry instead.
- **NFS**: nothing secret: the server and the user's export.

One mount failing never stops the server or the others: it becomes an entry with an
``error`` a user can read (never a secret), and the server starts anyway. Secrets appear
only in the document the caller's own server receives; never in logs or reprs.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from traitlets import Float, Integer, Unicode
from traitlets.config import SingletonConfigurable

from egi_hub.config import ConfigIssue

from .datahub import DatahubMount
from .datahub_tokens import DatahubCredentialError, DatahubTokens, DatahubUse
from .mounts import Mount, ResolvedMount, StorageMounts
from .nfs import NFSMount
from .s3 import S3Mount
from .sts import StsCredentialCache, StsError, StsSettings

__all__ = [
    "NO_CHECKIN_LOGIN",
    "NO_CHECKIN_LOGIN_S3",
    "CheckinTokenGetter",
    "MountCredentials",
    "S3Keys",
    "check_s3_environment",
    "read_s3_keys",
]

log = logging.getLogger(__name__)

#: The error entry of a DataHub mount for a user who did not log in with Check-in.
NO_CHECKIN_LOGIN = "DataHub needs a Check-in login (this account has no Check-in access token)"
#: The same for an S3 mount whose credentials come from an STS endpoint.
NO_CHECKIN_LOGIN_S3 = (
    "S3: this mount's credentials are made from your Check-in login, and this account "
    "has no Check-in access token"
)

#: Gets the user's fresh Check-in access token (None: the user has none). Called only
#: when a Onedata token must be made, so a cached one never costs a Check-in refresh.
CheckinTokenGetter = Callable[[], Awaitable[str | None]]


@dataclass(frozen=True)
class S3Keys:
    """An access key id and its secret; the secret is kept out of ``repr``."""

    key: str
    secret: str = field(repr=False)


def _s3_mounts(mounts: Iterable[Mount]) -> list[tuple[int, S3Mount]]:
    return [(i, m) for i, m in enumerate(mounts) if isinstance(m, S3Mount)]


def check_s3_environment(
    mounts: Sequence[Mount], environ: Mapping[str, str] | None = None
) -> list[ConfigIssue]:
    """One issue per S3 key variable that is unset or empty in the hub's environment.

    Each names the site-file key that names the variable, the variable and the mount,
    e.g. ``StorageMounts.mounts[0].credentials.from_env.secret: the hub's environment
    variable S3_SECRET (mount 'scratch') is not set`` (``credentials.per_vo.<VO>.key``
    for a per-VO key). Never a value.
    """
    environ = os.environ if environ is None else environ
    issues = []
    for i, mount in _s3_mounts(mounts):
        for where, part, name in mount.key_variables():
            if not environ.get(name):
                state = "is empty" if name in environ else "is not set"
                issues.append(
                    ConfigIssue(
                        f"StorageMounts.mounts[{i}].credentials.{where}",
                        f"the hub's environment variable {name} (mount {mount.name!r}) "
                        f"{state}: set it to the S3 access {part} (on Kubernetes, from a "
                        "Secret)",
                    )
                )
    return issues


def read_s3_keys(
    mounts: Sequence[Mount], environ: Mapping[str, str] | None = None
) -> dict[tuple[str, str | None], S3Keys]:
    """The keys of each S3 mount from the environment, by (mount name, VO) (VO None: the
    site-wide ``from_env`` key); missing ones left out."""
    environ = os.environ if environ is None else environ
    keys: dict[tuple[str, str | None], S3Keys] = {}
    for _, mount in _s3_mounts(mounts):
        if mount.uses_sts:
            continue  # no site key: each user's own, from the STS endpoint
        pairs = (
            [(vo, k, s) for vo, k, s in mount.per_vo]
            if mount.per_vo
            else [(None, mount.key_env, mount.secret_env)]
        )
        for vo, key_env, secret_env in pairs:
            key, secret = environ.get(key_env), environ.get(secret_env)
            if key and secret:
                keys[(mount.name, vo)] = S3Keys(key, secret)
    return keys


class MountCredentials(SingletonConfigurable):
    """Builds the mounts document of one server, with that user's credentials.

    One per hub: it holds the S3 keys read at start and one `DatahubTokens` (token
    cache) per Onezone.
    """

    datahub_token_lifetime = Float(
        12 * 3600,
        min=300,
        help="""
        Seconds a DataHub (Onedata) token given to a server stays valid (its time caveat;
        stay below the Onezone's maximum for temporary tokens). Servers ask for a new one
        ``refresh_margin`` seconds before it ends. Default: 12 hours.
        """,
    ).tag(config=True)

    datahub_renew_before = Float(
        3600,
        min=0,
        help="""
        The hub makes a new DataHub token once fewer than this many seconds are left on
        the cached one (below ``datahub_token_lifetime``). Default: 1 hour.
        """,
    ).tag(config=True)

    datahub_ca_file = Unicode(
        "",
        help="""
        A PEM file of CA certificates to trust for the Onezone (a site's private CA);
        empty: the system's CAs. TLS is always checked.
        """,
    ).tag(config=True)

    datahub_timeout = Float(
        10, min=1, help="Seconds to wait for the Onezone before a DataHub mount shows an error."
    ).tag(config=True)

    datahub_failure_hold = Float(
        60,
        min=0,
        help="""
        Seconds a failed DataHub token request (Onezone down, token refused) is
        remembered per user and mount: within them the same error entry is answered
        without asking the Onezone again, so a looping server cannot hammer it.
        Default: 60; 0 turns this off.
        """,
    ).tag(config=True)

    s3_sts_renew_before = Float(
        900,
        min=0,
        help="""
        S3 mounts with ``credentials.sts``: the hub asks the STS endpoint for new
        credentials once fewer than this many seconds are left on the cached ones (at
        most half their lifetime). Default: 15 minutes.
        """,
    ).tag(config=True)

    s3_sts_timeout = Float(
        10, min=1, help="Seconds to wait for an STS endpoint before an S3 mount shows an error."
    ).tag(config=True)

    s3_sts_ca_file = Unicode(
        "",
        help="""
        A PEM file of CA certificates to trust for STS endpoints (a site's private CA);
        empty: the system's CAs. TLS is always checked.
        """,
    ).tag(config=True)

    s3_sts_failure_hold = Float(
        60,
        min=0,
        help="""
        Seconds a failed STS exchange (endpoint down, Check-in token refused) is
        remembered per user and mount: within them the same error entry is answered
        without asking the STS endpoint again. Default: 60; 0 turns this off.
        """,
    ).tag(config=True)

    refresh_margin = Integer(
        600,
        min=0,
        help="""
        ``refresh_at`` in the mounts document, when the server's keeper asks again, is
        the earliest credential expiry minus this many seconds, or later if the hub
        renews that credential later (it is never asked for before the hub has a new
        one). Default: 10 minutes.
        """,
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._s3_keys: dict[tuple[str, str | None], S3Keys] | None = None
        # (user cache key, mount name) -> (until, error): recent DataHub failures.
        self._datahub_failures: dict[tuple[str, str], tuple[float, str]] = {}
        self._datahub: dict[tuple[str, str], DatahubTokens] = {}
        self._sts: StsCredentialCache | None = None
        # (user cache key, mount name) -> (until, error): recent STS failures.
        self._sts_failures: dict[tuple[str, str], tuple[float, str]] = {}

    def __repr__(self) -> str:
        names = sorted({name for name, _ in self._s3_keys or {}})
        return f"<MountCredentials s3={names} onezones={len(self._datahub)}>"

    @property
    def mounts(self) -> StorageMounts:
        return StorageMounts.instance(config=self.config)

    def load_s3_keys(self, environ: Mapping[str, str] | None = None) -> list[ConfigIssue]:
        """Read the S3 keys now (at hub start); returns the variables that are missing."""
        mounts = self.mounts.mounts
        self._s3_keys = read_s3_keys(mounts, environ)
        return check_s3_environment(mounts, environ)

    def s3_keys(self, mount: S3Mount, vo: str | None = None) -> S3Keys | None:
        """The mount's key for a server charged to ``vo`` (the site-wide one with
        ``from_env``); None if the hub has none."""
        if self._s3_keys is None:
            self.load_s3_keys()
        return (self._s3_keys or {}).get((mount.name, vo if mount.per_vo else None))

    def datahub_tokens(self, mount: DatahubMount) -> DatahubTokens:
        """The token cache of the mount's Onezone (made on first use)."""
        key = (mount.onezone_url, mount.idp_prefix)
        if key not in self._datahub:
            self._datahub[key] = DatahubTokens(
                mount.onezone_url,
                idp_prefix=mount.idp_prefix,
                token_lifetime=self.datahub_token_lifetime,
                renew_before=min(self.datahub_renew_before, self.datahub_token_lifetime / 2),
                ca_file=self.datahub_ca_file or None,
                timeout=self.datahub_timeout,
                deadline=self.datahub_timeout,  # per whole call, not only per read
            )
        return self._datahub[key]

    @property
    def sts(self) -> StsCredentialCache:
        """The cache of users' S3 STS credentials (made on first use)."""
        if self._sts is None:
            self._sts = StsCredentialCache(
                renew_before=self.s3_sts_renew_before,
                timeout=self.s3_sts_timeout,
                deadline=self.s3_sts_timeout,  # per whole exchange, not only per read
                ca_file=self.s3_sts_ca_file or None,
            )
        return self._sts

    def use_sts_cache(self, cache: StsCredentialCache) -> None:
        """Use this STS credential cache (a site's own client settings, tests)."""
        self._sts = cache

    def use_datahub_tokens(self, tokens: DatahubTokens) -> None:
        """Use this token cache for its Onezone (a site's own client settings, tests)."""
        self._datahub[(tokens.onezone_url, tokens.idp_prefix)] = tokens

    def forget(self, username: str, user_id: int | None = None) -> None:
        """Drop a user's cached DataHub tokens and held failures.

        Not called by JupyterHub itself (its only deletion hook,
        ``Authenticator.delete_user``, belongs to the authenticator): the cache is keyed
        by name and database id, so a deleted user's tokens are never reused and simply
        expire (at most ``datahub_token_lifetime``).
        """
        cache_key = username if user_id is None else f"{username}#{user_id}"
        for tokens in self._datahub.values():
            tokens.forget(cache_key)
        if self._sts is not None:
            self._sts.forget(cache_key)
        for failures in (self._datahub_failures, self._sts_failures):
            for key in [k for k in failures if k[0] == cache_key]:
                del failures[key]

    async def aclose(self) -> None:
        for tokens in self._datahub.values():
            await tokens.aclose()
        self._datahub.clear()
        if self._sts is not None:
            await self._sts.aclose()
            self._sts = None

    async def document(
        self,
        username: str,
        resolved: Sequence[ResolvedMount],
        checkin_token: CheckinTokenGetter,
        *,
        user_id: int | None = None,
        now: float | None = None,
    ) -> dict[str, Any]:
        """The mounts document of one server of ``username`` (see the module docstring).

        ``user_id`` (the hub's database id of the user) keys the DataHub token cache
        with the name, so a user deleted and re-created under the same name (another
        person, perhaps) never gets the first one's cached tokens.
        """
        cache_key = username if user_id is None else f"{username}#{user_id}"
        entries = []
        asks: list[float] = []
        for item in resolved:
            if item.username != username:  # never another user's mount, whatever happens
                raise ValueError(f"mount {item.name!r} was resolved for another user")
            entry: dict[str, Any] = {
                "name": item.name,
                "kind": item.mount.kind,
                "path": item.path,
                "read_only": item.mount.read_only,
            }
            try:
                body, ask_at = await self._credentials(item, checkin_token, cache_key)
            except MountError as e:
                entry["error"] = str(e)
            except Exception as e:
                # The type only: a message could carry a credential.
                log.error(
                    "Mount %r of %s: credentials failed (%s)", item.name, username, type(e).__name__
                )
                entry["error"] = (
                    f"{item.mount.kind}: the hub could not prepare this mount's credentials "
                    "(an internal error; the hub's log says more)"
                )
            else:
                entry[item.mount.kind] = body
                if ask_at is not None:
                    asks.append(ask_at)
            entries.append(entry)
        document: dict[str, Any] = {"mounts": entries}
        if asks:
            now = time.time() if now is None else now
            document["refresh_at"] = max(int(now), math.floor(min(asks)))
        return document

    def _ask_at(self, expires_at: float, renew_margin: float) -> float:
        """When a server should ask again for a credential: ``refresh_margin`` before it
        expires, but never before the hub's cache will have a new one (``renew_margin``
        before the expiry). Asking earlier would get the same credential back, and the
        keeper would ask again every few seconds until the cache renews (as with 900 s
        STS credentials, renewed at 450 s left, and the default 600 s margin)."""
        return expires_at - min(self.refresh_margin, renew_margin)

    async def _credentials(
        self, item: ResolvedMount, checkin_token: CheckinTokenGetter, cache_key: str
    ) -> tuple[dict[str, Any], float | None]:
        """The mount's entry body and when the server should ask again (None: never)."""
        mount = item.mount
        if isinstance(mount, S3Mount) and mount.uses_sts:
            return await self._held(
                self._sts_failures,
                (cache_key, mount.name),
                self.s3_sts_failure_hold,
                lambda: self._s3_sts(item, mount, checkin_token, cache_key),
            )
        if isinstance(mount, S3Mount):
            return self._s3(item, mount), None
        if isinstance(mount, DatahubMount):
            return await self._datahub_held(item, mount, checkin_token, cache_key)
        if isinstance(mount, NFSMount):
            return {
                "server": mount.server,
                "export": item.settings.get("export", mount.export),
            }, None
        raise MountError(f"{mount.kind}: this hub cannot give credentials for this kind of mount")

    def _s3(self, item: ResolvedMount, mount: S3Mount) -> dict[str, Any]:
        keys = self.s3_keys(mount, item.vo)
        if keys is None:
            whose = f" and VO {item.vo!r}" if mount.per_vo else ""
            raise MountError(
                f"S3: the hub has no keys for mount {mount.name!r}{whose} (ask the site's admins)"
            )
        return {
            "endpoint_url": mount.endpoint_url,
            "bucket": item.settings.get("bucket", mount.bucket),
            "prefix": item.settings.get("prefix", mount.prefix),
            "region": mount.region,
            "key": keys.key,
            "secret": keys.secret,
        }

    async def _s3_sts(
        self,
        item: ResolvedMount,
        mount: S3Mount,
        checkin_token: CheckinTokenGetter,
        cache_key: str,
    ) -> tuple[dict[str, Any], float]:
        """The S3 entry with the user's temporary credentials from the STS endpoint."""

        async def fresh() -> str:
            try:
                token = await checkin_token()
            except DatahubCredentialError as e:  # the hub's getter: the session ended
                raise MountError(f"S3: {e.reason}") from None
            if not token:
                raise MountError(NO_CHECKIN_LOGIN_S3)
            return token

        settings = StsSettings(
            mount.sts_endpoint_url, mount.sts_role_arn, mount.sts_duration_seconds
        )
        try:
            creds = await self.sts.credentials(cache_key, item.username, settings, fresh)
        except StsError as e:
            # A missing Check-in token is not held: logging in again must help at once.
            raise MountError(f"S3: {e.reason}", hold=e.kind != "no_checkin_token") from None
        body = {
            "endpoint_url": mount.endpoint_url,
            "bucket": item.settings.get("bucket", mount.bucket),
            "prefix": item.settings.get("prefix", mount.prefix),
            "region": mount.region,
            "key": creds.key,
            "secret": creds.secret,
            "session_token": creds.session_token,
            "expires_at": int(creds.expiration),
        }
        return body, self._ask_at(creds.expiration, self.sts.margin(creds))

    async def _datahub_held(
        self,
        item: ResolvedMount,
        mount: DatahubMount,
        checkin_token: CheckinTokenGetter,
        cache_key: str,
    ) -> tuple[dict[str, Any], float]:
        """`_datahub_entry`, but a failure within ``datahub_failure_hold`` seconds is
        answered again from memory (a user without a Check-in login costs no call and
        is not held: logging in again must help at once)."""
        return await self._held(
            self._datahub_failures,
            (cache_key, mount.name),
            self.datahub_failure_hold,
            lambda: self._datahub_entry(item, mount, checkin_token, cache_key),
        )

    @staticmethod
    async def _held(
        failures: dict[tuple[str, str], tuple[float, str]],
        key: tuple[str, str],
        hold: float,
        call: Callable[[], Awaitable[tuple[dict[str, Any], float]]],
    ) -> tuple[dict[str, Any], float]:
        """``call()``, but a `MountError` marked ``hold`` is answered again from
        ``failures`` for ``hold`` seconds, so a looping server cannot hammer a remote
        service through the hub."""
        now = time.monotonic()
        held = failures.get(key)
        if held is not None:
            if now < held[0]:
                raise MountError(held[1], hold=True)
            del failures[key]
        try:
            return await call()
        except MountError as e:
            if e.hold and hold > 0:
                for stale in [k for k, v in failures.items() if v[0] <= now]:
                    del failures[stale]
                failures[key] = (now + hold, str(e))
            raise

    async def _datahub_entry(
        self,
        item: ResolvedMount,
        mount: DatahubMount,
        checkin_token: CheckinTokenGetter,
        cache_key: str,
    ) -> tuple[dict[str, Any], float]:
        async def fresh() -> str:
            token = await checkin_token()
            if not token:
                raise DatahubCredentialError(NO_CHECKIN_LOGIN, "no_checkin_token")
            return token

        try:
            tokens = self.datahub_tokens(mount)
            # Keyed and narrowed by the mount's spaces: two mounts never share a token.
            creds = await tokens.credentials(
                cache_key, fresh, DatahubUse.REST, mount.read_only, spaces=mount.spaces
            )
        except DatahubCredentialError as e:
            if e.reason == NO_CHECKIN_LOGIN:
                raise MountError(e.reason) from None
            # No Check-in token: logging in again must help at once, so never held.
            raise MountError(e.message, hold=e.kind != "no_checkin_token") from None
        except ValueError as e:  # a Onezone URL or setting DatahubTokens refuses
            raise MountError(f"DataHub: {e}") from None
        body: dict[str, Any] = {
            "onezone_url": mount.onezone_url,
            "token": creds.token.token,
            "expires_at": int(creds.token.valid_until),
        }
        if mount.spaces:
            # The mount's filter as configured (names or ids). The notebook's datahub://
            # applies it to Onezone's current answer, leaving odd names out, so a space
            # the user joins later shows without waiting for a new token.
            body["spaces"] = list(mount.spaces)
        return body, self._ask_at(creds.token.valid_until, tokens.renew_before)


class MountError(Exception):
    """A mount's credentials cannot be given; the message is the entry's ``error``.

    ``hold``: whether asking again soon would ask a remote service in vain (see
    ``MountCredentials.datahub_failure_hold``)."""

    def __init__(self, message: str, *, hold: bool = False) -> None:
        super().__init__(message)
        self.hold = hold
