"""Usernames from identity claims: safe in Kubernetes names and paths, never colliding."""

from __future__ import annotations

import hashlib
import re

__all__ = ["MAX_LENGTH", "username_from_claim"]

MAX_LENGTH = 64
# Kept as they are: lower-case, starting with a letter or digit, no "--" anywhere.
_SAFE = re.compile(r"[a-z0-9](?:[a-z0-9._@]|-(?!-))*")


def username_from_claim(value: str) -> str:
    """A JupyterHub username for an identity claim (``voperson_id`` or ``sub``).

    A value that is already safe (``[a-z0-9._@-]``, starting with a letter or digit,
    no ``--``, at most 64 characters) is used as it is, so Check-in's
    ``<hex>@egi.eu`` identifiers stay readable. Any other value becomes a readable
    slug, ``--``, and 16 hex digits of its SHA-256: the two forms never meet (only the
    second contains ``--``), and two different values never give the same name.
    """
    if not isinstance(value, str) or not value:
        raise ValueError("an empty identity claim has no username")
    if len(value) <= MAX_LENGTH and _SAFE.fullmatch(value):
        return value
    digest = hashlib.sha256(value.encode("utf-8")).hexdigest()[:16]
    slug = re.sub(r"[^a-z0-9._@]+", "-", value.lower()).strip("-._@")
    slug = re.sub(r"-{2,}", "-", slug)[: MAX_LENGTH - 18].rstrip("-") or "user"
    return f"{slug}--{digest}"
