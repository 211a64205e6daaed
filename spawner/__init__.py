"""Spawners for egi-hub: `EGILocalSpawner` (entry point ``egi-local``) runs on one machine."""

from .local import EGILocalSpawner

__all__ = ["EGILocalSpawner"]
