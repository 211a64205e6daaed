"""Delete Binder guests whose session has ended (``BinderService.guests``).

A guest (`egi_hub.binder_service.guests`) exists for one session. The service, which
knows which launches are under way, deletes through the hub API every guest that has no
running or starting server, no launch under way in this service, and no activity for
``guest_grace`` seconds (the hub then calls the spawner's ``delete_forever``: the
guest's files go too). Its role allows exactly that and no more: read and delete the
users of the group ``binder-guests`` (`egi_hub.stack.BINDER_GUEST_SCOPES`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from .guests import GUEST_GROUP

__all__ = ["launching_users", "reap_forever", "reap_guests"]

log = logging.getLogger("egi_hub.binder")


def launching_users(job_keys: Collection[str]) -> set[str]:
    """The users with a launch under way, from the service's job keys
    (``launch-<user>-<digest>``, see `BinderService.launch_job`; the digest has no ``-``)."""
    return {k[len("launch-") :].rsplit("-", 1)[0] for k in job_keys if k.startswith("launch-")}


def _age(stamp: str | None, now: datetime) -> float:
    """Seconds since an ISO time of the hub's (``None``: never, so very old)."""
    if not stamp:
        return float("inf")
    try:
        when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return float("inf")
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (now - when).total_seconds()


def _idle(user: dict[str, Any], grace: float, now: datetime) -> bool:
    if user.get("servers"):  # running or starting (the API lists active servers only)
        return False
    return min(_age(user.get("created"), now), _age(user.get("last_activity"), now)) > grace


async def reap_guests(
    hub: httpx.AsyncClient, *, grace: float, busy: Collection[str] = ()
) -> list[str]:
    """Delete the idle guests (see the module); returns their names. ``hub`` is a client
    of the hub API with the service's token; ``busy``: guests with a launch under way."""
    r = await hub.get(f"groups/{GUEST_GROUP}")
    if r.status_code == 404:
        return []  # no guest was ever made
    r.raise_for_status()
    now = datetime.now(UTC)
    gone = []
    for name in r.json().get("users") or []:
        if name in busy:
            continue
        r = await hub.get(f"users/{quote(name, safe='')}")
        if r.status_code == 404:
            continue
        r.raise_for_status()
        if not _idle(r.json(), grace, now):
            continue
        r = await hub.delete(f"users/{quote(name, safe='')}")
        if r.status_code in (204, 404):
            gone.append(name)
        else:  # e.g. 400: a server started since (the next round sees it)
            log.info("Binder guest %s not deleted yet: the hub answered %s", name, r.status_code)
    return gone


async def reap_forever(
    client: Callable[[], httpx.AsyncClient],
    *,
    grace: float,
    busy: Callable[[], Collection[str]],
    every: float = 60,
) -> None:
    """`reap_guests` every ``every`` seconds until cancelled; a failed round is logged
    and the next one tries again."""
    while True:
        try:
            async with client() as hub:
                gone = await reap_guests(hub, grace=grace, busy=busy())
            if gone:
                log.info("Deleted %d Binder guests whose sessions ended", len(gone))
        except (httpx.HTTPError, ValueError) as e:
            log.warning("Deleting ended Binder guests failed: %s", e)
        await asyncio.sleep(every)
