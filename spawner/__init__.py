"""Spawners for egi-hub, over one VO/profile/quota policy.

- `EGILocalSpawner` (entry point ``egi-local``): local processes, the local stack's default;
- `EGIKubeSpawner` (entry point ``egi-kube``): Kubernetes pods (KubeSpawner).
"""

from .local import EGILocalSpawner

__all__ = ["EGILocalSpawner"]
