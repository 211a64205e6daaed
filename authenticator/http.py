"""HTTP to the identity provider: one place that turns answers into results or errors.

Every call to the provider (discovery, keys, token, userinfo, introspection,
revocation) goes through `ProviderHTTP.call`, so a status means the same thing
everywhere, as oauthenticator's single ``fetch`` does:

- no answer (refused, time-out, DNS) or a 5xx: `ProviderUnreachableError` (a 503 for
  users, never "invalid token");
- ``invalid_grant`` from the token endpoint: `InvalidGrantError` (log in again);
- 401/403, or an OAuth ``invalid_token``, from an endpoint that judges a user's token
  (``bearer=True``: userinfo): `TokenRefusedError`;
- anything else that is not a 2xx JSON object (``invalid_client``, 404, 429, an HTML
  page): `ProviderError`, the hub's or the provider's trouble, a 503 too.

tornado's client is used, as JupyterHub itself uses it; redirects are never followed.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from .errors import InvalidGrantError, ProviderError, ProviderUnreachableError, TokenRefusedError

__all__ = ["ProviderHTTP"]


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body or b"null")
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class ProviderHTTP:
    """Requests to one provider, with a time-out; errors as described in the module."""

    def __init__(self, timeout: float = 10) -> None:
        self.timeout = timeout

    async def call(
        self,
        method: str,
        url: str,
        what: str,
        *,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
        empty_ok: bool = False,
        bearer: bool = False,
    ) -> dict[str, Any]:
        """Send one request; the answer's JSON object, or the error its status means.

        ``what`` names the endpoint in messages ("token endpoint"). ``empty_ok``
        accepts a 2xx without a JSON body (revocation answers an empty 200).
        ``bearer`` marks a call authorised by a user's token, whose 401/403 means that
        token is refused.
        """
        request = HTTPRequest(
            url,
            method=method,
            body=urlencode(data) if data is not None else None,
            headers={
                "Accept": "application/json",
                **({"Content-Type": "application/x-www-form-urlencoded"} if data else {}),
                **(headers or {}),
            },
            auth_username=auth[0] if auth else None,
            auth_password=auth[1] if auth else None,
            auth_mode="basic" if auth else None,
            request_timeout=self.timeout,
            connect_timeout=self.timeout,
            follow_redirects=False,
        )
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except (OSError, HTTPClientError) as e:
            raise ProviderUnreachableError(f"cannot reach the {what} at {url}: {e}") from e
        status = response.code
        if status == 599:  # tornado's code for "no HTTP response at all"
            raise ProviderUnreachableError(f"cannot reach the {what} at {url}: {response.error}")
        if status >= 500:
            raise ProviderUnreachableError(f"the {what} at {url} answered HTTP {status}")
        body = _json_object(response.body)
        if 200 <= status < 300:
            if body is not None:
                return body
            if empty_ok:
                return {}
            raise ProviderError(f"the {what} at {url} did not answer with a JSON object")
        error = str((body or {}).get("error") or f"HTTP {status}")
        description = str((body or {}).get("error_description") or "")
        detail = f"{error}: {description}" if description else error
        if error == "invalid_grant":
            raise InvalidGrantError(f"the {what} refused the grant ({detail})")
        if bearer and (error == "invalid_token" or status in (401, 403)):
            raise TokenRefusedError(f"the {what} refused the token ({detail})")
        if error == "invalid_client":
            raise ProviderError(f"the {what} does not accept the hub's client credentials")
        raise ProviderError(f"the {what} at {url} refused the request ({detail})")
