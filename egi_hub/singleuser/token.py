"""The Check-in access token inside a notebook server, always fresh.

In a notebook::

    from egi_hub.token import access_token    # the same function, shorter name
    headers = {"Authorization": f"Bearer {access_token()}"}

The token is read from ``$EGI_TOKEN_FILE`` (default ``~/.egi/access_token``). A small
Jupyter server extension, enabled for every server in the environment, keeps that file
current: it asks the hub (``GET /hub/api/egi/token`` with the server's own API token)
and asks again before the token expires. Outside a JupyterHub server it does nothing.
It is enabled by ``egi_hub/jupyter_config`` (`egi_hub.singleuser_config.JUPYTER_CONFIG_DIR`,
which spawners put on ``JUPYTER_CONFIG_PATH``, and ``<prefix>/etc/jupyter`` of a wheel).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_TOKEN_FILE",
    "TokenKeeper",
    "access_token",
    "token_file",
]

DEFAULT_TOKEN_FILE = "~/.egi/access_token"
MIN_WAIT, MAX_WAIT, RETRY_WAIT = 5.0, 300.0, 30.0

log = logging.getLogger(__name__)


def token_file() -> Path:
    """Where the access token is kept: ``$EGI_TOKEN_FILE``, else ``~/.egi/access_token``."""
    return Path(os.path.expanduser(os.environ.get("EGI_TOKEN_FILE") or DEFAULT_TOKEN_FILE))


def access_token() -> str:
    """The current Check-in access token of this notebook's user."""
    path = token_file()
    try:
        token = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        raise RuntimeError(
            f"No Check-in access token at {path}: this server was not started by an "
            "egi-hub with the Check-in login, or the token has not arrived yet"
        ) from None
    if not token:
        raise RuntimeError(f"The access token file {path} is empty")
    return token


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(text)
    os.replace(tmp, path)


class TokenKeeper:
    """Fetch this server's user's access token from the hub and keep the file current."""

    def __init__(self, api_url: str, api_token: str, path: Path) -> None:
        self.url = api_url.rstrip("/") + "/egi/token"
        self.api_token = api_token
        self.path = path

    async def fetch(self) -> dict[str, Any] | None:
        """One round: fetch and store the token; its JSON, or None if the hub has none."""
        from tornado.httpclient import AsyncHTTPClient, HTTPClientError

        try:
            response = await AsyncHTTPClient().fetch(
                self.url, headers={"Authorization": f"token {self.api_token}"}
            )
        except HTTPClientError as e:
            if e.code in (403, 404):
                return None
            raise
        data = json.loads(response.body)
        await asyncio.to_thread(_write_private, self.path, data["access_token"])
        return data

    @staticmethod
    def wait_after(data: dict[str, Any], now: float | None = None) -> float:
        """Seconds until the next fetch: half the token's remaining life, within bounds."""
        expires_at = data.get("expires_at")
        if expires_at is None:
            return MAX_WAIT
        now = time.time() if now is None else now
        return min(MAX_WAIT, max(MIN_WAIT, (expires_at - now) / 2))

    async def run(self) -> None:
        while True:
            try:
                data = await self.fetch()
            except Exception as e:  # the hub restarting, a network hiccup: try again
                log.warning("Could not fetch the Check-in access token: %s", e)
                await asyncio.sleep(RETRY_WAIT)
                continue
            if data is None:
                log.info("The hub offers no Check-in access token for this server")
                return
            await asyncio.sleep(self.wait_after(data))


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": __name__}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    api_url = os.environ.get("JUPYTERHUB_API_URL")
    api_token = os.environ.get("JUPYTERHUB_API_TOKEN")
    if not api_url or not api_token:
        return  # not a JupyterHub server
    path = token_file()
    os.environ["EGI_TOKEN_FILE"] = str(path)  # kernels started from here find it
    keeper = TokenKeeper(api_url, api_token, path)
    serverapp._egi_token_task = asyncio.ensure_future(keeper.run())
    serverapp.log.info("egi-hub: keeping the Check-in access token in %s", path)
