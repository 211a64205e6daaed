"""egi-hub: JupyterHub extensions for EGI research infrastructures.

Subpackages: `egi_hub.authenticator` (login), `egi_hub.spawner` (spawning),
`egi_hub.storage_mounts` (DataHub/S3/NFS), `egi_hub.binder_service` (Binder).
Shared models: `egi_hub.vo` (entitlements, VO rules) and `egi_hub.context` (UserContext).
"""

from ._version import __version__

__all__ = ["__version__"]
