"""Run code in a kernel of a real single-user server, through its REST and websocket API."""

from __future__ import annotations

import asyncio
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect


async def run_code_async(
    hub_url: str, server_path: str, token: str, code: str, timeout: float = 60
) -> str:
    """Start a kernel on the server, execute ``code``, return its stdout, delete the kernel."""
    headers = {"Authorization": f"token {token}"}
    base = hub_url + server_path.rstrip("/")
    async with httpx.AsyncClient(headers=headers, timeout=30) as client:
        r = await client.post(f"{base}/api/kernels", json={"name": "python3"})
        r.raise_for_status()
        kernel_id = r.json()["id"]
        try:
            ws_url = base.replace("http", "ws", 1) + f"/api/kernels/{kernel_id}/channels"
            ws = await websocket_connect(HTTPRequest(ws_url, headers=headers))
            try:
                return await asyncio.wait_for(_execute(ws, code), timeout)
            finally:
                ws.close()
        finally:
            await client.delete(f"{base}/api/kernels/{kernel_id}")


async def _execute(ws, code: str) -> str:
    msg_id = uuid.uuid4().hex
    await ws.write_message(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "msg_type": "execute_request",
                    "username": "test",
                    "session": uuid.uuid4().hex,
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "content": {"code": code, "silent": False, "store_history": False},
                "channel": "shell",
            }
        )
    )
    out = []
    while True:
        raw = await ws.read_message()
        if raw is None:
            raise ConnectionError("kernel websocket closed")
        msg = json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        if kind == "stream":
            out.append(msg["content"]["text"])
        elif kind == "error":
            raise RuntimeError("\n".join(msg["content"]["traceback"]))
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            return "".join(out)


def run_code(hub_url: str, server_path: str, token: str, code: str, timeout: float = 60) -> str:
    """`run_code_async` from synchronous tests (in a thread: Playwright's sync API may
    hold an event loop in this one)."""
    coro = run_code_async(hub_url, server_path, token, code, timeout)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
