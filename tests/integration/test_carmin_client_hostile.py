"""egi_hub.carmin's clients against a hostile platform: a tiny http.server on 127.0.0.1
whose answers never end (chunked, forever), are huge, or trickle. Each is cut by size or
by the per-answer deadline, in one line, whatever the per-read timeout says."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from egi_hub.carmin import AsyncCarminClient, CarminClient, CarminError, RetryPolicy

KEY = "hostile-key"
CHUNK = b"x" * (1 << 16)


class Hostile(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    sent: dict[str, int] = {}

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/rest/platform"):
            body = b'{"platformName": "VIP"}'
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(500 if "/stdout" in self.path else 200)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        trickle = "/stderr" in self.path and "slow" in self.path
        sent = 0
        try:
            while sent < 4 << 30:  # "forever", bounded for the test's sake
                chunk = b"y" if trickle else CHUNK
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                Hostile.sent[self.path] = sent
                if trickle:
                    self.wfile.flush()
                    time.sleep(0.05)
        except OSError:
            pass  # the client hung up: what is wanted


@pytest.fixture
def hostile() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Hostile.sent = {}
    yield f"http://127.0.0.1:{server.server_port}/rest"
    server.shutdown()
    server.server_close()


def policy() -> RetryPolicy:
    return RetryPolicy(attempts=1, base=0.01, cap=0.05, rng=random.Random(0))


def test_endless_answers_are_cut(hostile):
    with CarminClient(hostile, api_key=KEY, dialect="vip", policy=policy(), deadline=2) as c:
        started = time.monotonic()
        with pytest.raises(CarminError, match="over 16 MiB; refused"):
            c.execution("e1")  # what a background follower polls
        with pytest.raises(CarminError, match="HTTP 500"):
            c.stdout("e1")  # an error body: its first 64 KiB only
        with pytest.raises(CarminError, match=r"still coming after 2 s; cut") as info:
            c.stderr("slow")  # a byte every 50 ms: no read ever times out
        assert time.monotonic() - started < 30 and "\n" not in str(info.value)
    assert Hostile.sent["/rest/executions/e1"] < 64 << 20


async def test_endless_answers_are_cut_for_the_async_client(hostile):
    async with AsyncCarminClient(
        hostile, api_key=KEY, dialect="vip", policy=policy(), deadline=2
    ) as c:
        with pytest.raises(CarminError, match="over 16 MiB; refused"):
            await c.execution("e1")
        with pytest.raises(CarminError, match="still coming"):
            await c.stderr("slow")
