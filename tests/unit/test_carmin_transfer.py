"""egi_hub.carmin transfers and their checksums over httpx.MockTransport (no sockets):
md5 computed off the I/O thread and only when it will be compared, a platform that offers
no md5 remembered, a download's md5 asked while its bytes come, a resume that would land
at the wrong offset refused."""

from __future__ import annotations

import asyncio
import hashlib
import io
import random
import threading

import httpx
import pytest

from egi_hub.carmin import AsyncCarminClient, CarminClient, CarminError
from egi_hub.carmin.retry import RetryPolicy
from egi_hub.carmin.transfer import CHUNK, Hasher, Upload

KEY = "the-secret-key"
URL = "https://platform.test/rest"
DATA = bytes(range(256)) * 400  # 100 KiB
MD5 = hashlib.md5(DATA).hexdigest()
WAIT = 10.0  # seconds a test waits for a condition before failing


def policy() -> RetryPolicy:
    async def asleep(s):
        pass

    return RetryPolicy(attempts=4, rng=random.Random(1), sleep=lambda s: None, asleep=asleep)


def make(handler, dialect="carmin"):
    seen: list[httpx.Request] = []

    def record(request):
        seen.append(request)
        return handler(request)

    transport = httpx.MockTransport(record)
    c = CarminClient(URL, api_key=KEY, dialect=dialect, policy=policy(), transport=transport)
    return c, seen


def md5_asked(seen) -> int:
    return sum(1 for r in seen if r.url.params.get("action") == "md5")


def hash_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "carmin-hash"]


def platform_handler(md5_answer, platform=None):
    """A platform serving DATA, its md5 as ``md5_answer`` says, and accepting uploads."""

    def handler(request):
        if request.url.path.endswith("/platform"):
            return httpx.Response(200, json=platform)
        action = request.url.params.get("action")
        if action == "md5":
            return md5_answer(request)
        if request.method == "PUT":
            request.read()
            return httpx.Response(201)
        return httpx.Response(200, headers={"content-length": str(len(DATA))}, content=DATA)

    return handler


# -- the hasher ------------------------------------------------------------------------


@pytest.mark.parametrize("sizes", [[], [1], [CHUNK - 1, 2, CHUNK], [4096] * 700])
def test_hasher_matches_hashlib(sizes):
    data = random.Random(3).randbytes(sum(sizes))
    hasher, at = Hasher(depth=2), 0
    for size in sizes:
        hasher.update(data[at : at + size])
        at += size
    assert hasher.hexdigest() == hashlib.md5(data).hexdigest()
    assert hasher.hexdigest() == hashlib.md5(data).hexdigest()  # asked twice: same
    assert not hash_threads()


def test_hasher_closed_stops_its_worker():
    hasher = Hasher()
    hasher.update(b"x" * (3 * CHUNK))
    hasher.close()
    assert not hash_threads()
    with pytest.raises(RuntimeError):
        hasher.update(b"y")
    with pytest.raises(RuntimeError):
        hasher.hexdigest()


def test_upload_hashes_only_when_verifying(tmp_path):
    src = tmp_path / "in.bin"
    src.write_bytes(DATA)
    checked = Upload(src)
    assert b"".join(checked.chunks()) == DATA and checked.md5 == MD5
    plain = Upload(io.BytesIO(DATA), verify=False)
    assert b"".join(plain.chunks()) == DATA and plain.md5 is None


def test_upload_cut_short_leaves_no_worker(tmp_path):
    src = tmp_path / "in.bin"
    src.write_bytes(DATA * 30)  # three chunks
    chunks = Upload(src).chunks()
    next(chunks)
    chunks.close()  # httpx gave up mid-body
    assert not hash_threads()


# -- when the platform's md5 is asked ---------------------------------------------------


def test_no_md5_without_verify(tmp_path):
    c, seen = make(platform_handler(lambda r: httpx.Response(200, json={"md5": MD5})))
    (tmp_path / "in.bin").write_bytes(DATA)
    c.download("/d/f", tmp_path / "out.bin", verify=False)
    c.upload(tmp_path / "in.bin", "/d/f", verify=False)
    assert (tmp_path / "out.bin").read_bytes() == DATA
    assert md5_asked(seen) == 0


def test_md5_listed_unsupported_is_never_asked(tmp_path):
    platform = {
        "platformName": "VIP",
        "supportedAPIVersion": "0.3",
        "supportedModules": [],
        "unsupportedMethods": ["playExecution", "getFileMD5"],
    }
    c, seen = make(
        platform_handler(lambda r: httpx.Response(200, json={"md5": "0" * 32}), platform),
        dialect="auto",
    )
    (tmp_path / "in.bin").write_bytes(DATA)
    c.download("/d/f", tmp_path / "out.bin")  # a wrong md5 would refuse it
    c.upload(tmp_path / "in.bin", "/d/f")
    assert md5_asked(seen) == 0 and c.calls.md5_offered is False


@pytest.mark.parametrize(
    "refusal",
    [
        httpx.Response(400, json={"errorCode": 8001, "errorMessage": "Not implemented"}),
        httpx.Response(400, json={"errorCode": 8000, "errorMessage": "Not implemented"}),
        httpx.Response(501, json={"errorCode": 50101, "errorMessage": "md5"}),
        httpx.Response(405),
    ],
)
def test_md5_refused_is_remembered(tmp_path, refusal):
    c, seen = make(platform_handler(lambda r: refusal), dialect="vip")
    (tmp_path / "in.bin").write_bytes(DATA)
    c.download("/d/f", tmp_path / "a.bin")
    c.download("/d/f", tmp_path / "b.bin")
    c.upload(tmp_path / "in.bin", "/d/f")
    assert md5_asked(seen) == 1
    assert (tmp_path / "b.bin").read_bytes() == DATA


@pytest.mark.parametrize(
    "failure",
    [
        httpx.Response(404, json={"errorCode": 40403, "errorMessage": "no such path"}),
        httpx.Response(409, json={"errorCode": 40901, "errorMessage": "a directory"}),
        httpx.Response(503, json={"errorCode": 1, "errorMessage": "service not supported now"}),
    ],
)
def test_md5_failing_is_asked_again(tmp_path, failure):
    c, seen = make(platform_handler(lambda r: failure))
    c.download("/d/f", tmp_path / "a.bin")
    c.download("/d/f", tmp_path / "b.bin")
    assert md5_asked(seen) >= 2 and c.calls.md5_offered is None


def test_upload_md5_mismatch_refused(tmp_path):
    c, _ = make(platform_handler(lambda r: httpx.Response(200, json={"md5": "0" * 32})))
    (tmp_path / "in.bin").write_bytes(DATA)
    with pytest.raises(CarminError, match="md5 differs from the file sent"):
        c.upload(tmp_path / "in.bin", "/d/f")


class GatedStream(httpx.SyncByteStream):
    """Half the bytes, then the rest only once ``gate`` is set (by the md5 request)."""

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate

    def __iter__(self):
        yield DATA[: len(DATA) // 2]
        self.gate.wait(WAIT)
        yield DATA[len(DATA) // 2 :]


def test_download_asks_md5_while_the_bytes_come(tmp_path):
    gate, during = threading.Event(), []

    def handler(request):
        if request.url.params.get("action") == "md5":
            during.append(not gate.is_set())
            gate.set()
            return httpx.Response(200, json={"md5": MD5})
        headers = {"content-length": str(len(DATA))}
        return httpx.Response(200, headers=headers, stream=GatedStream(gate))

    c, _ = make(handler)
    c.download("/d/f", tmp_path / "out.bin")
    assert during == [True]  # asked before the body ended
    assert (tmp_path / "out.bin").read_bytes() == DATA
    assert not hash_threads()
    c.close()


class AsyncGatedStream(httpx.AsyncByteStream):
    def __init__(self, gate: asyncio.Event) -> None:
        self.gate = gate

    async def __aiter__(self):
        yield DATA[: len(DATA) // 2]
        await asyncio.wait_for(self.gate.wait(), WAIT)
        yield DATA[len(DATA) // 2 :]


async def test_async_download_asks_md5_while_the_bytes_come(tmp_path):
    gate, during = asyncio.Event(), []

    def handler(request):
        if request.url.params.get("action") == "md5":
            during.append(not gate.is_set())
            gate.set()
            return httpx.Response(200, json={"md5": "0" * 32 if during[1:] else MD5})
        headers = {"content-length": str(len(DATA))}
        return httpx.Response(200, headers=headers, stream=AsyncGatedStream(gate))

    transport = httpx.MockTransport(handler)
    async with AsyncCarminClient(
        URL, api_key=KEY, dialect="carmin", policy=policy(), transport=transport
    ) as c:
        await c.download("/d/f", tmp_path / "out.bin")
        assert during == [True] and (tmp_path / "out.bin").read_bytes() == DATA
        gate.clear()
        with pytest.raises(CarminError, match="do not match the platform's md5"):
            await c.download("/d/f", tmp_path / "again.bin")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]
    assert not hash_threads()


# -- resuming --------------------------------------------------------------------------


class CutStream(httpx.SyncByteStream):
    def __init__(self, data: bytes, cut: int) -> None:
        self.data, self.cut = data, cut

    def __iter__(self):
        yield self.data[: self.cut]
        if self.cut < len(self.data):
            raise httpx.ReadError("connection reset")


def test_a_part_from_elsewhere_is_not_appended(tmp_path):
    """A 206 that does not continue where the file stopped is never written as if it
    did: the next attempt asks for the whole file."""
    ranges = []

    def handler(request):
        if request.url.params.get("action") == "md5":
            return httpx.Response(200, json={"md5": MD5})
        ranges.append(request.headers.get("range"))
        if len(ranges) == 1:
            headers = {"content-length": str(len(DATA)), "etag": '"v1"'}
            return httpx.Response(200, headers=headers, stream=CutStream(DATA, 30_000))
        if len(ranges) == 2:
            part = DATA[10:]
            headers = {
                "content-length": str(len(part)),
                "content-range": f"bytes 10-{len(DATA) - 1}/{len(DATA)}",
            }
            return httpx.Response(206, headers=headers, content=part)
        return httpx.Response(200, headers={"content-length": str(len(DATA))}, content=DATA)

    c, _ = make(handler)
    c.download("/d/f", tmp_path / "out.bin", verify=False)
    assert ranges == [None, "bytes=30000-", None]
    assert (tmp_path / "out.bin").read_bytes() == DATA
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
