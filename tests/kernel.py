"""Run code in a kernel of a real single-user server, through its REST and websocket API."""

from __future__ import annotations

import asyncio
import json
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

V1 = "v1.kernel.websocket.jupyter.org"


async def run_code_async(
    hub_url: str,
    server_path: str,
    token: str,
    code: str,
    seconds: float = 60,
    subprotocols: list[str] | None = None,
) -> tuple[str, str | None]:
    """Start a kernel on the server, execute ``code``, delete the kernel.

    Returns the code's stdout and the websocket subprotocol in use: None for the legacy
    JSON protocol, `V1` for the binary protocol JupyterLab asks for.
    """
    headers = {"Authorization": f"token {token}"}
    base = hub_url + server_path.rstrip("/")
    async with httpx.AsyncClient(headers=headers, timeout=30) as client:
        r = await client.post(f"{base}/api/kernels", json={"name": "python3"})
        r.raise_for_status()
        kernel_id = r.json()["id"]
        try:
            ws_url = base.replace("http", "ws", 1) + f"/api/kernels/{kernel_id}/channels"
            request = HTTPRequest(ws_url, headers=headers)
            ws = await websocket_connect(request, subprotocols=subprotocols)
            try:
                output = await asyncio.wait_for(_execute(ws, code), seconds)
                return output, ws.selected_subprotocol
            finally:
                ws.close()
        finally:
            await client.delete(f"{base}/api/kernels/{kernel_id}")


def _v1_frame(msg: dict) -> bytes:
    """A message in the v1 kernel websocket protocol (offsets, channel, JSON parts)."""
    parts = [json.dumps(msg[k]).encode() for k in ("header", "parent_header", "metadata")]
    parts.append(json.dumps(msg["content"]).encode())
    channel = msg["channel"].encode()
    offsets = [8 * (1 + 1 + len(parts) + 1)]
    offsets.append(offsets[-1] + len(channel))
    for part in parts:
        offsets.append(offsets[-1] + len(part))
    head = len(offsets).to_bytes(8, "little") + b"".join(o.to_bytes(8, "little") for o in offsets)
    return head + channel + b"".join(parts)


def _v1_parse(frame: bytes) -> dict:
    count = int.from_bytes(frame[:8], "little")
    offsets = [int.from_bytes(frame[8 * (i + 1) : 8 * (i + 2)], "little") for i in range(count)]
    parts = [frame[offsets[i] : offsets[i + 1]] for i in range(1, count - 1)]
    header, parent, _metadata, content = (json.loads(p) for p in parts[:4])
    return {
        "header": header,
        "msg_type": header["msg_type"],
        "parent_header": parent,
        "content": content,
    }


async def _execute(ws, code: str) -> str:
    msg_id = uuid.uuid4().hex
    request = {
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
    v1 = ws.selected_subprotocol == V1
    await ws.write_message(_v1_frame(request) if v1 else json.dumps(request), binary=v1)
    out = []
    while True:
        raw = await ws.read_message()
        if raw is None:
            raise ConnectionError("kernel websocket closed")
        msg = _v1_parse(raw) if v1 else json.loads(raw)
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind = msg["msg_type"]
        if kind == "stream":
            out.append(msg["content"]["text"])
        elif kind == "error":
            raise RuntimeError("\n".join(msg["content"]["traceback"]))
        elif kind == "status" and msg["content"]["execution_state"] == "idle":
            return "".join(out)


def _run(coro):
    # In a thread: Playwright's sync API may hold an event loop in this one.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def run_code(hub_url: str, server_path: str, token: str, code: str, timeout: float = 60) -> str:
    """Run ``code`` over the legacy JSON protocol; return its stdout."""
    return _run(run_code_async(hub_url, server_path, token, code, timeout))[0]


def run_code_v1(
    hub_url: str, server_path: str, token: str, code: str, timeout: float = 60
) -> tuple[str, str | None]:
    """Run ``code`` offering JupyterLab's v1 protocol; return stdout and the protocol."""
    return _run(run_code_async(hub_url, server_path, token, code, timeout, [V1]))
