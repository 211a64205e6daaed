"""Names derived from usernames that are safe on disk and cannot collide."""

from __future__ import annotations

import string

__all__ = ["path_component"]

_SAFE = frozenset(string.ascii_lowercase + string.digits + "_.")


def path_component(name: str) -> str:
    """Escape a username (or server name) into one safe file-system path component.

    Lower-case ASCII letters, digits, ``_`` and ``.`` are kept; every other byte of
    the UTF-8 encoding, and ``-`` itself, becomes ``-xx`` (hex). The mapping is
    injective, so two different names never share a directory, and the result never
    starts with ``.`` (no hidden files, no ``..``).
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
    return "".join(out)
