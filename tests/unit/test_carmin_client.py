"""egi_hub.carmin clients over httpx.MockTransport (no sockets): requests per dialect,
error mapping with hints, retries and backoff with an injected sleep, resumed downloads."""

from __future__ import annotations

import hashlib
import json
import random

import httpx
import pytest

from egi_hub.carmin import AsyncCarminClient, CarminClient, CarminError, ExecutionStatus
from egi_hub.carmin.retry import RetryPolicy

KEY = "the-secret-key"
URL = "https://platform.test/rest"


class Recorder:
    def __init__(self, handler):
        self.handler = handler
        self.requests: list[httpx.Request] = []

    def __call__(self, request):
        self.requests.append(request)
        return self.handler(request)


def policy(attempts=4):
    sleeps: list[float] = []

    async def asleep(s):
        sleeps.append(s)

    p = RetryPolicy(attempts=attempts, rng=random.Random(1), sleep=sleeps.append, asleep=asleep)
    return p, sleeps


def client(handler, dialect="carmin", attempts=4, **kw):
    p, sleeps = policy(attempts)
    rec = Recorder(handler)
    c = CarminClient(
        URL, api_key=KEY, dialect=dialect, policy=p, transport=httpx.MockTransport(rec), **kw
    )
    return c, rec, sleeps


def error(status, code, message):
    return httpx.Response(status, json={"errorCode": code, "errorMessage": message})


def test_headers_per_dialect_and_no_key_on_platform():
    def handler(request):
        if request.url.path.endswith("/platform"):
            return httpx.Response(
                200,
                json={"platformName": "x", "supportedAPIVersion": "0.3", "supportedModules": []},
            )
        return httpx.Response(200, json=[])

    for dialect, header in (("carmin", "apiKey"), ("vip", "apikey")):
        c, rec, _ = client(handler, dialect)
        c.platform()
        c.pipelines()
        platform_req, pipelines_req = rec.requests
        assert "apikey" not in platform_req.headers
        assert pipelines_req.headers[header] == KEY
        assert header in pipelines_req.headers.raw[-1][0].decode() or any(
            k.decode() == header for k, _ in pipelines_req.headers.raw
        )


@pytest.mark.parametrize(
    "platform, dialect",
    [
        ({"platformName": "VIP", "supportedAPIVersion": "0.3", "supportedModules": []}, "vip"),
        (
            {
                "platformName": "Other",
                "supportedAPIVersion": "0.3",
                "supportedModules": [],
                "APIErrorCodesAndMessages": [{"errorCode": 8002, "errorMessage": "x"}],
            },
            "vip",
        ),
        (
            {
                "platformName": "Girder CARMIN",
                "supportedAPIVersion": "0.3.1",
                "supportedModules": [],
            },
            "carmin",
        ),
    ],
)
def test_dialect_detection(platform, dialect):
    c, _, _ = client(lambda r: httpx.Response(200, json=platform), "auto")
    assert c.detect_dialect() == dialect


def test_dialect_detection_falls_back_on_the_host():
    p, _ = policy(1)
    down = httpx.MockTransport(lambda r: httpx.Response(404))
    vip = CarminClient(
        "https://vip.creatis.insa-lyon.fr/rest", api_key=KEY, policy=p, transport=down
    )
    other = CarminClient(URL, api_key=KEY, policy=p, transport=down)
    assert vip.detect_dialect() == "vip" and other.detect_dialect() == "carmin"


def test_vip_boutiques_and_pipeline_ids_with_a_slash():
    seen = []

    def handler(request):
        seen.append((request.url.raw_path.decode(), dict(request.url.params)))
        return httpx.Response(200, json={"name": "wc", "inputs": []})

    for dialect in ("vip", "carmin"):
        c, _, _ = client(handler, dialect)
        c.boutiques("Word Count/0.1")
    assert seen == [
        ("/rest/pipelines/Word%20Count/0.1?format=boutiques", {"format": "boutiques"}),
        ("/rest/pipelines/Word%20Count/0.1/boutiquesdescriptor", {}),
    ]


@pytest.mark.parametrize("bad", ["../executions", "a/../../x", "a//b", "x\x00y", "./a"])
def test_hostile_paths_never_reach_the_server(bad):
    c, rec, _ = client(lambda r: httpx.Response(200, json={"exists": True}))
    with pytest.raises(CarminError):
        c.exists(bad)
    with pytest.raises(CarminError):
        c.pipeline(bad)
    assert rec.requests == []


def test_non_ascii_paths_are_quoted():
    c, rec, _ = client(lambda r: httpx.Response(200, json={"exists": True}))
    assert c.exists("/vip/Home/données é.nii") is True
    assert rec.requests[0].url.raw_path.decode() == (
        "/rest/path/vip/Home/donn%C3%A9es%20%C3%A9.nii?action=exists"
    )


@pytest.mark.parametrize(
    "response, about, words, hint",
    [
        (
            error(401, 40101, "Bad credentials"),
            "pipelines",
            "error 40101, HTTP 401: Bad credentials",
            "CARMIN_API_KEY",
        ),
        (error(400, 2001, "max executions"), "launch", "error 2001", "too many running executions"),
        (error(429, 2000, "max executions"), "launch", "error 2000", "kill one"),
        (error(404, 8001, "no such pipeline"), "pipeline", "no such pipeline", "%carmin pipelines"),
        (
            httpx.Response(404, text="<html>Not Found</html>"),
            "pipeline",
            "pipeline not found",
            "%carmin pipelines",
        ),
        (httpx.Response(403, text="forbidden"), "pipelines", "HTTP 403: forbidden", "API key"),
        (
            httpx.Response(302, headers={"location": "https://new/rest"}),
            "pipelines",
            "redirect, not followed",
            "check CARMIN_URL",
        ),
        (httpx.Response(200, text="not json"), "pipelines", "not JSON", "CARMIN_URL"),
    ],
)
def test_error_mapping(response, about, words, hint):
    c, _, _ = client(lambda r: response, attempts=1)
    call = {
        "pipelines": c.pipelines,
        "pipeline": lambda: c.pipeline("Nope/1"),
        "launch": lambda: c.create_execution("wc/1", {"f": "x"}),
    }[about]
    with pytest.raises(CarminError) as info:
        call()
    assert words in str(info.value) and hint in info.value.hint
    assert KEY not in str(info.value) and "\n" not in str(info.value)
    if info.value.code in (2000, 2001):
        assert info.value.too_many_executions


def test_5xx_retried_with_backoff_then_clear_error():
    c, rec, sleeps = client(lambda r: httpx.Response(500, text="boom"), attempts=4)
    with pytest.raises(CarminError) as info:
        c.pipelines()
    assert len(rec.requests) == 4 and len(sleeps) == 3
    assert info.value.status == 500 and "internal error" in info.value.hint
    # equal jitter: each wait between half and all of base * 2**n
    for n, wait in enumerate(sleeps):
        step = min(8.0, 0.5 * 2**n)
        assert step / 2 <= wait <= step


def test_transient_then_success_and_retry_after():
    answers = [httpx.Response(503, headers={"retry-after": "3"}), httpx.Response(200, json=[])]
    c, _rec, sleeps = client(lambda r: answers.pop(0))
    assert c.pipelines() == []
    assert sleeps == [3.0]


def test_timeouts_retried_then_one_line():
    def handler(request):
        raise httpx.ReadTimeout("slow", request=request)

    c, rec, _sleeps = client(handler, attempts=3)
    with pytest.raises(CarminError) as info:
        c.execution("e1")
    assert len(rec.requests) == 3 and "timed out after 3 attempt(s)" in str(info.value)
    assert "reachable" in info.value.hint


def test_post_is_not_retried_once_sent():
    def handler(request):
        raise httpx.ReadError("reset", request=request)

    c, rec, _ = client(handler)
    with pytest.raises(CarminError):
        c.create_execution("wc/1", {"f": "x"})
    assert len(rec.requests) == 1
    for status in (502, 503, 504):
        c, rec, _ = client(lambda r, s=status: httpx.Response(s, text="bad gateway"))
        with pytest.raises(CarminError):
            c.create_execution("wc/1", {"f": "x"})
        assert len(rec.requests) == 1, status


def test_policy_bounds():
    p = RetryPolicy(attempts=10, base=1, cap=5, rng=random.Random(0))
    waits = [p.delay(n) for n in range(1, 10)]
    assert all(0 < w <= 5 for w in waits) and waits[-1] >= 2.5
    assert p.delay(1, "100") == 5  # Retry-After honoured up to the cap
    assert p.after_status("GET", 500, failures=9) is None  # the last attempt's answer stands
    assert p.after_status("GET", 404, failures=0) is None
    assert p.after_status("GET", 501, failures=0) is None
    with pytest.raises(ValueError):
        RetryPolicy(attempts=0)


def test_create_plays_an_initializing_execution():
    calls = []

    def handler(request):
        calls.append(f"{request.method} {request.url.path}")
        if request.method == "POST":
            body = json.loads(request.content)
            assert body["inputValues"] == {"f": "x"} and body["pipelineIdentifier"] == "wc/1"
            return httpx.Response(200, json={**body, "identifier": "e1", "status": "Initializing"})
        if request.url.path.endswith("/play"):
            return httpx.Response(204)
        return httpx.Response(200, json={"identifier": "e1", "status": "Running"})

    c, _, _ = client(handler)
    e = c.create_execution("wc/1", {"f": "x"}, "my run")
    assert e.status is ExecutionStatus.RUNNING
    assert calls == [
        "POST /rest/executions",
        "PUT /rest/executions/e1/play",
        "GET /rest/executions/e1",
    ]


class CutStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    def __init__(self, data, cut):
        self.data, self.cut = data, cut

    def __iter__(self):
        yield self.data[: self.cut]
        if self.cut < len(self.data):
            raise httpx.ReadError("connection reset")

    async def __aiter__(self):
        yield self.data[: self.cut]
        if self.cut < len(self.data):
            raise httpx.ReadError("connection reset")


DATA = bytes(range(256)) * 400  # 100 KiB


def resuming_handler(supports_range, log, md5=None):
    def handler(request):
        if request.url.params.get("action") == "md5":
            return httpx.Response(200, json={"md5": md5 or hashlib.md5(DATA).hexdigest()})
        rng = request.headers.get("range")
        log.append(rng)
        start = int(rng[6:-1]) if rng and supports_range else 0
        body = DATA[start:]
        headers = {"content-length": str(len(body)), "etag": '"v1"'}
        status = 200
        if start:
            status = 206
            headers["content-range"] = f"bytes {start}-{len(DATA) - 1}/{len(DATA)}"
        cut = 30_000 if len(log) < 3 else len(body)
        return httpx.Response(status, headers=headers, stream=CutStream(body, cut))

    return handler


@pytest.mark.parametrize("supports_range", [True, False])
def test_download_cut_is_resumed_or_restarted(tmp_path, supports_range):
    log = []
    c, _, _sleeps = client(resuming_handler(supports_range, log))
    progress = []
    dest = tmp_path / "out.bin"
    c.download("/data/out.bin", dest, progress=lambda done, total: progress.append((done, total)))
    assert dest.read_bytes() == DATA
    if supports_range:
        assert log == [None, "bytes=30000-", "bytes=60000-"]
    else:
        assert log[1] == "bytes=30000-"  # asked, got a 200: started over
    assert progress[-1] == (len(DATA), len(DATA))
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_download_given_up_leaves_no_file(tmp_path):
    def handler(request):
        return httpx.Response(
            200, headers={"content-length": str(len(DATA))}, stream=CutStream(DATA, 10)
        )

    c, _rec, _ = client(handler, attempts=3)
    with pytest.raises(CarminError, match="after 3 attempt"):
        c.download("/data/out.bin", tmp_path / "out.bin")
    assert list(tmp_path.iterdir()) == []


def test_download_md5_mismatch_refused(tmp_path):
    c, _, _ = client(resuming_handler(True, [], md5="0" * 32))
    with pytest.raises(CarminError, match="do not match the platform's md5"):
        c.download("/data/out.bin", tmp_path / "out.bin")
    assert list(tmp_path.iterdir()) == []


def test_download_from_another_host_gets_no_key(tmp_path):
    rec = []

    def handler(request):
        rec.append(request)
        return httpx.Response(200, content=b"abc")

    c, _, _ = client(handler)
    c.download("https://elsewhere.test/file?sig=1", tmp_path / "a")
    c.download(URL + "/path/x?action=content", tmp_path / "b")
    assert "apiKey" not in rec[0].headers and rec[1].headers["apiKey"] == KEY


def test_upload_streams_and_verifies(tmp_path):
    src = tmp_path / "in.bin"
    src.write_bytes(DATA)
    got = {}

    def handler(request):
        if request.method == "PUT":
            got["body"] = request.read()
            got["length"] = request.headers.get("content-length")
            return httpx.Response(
                201,
                json={"platformPath": "/d/in.bin", "isDirectory": False, "lastModificationDate": 1},
            )
        return httpx.Response(200, json={"md5": hashlib.md5(got["body"]).hexdigest()})

    c, _, _ = client(handler)
    result = c.upload(src, "/d/in.bin")
    assert got["body"] == DATA and got["length"] == str(len(DATA))
    assert result.platform_path == "/d/in.bin"


async def test_async_twin_retries_and_resumes(tmp_path):
    p, sleeps = policy()
    log = []
    answers = [httpx.Response(502), httpx.Response(200, json=[])]

    def handler(request):
        if request.url.path.endswith("/pipelines"):
            return answers.pop(0)
        return resuming_handler(True, log)(request)

    async with AsyncCarminClient(
        URL, api_key=KEY, dialect="vip", policy=p, transport=httpx.MockTransport(handler)
    ) as c:
        assert await c.pipelines() == []
        assert len(sleeps) == 1
        await c.download("/data/x", tmp_path / "x")
    assert (tmp_path / "x").read_bytes() == DATA and log[1] == "bytes=30000-"
