"""Logins for egi-hub.

- `CheckinAuthenticator` (entry point ``egi-checkin``): EGI Check-in / any OIDC issuer;
- `DevAuthenticator` (entry point ``egi-dev``): the development login of the local stack.
"""

from .checkin import CheckinAuthenticator
from .dev import DevAuthenticator

__all__ = ["CheckinAuthenticator", "DevAuthenticator"]
