"""The Binder host's redirect (binder_service.app.ElsewhereHandler), over a real socket:
every request on a host other than the hub's goes to the same page on the hub's host,
its path and query exactly as the client sent them (still percent-encoded), and never
to another host. Raw request lines, so the test sends what a browser or curl sends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from tornado.httpserver import HTTPServer

from egi_hub.binder_service.app import make_app
from egi_hub.procs import free_port

HUB = "https://hub.example.org/services/binder/"


@pytest.fixture
async def port() -> AsyncIterator[int]:
    app = make_app(None, prefix="/services/binder/", public_url=HUB)  # type: ignore[arg-type]
    server = HTTPServer(app)
    found = free_port()
    server.listen(found, "127.0.0.1")
    yield found
    server.stop()


async def location(port: int, target: bytes, host: bytes = b"binder.example.org") -> str:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n"
                     b"Connection: close\r\n\r\n")  # fmt: skip
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head = answer.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    assert head[0].split(" ")[1] == "302", head[0]
    (where,) = [h.split(":", 1)[1].strip() for h in head if h.lower().startswith("location:")]
    return where


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (b"/", HUB),
        (b"/v2/gh/org/repo/HEAD?labpath=a.ipynb", f"{HUB}v2/gh/org/repo/HEAD?labpath=a.ipynb"),
        # a GitLab subgroup: %2F stays, or the project path would change
        (b"/v2/gl/group%2Fsub%2Frepo/HEAD", f"{HUB}v2/gl/group%2Fsub%2Frepo/HEAD"),
        # a git link's whole URL, encoded
        (b"/v2/git/https%3A%2F%2Fgit.example.org%2Fr.git/main",
         f"{HUB}v2/git/https%3A%2F%2Fgit.example.org%2Fr.git/main"),
        # an encoded # and ? belong to the path, not a fragment or query
        (b"/v2/gh/org/repo/a%23b%3Fc?urlpath=lab%2Ftree%2Fx%3Fy",
         f"{HUB}v2/gh/org/repo/a%23b%3Fc?urlpath=lab%2Ftree%2Fx%3Fy"),
        # non-ASCII, encoded by the client or sent raw (UTF-8): the same bytes, encoded
        (b"/v2/gh/org/r%C3%A9po/HEAD", f"{HUB}v2/gh/org/r%C3%A9po/HEAD"),
        ("/v2/gh/org/rÉpo/HEAD?q=é".encode(), f"{HUB}v2/gh/org/r%C3%89po/HEAD?q=%C3%A9"),
        # under the prefix already
        (b"/services/binder/v2/zenodo/10.5281/zenodo.1", f"{HUB}v2/zenodo/10.5281/zenodo.1"),
        (b"/services/binder", HUB),
        (b"/services/binder/badge_logo.svg", f"{HUB}badge_logo.svg"),
        # never off the hub's host
        (b"//evil.example.org/x", f"{HUB}evil.example.org/x"),
        (b"/%2F%2Fevil.example.org", f"{HUB}%2F%2Fevil.example.org"),
        (b"/\\evil.example.org", f"{HUB}\\evil.example.org"),
        (b"/@evil.example.org", f"{HUB}@evil.example.org"),
        (b"/v2/gh/o/r/HEAD?next=//evil.example.org",
         f"{HUB}v2/gh/o/r/HEAD?next=//evil.example.org"),
    ],
)  # fmt: skip
async def test_the_same_page_on_the_hubs_host(port: int, target: bytes, expected: str) -> None:
    where = await location(port, target)
    assert where == expected
    assert where.startswith(HUB)


@pytest.mark.parametrize("path", [b"/elsewhere", b"/services/binder/no-such-page"])
async def test_a_missing_page_on_the_hubs_host_is_404_not_a_loop(port: int, path: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET " + path + b" HTTP/1.1\r\nHost: hub.example.org\r\n"
                 b"Connection: close\r\n\r\n")  # fmt: skip
    answer = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    assert answer.split(b" ", 2)[1] == b"404"
