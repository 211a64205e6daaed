"""Delete Binder guests whose session has ended (``BinderService.guests``).

A guest (`egi_hub.binder_service.guests`) exists for one session. The service, which
knows which launches are under way, deletes through the hub API every guest that has no
running or starting server, no launch under way in this service, and no activity for
``guest_grace`` seconds (the hub then calls the spawner's ``delete_forever``: the
guest's files go too). A guest older than ``max_age`` has its session stopped and is
deleted whatever its activity. Its role allows exactly that and no more: read, stop and
delete the users of the group ``binder-guests`` (`egi_hub.stack.BINDER_GUEST_SCOPES`),
and it deletes only those that are guests by their name too (`egi_hub.context.is_guest`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from egi_hub.context import GUEST_GROUP, is_guest

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


def _too_old(user: dict[str, Any], max_age: float, now: datetime) -> bool:
    return _age(user.get("created"), now) > max_age


def _idle(user: dict[str, Any], grace: float, now: datetime) -> bool:
    if user.get("servers"):  # running or starting (the API lists active servers only)
        return False
    return min(_age(user.get("created"), now), _age(user.get("last_activity"), now)) > grace


async def reap_guests(
    hub: httpx.AsyncClient,
    *,
    grace: float,
    max_age: float = float("inf"),
    busy: Callable[[], Collection[str]] = tuple,
) -> list[str]:
    """Delete the idle guests, and stop the sessions of those older than ``max_age``
    (deleted at the next round), see the module; returns the names deleted. ``hub`` is
    a client of the hub API with the service's token; ``busy()``: the guests with a
    launch under way (asked again just before each deletion)."""
    r = await hub.get(f"groups/{GUEST_GROUP}")
    if r.status_code == 404:
        return []  # no guest was ever made
    r.raise_for_status()
    now = datetime.now(UTC)
    gone = []
    for name in r.json().get("users") or []:
        path = f"users/{quote(str(name), safe='')}"
        r = await hub.get(path)
        if r.status_code == 404:
            continue
        r.raise_for_status()
        user = r.json()
        if not is_guest(user):  # a guest's name and group, both: no one else, ever
            continue
        if _too_old(user, max_age, now):
            for server in user.get("servers") or {}:
                await hub.delete(f"{path}/servers/{quote(server, safe='')}")
            if user.get("servers"):
                continue  # deleted once stopped, at a next round
        elif name in busy() or not _idle(user, grace, now):
            continue
        r = await hub.delete(path)
        if r.status_code in (204, 404):
            gone.append(name)
        else:  # e.g. 400: a server started since (the next round sees it)
            log.info("Binder guest %s not deleted yet: the hub answered %s", name, r.status_code)
    return gone


async def reap_forever(
    client: Callable[[], httpx.AsyncClient],
    *,
    grace: float,
    max_age: float,
    busy: Callable[[], Collection[str]],
    every: float = 60,
) -> None:
    """`reap_guests` every ``every`` seconds until cancelled; a failed round, whatever
    the cause, is logged and the next one tries again (guests must never pile up)."""
    while True:
        try:
            async with client() as hub:
                gone = await reap_guests(hub, grace=grace, max_age=max_age, busy=busy)
            if gone:
                log.info("Deleted %d Binder guests whose sessions ended", len(gone))
        except asyncio.CancelledError:
            raise
        except Exception as e:
            log.warning("Deleting ended Binder guests failed: %s: %s", type(e).__name__, e)
        await asyncio.sleep(every)
