"""The chart's idle culler: the values' ``cull`` section as a hub-managed service.

The keys and their meaning are zero-to-jupyterhub's (``cull.enabled``, ``timeout``,
``every``, ``users``, ``adminUsers``, ``removeNamedServers``, ``concurrency``,
``maxAge``), so a z2jh admin's values carry over; the service and its role are the ones
``egi-hub up`` adds (`egi_hub.stack.add_idle_culler`), run inside the hub's pod like
z2jh's. The defaults here are the values file's, for a values file that leaves a key out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from traitlets.config import Config

from ..stack import CULLER_SCOPES, add_idle_culler

__all__ = ["DEFAULTS", "add_culler", "culler_flags"]

DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "users": False,
    "adminUsers": True,
    "removeNamedServers": False,
    "timeout": 3600,
    "every": 600,
    "concurrency": 10,
    "maxAge": 0,
}

#: values key -> jupyterhub-idle-culler flag
FLAGS = {
    "timeout": "--timeout",
    "every": "--cull-every",
    "concurrency": "--concurrency",
    "maxAge": "--max-age",
    "users": "--cull-users",
    "adminUsers": "--cull-admin-users",
    "removeNamedServers": "--remove-named-servers",
}


def culler_flags(cull: Mapping[str, Any]) -> list[str]:
    """jupyterhub-idle-culler's command-line flags for a ``cull`` section."""
    values = {**DEFAULTS, **cull}
    flags = []
    for key, flag in FLAGS.items():
        value = values[key]
        if isinstance(value, bool):
            value = str(value).lower()
        flags.append(f"{flag}={int(value) if not isinstance(value, str) else value}")
    return flags


def add_culler(config: Config, cull: Mapping[str, Any]) -> None:
    """The culler service and its role, unless ``cull.enabled`` is false. Culling users
    (``cull.users``) deletes them, which takes ``admin:users``, as in zero-to-jupyterhub."""
    values = {**DEFAULTS, **cull}
    if not values["enabled"]:
        return
    scopes = [*CULLER_SCOPES, "admin:users"] if values["users"] else CULLER_SCOPES
    add_idle_culler(config, culler_flags(values), scopes)
