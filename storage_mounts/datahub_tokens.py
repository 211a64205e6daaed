"""DataHub credentials on the hub side: Onedata access tokens made from a Check-in token.

EGI DataHub (Onedata) trusts EGI Check-in by *authority delegation*: Onezone accepts a
Check-in access token in ``X-Auth-Token: <idp prefix>:<token>`` (EGI's prefix is
``egi``). With it the hub asks Onezone for Onedata access tokens, one per use:

- ``oneclient``: for the FUSE mount (the Kubernetes oneclient sidecar), with the caveat
  ``{"type": "interface", "interface": "oneclient"}``;
- ``rest``: for the in-notebook ``datahub://`` filesystem over the Oneprovider REST API,
  with ``{"type": "interface", "interface": "rest"}``.

Onedata enforces the interface caveat (a oneclient token cannot call the REST file
API), so the two uses never share a token. A read-only mount adds ``data.readonly``,
which Oneproviders enforce too: the notebook cannot write even if it tried.

**Narrowed to a mount's spaces.** A token is sent to every Oneprovider that supports a
space the notebook reads, and a provider could replay it. So when a mount names
``spaces`` (names, ids or ``name@id``), the hub first asks Onezone which spaces the user
has (``GET /user/spaces``, then ``GET /user/spaces/{id}``, with the Check-in token),
keeps those the filter names (each item by one rule only, `egi_hub.spaces`: an id of
one of the user's spaces names that space, ``name@id`` that exact pair, a bare name the
one space carrying it; a name two of the user's spaces carry is refused, as a
lookalike space could otherwise join the token's scope), and adds two caveats Onedata
documents and enforces:
``data.path`` with exactly those spaces (``base64("/<space id>")``: other spaces are
invisible and inaccessible with the token) and ``service`` with the Oneproviders
(``opw-<provider id>``) that supported them when the token was issued (any other
provider refuses it). A replayed token then reaches only the mount's spaces at their
own providers, until its time caveat ends it. A space joined later, or a provider that
starts supporting a space later, is reached from the next token on. Without ``spaces``
the token is not narrowed (it must reach every space). ``data.path`` is used, not
``data.objectid``: Onedata says it is the cheaper check, and it needs no file id, which
only a provider could tell (with a token not yet narrowed).

**Temporary tokens, not named ones.** Tokens come from
``POST /api/v3/onezone/user/tokens/temporary`` with a ``time`` caveat (Onezone requires
one on temporary tokens). Named tokens would be stored in the user's Onezone account:
they pile up in the user's token list, need a unique name per hub, use and mount mode
(a duplicate name is a 400), and last until someone deletes them, so a hub that
crashed or was redeployed would leave live credentials behind. A temporary token is
stored nowhere, expires by itself after ``token_lifetime`` seconds, and is renewed by
asking for a new one; the hub never has to clean up in a user's account. (Onezone
can only revoke a user's temporary tokens all at once; a leaked one is bounded by its
time caveat instead, so keep the lifetime short enough for that.)

Tokens are cached per (hub user, use, read-only, spaces filter) and renewed ``renew_before`` seconds
before they expire; concurrent requests for one key share one exchange (single
flight, as `egi_hub.authenticator.provider` does for discovery). When a renewal fails
while the cached token is still valid, that token keeps serving: the renewal window
exists so that a short Onezone outage goes unnoticed.

Right after an exchange, the spaces the token reaches are discovered with
``POST /api/v3/onezone/tokens/infer_access_token_scope`` (no auth header: the token is
in the body). Offline providers, and providers older than Onedata 21.02.1 (which
Onedata's own clients ignore), are left out; read-only supports are kept but marked.

Answers are bounded: a Onezone body over `MAX_ANSWER` (1 MiB) is refused, not read on,
and each call has an overall ``deadline`` (httpx's timeouts apply to each read, so a
server sending one byte at a time could otherwise hold an exchange for ever).

Every failure is a `DatahubCredentialError` whose ``reason`` a user can read (Onezone
unreachable, Check-in token refused, exchange refused...): the spawner turns it into
an error entry ("DataHub: <reason>") and starts the server anyway. Tokens never
appear in logs, reprs or error messages.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from egi_hub.spaces import AmbiguousSpaceName, match_spaces

from .renewing_cache import RenewingCache

__all__ = [
    "MAX_ANSWER",
    "CheckinToken",
    "DatahubCredentialError",
    "DatahubCredentials",
    "DatahubScope",
    "DatahubSpace",
    "DatahubSupport",
    "DatahubToken",
    "DatahubTokens",
    "DatahubUse",
    "spaces_key",
]

log = logging.getLogger(__name__)

TEMPORARY_TOKENS_PATH = "/api/v3/onezone/user/tokens/temporary"
INFER_SCOPE_PATH = "/api/v3/onezone/tokens/infer_access_token_scope"
USER_SPACES_PATH = "/api/v3/onezone/user/spaces"
MAX_ANSWER = 1024 * 1024  # bytes of a Onezone answer read: real ones are a few KiB
MAX_USER_SPACES = 1000  # spaces of a user looked at to resolve a mount's filter
_LOOKUPS = 8  # space detail requests at once
_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,255}$")  # Onedata space and provider ids
MIN_PROVIDER_VERSION = (21, 2, 1)  # Onedata's own REST clients ignore older providers
_MAX_DETAIL = 200  # characters of an Onezone error description kept in a reason
_PREFIX_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_TOKEN_RE = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII, no spaces: header-safe

#: A fresh Check-in access token, or an async function that gets one (called only when an
#: exchange is needed, so a cache hit never makes the hub refresh at Check-in).
CheckinToken = str | Callable[[], Awaitable[str]]


class DatahubUse(StrEnum):
    """What a Onedata token is for; the value is its ``interface`` caveat."""

    ONECLIENT = "oneclient"  # the FUSE mount (oneclient sidecar)
    REST = "rest"  # the datahub:// filesystem over the Oneprovider REST API


class DatahubCredentialError(Exception):
    """No DataHub credentials for a user; ``reason`` says why, in words for the user.

    ``kind`` is one of ``"unreachable"`` (Onezone did not answer, or a 5xx),
    ``"token_refused"`` (Onezone refused the Check-in token: 401), ``"refused"``
    (Onezone refused the request otherwise), ``"bad_answer"`` (an answer that is not
    what Onezone documents) and ``"no_checkin_token"`` (the hub has no fresh Check-in
    token for the user). `message` is what a mount's error entry shows.
    """

    def __init__(self, reason: str, kind: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind

    @property
    def message(self) -> str:
        """The error entry for the mount list: ``DataHub: <reason>``."""
        return f"DataHub: {self.reason}"


@dataclass(frozen=True)
class DatahubToken:
    """A Onedata access token for one use; its value is kept out of ``repr``."""

    token: str = field(repr=False)
    use: DatahubUse
    read_only: bool
    valid_until: float  # epoch seconds, the token's time caveat
    caveats: tuple[Mapping[str, Any], ...] = field(repr=False, default=())

    def expires_in(self, now: float | None = None) -> float:
        """Seconds until the token stops working (negative once expired)."""
        return self.valid_until - (time.time() if now is None else now)


@dataclass(frozen=True)
class DatahubSupport:
    """One online Oneprovider supporting a space; ``read_only`` supports refuse writes."""

    provider_id: str
    name: str
    domain: str
    version: str
    read_only: bool


@dataclass(frozen=True)
class DatahubSpace:
    """A space the token reaches, with its online supporting providers.

    Names come from Onezone, and any Onedata user can choose a space's name: whoever
    turns them into paths must check them as hostile input.

    ``read_only`` is true when the token is read-only or every online support is; a
    space with no online provider has ``supports == ()`` (`available` is false).
    """

    space_id: str
    name: str
    read_only: bool
    supports: tuple[DatahubSupport, ...]

    @property
    def available(self) -> bool:
        return bool(self.supports)

    @property
    def writable_supports(self) -> tuple[DatahubSupport, ...]:
        """The supports a write may go to (none when the space is read-only)."""
        if self.read_only:
            return ()
        return tuple(s for s in self.supports if not s.read_only)


@dataclass(frozen=True)
class DatahubScope:
    """What a token reaches, from ``infer_access_token_scope``."""

    valid_until: float | None
    read_only: bool
    spaces: tuple[DatahubSpace, ...]

    def space(self, name_or_id: str) -> DatahubSpace | None:
        """The space with this id, or else the first with this name (None if none)."""
        for space in self.spaces:
            if space.space_id == name_or_id:
                return space
        return next((s for s in self.spaces if s.name == name_or_id), None)


@dataclass(frozen=True)
class DatahubCredentials:
    """A token and the spaces it reaches: what a DataHub mount needs for one user."""

    token: DatahubToken
    scope: DatahubScope


def spaces_key(spaces: Iterable[str] | None) -> tuple[str, ...]:
    """A mount's ``spaces`` filter as part of a cache key: sorted, without repeats
    (``()`` is no filter). Two mounts with different filters never share a token."""
    return tuple(sorted(set(spaces or ())))


def path_caveat(space_ids: Iterable[str]) -> dict[str, Any]:
    """Onedata's ``data.path`` caveat for whole spaces: canonical paths ``/<space id>``
    (no trailing slash, no newline), base64-encoded, as Onedata documents."""
    return {
        "type": "data.path",
        "whitelist": [base64.b64encode(f"/{s}".encode()).decode() for s in sorted(space_ids)],
    }


def service_caveat(provider_ids: Iterable[str]) -> dict[str, Any]:
    """Onedata's ``service`` caveat allowing only these Oneproviders (``opw-<id>``)."""
    return {"type": "service", "whitelist": [f"opw-{p}" for p in sorted(provider_ids)]}


@dataclass
class _Entry:
    token: DatahubToken
    scope: DatahubScope | None = None


def _clean(text: object, limit: int = _MAX_DETAIL) -> str:
    """Onezone's words made safe to show: printable, one line, bounded."""
    flat = "".join(ch if ch.isprintable() else " " for ch in str(text))
    flat = " ".join(flat.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _onedata_error(response: httpx.Response, secret: str = "") -> str:
    """The error id and description of an Onedata error body, or the HTTP status.

    ``secret`` (the token that was sent) is blanked out should Onezone echo it.
    """
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return f"HTTP {response.status_code}"
    parts = [str(error.get("id") or "")]
    details = error.get("details")
    auth_error = details.get("authError") if isinstance(details, dict) else None
    if isinstance(auth_error, dict) and auth_error.get("id"):
        parts.append(str(auth_error["id"]))
    elif isinstance(auth_error, str):
        parts.append(auth_error)
    description = error.get("description")
    text = ": ".join(p for p in parts if p)
    if description:
        text = f"{text}: {description}" if text else str(description)
    if secret and len(secret) >= 4:
        text = text.replace(secret, "[token]")
    return _clean(text or f"HTTP {response.status_code}")


def _certificate_refused(error: BaseException) -> bool:
    """True when a connection failed because the server's certificate was not trusted."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _version_tuple(version: str) -> tuple[int, ...] | None:
    numbers = re.match(r"^(\d+)\.(\d+)\.(\d+)", version or "")
    return tuple(int(n) for n in numbers.groups()) if numbers else None


def _check_onezone_url(url: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme != "https" or not parts.hostname:
        raise ValueError(
            f"The DataHub Onezone URL must be https://<host>[:port] (Onedata serves its "
            f"API over HTTPS only), not {url!r}"
        )
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ValueError(
            f"The DataHub Onezone URL {url!r} must not carry credentials, a query or a fragment"
        )
    return f"https://{parts.netloc}{parts.path.rstrip('/')}"


class DatahubTokens(RenewingCache[_Entry]):
    """Onedata access tokens for hub users, exchanged at one Onezone and cached.

    ``token_lifetime`` is the time caveat given to each token (Onezone caps temporary
    tokens at its ``max_temporary_token_ttl``: stay below it); a cached token is
    renewed once fewer than ``renew_before`` seconds are left. ``ca_file`` trusts a
    private CA (a test Onezone), ``verify=False`` turns checks off (never in
    production). ``timeout`` bounds each read, ``deadline`` (default: three times
    ``timeout``) each whole call to Onezone. ``http_client`` replaces the client made
    here (its timeouts and TLS settings are then used; the caller closes it); ``clock``
    gives epoch seconds. Cached, single-flight and renewed as `RenewingCache` says.
    """

    failure = DatahubCredentialError

    def __init__(
        self,
        onezone_url: str,
        *,
        idp_prefix: str = "egi",
        token_lifetime: float = 12 * 3600,
        renew_before: float = 3600,
        verify: bool = True,
        ca_file: str | None = None,
        timeout: float = 10,
        deadline: float | None = None,
        http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.onezone_url = _check_onezone_url(onezone_url)
        if not _PREFIX_RE.match(idp_prefix or ""):
            raise ValueError(
                f"The DataHub identity-provider prefix must be letters, digits, '.', '_' "
                f"or '-' (EGI DataHub uses 'egi'), not {idp_prefix!r}"
            )
        if token_lifetime < 300:
            raise ValueError(
                f"The DataHub token lifetime must be at least 300 seconds, not {token_lifetime}"
            )
        if not 0 <= renew_before < token_lifetime:
            raise ValueError(
                f"DataHub tokens must be renewed before they expire: renew_before "
                f"({renew_before}) must be at least 0 and below the token lifetime "
                f"({token_lifetime})"
            )
        self.idp_prefix = idp_prefix
        self.token_lifetime = float(token_lifetime)
        super().__init__(
            renew_before=renew_before,
            clock=clock,
            http_client=http_client,
            timeout=timeout,
            deadline=deadline,
            verify=verify,
            ca_file=ca_file,
        )

    def __repr__(self) -> str:
        return f"<DatahubTokens {self.onezone_url} prefix={self.idp_prefix!r}>"

    def expires_at(self, value: _Entry) -> float:
        return value.token.valid_until

    async def token(
        self,
        user: str,
        checkin_token: CheckinToken,
        use: DatahubUse | str,
        read_only: bool,
        *,
        spaces: Iterable[str] | None = None,
    ) -> DatahubToken:
        """A valid Onedata token for ``user``'s ``use``, from the cache or a new exchange;
        with ``spaces`` (a mount's filter), narrowed to those spaces and their providers."""
        return (await self._entry(user, checkin_token, use, read_only, spaces)).token

    async def credentials(
        self,
        user: str,
        checkin_token: CheckinToken,
        use: DatahubUse | str,
        read_only: bool,
        *,
        spaces: Iterable[str] | None = None,
    ) -> DatahubCredentials:
        """A valid token and the spaces it reaches (discovered when the token was issued);
        ``spaces`` as in `token`."""
        entry = await self._entry(user, checkin_token, use, read_only, spaces)
        if entry.scope is None:  # the discovery after the exchange failed: try again
            entry.scope = await self.scope(entry.token)
        return DatahubCredentials(entry.token, entry.scope)

    async def _entry(
        self,
        user: str,
        checkin_token: CheckinToken,
        use: DatahubUse | str,
        read_only: bool,
        spaces: Iterable[str] | None,
    ) -> _Entry:
        if not isinstance(user, str) or not user:
            raise ValueError("A DataHub token needs the hub user's name")
        if isinstance(spaces, str):
            raise TypeError("spaces must be a list of space names or ids, not one string")
        key = (user, DatahubUse(use), bool(read_only), spaces_key(spaces))
        return await self._get(key, lambda: self._renew(key, checkin_token))

    async def _renew(self, key: _Key, checkin_token: CheckinToken) -> _Entry:
        user, use, read_only, wanted = key
        fresh = await self._checkin_token(checkin_token)
        try:
            narrowing = await self._narrowing(fresh, wanted) if wanted else []
            token = await self._exchange(fresh, use, read_only, narrowing)
        except DatahubCredentialError as e:
            log.warning("DataHub %s token for %s not issued: %s", use.value, user, e.reason)
            raise
        entry = _Entry(token)
        log.info(
            "DataHub %s token%s issued for %s%s, valid until %s",
            use.value,
            " (read-only)" if read_only else "",
            user,
            f" ({len(narrowing[0]['whitelist'])} space(s) only)" if narrowing else "",
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(token.valid_until)),
        )
        try:
            entry.scope = await self.scope(token)
        except DatahubCredentialError as e:
            # The token stays cached; `credentials` discovers the spaces again.
            log.warning("DataHub spaces of %s not discovered: %s", user, e.reason)
        return entry

    async def _checkin_token(self, checkin_token: CheckinToken) -> str:
        if callable(checkin_token):
            try:
                value = await checkin_token()
            except DatahubCredentialError:
                raise
            except Exception as e:
                raise DatahubCredentialError(
                    f"no fresh EGI Check-in token to exchange ({_clean(e)})", "no_checkin_token"
                ) from e
        else:
            value = checkin_token
        if not isinstance(value, str) or not _TOKEN_RE.match(value):
            raise DatahubCredentialError(
                "no usable EGI Check-in access token to exchange (log in again)",
                "no_checkin_token",
            )
        return value

    def caveats(
        self,
        use: DatahubUse,
        read_only: bool,
        valid_until: int,
        narrowing: Iterable[Mapping[str, Any]] = (),
    ) -> list[dict[str, Any]]:
        """The caveats of a token for ``use``: interface, read-only if asked, the
        ``data.path`` and ``service`` caveats of a spaces filter (`_narrowing`), time."""
        caveats: list[dict[str, Any]] = [{"type": "interface", "interface": use.value}]
        if read_only:
            caveats.append({"type": "data.readonly"})
        caveats.extend(dict(c) for c in narrowing)
        caveats.append({"type": "time", "validUntil": valid_until})
        return caveats

    async def _narrowing(self, checkin: str, wanted: tuple[str, ...]) -> list[dict[str, Any]]:
        """``[data.path, service]`` caveats for the user's spaces that ``wanted`` names
        (by id, ``name@id`` or a name carried by one space only: `egi_hub.spaces`),
        asked from Onezone with the Check-in token."""
        auth = {"X-Auth-Token": f"{self.idp_prefix}:{checkin}"}
        listing = await self._onezone_json("GET", USER_SPACES_PATH, "space list", auth, checkin)
        ids = listing.get("spaces") if isinstance(listing, dict) else None
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise DatahubCredentialError(
                f"Onezone at {self.onezone_url} answered the space list with something that "
                f"is not a list of space ids",
                "bad_answer",
            )
        if len(ids) > MAX_USER_SPACES:
            raise DatahubCredentialError(
                f"Onezone at {self.onezone_url} lists more than {MAX_USER_SPACES} spaces for "
                f"you: the mount's spaces cannot be looked up",
                "bad_answer",
            )
        ids = [i for i in dict.fromkeys(ids) if _ID_RE.match(i)]
        names_too = any(w not in ids for w in wanted)  # a name (or name@id): ask for all
        todo = ids if names_too else [i for i in ids if i in wanted]
        # (With names, every space's name is needed: a bare name carried by two of the
        # user's spaces is refused, see `egi_hub.spaces`.)
        gate = asyncio.Semaphore(_LOOKUPS)

        async def details(space_id: str) -> Any:
            async with gate:
                try:
                    return await self._onezone_json(
                        "GET", f"{USER_SPACES_PATH}/{quote(space_id, safe='')}",
                        "space details", auth, checkin,
                    )  # fmt: skip
                except DatahubCredentialError as e:
                    if e.kind != "refused":  # Onezone down, token refused: no token
                        raise
                    return None  # a space left meanwhile (404): not one to whitelist

        answers = await asyncio.gather(*(details(i) for i in todo))
        found = {i: a for i, a in zip(todo, answers, strict=True) if isinstance(a, dict)}
        names = {i: a["name"] if isinstance(a.get("name"), str) else None for i, a in found.items()}
        try:
            matched = match_spaces(wanted, names)
        except AmbiguousSpaceName as e:
            raise DatahubCredentialError(_clean(e, 400), "refused") from None
        chosen: dict[str, set[str]] = {}
        for space_id in matched:
            supports = found[space_id].get("providers", found[space_id].get("providersSupports"))
            providers = supports if isinstance(supports, dict) else {}
            chosen[space_id] = {p for p in providers if isinstance(p, str) and _ID_RE.match(p)}
        if not chosen:
            raise DatahubCredentialError(
                f"none of this mount's spaces ({_clean(', '.join(wanted), 120)}) is one of "
                f"yours at {self.onezone_url}",
                "refused",
            )
        providers = set().union(*chosen.values())
        if not providers:
            raise DatahubCredentialError(
                f"no Oneprovider supports this mount's spaces ({_clean(', '.join(wanted), 120)})",
                "refused",
            )
        return [path_caveat(chosen), service_caveat(providers)]

    async def _onezone_json(
        self, method: str, path: str, what: str, auth: Mapping[str, str], secret: str
    ) -> Any:
        """A Onezone JSON answer to a call authorized with the Check-in token."""
        response = await self._call(method, path, what, headers=auth)
        status = response.status_code
        if status == 401:
            raise DatahubCredentialError(
                f"Onezone at {self.onezone_url} refused your EGI Check-in token "
                f"({_onedata_error(response, secret)}); logging in again may help",
                "token_refused",
            )
        if not 200 <= status < 300:
            raise DatahubCredentialError(
                f"Onezone at {self.onezone_url} refused the {what} "
                f"({_onedata_error(response, secret)})",
                "refused",
            )
        try:
            return response.json()
        except ValueError:
            raise DatahubCredentialError(
                f"Onezone at {self.onezone_url} answered the {what} with something that is "
                f"not JSON",
                "bad_answer",
            ) from None

    async def _post(self, path: str, what: str, *, json: Any, headers: Mapping[str, str]) -> Any:
        return await self._call("POST", path, what, json=json, headers=headers)

    async def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        json: Any = None,
        headers: Mapping[str, str],
    ) -> httpx.Response:
        """One call to Onezone within ``deadline`` seconds, its body read to at most
        `MAX_ANSWER` bytes; the answer comes back as a read `httpx.Response`."""
        url = f"{self.onezone_url}{path}"
        too_big = False
        try:
            async with asyncio.timeout(self.deadline):
                async with self._client.stream(
                    method, url, json=json, headers=dict(headers)
                ) as streamed:
                    body = bytearray()
                    async for chunk in streamed.aiter_bytes():
                        body += chunk
                        if len(body) > MAX_ANSWER:
                            too_big = True
                            break
                    status = streamed.status_code
        except (httpx.TimeoutException, TimeoutError) as e:
            raise DatahubCredentialError(
                f"Onezone at {self.onezone_url} did not answer in time ({what})", "unreachable"
            ) from e
        except httpx.HTTPError as e:
            if _certificate_refused(e):
                raise DatahubCredentialError(
                    f"Onezone at {self.onezone_url} cannot be reached: its TLS certificate "
                    f"is not trusted ({what}); the site may need to set the CA file",
                    "unreachable",
                ) from e
            raise DatahubCredentialError(
                f"Onezone at {self.onezone_url} cannot be reached ({what}: "
                f"{_clean(type(e).__name__)})",
                "unreachable",
            ) from e
        if too_big:
            raise DatahubCredentialError(
                f"Onezone at {self.onezone_url} answered the {what} with more than "
                f"{MAX_ANSWER // 1024 // 1024} MiB (refused, not read on)",
                "bad_answer",
            )
        response = httpx.Response(status, content=bytes(body))
        if status >= 500:
            raise DatahubCredentialError(
                f"Onezone at {self.onezone_url} is unavailable ({what}: HTTP {status})",
                "unreachable",
            )
        return response

    async def _exchange(
        self,
        checkin: str,
        use: DatahubUse,
        read_only: bool,
        narrowing: Iterable[Mapping[str, Any]] = (),
    ) -> DatahubToken:
        valid_until = int(self._clock() + self.token_lifetime)
        caveats = self.caveats(use, read_only, valid_until, narrowing)
        response = await self._post(
            TEMPORARY_TOKENS_PATH,
            "token exchange",
            json={"type": {"accessToken": {}}, "caveats": caveats},
            headers={"X-Auth-Token": f"{self.idp_prefix}:{checkin}"},
        )
        status = response.status_code
        if status == 401:
            raise DatahubCredentialError(
                f"Onezone at {self.onezone_url} refused your EGI Check-in token "
                f"({_onedata_error(response, checkin)}); logging in again may help",
                "token_refused",
            )
        if not 200 <= status < 300:
            raise DatahubCredentialError(
                f"Onezone at {self.onezone_url} refused to issue a DataHub token "
                f"({_onedata_error(response, checkin)})",
                "refused",
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not _TOKEN_RE.match(token):
            raise DatahubCredentialError(
                f"Onezone at {self.onezone_url} answered the token exchange without a token",
                "bad_answer",
            )
        return DatahubToken(token, use, read_only, float(valid_until), tuple(caveats))

    async def scope(self, token: DatahubToken) -> DatahubScope:
        """The spaces ``token`` reaches, asked from Onezone now (online providers only)."""
        response = await self._post(
            INFER_SCOPE_PATH, "space discovery", json={"token": token.token}, headers={}
        )
        if not 200 <= response.status_code < 300:
            raise DatahubCredentialError(
                f"Onezone at {self.onezone_url} could not tell which spaces the token "
                f"reaches ({_onedata_error(response, token.token)})",
                "refused",
            )
        try:
            return parse_scope(response.json())
        except (ValueError, TypeError, AttributeError) as e:
            raise DatahubCredentialError(
                f"Onezone at {self.onezone_url} answered the space discovery with something "
                f"that is not a token scope ({_clean(e)})",
                "bad_answer",
            ) from e


_Key = tuple[str, DatahubUse, bool, tuple[str, ...]]  # user, use, read-only, spaces


def _text(value: object, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} is not a string")
    return value


def parse_scope(body: Any) -> DatahubScope:
    """A `DatahubScope` from an ``infer_access_token_scope`` answer.

    Raises ValueError/TypeError for an answer of another shape. Supports by offline or
    too old providers are dropped; spaces are sorted by name, then id.
    """
    if not isinstance(body, dict):
        raise TypeError("the answer is not a JSON object")
    access = body.get("dataAccessScope")
    if not isinstance(access, dict):
        raise TypeError("dataAccessScope is missing")
    token_read_only = access.get("readonly") is True
    spaces_in = access.get("spaces", {})
    providers_in = access.get("providers", {})
    if not isinstance(spaces_in, dict) or not isinstance(providers_in, dict):
        raise TypeError("spaces and providers must be objects")
    spaces = []
    for space_id, space in spaces_in.items():
        if not isinstance(space, dict):
            raise TypeError(f"space {_clean(space_id, 60)} is not an object")
        supports_in = space.get("supports", {})
        if not isinstance(supports_in, dict):
            raise TypeError(f"the supports of space {_clean(space_id, 60)} are not an object")
        supports = []
        for provider_id, support in supports_in.items():
            provider = providers_in.get(provider_id)
            if not isinstance(provider, dict) or provider.get("online") is not True:
                continue  # unknown or offline: nothing can be read through it now
            version = str(provider.get("version") or "")
            parsed = _version_tuple(version)
            if parsed is not None and parsed < MIN_PROVIDER_VERSION:
                continue
            supports.append(
                DatahubSupport(
                    provider_id=_text(provider_id, "a provider id"),
                    name=str(provider.get("name") or provider_id),
                    domain=str(provider.get("domain") or ""),
                    version=version,
                    read_only=isinstance(support, dict) and support.get("readonly") is True,
                )
            )
        supports.sort(key=lambda s: (s.read_only, s.name, s.provider_id))
        read_only = token_read_only or (bool(supports) and all(s.read_only for s in supports))
        spaces.append(
            DatahubSpace(
                space_id=_text(space_id, "a space id"),
                name=str(space.get("name") or space_id),
                read_only=read_only,
                supports=tuple(supports),
            )
        )
    spaces.sort(key=lambda s: (s.name, s.space_id))
    valid_until = body.get("validUntil")
    return DatahubScope(
        valid_until=float(valid_until) if isinstance(valid_until, int | float) else None,
        read_only=token_read_only,
        spaces=tuple(spaces),
    )
