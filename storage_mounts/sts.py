"""S3 credentials per user from an STS endpoint: ``AssumeRoleWithWebIdentity``.

Static S3 keys cannot keep one user out of another user's prefix (every user of a key
holds the same key). S3 services that trust EGI Check-in (MinIO, Ceph RGW, AWS) can do
better: given the user's own Check-in token, their Security Token Service issues
*temporary* credentials (access key id, secret, session token, expiry) whose rights the
service's policy decides from the token's identity, so ``bucket: "{username}"`` or
``prefix: "home/{username}/"`` is enforced by the service itself.

The request is AWS's query API, documented the same by the three services: an
**unsigned** ``POST`` (the web identity token is the only credential) with a form body

    Action=AssumeRoleWithWebIdentity  Version=2011-06-15  WebIdentityToken=<token>
    DurationSeconds=900..43200        RoleSessionName=<name>  [RoleArn=<arn>]

``RoleArn`` names the role to assume: required by AWS and Ceph RGW, optional for MinIO
(whose role policy is chosen by it; without one MinIO takes the policy from a claim of
the token and *refuses* a RoleArn). ``RoleSessionName`` (AWS and Ceph require it,
MinIO ignores it) is made from the hub user's name. The answer is XML::

    <AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult><Credentials>
      <AccessKeyId/><SecretAccessKey/><SessionToken/><Expiration>ISO 8601</Expiration>
    </Credentials>...</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>

or ``<ErrorResponse><Error><Code/><Message/></Error></ErrorResponse>`` with a 4xx/5xx
status. The XML comes from the network: it is parsed only after refusing any document
type declaration (no entity can expand), and at most `MAX_ANSWER` bytes of it.

`StsCredentialCache` keeps each user's credentials (per STS endpoint, role and
duration), renews them once fewer than ``renew_before`` seconds (at most half their
lifetime) are left, and runs one exchange per key at a time (single flight): concurrent
requests share it. When a renewal fails while the cached credentials still work, they
keep serving. Every failure is an `StsError` whose ``reason`` a user can read; it never
holds the Check-in token or a credential (a service echoing the token gets it blanked).
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import re
import time
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from .renewing_cache import RenewingCache

__all__ = [
    "MAX_ANSWER",
    "StsCredentialCache",
    "StsCredentials",
    "StsError",
    "StsSettings",
    "parse_answer",
    "role_session_name",
]

log = logging.getLogger(__name__)

VERSION = "2011-06-15"
MAX_ANSWER = 64 * 1024  # bytes of an STS answer read: real ones are ~2 KiB
MIN_DURATION, MAX_DURATION = 900, 43200  # AWS's documented DurationSeconds bounds
_MAX_DETAIL = 200
_TOKEN_RE = re.compile(r"^[\x21-\x7e]+$")  # printable ASCII without spaces
_SESSION_CHAR = re.compile(r"[^\w+=,.@-]", re.ASCII)  # AWS: [\w+=,.@-]{2,64}
_DECLARATION = re.compile(r"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)
# An XML declaration naming another encoding than UTF-8 (AWS answers in UTF-8).
_OTHER_ENCODING = re.compile(r"""<\?xml[^>]*encoding\s*=\s*["'](?!utf-?8["'])""", re.IGNORECASE)

#: Gets the user's fresh Check-in access token; called only when an exchange is needed.
TokenGetter = Callable[[], Awaitable[str]]


class StsError(Exception):
    """No S3 credentials from the STS endpoint; ``reason`` says why, for the user.

    ``kind``: ``"unreachable"`` (no answer, or a 5xx), ``"token_refused"`` (the service
    refused the Check-in token: ``InvalidIdentityToken``, ``ExpiredTokenException``,
    ``IDPRejectedClaim``), ``"refused"`` (refused otherwise, e.g. ``AccessDenied``),
    ``"bad_answer"`` (not what AWS documents), ``"no_checkin_token"``. ``code`` is the
    STS error code when the service gave one.
    """

    def __init__(self, reason: str, kind: str, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind
        self.code = code


@dataclass(frozen=True)
class StsCredentials:
    """Temporary S3 credentials; everything but the key id is kept out of ``repr``."""

    key: str
    secret: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: float  # epoch seconds
    issued_at: float = 0.0

    @property
    def lifetime(self) -> float:
        return self.expiration - self.issued_at


@dataclass(frozen=True)
class StsSettings:
    """What one exchange asks for: where, which role, for how long."""

    endpoint_url: str
    role_arn: str = ""
    duration_seconds: int = 3600


def role_session_name(username: str) -> str:
    """A ``RoleSessionName`` for a hub user: AWS's characters (``[\\w+=,.@-]``), 2-64 of
    them. It labels the session in the service's logs; access follows the token."""
    name = _SESSION_CHAR.sub("_", username)[:64]
    return name if len(name) >= 2 else f"{name}__"[:2]


def _clean(text: object, secret: str = "", limit: int = _MAX_DETAIL) -> str:
    """Words from the service made safe to show: printable, one line, bounded, and
    without ``secret`` should the service echo it."""
    flat = "".join(ch if ch.isprintable() else " " for ch in str(text))
    if secret and len(secret) >= 4:
        flat = flat.replace(secret, "[token]")
    flat = " ".join(flat.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: ET.Element | None, name: str) -> ET.Element | None:
    if element is None:
        return None
    return next((c for c in element if _local(c.tag) == name), None)


def _parse_xml(body: bytes) -> ET.Element:
    """The root element; ValueError for a declaration (DOCTYPE/ENTITY), another encoding
    than UTF-8, or bad XML.

    The check runs on the decoded text, and only UTF-8 is accepted: a byte search for
    ``<!DOCTYPE`` missed the same document in UTF-16, which expat then parsed with its
    entities."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the answer is not UTF-8 XML") from None
    if "\x00" in text or _OTHER_ENCODING.search(text):
        raise ValueError("the answer is not UTF-8 XML")
    if _DECLARATION.search(text):
        raise ValueError("the answer declares a document type (refused: entities)")
    try:
        return ET.fromstring(text.lstrip("\ufeff"))
    except ET.ParseError as e:
        raise ValueError(f"the answer is not XML ({e.code})") from None


def _expiration(text: str) -> float:
    """ISO 8601 (``2019-11-09T13:34:41Z``, fractions allowed) as epoch seconds (UTC)."""
    value = datetime.datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return value.timestamp()


def parse_answer(
    status: int, body: bytes, *, endpoint: str, token: str = "", now: float | None = None
) -> StsCredentials:
    """The credentials of a successful answer; `StsError` for an error answer or one
    that is not what AWS documents. ``token`` is blanked from any text kept."""
    now = time.time() if now is None else now
    try:
        root = _parse_xml(body)
    except ValueError as e:
        if status >= 500:
            raise StsError(
                f"the STS endpoint {endpoint} is unavailable (HTTP {status})", "unreachable"
            ) from None
        raise StsError(f"the STS endpoint {endpoint} answered oddly: {e}", "bad_answer") from None
    if _local(root.tag) == "ErrorResponse" or status >= 400:
        error = _child(root, "Error")
        code_el, message_el = _child(error, "Code"), _child(error, "Message")
        code = _clean(code_el.text or "", limit=60) if code_el is not None else ""
        message = _clean(message_el.text or "", token) if message_el is not None else ""
        raise _error(status, code or None, message, endpoint)
    result = _child(root, "AssumeRoleWithWebIdentityResult")
    creds = _child(result, "Credentials")
    values = {}
    for name in ("AccessKeyId", "SecretAccessKey", "SessionToken", "Expiration"):
        element = _child(creds, name)
        text = (element.text or "").strip() if element is not None else ""
        if not text or not _TOKEN_RE.match(text):
            raise StsError(
                f"the STS endpoint {endpoint} answered without a usable {name}", "bad_answer"
            )
        values[name] = text
    try:
        expiration = _expiration(values["Expiration"])
    except ValueError:
        raise StsError(
            f"the STS endpoint {endpoint} answered an Expiration that is not a date",
            "bad_answer",
        ) from None
    if expiration <= now:
        raise StsError(
            f"the STS endpoint {endpoint} answered credentials that have already expired "
            "(is the hub's clock right?)",
            "bad_answer",
        )
    return StsCredentials(
        key=values["AccessKeyId"],
        secret=values["SecretAccessKey"],
        session_token=values["SessionToken"],
        expiration=expiration,
        issued_at=now,
    )


# What each documented error code means for the user, and whether the token is at fault.
_CODES = {
    "InvalidIdentityToken": (
        "token_refused",
        "refused your EGI Check-in token as invalid; logging in again may help",
    ),
    "ExpiredTokenException": (
        "token_refused",
        "refused your EGI Check-in token as expired; log in again",
    ),
    "ExpiredToken": ("token_refused", "refused your EGI Check-in token as expired; log in again"),
    "IDPRejectedClaim": (
        "token_refused",
        "was told by EGI Check-in that your token is not valid (revoked or expired); log in again",
    ),
    "IDPCommunicationError": (
        "unreachable",
        "could not reach EGI Check-in to verify your token; try again later",
    ),
    "AccessDenied": (
        "refused",
        "refused to give you S3 credentials (your identity is not allowed to assume the "
        "role; ask the site's admins)",
    ),
}


def _error(status: int, code: str | None, message: str, endpoint: str) -> StsError:
    detail = f"{code}: {message}" if code and message else (code or message or f"HTTP {status}")
    if code in _CODES:
        kind, words = _CODES[code]
        return StsError(f"the STS endpoint {endpoint} {words} ({detail})", kind, code)
    if status >= 500:
        return StsError(
            f"the STS endpoint {endpoint} is unavailable ({detail})", "unreachable", code
        )
    return StsError(
        f"the STS endpoint {endpoint} refused to give S3 credentials ({detail})", "refused", code
    )


class StsCredentialCache(RenewingCache[StsCredentials]):
    """Temporary S3 credentials for hub users, from ``AssumeRoleWithWebIdentity``.

    Keyed by (user cache key, `StsSettings`); the user cache key is the hub's name and
    database id of the user (`egi_hub.storage_mounts.credentials`), so a user deleted and
    re-created under the same name never gets the first one's credentials. Cached,
    single-flight and renewed as `RenewingCache` says.
    """

    failure = StsError

    def __init__(
        self,
        *,
        renew_before: float = 900,
        timeout: float = 10,
        deadline: float | None = None,
        ca_file: str | None = None,
        http_client: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(
            renew_before=renew_before,
            clock=clock,
            http_client=http_client,
            timeout=timeout,
            deadline=deadline,
            ca_file=ca_file,
        )

    def __repr__(self) -> str:
        return f"<StsCredentialCache users={len({k[0] for k in self._cache})}>"

    def expires_at(self, value: StsCredentials) -> float:
        return value.expiration

    def margin(self, value: StsCredentials) -> float:
        """``renew_before``, but at most half the credentials' life."""
        return min(self.renew_before, max(value.lifetime, 0) / 2)

    async def credentials(
        self, user: str, username: str, settings: StsSettings, checkin_token: TokenGetter
    ) -> StsCredentials:
        """Valid credentials for ``user`` (cache key; ``username`` names the session)."""
        return await self._get(
            (user, settings), lambda: self._renew(user, settings, username, checkin_token)
        )

    async def _renew(
        self, user: str, settings: StsSettings, username: str, checkin_token: TokenGetter
    ) -> StsCredentials:
        token = await checkin_token()
        if not isinstance(token, str) or not _TOKEN_RE.match(token):
            raise StsError(
                "no usable EGI Check-in access token to exchange (log in again)",
                "no_checkin_token",
            )
        try:
            creds = await self.exchange(settings, token, role_session_name(username))
        except StsError as e:
            log.warning("S3 STS credentials for %s not issued: %s", user, e.reason)
            raise
        log.info(
            "S3 STS credentials issued for %s by %s, valid until %s",
            user,
            settings.endpoint_url,
            time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(creds.expiration)),
        )
        return creds

    async def exchange(self, settings: StsSettings, token: str, session: str) -> StsCredentials:
        """One ``AssumeRoleWithWebIdentity`` call (no cache)."""
        endpoint = settings.endpoint_url
        form = {
            "Action": "AssumeRoleWithWebIdentity",
            "Version": VERSION,
            "WebIdentityToken": token,
            "RoleSessionName": session,
            "DurationSeconds": str(settings.duration_seconds),
        }
        if settings.role_arn:
            form["RoleArn"] = settings.role_arn
        url = endpoint if urlsplit(endpoint).path else endpoint + "/"
        try:
            async with (
                asyncio.timeout(self.deadline),
                self._client.stream("POST", url, data=form) as response,
            ):
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_ANSWER:
                        raise StsError(
                            f"the STS endpoint {endpoint} answered more than "
                            f"{MAX_ANSWER // 1024} KiB",
                            "bad_answer",
                        )
                status = response.status_code
        except (httpx.TimeoutException, TimeoutError):
            raise StsError(
                f"the STS endpoint {endpoint} did not answer in time", "unreachable"
            ) from None
        except httpx.HTTPError as e:
            raise StsError(
                f"the STS endpoint {endpoint} cannot be reached ({type(e).__name__})",
                "unreachable",
            ) from None
        return parse_answer(status, body, endpoint=endpoint, token=token, now=self._clock())
