"""Where a login may send the browser afterwards: only to a page of this hub.

The ``next`` parameter of a login is chosen by whoever made the link, so it is hostile
until checked. Browsers are lenient: they drop tabs and newlines from URLs, read ``\\``
as ``/``, and treat ``//host`` as another site, so ``/\\t/evil.example`` or
``/\\evil.example`` end on another host although they look like paths. The check below
refuses anything a browser might read as another place, rather than trying to clean it.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

__all__ = ["local_next_url"]

MAX_LENGTH = 2048


def _suspicious(text: str) -> bool:
    """White space, control or format characters (tab, newline, NUL, RTL marks...)."""
    return any(c.isspace() or unicodedata.category(c) in ("Cc", "Cf") for c in text)


def local_next_url(value: str, base_url: str = "/") -> str:
    """``value`` if it is a plain path under the hub's ``base_url``, else ``""``.

    Refused: white space, control characters or ``\\`` (also percent-encoded, as
    browsers read ``\\`` as ``/``); anything that does not start with exactly one
    ``/`` (``//host`` and ``///host`` are other sites); empty or dot segments
    (``//``, ``/./``, ``/../``, also percent-encoded) anywhere in the path, which
    browsers resolve before sending; and paths outside ``base_url``. The path is cut
    at the first ``?`` or ``#`` here, not by a URL parser with its own leniencies.
    """
    if not isinstance(value, str) or not value or len(value) > MAX_LENGTH:
        return ""
    decoded = unquote(value)
    if _suspicious(value) or _suspicious(decoded) or "\\" in decoded:
        return ""
    raw_path = re.split(r"[?#]", value, maxsplit=1)[0]
    if not raw_path.startswith("/") or raw_path.startswith("//"):
        return ""
    path = unquote(raw_path)
    segments = path.split("/")[1:]  # "/" gives [""]; "/a/" gives ["a", ""]
    if any(seg in (".", "..") for seg in segments) or "" in segments[:-1]:
        return ""
    base = base_url if base_url.endswith("/") else base_url + "/"
    if not (path + "/").startswith(base):
        return ""
    return value
