"""Where a login may send the browser afterwards: only to a page of this hub.

The ``next`` parameter of a login is chosen by whoever made the link, so it is hostile
until checked. Browsers are lenient: they drop tabs and newlines from URLs, read ``\\``
as ``/``, and treat ``//host`` as another site, so ``/\\t/evil.example`` or
``/\\evil.example`` end on another host although they look like paths. The check below
refuses anything a browser might read as another place, rather than trying to clean it.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import unquote, urlsplit

__all__ = ["local_next_url"]

MAX_LENGTH = 2048


def _suspicious(text: str) -> bool:
    """White space, control or format characters (tab, newline, NUL, RTL marks...)."""
    return any(c.isspace() or unicodedata.category(c) in ("Cc", "Cf") for c in text)


def local_next_url(value: str, base_url: str = "/") -> str:
    """``value`` if it is a plain path under the hub's ``base_url``, else ``""``.

    Refused: white space, control characters or ``\\`` (also percent-encoded, as
    browsers read ``\\`` as ``/``), a scheme or host, anything not under ``base_url``, and
    empty or dot segments (``//``, ``/./``, ``/../``, also as ``%2e``) anywhere in the
    path, which browsers resolve before sending.
    """
    if not isinstance(value, str) or not value or len(value) > MAX_LENGTH:
        return ""
    decoded = unquote(value)
    if _suspicious(value) or _suspicious(decoded) or "\\" in decoded:
        return ""
    try:
        parts = urlsplit(value)
    except ValueError:  # e.g. a "host" with characters that NFKC turns into separators
        return ""
    if parts.scheme or parts.netloc or not value.startswith("/"):
        return ""
    path = unquote(parts.path)
    segments = path.split("/")[1:]
    if any(seg in ("", ".", "..") for seg in segments[:-1]) or segments[-1] in (".", ".."):
        return ""
    base = base_url if base_url.endswith("/") else base_url + "/"
    if not (path + "/").startswith(base):
        return ""
    return value
