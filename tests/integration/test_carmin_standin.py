"""The CARMIN server stand-in checked against the CARMIN 0.3.1 spec, and proved with VIP's
own client.

Spec dialect: every request a plain httpx driver sends and every answer the stand-in
gives is validated with ``openapi-core`` against ``../shared/specs/carmin-0.3.1.yaml``
(the spec file is read as it is; in memory, its one remote ``$ref`` — the Boutiques
schema on github — is replaced by ``{"type": "object"}`` since tests have no internet,
and a ``servers`` entry points at the stand-in). Two things openapi-core cannot follow
are handled here, said where they happen: ``/path/{completePath}`` holds raw slashes
(the spec says so), so the path pattern is given; a ``text/plain`` integer
(``/executions/count``) is parsed before its schema is checked. ``206``/``416`` answers
to ``Range`` are HTTP's, outside the spec, and are checked by hand.

VIP dialect: PyPI ``vip-client`` (VIP's own client) sets its API key, lists pipelines,
uploads a folder, launches, follows to ``Finished`` and downloads the results from the
stand-in; so the dialect is VIP's, not merely what egi-hub's client expects.
Executions really run ``bosh exec launch --no-container`` on ``tests/carmin_pipelines``.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest
import yaml

from tests.carmin_standin import CarminStandin, start_carmin_standin
from tests.stackrunner import wait_for

SPEC = Path(__file__).resolve().parents[2] / ".." / "shared" / "specs" / "carmin-0.3.1.yaml"
PIPELINES = Path(__file__).resolve().parents[1] / "carmin_pipelines"
KEY = "standin-key"
ENDED = {"Finished", "ExecutionFailed", "InitializationFailed", "Killed"}

# Test extras (pyproject): imported plainly, so a missing one fails instead of skipping.
from openapi_core import Config, OpenAPI  # noqa: E402
from openapi_core.datatypes import RequestParameters  # noqa: E402
from werkzeug.datastructures import Headers, ImmutableMultiDict  # noqa: E402


def load_spec(server_url: str) -> OpenAPI:
    if not SPEC.exists():
        pytest.skip(f"the CARMIN spec is not beside the checkout ({SPEC})")
    spec = yaml.safe_load(SPEC.read_text())
    descriptor = spec["paths"]["/pipelines/{pipelineIdentifier}/boutiquesdescriptor"]
    media = descriptor["get"]["responses"]["200"]["content"]["application/json"]
    assert media["schema"]["$ref"].startswith("http")  # the remote Boutiques schema
    media["schema"] = {"type": "object"}
    spec["servers"] = [{"url": server_url}]
    # the spec's own JSON upload type: openapi-core knows application/json only
    config = Config(extra_media_type_deserializers={"application/carmin+json": json.loads})
    return OpenAPI.from_dict(spec, config=config)


class SpecRequest:
    """An httpx request as openapi-core reads requests."""

    def __init__(self, request: httpx.Request) -> None:
        url = urlsplit(str(request.url))
        self.host_url = f"{url.scheme}://{url.netloc}"
        self.path = url.path
        self.method = request.method.lower()
        self.body = request.content or None
        self.content_type = request.headers.get("content-type", "")
        query = ImmutableMultiDict(parse_qs(url.query, keep_blank_values=True))
        self.parameters = RequestParameters(
            query=query, header=Headers(dict(request.headers)), cookie=ImmutableMultiDict()
        )
        if url.path.startswith("/rest/path/"):
            # the spec: completePath "can contain non-encoded slashes"; openapi-core's
            # templates stop at a slash, so the pattern and its value are given
            self.path_pattern = "/rest/path/{completePath}"
            self.parameters.path = {"completePath": url.path[len("/rest/path/") :]}


class SpecResponse:
    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.content_type = response.headers.get("content-type", "")
        self.headers = Headers(dict(response.headers))
        self.data = response.content


class SpecClient:
    """A plain httpx driver whose every request and answer is checked against the spec."""

    def __init__(self, standin: CarminStandin, key: str | None = KEY) -> None:
        self.api = load_spec(standin.url)
        headers = {"apikey": key} if key else {}
        self.http = httpx.Client(base_url=standin.url, headers=headers, timeout=30)
        self.checked = 0

    def request(
        self, method: str, url: str, *, check_request: bool = True, **kw: Any
    ) -> httpx.Response:
        response = self.http.request(method, url, **kw)
        spec_request = SpecRequest(response.request)
        if check_request:
            self.api.validate_request(spec_request)
        plain = response.headers.get("content-type", "").startswith("text/plain")
        if plain and response.request.url.path.endswith("/executions/count"):
            # openapi-core does not cast a text/plain body: the spec's integer is checked
            assert response.status_code == 200 and response.text.isdigit(), response.text
        elif plain and response.content == b"":
            # an empty log is the empty string; openapi-core takes no bytes for no body
            assert response.status_code == 200
        else:
            self.api.validate_response(spec_request, SpecResponse(response))
        self.checked += 1
        return response

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("GET", url, **kw)

    def put(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("PUT", url, **kw)

    def post(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("POST", url, **kw)

    def delete(self, url: str, **kw: Any) -> httpx.Response:
        return self.request("DELETE", url, **kw)


def is_error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) >= {"errorCode", "errorMessage"} and isinstance(body["errorCode"], int)
    return body


@pytest.fixture(scope="module")
def carmin(tmp_path_factory):
    standin = start_carmin_standin(tmp_path_factory.mktemp("carmin"), bearer_tokens={"tok": "bob"})
    yield standin
    standin.stop()


@pytest.fixture(scope="module")
def client(carmin):
    return SpecClient(carmin)


def finish(client: SpecClient | httpx.Client, ident: str, timeout: float = 60) -> dict:
    def ended():
        body = client.get(f"/executions/{ident}").json()
        return body if body["status"] in ENDED else None

    return wait_for(ended, timeout, f"execution {ident} to end")


def launch(client: SpecClient, pipeline: str, inputs: dict, **extra: Any) -> str:
    body = {"name": f"test {pipeline}", "pipelineIdentifier": pipeline, "inputValues": inputs}
    created = client.post("/executions", json=body | extra)
    assert created.status_code == 200, created.text
    assert created.json()["status"] == "Initializing"
    ident = created.json()["identifier"]
    assert client.put(f"/executions/{ident}/play").status_code == 204
    return ident


# -- the spec's dialect ---------------------------------------------------------------
def test_platform_authenticate_and_keys(carmin, client):
    """Platform properties without a key; a key from /authenticate; wrong keys refused."""
    props = client.get("/platform", headers={"apikey": ""}).json()
    assert props["supportedAPIVersion"] == "0.3.1"
    assert set(props["supportedModules"]) == {"Processing", "Data"}
    assert props["supportedPipelineProperties"] == ["domain"]

    auth = client.post("/authenticate", json={"username": "alice", "password": "alice-password"})
    assert auth.json() == {"httpHeader": "apikey", "httpHeaderValue": KEY}
    bad = client.post("/authenticate", json={"username": "alice", "password": "wrong"})
    is_error(bad, 401)

    is_error(client.get("/pipelines", headers={"apikey": "not-a-key"}), 401)
    is_error(client.get("/pipelines", headers={"apikey": ""}, check_request=False), 401)
    bearer = httpx.get(f"{carmin.url}/executions/count", headers={"Authorization": "Bearer tok"})
    assert bearer.status_code == 200 and bearer.text == "0"  # bob, by his OIDC token


def test_pipelines_list_get_and_descriptor(client):
    listed = client.get("/pipelines").json()
    assert sorted(p["identifier"] for p in listed) == ["fails", "sleeps", "wordcount"]
    wordcount = client.get("/pipelines/wordcount").json()
    params = {p["name"]: p for p in wordcount["parameters"]}
    assert params["input_file"] | {"description": ""} == {
        "name": "input_file",
        "type": "File",
        "isOptional": False,
        "isReturnedValue": False,
        "description": "",
    }
    assert params["output_name"]["defaultValue"] == "counts.txt"
    assert params["output_name"]["isOptional"] is True
    assert params["counts"]["isReturnedValue"] is True
    assert client.get("/pipelines/sleeps").json()["parameters"][0]["type"] == "Int64"
    descriptor = client.get("/pipelines/wordcount/boutiquesdescriptor").json()
    assert descriptor == json.loads((PIPELINES / "wordcount.json").read_text())

    text = client.get("/pipelines", params={"property": "domain", "propertyValue": "text"})
    assert [p["identifier"] for p in text.json()] == ["wordcount"]
    is_error(client.get("/pipelines", params={"property": "colour"}), 400)
    is_error(client.get("/pipelines/nothing"), 404)


def test_data_upload_list_properties_md5_content_delete(client):
    home = "/path/vip/Home"
    created = client.put(f"{home}/data")  # no body: a directory
    assert created.status_code == 201 and created.json()["isDirectory"] is True
    is_error(client.put(f"{home}/data"), 409)  # exists already

    raw = b"raw bytes\n" * 100
    up = client.put(
        f"{home}/data/raw.bin", content=raw, headers={"Content-Type": "application/octet-stream"}
    )
    assert up.status_code == 201
    assert up.json()["platformPath"] == "/vip/Home/data/raw.bin" and up.json()["size"] == 1000
    assert up.headers["Location"].endswith("/rest/path/vip/Home/data/raw.bin")

    text = "héllo wörld 日本\n".encode()
    name = "résumé 日本.txt"
    b64 = {"base64Content": base64.b64encode(text).decode(), "type": "File"}
    b64["md5"] = hashlib.md5(text).hexdigest()
    json_up = client.put(
        f"{home}/data/{quote(name)}",
        content=json.dumps(b64),
        headers={"Content-Type": "application/carmin+json"},
    )
    assert json_up.status_code == 201 and json_up.json()["platformPath"].endswith(name)
    wrong = b64 | {"md5": "0" * 32}
    bad_md5 = client.put(
        f"{home}/data/other.txt",
        content=json.dumps(wrong),
        headers={"Content-Type": "application/carmin+json"},
    )
    is_error(bad_md5, 400)

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("a.txt", "A")
        z.writestr("sub/b.txt", "BB")
    zipped = {"base64Content": base64.b64encode(archive.getvalue()).decode(), "type": "Archive"}
    unzip = client.put(
        f"{home}/data/unzipped",
        content=json.dumps(zipped),
        headers={"Content-Type": "application/carmin+json"},
    )
    assert unzip.status_code == 201 and unzip.json()["isDirectory"] is True
    hostile = io.BytesIO()
    with zipfile.ZipFile(hostile, "w") as z:
        z.writestr("../escape.txt", "x")
    evil = {"base64Content": base64.b64encode(hostile.getvalue()).decode(), "type": "Archive"}
    refused = client.put(
        f"{home}/data/evil",
        content=json.dumps(evil),
        headers={"Content-Type": "application/carmin+json"},
    )
    is_error(refused, 400)

    listing = client.get(f"{home}/data", params={"action": "list"}).json()
    assert sorted(p["platformPath"].rsplit("/", 1)[1] for p in listing) == sorted(
        ["raw.bin", name, "unzipped"]
    )
    props = client.get(f"{home}/data/unzipped", params={"action": "properties"}).json()
    assert props["isDirectory"] is True and props["size"] == 3
    assert client.get(f"{home}/data/raw.bin", params={"action": "exists"}).json() == {
        "exists": True
    }
    assert client.get(f"{home}/data/none", params={"action": "exists"}).json() == {"exists": False}
    is_error(client.get(f"{home}/data/none", params={"action": "properties"}), 404)
    is_error(client.get(f"{home}/data/raw.bin", params={"action": "list"}), 400)
    md5 = client.get(f"{home}/data/{quote(name)}", params={"action": "md5"}).json()
    assert md5 == {"md5": hashlib.md5(text).hexdigest()}
    content = client.get(f"{home}/data/{quote(name)}", params={"action": "content"})
    assert content.content == text
    assert content.headers["Content-Type"] == "application/octet-stream"

    tarball = client.get(f"{home}/data/unzipped", params={"action": "content"})
    with tarfile.open(fileobj=io.BytesIO(tarball.content)) as tar:
        members = {m.name: m for m in tar.getmembers() if m.isfile()}
        assert sorted(members) == ["unzipped/a.txt", "unzipped/sub/b.txt"]
        assert tar.extractfile(members["unzipped/sub/b.txt"]).read() == b"BB"

    is_error(client.get(f"{home}/data/%2E%2E/%2E%2E/etc", params={"action": "exists"}), 400)
    octets = {"Content-Type": "application/octet-stream"}
    is_error(client.put(f"{home}/no/parent.txt", content=b"x", headers=octets), 400)
    unknown_action = client.get(
        f"{home}/data/raw.bin", params={"action": "nothing"}, check_request=False
    )
    is_error(unknown_action, 400)  # the spec's enum refuses the request too
    assert client.delete(f"{home}/data/unzipped").status_code == 204
    is_error(client.delete(f"{home}/data/unzipped"), 404)


def test_download_range_resume(carmin, client):
    """One Range answered 206 (resume), beyond the end 416: HTTP's, checked by hand."""
    carmin.put_file("/vip/Home/range.bin", bytes(range(256)) * 4)
    url = f"{carmin.url}/path/vip/Home/range.bin?action=content"
    headers = {"apikey": KEY}
    part = httpx.get(url, headers=headers | {"Range": "bytes=1000-"})
    assert part.status_code == 206 and part.content == (bytes(range(256)) * 4)[1000:]
    assert part.headers["Content-Range"] == "bytes 1000-1023/1024"
    tail = httpx.get(url, headers=headers | {"Range": "bytes=-4"})
    assert tail.content == bytes([252, 253, 254, 255])
    etag = part.headers["ETag"]
    changed = httpx.get(url, headers=headers | {"Range": "bytes=10-", "If-Range": '"old"'})
    assert changed.status_code == 200 and len(changed.content) == 1024
    same = httpx.get(url, headers=headers | {"Range": "bytes=10-19", "If-Range": etag})
    assert same.status_code == 206 and len(same.content) == 10
    assert httpx.get(url, headers=headers | {"Range": "bytes=5000-"}).status_code == 416


def test_wordcount_runs_with_bosh_to_finished(carmin, client):
    carmin.put_file("/vip/Home/words.txt", b"the quick brown fox jumps\nover the dog\n")
    ident = launch(client, "wordcount", {"input_file": "/vip/Home/words.txt"})
    done = finish(client, ident)
    assert done["status"] == "Finished", client.get(f"/executions/{ident}/stderr").text
    assert done["startDate"] <= done["endDate"] < 1e10  # seconds
    [url] = done["returnedFiles"]["counts"]
    assert client.http.get(url).text == "8\n"
    results = client.get(f"/executions/{ident}/results").json()
    assert [r["platformPath"] for r in results] == [f"/vip/Home/{ident}/counts.txt"]
    assert results[0]["executionId"] == ident
    assert "counted the words of" in client.get(f"/executions/{ident}/stdout").text
    assert client.get(f"/executions/{ident}/stderr").text == ""

    # the input may also be given as this platform's URL of the file
    by_url = launch(client, "wordcount", {"input_file": f"{carmin.url}/path/vip/Home/words.txt"})
    assert finish(client, by_url)["status"] == "Finished"

    listed = [e["identifier"] for e in client.get("/executions").json()]
    assert listed.index(by_url) < listed.index(ident)  # newest first
    assert [e["identifier"] for e in client.get("/executions", params={"limit": "1"}).json()] == [
        by_url
    ]
    count = int(client.get("/executions/count").text)
    assert count == len(listed)

    renamed = client.put(
        f"/executions/{ident}",
        json={"name": "renamed", "pipelineIdentifier": "wordcount", "inputValues": {}},
    )
    assert renamed.status_code == 204
    assert client.get(f"/executions/{ident}").json()["name"] == "renamed"
    moved = client.put(
        f"/executions/{ident}",
        json={"name": "x", "pipelineIdentifier": "wordcount", "inputValues": {}, "status": "Ready"},
        check_request=False,  # status is read-only: the spec's own request refuses it
    )
    is_error(moved, 400)

    assert client.delete(f"/executions/{ident}", params={"deleteFiles": "true"}).status_code == 204
    is_error(client.get(f"/executions/{ident}"), 404)
    assert not carmin.data.exists(f"/vip/Home/{ident}")
    assert int(client.get("/executions/count").text) == count - 1


def test_failing_tool_ends_execution_failed_with_its_stderr(client):
    ident = launch(client, "fails", {"message": "no such subject: sub-01"})
    done = finish(client, ident)
    assert done["status"] == "ExecutionFailed" and done["errorCode"] == 1
    assert "returnedFiles" not in done
    assert client.get(f"/executions/{ident}/stderr").text == "no such subject: sub-01\n"
    assert client.get(f"/executions/{ident}/stdout").text == "starting\n"
    assert client.get(f"/executions/{ident}/results").json() == []


def test_running_execution_is_killed_and_timeout_kills(carmin, client):
    ident = launch(client, "sleeps", {"seconds": 60})
    wait_for(
        lambda: carmin.execution(ident).proc is not None,
        30,
        "the sleeping tool to start",
    )
    assert client.get(f"/executions/{ident}").json()["status"] == "Running"
    assert client.put(f"/executions/{ident}/kill").status_code == 204
    assert client.get(f"/executions/{ident}").json()["status"] == "Killed"
    is_error(client.put(f"/executions/{ident}/kill"), 409)
    is_error(client.put(f"/executions/{ident}/play"), 409)

    timed = launch(client, "sleeps", {"seconds": 60}, timeout=1)
    assert finish(client, timed, timeout=30)["status"] == "Killed"


def test_bad_executions_refused_before_running(carmin, client):
    def create(pipeline: str, inputs: Any, check: bool = True) -> httpx.Response:
        body = {"name": "bad", "pipelineIdentifier": pipeline, "inputValues": inputs}
        return client.post("/executions", json=body, check_request=check)

    before = len(carmin.engine.executions)
    is_error(create("nothing", {}), 404)
    assert "input_file" in is_error(create("wordcount", {}), 400)["errorMessage"]
    is_error(create("wordcount", {"input_file": "/vip/Home/words.txt", "colour": "red"}), 400)
    is_error(create("sleeps", {"seconds": "soon"}), 400)
    is_error(create("sleeps", {"seconds": -1}), 400)
    is_error(create("wordcount", {"input_file": "/vip/Home/missing.txt"}), 400)
    is_error(create("wordcount", {"input_file": "/vip/../../etc/passwd"}), 400)
    is_error(create("wordcount", "not an object", check=False), 400)
    missing_name = client.post(
        "/executions", json={"pipelineIdentifier": "fails", "inputValues": {}}, check_request=False
    )
    is_error(missing_name, 400)
    assert len(carmin.engine.executions) == before


def test_hooks_fail_cut_stall_and_record(carmin, client):
    carmin.put_file("/vip/Home/hooks.bin", b"0123456789" * 1000)
    carmin.fail_next(2, path_contains="/executions/count")
    is_error(client.get("/executions/count", check_request=True), 500)
    is_error(client.get("/executions/count"), 500)
    assert client.get("/executions/count").status_code == 200
    assert carmin.count("GET", "/executions/count") >= 3

    url = f"{carmin.url}/path/vip/Home/hooks.bin?action=content"
    carmin.cut_next_download(after=4000)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(url, headers={"apikey": KEY})
    rest = httpx.get(url, headers={"apikey": KEY, "Range": "bytes=4000-"})
    assert rest.status_code == 206 and rest.content == (b"0123456789" * 1000)[4000:]

    carmin.stall_next_download(after=100)
    with pytest.raises(httpx.ReadTimeout):
        with httpx.stream("GET", url, headers={"apikey": KEY}, timeout=1) as stalled:
            stalled.read()
    carmin.release_stalled()

    carmin.clear_requests()
    launch(client, "fails", {})
    [created] = [r for r in carmin.requests if r.method == "POST"]
    assert json.loads(created.body)["pipelineIdentifier"] == "fails"
    assert created.headers["apikey"] == KEY


def test_large_bodies_stream_both_ways(carmin):
    """64 MiB up (chunked, from a generator) and down, compared by md5."""
    piece = hashlib.sha256(b"seed").digest() * (1 << 15)  # 1 MiB
    digest = hashlib.md5()

    def body():
        for _ in range(64):
            digest.update(piece)
            yield piece

    headers = {"apikey": KEY, "Content-Type": "application/octet-stream"}
    with httpx.Client(base_url=carmin.url, headers=headers, timeout=60) as http:
        up = http.put("/path/vip/Home/big.bin", content=body())
        assert up.status_code == 201 and up.json()["size"] == 64 << 20
        assert [r for r in carmin.requests if r.path.endswith("big.bin")][-1].body is None
        down = hashlib.md5()
        with http.stream("GET", "/path/vip/Home/big.bin", params={"action": "content"}) as r:
            for block in r.iter_bytes(1 << 20):
                down.update(block)
        assert down.hexdigest() == digest.hexdigest()
        md5 = http.get("/path/vip/Home/big.bin", params={"action": "md5"}).json()["md5"]
        assert md5 == digest.hexdigest()
        http.delete("/path/vip/Home/big.bin")


# -- VIP's dialect --------------------------------------------------------------------
@pytest.fixture(scope="module")
def vip(tmp_path_factory):
    standin = start_carmin_standin(tmp_path_factory.mktemp("vip"), dialect="vip")
    yield standin
    standin.stop()


def test_vip_dialect_differences(vip, tmp_path):
    http = httpx.Client(base_url=vip.url, headers={"apikey": KEY}, timeout=30)
    props = http.get("/platform").json()
    assert props["platformName"] == "VIP" and props["maxSizeDirectTransfer"] == 15_000_000

    wrong = http.get("/pipelines", headers={"apikey": "wrong"})
    assert wrong.status_code == 401
    assert wrong.json() == {"errorCode": 40101, "errorMessage": "Bad credentials"}
    right = http.put("/platform")
    assert not {"errorCode", "errorMessage"} <= set(right.json())  # vip-client: key is right
    assert http.put("/platform", headers={"apikey": "wrong"}).json()["errorCode"] == 40101

    ids = sorted(p["identifier"] for p in http.get("/pipelines").json())
    assert ids == ["fails/1.0", "sleeps/1.0", "wordcount/1.0"]
    pipeline = http.get("/pipelines/wordcount/1.0").json()
    assert http.get("/pipelines/wordcount%2F1.0").json() == pipeline
    params = {p["name"]: p for p in pipeline["parameters"]}
    assert params["input_file"]["defaultValue"] is None
    assert params["results-directory"]["defaultValue"] == "/vip/Home"
    assert "counts" not in params
    assert http.get("/pipelines/wordcount/1.0", params={"format": "boutiques"}).json() == (
        json.loads((PIPELINES / "wordcount.json").read_text())
    )
    assert http.get("/pipelines/nothing/1.0").json()["errorCode"] == 8007

    assert http.put("/path/vip/Home/w.txt", content=b"a b c").status_code == 201
    listing = http.get("/path/vip/Home", params={"action": "list"}).json()
    assert {"path": "/vip/Home/w.txt", "exists": True, "isDirectory": False}.items() <= (
        next(p for p in listing if p["path"].endswith("w.txt")).items()
    )
    assert http.get("/path/vip/Home/w.txt", params={"action": "md5"}).json()["errorCode"] == 8000

    created = http.post(
        "/executions",
        json={
            "name": "vip",
            "pipelineIdentifier": "wordcount/1.0",
            "inputValues": {"input_file": "/vip/Home/w.txt"},
            "resultsLocation": "/vip/Home/out",
        },
    ).json()
    assert created["status"] == "Running" and created["startDate"] > 1e12  # milliseconds
    assert created["returnedFiles"] == {}
    ident = created["identifier"]
    assert http.put(f"/executions/{ident}/play").json()["errorCode"] == 8001
    done = finish(http, ident)
    assert done["status"] == "Finished"
    assert done["returnedFiles"] == {"counts": [f"/vip/Home/out/{ident}/counts.txt"]}
    assert http.get(f"/executions/{ident}/results").json()[0]["path"].endswith("counts.txt")
    assert http.delete(f"/executions/{ident}").status_code == 405
    assert http.put(f"/executions/{ident}/delete", json={"deleteFiles": True}).status_code == 204
    assert not vip.data.exists(f"/vip/Home/out/{ident}")
    missing = http.post(
        "/executions", json={"name": "x", "pipelineIdentifier": "wordcount/1.0", "inputValues": {}}
    )
    assert missing.status_code == 400 and missing.json()["errorCode"] == 8018

    too_big = http.put(
        "/path/vip/Home/big.bin",
        content=iter([b"\0" * 1_000_000] * 15 + [b"\0"]),
        headers={"Content-Type": "application/octet-stream"},
    )
    assert too_big.status_code == 413 and not vip.data.exists("/vip/Home/big.bin")


def test_vip_too_many_running_executions(tmp_path):
    standin = start_carmin_standin(tmp_path, dialect="vip", max_running=1)
    try:
        http = httpx.Client(base_url=standin.url, headers={"apikey": KEY}, timeout=30)
        body = {"name": "s", "pipelineIdentifier": "sleeps/1.0", "inputValues": {"seconds": "60"}}
        first = http.post("/executions", json=body).json()
        assert first["status"] == "Running"
        second = http.post("/executions", json=body)
        assert second.status_code == 400 and second.json()["errorCode"] == 2001
        assert "running executions" in second.json()["errorMessage"]
        assert http.put(f"/executions/{first['identifier']}/kill").status_code == 204
        assert http.post("/executions", json=body).json()["status"] == "Running"
    finally:
        standin.stop()


def test_vip_client_runs_a_session_against_the_standin(vip, tmp_path, capsys):
    """VIP's own client: API key, pipelines, upload, launch, follow to Finished, results."""
    import vip_client
    from vip_client.utils import vip as vip_api

    with pytest.raises((AssertionError, RuntimeError)):
        vip_client.VipSession.init(api_key="wrong-key", vip_portal_url=vip.portal_url)
    vip_client.VipSession.init(api_key=KEY, vip_portal_url=vip.portal_url)
    assert "wordcount/1.0" in vip_client.VipSession._AVAILABLE_PIPELINES

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "text.txt").write_text("one two three four five\n")
    session = vip_client.VipSession(
        session_name="standin-session",
        input_dir=inputs,
        pipeline_id="wordcount/1.0",
        input_settings={"input_file": inputs / "text.txt"},
        output_dir=tmp_path / "outputs",
    )
    session.upload_inputs()
    session.launch_pipeline()
    session.monitor_workflows(refresh_time=0.5)
    session.download_outputs()
    [workflow] = session._workflows.values()
    assert workflow["status"] == "Finished"
    [counts] = list((tmp_path / "outputs").rglob("counts.txt"))
    assert counts.read_text() == "5\n"

    assert vip_api.exists("/vip/Home/API/standin-session/INPUTS/text.txt") is True
    assert vip_api.count_executions() >= 1
    [wid] = session._workflows
    assert vip_api.get_exec_results(wid)[0]["path"].endswith("/counts.txt")
    assert "counted the words" in vip_api.get_exec_stdout(wid)
    out = capsys.readouterr().out
    assert "All executions (1) ended with success." in out
