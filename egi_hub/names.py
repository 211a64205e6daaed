"""Names from user input, made safe where they go (on disk, injectively, so they cannot
collide; as Kubernetes label values), and the control characters no name may hold."""

from __future__ import annotations

import hashlib
import re
import string

__all__ = ["CONTROL", "CONTROL_CHARS", "label_value", "path_component"]

#: C0 and C1 control characters and DEL, as a regex class body: never part of a name, a
#: path or a link egi-hub accepts (C1 too: some terminals act on them).
CONTROL_CHARS = "\x00-\x1f\x7f-\x9f"
CONTROL = re.compile(f"[{CONTROL_CHARS}]")

_SAFE = frozenset(string.ascii_lowercase + string.digits + "_.")
MAX_COMPONENT = 120  # well under the 255 bytes file systems allow in one name


def path_component(name: str) -> str:
    """Escape a username (or server name) into one safe file-system path component.

    Lower-case ASCII letters, digits, ``_`` and ``.`` are kept; every other byte of
    the UTF-8 encoding, and ``-`` itself, becomes ``-xx`` (hex). The mapping is
    injective, so two different names never share a directory, and the result never
    starts with ``.`` (no hidden files, no ``..``). A result longer than 120 characters
    is cut to 100 and ends with ``--`` and 16 hex digits of the name's SHA-256 (``--``
    never appears otherwise, since each ``-`` starts a two-digit escape).
    """
    if not name:
        raise ValueError("an empty name has no path component")
    out = []
    for i, byte in enumerate(name.encode("utf-8")):
        char = chr(byte)
        if char in _SAFE and not (i == 0 and char == "."):
            out.append(char)
        else:
            out.append(f"-{byte:02x}")
    result = "".join(out)
    if len(result) > MAX_COMPONENT:
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:16]
        result = f"{result[:100].rstrip('-')}--{digest}"
    return result


def label_value(text: str) -> str:
    """A valid Kubernetes label value (63 characters of ``[A-Za-z0-9._-]``, alnum ends)."""
    value = re.sub(r"[^A-Za-z0-9._-]+", "-", text)[:63]
    return value.strip("-._")
