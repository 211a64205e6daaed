"""Every error class of the Check-in login, in one place.

Two families:

- `OIDCError` and its subclasses are raised by the code that talks to the provider
  and checks what it sends. They say what went wrong, never how to show it.
- `web.HTTPError` subclasses (`ProviderUnavailableError`, `InvalidTokenError`,
  `VORefusedError`, `IdentityMismatchError`) are what a user or a script sees:
  a status code and a message that explains itself.

`http_error` turns the first family into the second, so each handler maps the
provider's trouble the same way: a provider that is down is a 503, never a 401.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence

from tornado import web

__all__ = [
    "IdentityMismatchError",
    "InvalidGrantError",
    "InvalidTokenError",
    "OIDCError",
    "ProviderError",
    "ProviderUnavailableError",
    "ProviderUnreachableError",
    "TokenRefusedError",
    "VORefusedError",
    "http_error",
]


class OIDCError(Exception):
    """The identity provider cannot be used, or what it sent cannot be trusted."""


class ProviderError(OIDCError):
    """The provider, or the hub's registration there, cannot be used right now.

    Its answer is unusable (not JSON, another issuer, a missing endpoint), or it
    refuses the hub itself (``invalid_client``, 429): not the user's fault, so a 503
    and never a refusal that is remembered.
    """


class ProviderUnreachableError(ProviderError):
    """The provider did not answer, or answered with a server error (5xx)."""


class InvalidGrantError(OIDCError):
    """The provider no longer honours the grant (expired, revoked or reused refresh token)."""


class TokenRefusedError(OIDCError):
    """A token presented to the hub is not valid for it (forged, expired, another client's)."""


class ProviderUnavailableError(web.HTTPError):
    """The identity provider could not be used (down, or its answers are wrong): 503."""

    def __init__(self, error: OIDCError) -> None:
        message = f"EGI Check-in cannot be used right now, please try again later ({error})"
        super().__init__(503, "%s", message, reason="EGI Check-in unavailable")
        self.jupyterhub_message = message


class InvalidTokenError(web.HTTPError):
    """A bearer token the hub does not accept: 401 (RFC 6750 ``invalid_token``)."""

    def __init__(self, error: OIDCError | str) -> None:
        super().__init__(401, "%s", str(error))


class IdentityMismatchError(web.HTTPError):
    """A login whose (issuer, subject) is not the one this hub user is bound to: 403."""

    def __init__(self, username: str) -> None:
        message = (
            f"Login refused: the hub account {username} belongs to another Check-in "
            "identity. Ask the site's administrators if you think this is wrong."
        )
        super().__init__(403, "%s", message, reason="Identity mismatch")
        self.jupyterhub_message = message


class VORefusedError(web.HTTPError):
    """A user who is in none of the VOs that give access (403, with enrolment links).

    ``enrolment_url`` gives each rule's enrolment page (`SitePages`, through the
    authenticator); a rule without one is listed without a link.
    """

    def __init__(
        self, username: str, rules: Sequence[object], enrolment_url: Callable[[object], str]
    ) -> None:
        texts = [str(rule) for rule in rules]
        message = (
            f"{username} is not a member of a VO that may use this service. "
            f"Membership of one of these gives access: {', '.join(texts)}."
        )
        super().__init__(403, "%s", message, reason="Not a member of an allowed VO")
        self.jupyterhub_message = message
        items = []
        for rule, text in zip(rules, texts, strict=True):
            url = enrolment_url(rule)
            escaped = html.escape(text)
            if url:
                link = f'<a href="{html.escape(url, quote=True)}">enrol in {escaped}</a>'
                items.append(f'<li class="egi-vo">{escaped}: {link}</li>')
            else:
                items.append(f'<li class="egi-vo">{escaped}</li>')
        self.jupyterhub_html_message = (
            f"<p>Your account ({html.escape(username)}) is not a member of a Virtual "
            "Organisation that may use this service. Membership of one of these gives "
            f'access:</p><ul id="egi-vo-enrolment">{"".join(items)}</ul>'
            "<p>Once your membership is approved, sign in again.</p>"
        )


def http_error(error: OIDCError, refused_status: int = 403, prefix: str = "") -> web.HTTPError:
    """The HTTP error a user sees for a provider-side error.

    A provider that is down or unusable is a 503; a refused token (``refused_status``
    401 for bearer tokens) or a failed check is ``refused_status``.
    """
    if isinstance(error, ProviderError):
        return ProviderUnavailableError(error)
    if refused_status == 401:
        return InvalidTokenError(error)
    return web.HTTPError(refused_status, "%s", f"{prefix}{error}")
