"""Downloads (``/files/<path>``) from storage mounts in a real Jupyter server.

Real parts, as in test_singleuser_storage.py (whose ``jupyter`` fixture and hub stand-in
this reuses): ``jupyter-server`` with egi-hub's shipped Jupyter config, a real S3 server
(``rclone serve s3``, checking signatures) and the Onedata stand-in (a stand-in following
Onedata's documented REST API); the hub's ``GET /hub/api/egi/mounts`` is a stand-in too.
Each mount path also exists in the home folder with other bytes: the download must be the
mount's file, never the home file the mount hides.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.integration.test_singleuser_storage import KEY, SECRET, jupyter  # noqa: F401
from tests.onedata_standin import start_onedata_standin
from tests.s3server import start_s3_server

pytestmark = pytest.mark.integration

MOUNT_BYTES = b"\x00the mount's bytes\xff" * 7
HOME_BYTES = b"THE HOME FILE THE MOUNT HIDES"


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Alice's mounts: S3 read-write and read-only (one prefix), DataHub limited to
    space-a (she is also in space-b), and a mount in error."""
    s3 = start_s3_server(tmp_path / "s3", keys=[(KEY, SECRET)])
    onedata = start_onedata_standin(tmp_path / "onedata")
    try:
        s3.make_bucket("vo-scratch")
        onedata.add_user("checkin-token-alice", "alice")
        space_a = onedata.add_space("space-a", ["alice"])
        space_b = onedata.add_space("space-b", ["alice"])
        onedata.write_file(space_a, "results/r.csv", MOUNT_BYTES)
        onedata.write_file(space_b, "secret.txt", b"space-b is not in this mount")
        token = onedata.mint_token("alice")
        s3_settings = {
            "endpoint_url": s3.endpoint_url,
            "bucket": "vo-scratch",
            "prefix": "alice",
            "region": "",
            "key": KEY,
            "secret": SECRET,
        }
        document = {
            "mounts": [
                {"name": "scratch", "kind": "s3", "path": "/s3/scratch", "read_only": False,
                 "s3": s3_settings},
                {"name": "ro", "kind": "s3", "path": "/s3/ro", "read_only": True,
                 "s3": s3_settings},
                {"name": "datahub", "kind": "datahub", "path": "/datahub", "read_only": False,
                 "datahub": {"onezone_url": onedata.onezone_url, "token": token,
                             "expires_at": int(time.time()) + 3600, "spaces": ["space-a"]}},
                {"name": "broken", "kind": "datahub", "path": "/datahub2", "read_only": False,
                 "error": "DataHub: Onezone at https://onezone.invalid did not answer"},
            ],
            "refresh_at": int(time.time()) + 3000,
        }  # fmt: skip
        yield {"s3": s3, "onedata": onedata, "document": document, "token": token}
    finally:
        onedata.stop()
        s3.stop()


def files_url(jupyter: dict[str, Any], path: str) -> str:  # noqa: F811
    return jupyter["base"].replace("/api/contents", "/files") + "/" + path


def put_bytes(jupyter: dict[str, Any], path: str, data: bytes) -> None:  # noqa: F811
    body = {"type": "file", "format": "base64", "content": base64.b64encode(data).decode()}
    r = jupyter["client"].put(f"{jupyter['base']}/{path}", json=body)
    assert r.status_code in (200, 201), r.text


def hide_in_home(home: Path, path: str, data: bytes = HOME_BYTES) -> None:
    target = home / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def raw_get(jupyter: dict[str, Any], raw_path: str, auth: bool = True) -> tuple[int, bytes]:  # noqa: F811
    """GET with the path sent byte for byte (httpx would normalise dot segments)."""
    url = urlsplit(jupyter["base"])
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    try:
        headers = {"Authorization": "token test-token-0001"} if auth else {}
        conn.putrequest("GET", raw_path, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def test_download_from_s3_is_the_mounts_file_never_the_home_file(jupyter, storage):  # noqa: F811
    client, home = jupyter["client"], jupyter["home"]
    put_bytes(jupyter, "s3/scratch/data.bin", MOUNT_BYTES)
    hide_in_home(home, "s3/scratch/data.bin")
    r = client.get(files_url(jupyter, "s3/scratch/data.bin"))
    assert r.status_code == 200 and r.content == MOUNT_BYTES
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-length"] == str(len(MOUNT_BYTES))
    assert "attachment" not in r.headers.get("content-disposition", "")
    assert "sandbox" in r.headers["content-security-policy"]
    r = client.get(files_url(jupyter, "s3/scratch/data.bin") + "?download=1")
    assert r.content == MOUNT_BYTES
    assert r.headers["content-disposition"].startswith("attachment")
    assert "data.bin" in r.headers["content-disposition"]
    # HEAD: the headers, no body
    r = client.head(files_url(jupyter, "s3/scratch/data.bin"))
    assert r.status_code == 200 and r.content == b""
    assert r.headers["content-length"] == str(len(MOUNT_BYTES))
    # a file only the home folder has at a mount path is not served either
    hide_in_home(home, "s3/scratch/only-home.txt")
    hide_in_home(home, "s3/other/x.txt")
    hide_in_home(home, "s3/.hidden.txt")
    for path in ("s3/scratch/only-home.txt", "s3/other/x.txt", "s3/.hidden.txt", "s3",
                 "s3/scratch", "s3/scratch/"):  # fmt: skip
        r = client.get(files_url(jupyter, path))
        assert r.status_code == 404 and HOME_BYTES not in r.content, (path, r.status_code)


def test_download_types_text_notebook_and_a_big_file_streamed(jupyter, storage):  # noqa: F811
    client = jupyter["client"]
    put_bytes(jupyter, "s3/scratch/notes.txt", b"plain text\n")
    r = client.get(files_url(jupyter, "s3/scratch/notes.txt"))
    assert r.headers["content-type"] == "text/plain; charset=UTF-8"
    put_bytes(jupyter, "s3/scratch/a.ipynb", b'{"cells": []}')
    r = client.get(files_url(jupyter, "s3/scratch/a.ipynb"))
    assert r.headers["content-type"] == "application/x-ipynb+json"
    assert r.headers["content-disposition"].startswith("attachment")
    big = os.urandom(5 * 2**20 + 3)
    put_bytes(jupyter, "s3/scratch/big.bin", big)
    with client.stream("GET", files_url(jupyter, "s3/scratch/big.bin")) as r:
        chunks = list(r.iter_bytes())
    assert b"".join(chunks) == big


def test_stand_in_datahub_download_and_the_spaces_filter(jupyter, storage):  # noqa: F811
    client, home = jupyter["client"], jupyter["home"]
    hide_in_home(home, "datahub/space-a/results/r.csv")
    r = client.get(files_url(jupyter, "datahub/space-a/results/r.csv") + "?download=1")
    assert r.status_code == 200 and r.content == MOUNT_BYTES
    assert r.headers["content-type"] == "text/csv"
    assert r.headers["content-disposition"].startswith("attachment")
    # space-b is alice's too, but not in this mount: not listed, not reachable
    listing = client.get(f"{jupyter['base']}/datahub").json()
    assert [m["name"] for m in listing["content"]] == ["space-a"]
    hide_in_home(home, "datahub/space-b/secret.txt")
    for path in ("datahub/space-b/secret.txt", "datahub/space-b"):
        assert client.get(f"{jupyter['base']}/{path}").status_code == 404
        r = client.get(files_url(jupyter, path))
        assert r.status_code == 404 and b"space-b" not in r.content
    r = client.put(
        f"{jupyter['base']}/datahub/space-b/new.txt",
        json={"type": "file", "format": "text", "content": "x"},
    )
    assert r.status_code == 404
    space_b = next(s for s in storage["onedata"].state.spaces.values() if s.name == "space-b")
    assert not storage["onedata"].exists(space_b.space_id, "new.txt")


def test_read_only_and_error_mounts_still_download(jupyter, storage):  # noqa: F811
    client = jupyter["client"]
    put_bytes(jupyter, "s3/scratch/shared.bin", MOUNT_BYTES)
    r = client.get(files_url(jupyter, "s3/ro/shared.bin") + "?download=1")
    assert r.status_code == 200 and r.content == MOUNT_BYTES
    r = client.put(f"{jupyter['base']}/s3/ro/x.txt", json={"type": "file", "format": "text",
                                                          "content": "x"})  # fmt: skip
    assert r.status_code == 403
    r = client.get(files_url(jupyter, "datahub2/README-error.txt"))
    assert r.status_code == 200 and b"did not answer" in r.content
    assert client.get(files_url(jupyter, "datahub2/other.txt")).status_code == 404


BAD_PATHS = [
    "/files/s3/scratch/../scratch/data.bin",
    "/files/s3/scratch/%2e%2e/scratch/data.bin",
    "/files/%2E%2E/s3/scratch/data.bin",
    "/files/x/%2e%2e/s3/scratch/data.bin",
    "/files/./s3/scratch/data.bin",
    "/files/%2e/s3/scratch/data.bin",
    "/files/s3//scratch/data.bin",
    "/files/s3/scratch/data.bin%00",
    "/files/s3/scratch/a%0Ab",
    "/files/s3/scratch/a%1bb",
    "/files/home%00.txt",
    "/files/home%7F.txt",
    "/files/s3/scratch/%C2%85",
    "/files/%2e%2e/%2e%2e/etc/passwd",
]


def test_dotted_encoded_and_control_paths_are_4xx(jupyter, storage):  # noqa: F811
    """One server for all of them (each path sent byte for byte)."""
    home = jupyter["home"]
    put_bytes(jupyter, "s3/scratch/data.bin", MOUNT_BYTES)
    hide_in_home(home, "s3/scratch/data.bin")
    (home / "home.txt").write_bytes(HOME_BYTES)
    for raw_path in BAD_PATHS:
        status, body = raw_get(jupyter, raw_path)
        assert 400 <= status < 500, (raw_path, status)
        assert HOME_BYTES not in body and MOUNT_BYTES not in body, raw_path
        assert b"root:" not in body
    assert raw_get(jupyter, "/files/s3/scratch/data.bin") == (200, MOUNT_BYTES)


def test_unauthenticated_downloads_are_refused_as_by_the_stock_handler(jupyter, storage):  # noqa: F811
    home = jupyter["home"]
    put_bytes(jupyter, "s3/scratch/data.bin", MOUNT_BYTES)
    (home / "home.txt").write_bytes(HOME_BYTES)
    stock_status, stock_body = raw_get(jupyter, "/files/home.txt", auth=False)
    assert stock_status in (302, 403) and HOME_BYTES not in stock_body
    for raw_path in ("/files/s3/scratch/data.bin", "/files/s3/scratch/data.bin?download=1"):
        status, body = raw_get(jupyter, raw_path, auth=False)
        assert status == stock_status and MOUNT_BYTES not in body
    wrong = httpx.get(
        files_url(jupyter, "s3/scratch/data.bin"),
        headers={"Authorization": "token not-the-token"},
        follow_redirects=False,
    )
    assert wrong.status_code in (302, 403) and MOUNT_BYTES not in wrong.content
    # the home folder is still served by the stock handler
    r = jupyter["client"].get(files_url(jupyter, "home.txt") + "?download=1")
    assert r.status_code == 200 and r.content == HOME_BYTES
    assert r.headers["content-disposition"].startswith("attachment")
    log = jupyter["log"].read_text()
    assert SECRET not in log and storage["token"] not in log and json.dumps(SECRET) not in log
