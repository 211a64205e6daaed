"""Errors of the OpenID provider client."""

from __future__ import annotations

__all__ = ["OIDCError", "ProviderUnreachableError"]


class OIDCError(Exception):
    """The identity provider cannot be used, or what it sent cannot be trusted."""


class ProviderUnreachableError(OIDCError):
    """The provider did not answer, or answered with a server error (5xx)."""
