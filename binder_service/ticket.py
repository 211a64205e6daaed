"""Launch tickets: how the Binder service tells the spawner which environment to run.

The service starts a Binder session through the hub API *as the user* (with the user's
own OAuth token), so the hub's VO admission, quotas, mounts and token hand-off apply as
to any server. What environment and content the server gets travels in the start's
``user_options``, and those are user input: anyone can POST ``user_options`` to their
own server. So the service signs them, and the spawner (`BinderSpawnerMixin`) runs only
what carries a valid signature for *this* user, *this* server and a time not yet past:
a user cannot point a server at another user's private build, at a path of their
choosing, or replay an old ticket for another server.

A ticket is ``<base64url JSON payload>.<base64url HMAC-SHA256>``, keyed with the secret
the hub and the service share (``BinderService.ticket_secret`` and
``BinderSpawnerMixin.binder_ticket_secret``; the local stack makes one per data dir).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

__all__ = ["MAX_TICKET", "TicketError", "sign_ticket", "verify_ticket"]

MAX_TICKET = 16_384  # bytes: a ticket names paths and a spec, never content
_PURPOSE = b"egi-hub binder launch ticket v1\0"


class TicketError(ValueError):
    """A ticket that must not be honoured; ``str()`` says why (for the hub's log and a
    403 to the caller, never with the ticket itself)."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: str, payload: bytes) -> bytes:
    return hmac.new(secret.encode(), _PURPOSE + payload, hashlib.sha256).digest()


def sign_ticket(
    secret: str, *, user: str, server: str, launch: dict[str, Any], ttl: float = 600,
    now: float | None = None,
) -> str:  # fmt: skip
    """A ticket for ``user``'s server ``server`` to run ``launch`` (JSON-safe), valid for
    ``ttl`` seconds."""
    if len(secret) < 32:
        raise TicketError("the ticket secret is shorter than 32 characters")
    issued = time.time() if now is None else now
    body = {"user": user, "server": server, "exp": issued + ttl, "launch": launch}
    payload = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    return f"{_b64(payload)}.{_b64(_mac(secret, payload))}"


def verify_ticket(
    secret: str, ticket: Any, *, user: str, server: str, now: float | None = None
) -> dict[str, Any]:
    """The ``launch`` a valid ticket carries for ``user``'s server ``server``;
    `TicketError` for anything else (forged, altered, expired, another user's or
    another server's, malformed)."""
    if not secret:
        raise TicketError("this hub has no Binder ticket secret: Binder launches are off")
    if not isinstance(ticket, str) or len(ticket) > MAX_TICKET or ticket.count(".") != 1:
        raise TicketError("malformed Binder ticket")
    encoded, _, mac = ticket.partition(".")
    try:
        payload, given = _unb64(encoded), _unb64(mac)
    except (ValueError, TypeError):
        raise TicketError("malformed Binder ticket") from None
    if not hmac.compare_digest(given, _mac(secret, payload)):
        raise TicketError("the Binder ticket's signature is not valid")
    try:
        body = json.loads(payload)
    except ValueError:
        raise TicketError("malformed Binder ticket") from None
    if not isinstance(body, dict) or not isinstance(body.get("launch"), dict):
        raise TicketError("malformed Binder ticket")
    if body.get("user") != user or body.get("server") != server:
        raise TicketError("the Binder ticket is for another user or server")
    expires = body.get("exp")
    if not isinstance(expires, int | float) or (time.time() if now is None else now) > expires:
        raise TicketError("the Binder ticket has expired: launch again from the link")
    return body["launch"]
