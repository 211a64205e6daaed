"""egi-hub's CARMIN client speaks the spec: every request `CarminClient` sends, and the
stand-in's answer to it, validated with ``openapi-core`` against
``../shared/specs/carmin-0.3.1.yaml`` (the CARMIN server stand-in, spec dialect, runs the
pipelines with Boutiques).

The check sits in the client's own transport, so nothing the client does escapes it:
platform, pipelines and their descriptors, executions (create, get, results, logs,
count, kill, delete), data (upload, list, exists, properties, md5, download, mkdir,
delete). The spec-reading parts (the remote ``$ref``, raw slashes in ``completePath``,
the ``text/plain`` count) are `test_carmin_standin`'s, said there. An upload's body
streams from disk, so its request is checked without its body (the bytes are checked
by the md5 the client compares); ``206`` answers to ``Range`` are HTTP's, outside the
spec.
"""

from __future__ import annotations

import httpx
import pytest

from egi_hub.carmin import CarminClient
from tests.carmin_standin import start_carmin_standin
from tests.integration.test_carmin_standin import SpecRequest, SpecResponse, load_spec
from tests.stackrunner import wait_for

KEY = "standin-key"


class SpecCheckingTransport(httpx.HTTPTransport):
    """Sends as httpx does, then validates the request and the answer against the spec."""

    def __init__(self, api) -> None:
        super().__init__()
        self.api = api
        self.checked: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        response.read()
        if isinstance(request.stream, httpx.ByteStream):
            request.read()
        else:  # a streamed upload: checked without its body
            request = httpx.Request(request.method, request.url, headers=request.headers)
        spec_request = SpecRequest(request)
        self.api.validate_request(spec_request)
        if response.status_code == 206:
            return response
        plain = response.headers.get("content-type", "").startswith("text/plain")
        if plain and request.url.path.endswith("/executions/count"):
            assert response.text.isdigit(), response.text
        elif plain and response.content == b"":
            assert response.status_code == 200
        else:
            self.api.validate_response(spec_request, SpecResponse(response))
        self.checked.append(f"{request.method} {request.url.path}")
        return response


@pytest.fixture
def standin(tmp_path):
    running = start_carmin_standin(tmp_path / "standin", dialect="carmin")
    yield running
    running.stop()


def test_every_request_of_the_client_and_its_answer_follow_the_spec(standin, tmp_path):
    transport = SpecCheckingTransport(load_spec(standin.url))
    words = tmp_path / "mots é.txt"
    words.write_text("un deux trois\n", encoding="utf-8")
    with CarminClient(standin.url, api_key=KEY, dialect="carmin", transport=transport) as c:
        assert c.platform().api_version
        (wordcount,) = [p for p in c.pipelines() if p.name == "wordcount"]
        assert c.pipeline(wordcount.identifier).parameters
        assert c.boutiques(wordcount.identifier)["name"]
        c.mkdir("/vip/Home/spec")
        c.upload(words, "/vip/Home/spec/mots é.txt")
        assert c.exists("/vip/Home/spec/mots é.txt")
        assert c.properties("/vip/Home/spec/mots é.txt").size == words.stat().st_size
        assert [p.name for p in c.list("/vip/Home/spec")] == ["mots é.txt"]
        assert c.md5("/vip/Home/spec/mots é.txt")
        execution = c.create_execution(
            wordcount.identifier, {"input_file": "/vip/Home/spec/mots é.txt"}, "spec run"
        )
        done = wait_for(
            lambda: (e := c.execution(execution.identifier)).status.is_final and e,
            60,
            "the word count to end",
        )
        assert done.status.value == "Finished"
        (result,) = c.results(execution.identifier)
        c.download(result, tmp_path / "counts.txt")
        assert (tmp_path / "counts.txt").read_text().strip() == "3"
        assert isinstance(c.stdout(execution.identifier), str)
        assert isinstance(c.stderr(execution.identifier), str)
        assert c.count_executions() >= 1
        assert [e.identifier for e in c.executions()] == [execution.identifier]
        c.delete_execution(execution.identifier, delete_files=True)
        c.delete("/vip/Home/spec")
        assert not c.exists("/vip/Home/spec")
    methods = {line.split()[0] for line in transport.checked}
    assert methods == {"GET", "PUT", "POST", "DELETE"}, transport.checked
    assert len(transport.checked) >= 20, transport.checked
