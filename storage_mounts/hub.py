"""`mounts_hub_config`: the hub-side wiring of storage mounts, in one call.

Called by the local stack (`egi_hub.stack.build_config`) and meant for a Helm chart's
hub config as well, so both run the same hub: it

- checks that the hub's environment holds every S3 key the mounts name (a missing one
  stops the hub, naming the variable and the site-file key: a hub that started
  anyway would hand out mounts that can never work), and reads them once;
- adds ``GET /hub/api/egi/mounts`` (`MountsHandler`) to ``JupyterHub.extra_handlers``;
- defines the `MOUNTS_SCOPE` custom scope, gives it to each user for themselves
  (``!user``: JupyterHub gives a server token only scopes its owner holds), and adds it
  to ``Spawner.server_token_scopes``, as `egi_hub.stack` does for the access-token scope.
  The endpoint itself answers only a server's own API token (see
  `egi_hub.storage_mounts.api`): the scope is needed, not sufficient;
- logs one warning when mounts that carry secrets (S3 keys, DataHub tokens) are given
  to servers of a local-process spawner: those all run as the hub's OS user, so any
  user's code can read every other user's credential files (the Kubernetes spawner
  isolates each server in its own pod). The local stack is for one person or a group
  that trusts each other.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any

from traitlets.config import Config
from traitlets.utils.importstring import import_item

from egi_hub.config import SiteConfigError
from egi_hub.singleuser_config import MOUNTS_API_PATH, MOUNTS_SCOPE

from .credentials import MountCredentials
from .datahub import DatahubMount
from .mounts import StorageMounts
from .s3 import S3Mount

__all__ = ["LOCAL_SECRETS_WARNING", "mounts_hub_config", "warn_if_local_secrets"]

log = logging.getLogger("JupyterHub")

# JupyterHub's own default for server tokens (Spawner.server_token_scopes).
_DEFAULT_SERVER_SCOPES = ["users:activity!user", "access:servers!server"]

LOCAL_SECRETS_WARNING = (
    "Storage mounts %s carry credentials, and this hub's spawner (%s) runs every user's "
    "server as the hub's own OS user: any user's code can read every other user's "
    "credential files under ~/.egi. Use the local stack only for one person or a group "
    "that trusts each other; on Kubernetes each server is isolated in its own pod."
)


def _spawner_class(value: Any) -> type | None:
    """The spawner class ``JupyterHub.spawner_class`` names (entry point, dotted name or
    class); None if it cannot be loaded here (the hub will say why at start)."""
    if isinstance(value, type):
        return value
    if not isinstance(value, str):
        return None
    for ep in entry_points(group="jupyterhub.spawners"):
        if ep.name == value:
            try:
                return ep.load()
            except Exception:
                return None
    try:
        loaded = import_item(value)
    except Exception:
        return None
    return loaded if isinstance(loaded, type) else None


def warn_if_local_secrets(c: Config, mounts: Any) -> bool:
    """Log `LOCAL_SECRETS_WARNING` once if secret-bearing mounts meet a local-process
    spawner (JupyterHub's default one included); True if it did."""
    from jupyterhub.spawner import LocalProcessSpawner

    secret = [m.name for m in mounts if isinstance(m, S3Mount | DatahubMount)]
    if not secret:
        return False
    value = c.JupyterHub.get("spawner_class", LocalProcessSpawner)
    cls = _spawner_class(value)
    if cls is None or not issubclass(cls, LocalProcessSpawner):
        return False
    log.warning(LOCAL_SECRETS_WARNING, ", ".join(repr(n) for n in secret), cls.__name__)
    return True


def mounts_hub_config(c: Config, environ: Mapping[str, str] | None = None) -> None:
    """Wire the mounts endpoint and scope into ``c``; `SiteConfigError` if an S3 key is missing."""
    credentials = MountCredentials.instance(config=c)
    storage = StorageMounts.instance(config=c)  # parse (and check) the list with this config
    issues = credentials.load_s3_keys(environ)
    if issues:
        raise SiteConfigError(issues)
    warn_if_local_secrets(c, storage.mounts)

    handlers = list(c.JupyterHub.get("extra_handlers", []))
    from .api import MountsHandler  # JupyterHub's handler classes: only when wiring a hub

    pattern = "/api" + MOUNTS_API_PATH
    if not any(h[0] == pattern for h in handlers):
        handlers.append((pattern, MountsHandler))
    c.JupyterHub.extra_handlers = handlers

    scopes = dict(c.JupyterHub.get("custom_scopes", {}))
    scopes.setdefault(
        MOUNTS_SCOPE,
        {"description": "Read the storage mounts, with credentials, of one's own servers."},
    )
    c.JupyterHub.custom_scopes = scopes

    user_scope = f"{MOUNTS_SCOPE}!user"
    roles = [dict(r) for r in c.JupyterHub.get("load_roles", [])]
    user_role = next((r for r in roles if r.get("name") == "user"), None)
    if user_role is None:
        roles.append({"name": "user", "scopes": ["self", user_scope]})
    elif user_scope not in user_role.get("scopes", []):
        user_role["scopes"] = [*user_role.get("scopes", []), user_scope]
    c.JupyterHub.load_roles = roles

    server_scopes = c.Spawner.get("server_token_scopes", None)
    if server_scopes is None:
        server_scopes = list(_DEFAULT_SERVER_SCOPES)
    if not callable(server_scopes) and user_scope not in server_scopes:
        c.Spawner.server_token_scopes = [*server_scopes, user_scope]
