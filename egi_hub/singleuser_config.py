"""What the hub tells the notebook side, without importing it.

The hub (authenticator, spawners, local stack) must never import `egi_hub.singleuser`:
that code runs inside users' notebook servers. The few facts both sides share live
here instead: the scope that lets a server read its user's access token, and the Jupyter
config dir that enables egi-hub's notebook-side server extensions.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ACCESS_TOKEN_SCOPE", "JUPYTER_CONFIG_DIR", "MOUNTS_API_PATH", "MOUNTS_SCOPE"]

# The hub scope to read one's own access token: held by each user for themselves
# ("!user") and given to their servers' API tokens.
ACCESS_TOKEN_SCOPE = "custom:egi:access-token"

# The hub scope to read the storage mounts document (with the user's credentials) of
# one's own servers; only a server's API token is answered (see
# egi_hub.storage_mounts.api), at ``<JUPYTERHUB_API_URL>`` + MOUNTS_API_PATH.
MOUNTS_SCOPE = "custom:egi:read-mounts"
MOUNTS_API_PATH = "/egi/mounts"

# A Jupyter config dir that enables the notebook-side extensions (the token keeper);
# spawners add it to JUPYTER_CONFIG_PATH (a wheel install also puts the same file under
# <prefix>/etc/jupyter).
JUPYTER_CONFIG_DIR = str(Path(__file__).parent / "jupyter_config")
