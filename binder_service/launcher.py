"""`HubLauncher`: start a Binder session through the hub's REST API, as the user.

The service calls the hub with the user's own OAuth token (the one its hub login gave
it, scoped by ``oauth_client_allowed_scopes`` to the user's own servers and tokens), so
the hub decides exactly as for a start from its home page: VO admission, quotas,
storage mounts and the Check-in token hand-off all apply, and the service itself needs
no power over other users' servers. A refusal (a quota, a VO) comes back as the hub
words it.

A session is the named server ``binder-<repository hash>-<content hash>``: a second
launch of the same content while it runs lands in it again (nothing starts twice), a
launch of other content gets its own server, and the service counts a repository's
running sessions by the prefix (``BinderService.repo_quota``). On ``ready`` the event
carries the URL to land on, and an empty ``token`` (mybinder's field; see
`HubLauncher.launch`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

__all__ = ["HubLauncher", "LaunchFailed", "repo_prefix", "session_name"]

MAX_MESSAGE = 2000


class LaunchFailed(Exception):
    """The hub would not start the session; ``str()`` is its reason, for the user."""


def _short(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def repo_prefix(source: str) -> str:
    """The start of the names of every session of one repository or record (what the
    per-repository quota counts)."""
    return f"binder-{_short(source, 6)}-"


def session_name(source: str, content_id: str) -> str:
    """The named server of a content's session: stable, short, a valid server name, and
    starting with its repository's `repo_prefix`."""
    return repo_prefix(source) + _short(content_id, 8)


def _reason(response: httpx.Response) -> str:
    try:
        message = response.json().get("message")
    except (ValueError, AttributeError):
        message = None
    text = str(message or response.reason_phrase or "error")
    return f"the hub answered {response.status_code}: {text[:MAX_MESSAGE]}"


@dataclass
class HubLauncher:
    """The hub API at ``api_url`` (``JUPYTERHUB_API_URL``), as seen from the service."""

    api_url: str
    timeout: float = 600
    service_token: str = ""  # the service's own (JUPYTERHUB_API_TOKEN): read-only use

    async def count_sessions(self, prefix: str, *, besides: str = "") -> int:
        """How many servers, of all users, are named with ``prefix`` (a repository's
        running or starting sessions), ``besides`` left out. Needs the service's role
        (``list:users``, ``read:servers``)."""
        count = 0
        async with self.service_client() as hub:
            offset = 0
            while True:
                r = await hub.get("users", params={"state": "active", "offset": offset,
                                                   "limit": 200})  # fmt: skip
                if r.status_code != 200:
                    raise LaunchFailed(_reason(r))
                body = r.json()
                users = body["items"] if isinstance(body, dict) else body
                for user in users:
                    for name in user.get("servers") or {}:
                        count += name.startswith(prefix) and name != besides
                if len(users) < 200:
                    return count
                offset += len(users)

    def service_client(self) -> httpx.AsyncClient:
        """A client of the hub API with the service's own token (its role's scopes)."""
        return self._client(self.service_token)

    def _client(self, token: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.api_url.rstrip("/") + "/",
            headers={"Authorization": f"token {token}"},
            timeout=httpx.Timeout(30, read=self.timeout),
            follow_redirects=False,
        )

    async def launch(
        self, *, user: str, token: str, server: str, ticket: str
    ) -> AsyncIterator[dict[str, Any]]:
        """Start (or find running) ``user``'s ``server``, yielding ``launching`` events,
        then ``ready`` with ``url`` (the server's path on the hub) and ``token``."""
        base = f"users/{quote(user, safe='')}"
        path = f"{base}/servers/{quote(server, safe='')}"
        async with self._client(token) as hub:
            model = await self._server_model(hub, base, server)
            if model is not None and model.get("ready"):
                yield {"phase": "launching", "message": "Your session is already running\n"}
            else:
                if model is None or not model.get("pending"):
                    r = await hub.post(path, json={"binder": ticket})
                    if r.status_code not in (201, 202):
                        raise LaunchFailed(_reason(r))
                async for event in self._progress(hub, path):
                    yield event
                model = await self._server_model(hub, base, server)
                if model is None or not model.get("ready"):
                    raise LaunchFailed("the session stopped before it was ready")
        yield {
            "phase": "ready",
            "message": f"server running at {model['url']}\n",
            "url": model["url"],
            # mybinder's clients read a token here; the browser needs none (the hub's
            # login reaches the session), and minting one would need the power to mint
            # any token of the user's (see egi_hub.stack.BINDER_OAUTH_SCOPES).
            "token": "",
        }

    async def _server_model(
        self, hub: httpx.AsyncClient, base: str, server: str
    ) -> dict[str, Any] | None:
        r = await hub.get(base)
        if r.status_code != 200:
            raise LaunchFailed(_reason(r))
        servers = r.json().get("servers") or {}
        found = servers.get(server)
        return found if isinstance(found, dict) else None

    async def _progress(self, hub: httpx.AsyncClient, path: str) -> AsyncIterator[dict[str, Any]]:
        """The hub's spawn progress (its event stream) as ``launching`` events."""
        async with hub.stream("GET", f"{path}/progress") as r:
            if r.status_code != 200:
                raise LaunchFailed(_reason(r))
            async for line in r.aiter_lines():
                if not line.startswith("data:"):
                    continue
                try:
                    event = json.loads(line[5:])
                except ValueError:
                    continue
                message = str(event.get("message") or "")[:MAX_MESSAGE]
                if event.get("failed"):
                    raise LaunchFailed(message or "the session failed to start")
                if message:
                    yield {"phase": "launching", "message": message + "\n"}
                if event.get("ready"):
                    return
