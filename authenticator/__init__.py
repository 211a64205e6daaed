"""Logins for egi-hub: the development login (`DevAuthenticator`, entry point ``egi-dev``)."""

from .dev import DevAuthenticator

__all__ = ["DevAuthenticator"]
