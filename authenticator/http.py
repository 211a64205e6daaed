"""HTTP to the identity provider, with tornado's client (as JupyterHub itself uses)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from .provider_errors import ProviderUnreachableError

__all__ = ["ProviderHTTP", "Response"]


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes

    def json(self) -> Any:
        """The body as JSON; ``{}`` if it is not JSON (an error page, say)."""
        try:
            return json.loads(self.body or b"null") or {}
        except ValueError:
            return {}


class ProviderHTTP:
    """GET and form POST with a time-out; no redirects followed; never raises on 4xx/5xx.

    A network failure (refused, time-out, DNS) is a `ProviderUnreachableError` naming
    the URL, never a traceback in the hub.
    """

    def __init__(self, timeout: float = 10) -> None:
        self.timeout = timeout

    async def _fetch(self, request: HTTPRequest) -> Response:
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except (OSError, HTTPClientError) as e:
            raise ProviderUnreachableError(f"cannot reach {request.url}: {e}") from e
        if response.code == 599:  # tornado's code for "no HTTP response at all"
            raise ProviderUnreachableError(f"cannot reach {request.url}: {response.error}")
        return Response(response.code, response.body or b"")

    async def get(self, url: str, headers: dict[str, str] | None = None) -> Response:
        request = HTTPRequest(
            url,
            headers={"Accept": "application/json", **(headers or {})},
            request_timeout=self.timeout,
            connect_timeout=self.timeout,
            follow_redirects=False,
        )
        return await self._fetch(request)

    async def post(
        self, url: str, data: dict[str, str], auth: tuple[str, str] | None = None
    ) -> Response:
        request = HTTPRequest(
            url,
            method="POST",
            body=urlencode(data),
            headers={
                "Accept": "application/json",
                "Content-Type": "application/x-www-form-urlencoded",
            },
            auth_username=auth[0] if auth else None,
            auth_password=auth[1] if auth else None,
            auth_mode="basic" if auth else None,
            request_timeout=self.timeout,
            connect_timeout=self.timeout,
            follow_redirects=False,
        )
        return await self._fetch(request)
