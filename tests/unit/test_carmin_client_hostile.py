"""CarminClient against hostile answers (httpx.MockTransport, no sockets): bodies read
within limits of size and time, redirects never suggesting another host, credentials
kept off plain http and unknown token origins, unusable URLs and deep JSON refused in
one line, and a launch whose fate is unknown said so."""

from __future__ import annotations

import asyncio
import json
import random
import time

import httpx
import pytest

from egi_hub.carmin import AsyncCarminClient, CarminClient, CarminError
from egi_hub.carmin.answers import MAX_ERROR, MAX_JSON, MAX_TAIL
from egi_hub.carmin.models import Path
from egi_hub.carmin.retry import RetryPolicy

KEY = "the-secret-key"
URL = "https://vip.example.org/rest"


class Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body of ``count`` chunks (None: endless), counting those taken."""

    def __init__(self, chunk: bytes, count: int | None, last: bytes = b""):
        self.chunk, self.count, self.last, self.taken = chunk, count, last, 0

    def _chunks(self):
        while self.count is None or self.taken < self.count:
            self.taken += 1
            yield self.chunk
        if self.last:
            yield self.last

    def __iter__(self):
        yield from self._chunks()

    async def __aiter__(self):
        for chunk in self._chunks():
            yield chunk


def policy(attempts=1):
    async def asleep(s):
        return None

    return RetryPolicy(attempts=attempts, rng=random.Random(1), sleep=lambda s: None, asleep=asleep)


def platform_or(answer):
    seen = []

    def handler(request):
        seen.append(request)
        if request.url.path.endswith("/platform"):
            return httpx.Response(200, json={"platformName": "VIP"})
        return answer(request)

    return handler, seen


def make(answer, url=URL, attempts=1, **kw):
    handler, seen = platform_or(answer)
    kw.setdefault("api_key", KEY)
    c = CarminClient(
        url, dialect="vip", policy=policy(attempts), transport=httpx.MockTransport(handler), **kw
    )
    return c, seen


def test_a_json_answer_over_the_limit_is_refused_without_reading_on():
    stream = Chunks(b"[" + b" " * ((1 << 20) - 1), None)
    c, _ = make(lambda r: httpx.Response(200, stream=stream))
    with pytest.raises(CarminError, match="over 16 MiB; refused") as info:
        c.execution("e1")
    assert stream.taken <= MAX_JSON // (1 << 20) + 2 and "\n" not in str(info.value)


def test_a_log_keeps_its_last_bytes():
    stream = Chunks(b"x" * (1 << 20), 40, last=b"\nthe end\n")
    c, _ = make(lambda r: httpx.Response(200, stream=stream))
    text = c.stderr("e1")
    assert len(text) == MAX_TAIL and text.endswith("the end\n") and stream.taken == 40


def test_an_error_body_is_read_to_its_first_bytes_only():
    stream = Chunks(b"{" + b" " * ((1 << 16) - 1), None)
    c, _ = make(lambda r: httpx.Response(500, stream=stream))
    with pytest.raises(CarminError, match="HTTP 500") as info:
        c.pipelines()
    assert stream.taken <= MAX_ERROR // (1 << 16) + 1 and len(str(info.value)) < 500


def test_an_endless_answer_is_cut_at_the_deadline():
    c, _ = make(lambda r: httpx.Response(200, stream=Chunks(b"x" * 1024, None)), deadline=0.3)
    started = time.monotonic()
    with pytest.raises(CarminError, match=r"still coming after 0.3 s; cut") as info:
        c.stderr("e1")  # a log is never refused for its size: only time ends it
    assert time.monotonic() - started < 10 and "\n" not in str(info.value)


async def test_the_async_client_has_the_same_limits():
    handler, _ = platform_or(lambda r: httpx.Response(200, stream=Chunks(b"x" * 1024, None)))
    async with AsyncCarminClient(
        URL, api_key=KEY, policy=policy(), transport=httpx.MockTransport(handler), deadline=0.3
    ) as c:
        with pytest.raises(CarminError, match="still coming"):
            await c.stderr("e1")
    stream = Chunks(b"y" * (1 << 20), 3, last=b"end")
    handler, _ = platform_or(lambda r: httpx.Response(200, stream=stream))
    async with AsyncCarminClient(
        URL, api_key=KEY, policy=policy(), transport=httpx.MockTransport(handler)
    ) as c:
        assert (await c.stdout("e1")).endswith("end")
        await asyncio.sleep(0)


@pytest.mark.parametrize(
    "location, suggested",
    [
        ("https://127.0.0.1:8443/rest/pipelines", "CARMIN_URL=https://127.0.0.1:8443/rest"),
        ("https://127.0.0.1/rest/pipelines", "CARMIN_URL=https://127.0.0.1/rest"),
        ("https://vip-login.evil.example/rest", None),
        ("http://127.0.0.1:9999/other", None),
        ("https://127.0.0.1.evil.example/rest", None),
        ("https://evil.example@127.0.0.1/rest", None),
    ],
)
def test_redirects_suggest_only_an_https_upgrade_of_the_same_host(location, suggested):
    c, _ = make(
        lambda r: httpx.Response(302, headers={"location": location}), "http://127.0.0.1:8080/rest"
    )
    with pytest.raises(CarminError) as info:
        c.pipelines()
    text = str(info.value)
    assert "evil" not in text and "\n" not in text
    if suggested:
        assert info.value.hint == f"set {suggested}"
    else:
        assert "not followed" in text and info.value.hint == "check CARMIN_URL"


def test_credentials_never_over_plain_http_to_another_computer():
    with pytest.raises(CarminError, match="not sending credentials over plain http"):
        make(lambda r: httpx.Response(200, json=[]), "http://carmin.lab.example/rest")
    c, seen = make(
        lambda r: httpx.Response(200, json=[]), "http://carmin.lab.example/rest", api_key=None
    )
    assert c.pipelines() == [] and all("apikey" not in r.headers for r in seen)
    with pytest.raises(CarminError, match="over plain http"):
        c.authenticate("me", "password")
    assert all(r.method != "POST" for r in seen)


def test_the_checkin_token_goes_only_to_allowed_https_origins(monkeypatch):
    import egi_hub.token

    monkeypatch.setattr(egi_hub.token, "access_token", lambda: "CHECKIN-TOKEN")
    monkeypatch.delenv("CARMIN_TOKEN_ORIGINS", raising=False)
    with pytest.raises(
        CarminError, match=r"not sending your Check-in token to https://vip\.example\.org"
    ):
        make(lambda r: httpx.Response(200, json=[]), token=True)
    monkeypatch.setenv("CARMIN_TOKEN", "checkin")
    with pytest.raises(CarminError, match="CARMIN_TOKEN_ORIGINS"):
        make(lambda r: httpx.Response(200, json=[]), "http://127.0.0.1:8080/rest")
    monkeypatch.setenv("CARMIN_TOKEN_ORIGINS", "https://vip.example.org")
    c, seen = make(lambda r: httpx.Response(200, json=[]))
    assert c.pipelines() == []
    assert seen[-1].headers["authorization"] == "Bearer CHECKIN-TOKEN"


@pytest.mark.parametrize(
    "url",
    [
        "https://vip.example.org/x\tq.txt",
        "https://vip.example.org/a\x00b",
        "https://vip.example.org:abc/x",
    ],
)
def test_an_unusable_returned_url_is_refused_before_any_request(tmp_path, url):
    c, seen = make(lambda r: httpx.Response(200, content=b"data"))
    with pytest.raises(CarminError, match="unusable file URL") as info:
        c.download(Path(url, False), tmp_path / "f")
    assert KEY not in str(info.value) and "\n" not in str(info.value)
    assert seen == [] and list(tmp_path.iterdir()) == []


def test_a_returned_url_on_another_host_gets_no_key(tmp_path):
    c, seen = make(lambda r: httpx.Response(200, content=b"data"))
    c.download(Path("https://files.example.net/r/a.txt", False), tmp_path / "a.txt", verify=False)
    assert (tmp_path / "a.txt").read_bytes() == b"data"
    assert "apikey" not in seen[-1].headers and "authorization" not in seen[-1].headers


@pytest.mark.parametrize("status", [200, 400])
def test_deeply_nested_json_is_one_line(status):
    deep = b"[" * 200_000 + b"]" * 200_000
    c, _ = make(lambda r: httpx.Response(status, content=deep))
    with pytest.raises(CarminError) as info:
        c.pipelines()
    assert "\n" not in str(info.value)
    if status == 200:
        assert "nested too deeply" in str(info.value)


@pytest.mark.parametrize("status", [502, 503, 504])
def test_a_launch_answered_by_a_gateway_error_may_have_happened(status):
    c, seen = make(lambda r: httpx.Response(status, text="bad gateway"), attempts=4)
    with pytest.raises(CarminError) as info:
        c.create_execution("wc/1", {"f": "x"})
    assert "may have been launched" in info.value.hint and "%carmin history" in info.value.hint
    assert [r.method for r in seen].count("POST") == 1


def test_a_launch_that_got_no_answer_may_have_happened():
    def answer(request):
        raise httpx.ReadTimeout("slow", request=request)

    c, seen = make(answer, attempts=4)
    with pytest.raises(CarminError) as info:
        c.create_execution("wc/1", {"f": "x"})
    assert "may have been launched" in info.value.hint
    assert [r.method for r in seen].count("POST") == 1


def test_a_launch_refused_plainly_is_not_said_to_maybe_exist():
    body = json.dumps({"errorCode": 2001, "errorMessage": "max executions"})
    c, _ = make(lambda r: httpx.Response(400, content=body.encode()))
    with pytest.raises(CarminError) as info:
        c.create_execution("wc/1", {"f": "x"})
    assert "may have been" not in info.value.hint


@pytest.mark.parametrize("announced", [True, False])
def test_a_download_never_takes_more_than_the_free_space(tmp_path, monkeypatch, announced):
    import shutil

    from egi_hub.carmin import transfer

    real = shutil.disk_usage
    monkeypatch.setattr(transfer.shutil, "disk_usage", lambda p: real(p)._replace(free=3 << 20))
    stream = Chunks(b"z" * (1 << 20), None)
    headers = {"content-length": str(100 << 20)} if announced else {}
    c, _ = make(lambda r: httpx.Response(200, headers=headers, stream=stream))
    with pytest.raises(CarminError, match="larger than the free space"):
        c.download("/vip/Home/big", tmp_path / "big", verify=False)
    assert list(tmp_path.iterdir()) == [] and stream.taken <= 4
