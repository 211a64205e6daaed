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
  The endpoint itself still refuses browser sessions (see `egi_hub.storage_mounts.api`).
"""

from __future__ import annotations

from collections.abc import Mapping

from traitlets.config import Config

from egi_hub.config import SiteConfigError
from egi_hub.singleuser_config import MOUNTS_API_PATH, MOUNTS_SCOPE

from .credentials import MountCredentials
from .mounts import StorageMounts

__all__ = ["mounts_hub_config"]

# JupyterHub's own default for server tokens (Spawner.server_token_scopes).
_DEFAULT_SERVER_SCOPES = ["users:activity!user", "access:servers!server"]


def mounts_hub_config(c: Config, environ: Mapping[str, str] | None = None) -> None:
    """Wire the mounts endpoint and scope into ``c``; `SiteConfigError` if an S3 key is missing."""
    credentials = MountCredentials.instance(config=c)
    StorageMounts.instance(config=c)  # parse (and check) the mount list with this config
    issues = credentials.load_s3_keys(environ)
    if issues:
        raise SiteConfigError(issues)

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
