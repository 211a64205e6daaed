"""Where a login may send the browser afterwards: only to a page of this hub.

The ``next`` parameter of a login is chosen by whoever made the link, so it is hostile
until checked. Browsers are lenient: they drop tabs and newlines from URLs, read ``\\``
as ``/``, and treat ``//host`` as another site, so ``/\\t/evil.example`` or
``/\\evil.example`` end on another host although they look like paths. The check below
refuses anything a browser might read as another place, rather than trying to clean it.
"""

from __future__ import annotations

import posixpath
import unicodedata
from urllib.parse import unquote, urlsplit

__all__ = ["local_next_url"]

MAX_LENGTH = 2048


def _suspicious(text: str) -> bool:
    """White space, control or format characters (tab, newline, NUL, RTL marks...)."""
    return any(c.isspace() or unicodedata.category(c) in ("Cc", "Cf") for c in text)


def local_next_url(value: str, base_url: str = "/") -> str:
    """``value`` if it is a path under the hub's ``base_url``, else ``""``.

    Refused: white space or control characters (also percent-encoded), a scheme or
    host once ``\\`` is read as ``/``, anything not starting with ``base_url``, and
    dot segments that climb out of it.
    """
    if not isinstance(value, str) or not value or len(value) > MAX_LENGTH:
        return ""
    decoded = unquote(value)
    if _suspicious(value) or _suspicious(decoded):
        return ""
    normal = value.replace("\\", "/")
    if "\\" in decoded:
        return ""
    parts = urlsplit(normal)
    if parts.scheme or parts.netloc or not normal.startswith("/") or normal.startswith("//"):
        return ""
    base = base_url if base_url.endswith("/") else base_url + "/"
    # Dot segments, also as %2e, are resolved by browsers before the request is sent.
    path = posixpath.normpath(unquote(parts.path))
    if path.startswith("//") or not (path + "/").startswith(base):
        return ""
    return normal
