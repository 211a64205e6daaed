"""HTTP plumbing of the CARMIN stand-in: one threaded HTTP/1.1 server on 127.0.0.1.

Bodies stream both ways in 1 MiB pieces and are never held whole (a benchmark moves
256 MiB): request bodies by ``Content-Length`` or ``Transfer-Encoding: chunked``,
downloads from the file with ``socket.sendfile``, one ``Range`` (``bytes=a-b``,
``a-``, ``-n``, with ``If-Range``) answered 206 for resuming. The test hooks act here,
before any operation: `StandinHooks` fails requests with a status, cuts or stalls the
next download after some bytes, and keeps what was asked (small bodies too).
The operations themselves are in `tests.carmin_standin.api`.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

PIECE = 1 << 20
RECORD_LIMIT = 1 << 20  # request bodies larger than this are not recorded


class ApiError(Exception):
    """An answer ``{errorCode, errorMessage}`` with an HTTP status."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class RecordedRequest:
    method: str
    path: str  # as sent (percent-encoded), with its query
    headers: dict[str, str]
    body: bytes | None = None  # None when larger than RECORD_LIMIT
    body_size: int = 0


@dataclass
class StandinHooks:
    """Faults to inject and what was asked; see `CarminStandin` for the methods."""

    fail: list[tuple[int, str | None]] = field(default_factory=list)  # (status, path part)
    cut: list[int] = field(default_factory=list)  # bytes sent before closing
    stall: list[int] = field(default_factory=list)  # bytes sent before waiting
    released: threading.Event = field(default_factory=threading.Event)
    requests: list[RecordedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_failure(self, path: str) -> int | None:
        with self.lock:
            for n, (status, part) in enumerate(self.fail):
                if part is None or part in path:
                    del self.fail[n]
                    return status
        return None

    def take(self, queue: list[int]) -> int | None:
        with self.lock:
            return queue.pop(0) if queue else None


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    standin: Any  # the CarminStandin it serves


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Server

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.handle_api("GET")

    def do_PUT(self) -> None:
        self.handle_api("PUT")

    def do_POST(self) -> None:
        self.handle_api("POST")

    def do_DELETE(self) -> None:
        self.handle_api("DELETE")

    def do_PATCH(self) -> None:
        self.handle_api("PATCH")

    # -- one request -------------------------------------------------------------
    def handle_api(self, method: str) -> None:
        from .api import dispatch

        standin = self.server.standin
        self._body_left = True
        self._record = RecordedRequest(method, self.path, dict(self.headers.items()))
        with standin.hooks.lock:
            standin.hooks.requests.append(self._record)
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        try:
            status = standin.hooks.take_failure(parts.path)
            if status is not None:
                self.drain()
                raise ApiError(status, status * 100, "a failure injected by a test hook")
            if parts.path != "/rest" and not parts.path.startswith("/rest/"):
                raise ApiError(404, 40400, f"no such resource: {parts.path}")
            dispatch(self, method, parts.path[len("/rest") :], query)
        except ApiError as e:
            self.send_error_json(e)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # a stand-in bug: answer it as the platform's 500
            self.send_error_json(ApiError(500, 50000, f"stand-in error: {type(e).__name__}: {e}"))

    # -- request bodies ----------------------------------------------------------
    def body_chunks(self) -> Iterator[bytes]:
        """The request body in pieces (Content-Length or chunked)."""
        self._body_left = False
        recorded = bytearray()
        size = 0
        for piece in self._raw_chunks():
            size += len(piece)
            if size <= RECORD_LIMIT:
                recorded += piece
            yield piece
        self._record.body = bytes(recorded) if size <= RECORD_LIMIT else None
        self._record.body_size = size

    def _raw_chunks(self) -> Iterator[bytes]:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    self.close_connection = True
                    raise ApiError(400, 40000, "malformed chunked body") from None
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = size
                while left:
                    piece = self.rfile.read(min(left, PIECE))
                    if not piece:
                        self.close_connection = True
                        return
                    left -= len(piece)
                    yield piece
                self.rfile.readline(8)
        else:
            try:
                left = int(self.headers.get("Content-Length") or 0)
            except ValueError:
                self.close_connection = True
                raise ApiError(400, 40000, "bad Content-Length") from None
            while left > 0:
                piece = self.rfile.read(min(left, PIECE))
                if not piece:
                    self.close_connection = True
                    return
                left -= len(piece)
                yield piece

    def has_body(self) -> bool:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return True
        return int(self.headers.get("Content-Length") or 0) > 0

    def read_body(self, limit: int) -> bytes:
        data = bytearray()
        for piece in self.body_chunks():
            data += piece
            if len(data) > limit:
                self.close_connection = True
                raise ApiError(413, 41300, f"the request body exceeds {limit} bytes")
        return bytes(data)

    def read_json(self, limit: int = 64 << 20) -> Any:
        raw = self.read_body(limit)
        try:
            return json.loads(raw or b"null")
        except ValueError:
            raise ApiError(400, 40000, "the request body is not JSON") from None

    def drain(self) -> None:
        if self._body_left:
            for _ in self.body_chunks():
                pass

    # -- answers -----------------------------------------------------------------
    def send_bytes(self, status: int, body: bytes, ctype: str, headers: dict | None = None) -> None:
        if self._body_left:
            self.close_connection = True  # an unread body must not be taken for a request
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def send_json(self, status: int, obj: Any, headers: dict | None = None) -> None:
        self.send_bytes(status, json.dumps(obj).encode(), "application/json", headers)

    def send_text(self, text: str) -> None:
        self.send_bytes(200, text.encode(), "text/plain;charset=UTF-8")

    def send_empty(self, status: int = 204, headers: dict | None = None) -> None:
        if self._body_left:
            self.close_connection = True
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if status != 204:
            self.send_header("Content-Length", "0")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()

    def send_error_json(self, e: ApiError) -> None:
        self.send_json(e.status, {"errorCode": e.code, "errorMessage": e.message})

    def send_file(self, path: Path, name: str, limit: int | None, too_large: ApiError) -> None:
        """Stream ``path`` (one Range honoured); the cut/stall hooks act here."""
        hooks = self.server.standin.hooks
        st = path.stat()
        size = st.st_size
        etag = f'"{st.st_mtime_ns:x}-{size:x}"'
        start, end = 0, size - 1
        status = 200
        wanted = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        if wanted and (if_range is None or if_range == etag):
            m = re.fullmatch(r"bytes=(\d*)-(\d*)", wanted.strip())
            if m and (m.group(1) or m.group(2)):
                if m.group(1):
                    start = int(m.group(1))
                    end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                else:
                    start = max(size - int(m.group(2)), 0)
                if start >= size or start > end:
                    raise ApiError(416, 41600, f"range not satisfiable (size {size})")
                status = 206
        count = max(end - start + 1, 0)
        if limit is not None and count > limit:
            raise too_large
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(count))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", etag)
        disposition = f"attachment; filename*=UTF-8''{quote(name, safe='')}"
        self.send_header("Content-Disposition", disposition)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        self.wfile.flush()
        cut = hooks.take(hooks.cut)
        stall = hooks.take(hooks.stall) if cut is None else None
        stop_at = min(count, cut if cut is not None else stall if stall is not None else count)
        with path.open("rb") as f:
            if stop_at:
                self.connection.sendfile(f, start, stop_at)
        if cut is not None or stall is not None:
            if stall is not None:
                hooks.released.wait(timeout=120)
            self.close_connection = True


def start_server(standin: Any) -> Server:
    server = Server(("127.0.0.1", 0), Handler)
    server.standin = standin
    threading.Thread(target=server.serve_forever, name="carmin-standin", daemon=True).start()
    return server


__all__ = ["ApiError", "Handler", "RecordedRequest", "Server", "StandinHooks", "start_server"]
