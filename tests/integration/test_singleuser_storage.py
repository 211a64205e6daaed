"""A real Jupyter server with egi-hub's mounts: notebooks saved twice on S3 and DataHub.

Real parts: ``jupyter-server`` (a subprocess, with egi-hub's shipped Jupyter config), a
real S3 server (``rclone serve s3``, checking signatures: tests/s3server.py) and the
Onedata stand-in (tests/onedata_standin.py: a stand-in, following Onedata's documented
REST API). The hub's ``GET /hub/api/egi/mounts`` is a stand-in too: a small HTTP server
in this test answering the mounts document of the contract to the server's API token,
so the keeper runs as in a spawned server (with the hub's per-server EGI_MOUNTS_FILE and
EGI_STORAGE_DIR it asks, writes the mounts file and the credential files in the server's
own folder ~/.egi/servers/default/, and the file browser's contents manager picks them up).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest

from egi_hub.procs import free_port
from egi_hub.singleuser_config import JUPYTER_CONFIG_DIR
from tests.onedata_standin import start_onedata_standin
from tests.s3server import start_s3_server
from tests.stackrunner import wait_for

pytestmark = pytest.mark.integration

KEY, SECRET = "alicekey0001", "alice-secret-0001-never-shown"
HUB_TOKEN = "server-api-token-0001"


class HubMountsStandin:
    """Stand-in for the hub's ``GET /hub/api/egi/mounts`` (answers one server's token)."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.calls: list[str] = []
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                standin.calls.append(self.path)
                if self.headers.get("Authorization") != f"token {HUB_TOKEN}":
                    self.send_error(403)
                    return
                if self.path.split("?")[0] != "/hub/api/egi/mounts":
                    self.send_error(404)
                    return
                body = json.dumps(standin.document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.api_url = f"http://127.0.0.1:{self.server.server_address[1]}/hub/api"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def storage(tmp_path: Path) -> Iterator[dict[str, Any]]:
    s3 = start_s3_server(tmp_path / "s3", keys=[(KEY, SECRET)])
    onedata = start_onedata_standin(tmp_path / "onedata")
    try:
        s3.make_bucket("vo-scratch")
        onedata.add_user("checkin-token-alice", "alice")
        space_id = onedata.add_space("space-a", ["alice"])
        token = onedata.mint_token("alice")
        document = {
            "mounts": [
                {"name": "scratch", "kind": "s3", "path": "/s3/scratch", "read_only": False,
                 "s3": {"endpoint_url": s3.endpoint_url, "bucket": "vo-scratch",
                        "prefix": "alice", "region": "", "key": KEY, "secret": SECRET}},
                {"name": "datahub", "kind": "datahub", "path": "/datahub", "read_only": False,
                 "datahub": {"onezone_url": onedata.onezone_url, "token": token,
                             "expires_at": int(time.time()) + 3600, "spaces": ["space-a"]}},
                {"name": "broken", "kind": "datahub", "path": "/datahub2", "read_only": False,
                 "error": "DataHub: Onezone at https://onezone.invalid did not answer"},
            ],
            "refresh_at": int(time.time()) + 3000,
        }  # fmt: skip
        yield {"s3": s3, "onedata": onedata, "space_id": space_id, "document": document,
               "token": token}  # fmt: skip
    finally:
        onedata.stop()
        s3.stop()


@pytest.fixture
def jupyter(tmp_path: Path, storage: dict[str, Any]) -> Iterator[dict[str, Any]]:
    hub = HubMountsStandin(storage["document"])
    home, config = tmp_path / "home", tmp_path / "config"
    home.mkdir()
    config.mkdir()
    (config / "jupyter_server_config.json").write_text(
        json.dumps(
            {
                "MountsContentsManager": {
                    "filesystem_options": {"datahub": {"verify": storage["onedata"].ca_file}}
                }
            }
        )
    )
    port = free_port()
    env = {
        **os.environ,
        "HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_CONFIG_PATH": JUPYTER_CONFIG_DIR,
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTERHUB_API_URL": hub.api_url,
        "JUPYTERHUB_API_TOKEN": HUB_TOKEN,
        # As the hub's spawner sets them (storage_mounts/spawner.py), '~' included.
        "EGI_MOUNTS_FILE": "~/.egi/servers/default/mounts.json",
        "EGI_STORAGE_DIR": "~/.egi/servers/default/storage",
    }
    for name in ("EGI_TOKEN_FILE", "JUPYTERHUB_SERVER_NAME"):
        env.pop(name, None)
    log_path = tmp_path / "jupyter.log"
    cmd = [
        str(Path(sys.executable).parent / "jupyter-server"),
        "--no-browser",
        f"--port={port}",
        "--ip=127.0.0.1",
        f"--ServerApp.root_dir={home}",
        "--IdentityProvider.token=test-token-0001",
        "--allow-root",
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=home, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}/api/contents"
    client = httpx.Client(headers={"Authorization": "token test-token-0001"}, timeout=30)

    def up() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter-server exited: {log_path.read_text()[-3000:]}")
        try:
            return client.get(base).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, 60, "jupyter-server to answer")
        wait_for(lambda: (server_dir(home) / "mounts.json").exists(), 30, "the keeper's file")
        yield {"client": client, "base": base, "home": home, "hub": hub, "log": log_path}
    finally:
        client.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        hub.stop()


def server_dir(home: Path) -> Path:
    """This server's own folder, where the hub's EGI_MOUNTS_FILE/EGI_STORAGE_DIR point."""
    return home / ".egi" / "servers" / "default"


def notebook(text: str) -> dict[str, Any]:
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(text))
    return json.loads(nbformat.writes(nb))


def save_twice_and_read(client: httpx.Client, url: str) -> dict[str, Any]:
    for text in ("first save", "second save"):
        r = client.put(url, json={"type": "notebook", "content": notebook(text)})
        assert r.status_code in (200, 201), r.text
        # JupyterLab's save command creates a checkpoint after each save.
        assert client.post(f"{url}/checkpoints").status_code == 201
    r = client.get(url)
    assert r.status_code == 200, r.text
    return r.json()


def test_stand_in_hub_keeper_files_are_private_and_the_browser_shows_the_mounts(jupyter, storage):
    home = jupyter["home"]
    assert jupyter["hub"].calls.count("/hub/api/egi/mounts") == 1  # (the token keeper asks too)
    server = server_dir(home)
    for path in (server / "mounts.json", server / "storage" / "scratch.json",
                 server / "storage" / "datahub.token"):  # fmt: skip
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert sorted(p.name for p in (home / ".egi").iterdir()) == ["servers"]  # nothing shared
    client, base = jupyter["client"], jupyter["base"]
    root = {m["name"] for m in client.get(base).json()["content"]}
    assert {"s3", "datahub", "datahub2"} <= root
    assert [m["name"] for m in client.get(f"{base}/s3").json()["content"]] == ["scratch"]
    spaces = [m["name"] for m in client.get(f"{base}/datahub").json()["content"]]
    assert spaces == ["space-a"]


def test_a_notebook_saved_twice_on_s3_lands_in_the_bucket(jupyter, storage):
    model = save_twice_and_read(jupyter["client"], f"{jupyter['base']}/s3/scratch/analysis.ipynb")
    assert model["content"]["cells"][0]["source"] == "second save"
    on_server = storage["s3"].path_of("vo-scratch", "alice/analysis.ipynb")
    assert nbformat.reads(on_server.read_text(), as_version=4).cells[0].source == "second save"
    listing = jupyter["client"].get(f"{jupyter['base']}/s3/scratch").json()
    assert [m["name"] for m in listing["content"]] == ["analysis.ipynb"]
    # the checkpoint is this server's, beside its mounts file
    assert len(list((server_dir(jupyter["home"]) / "checkpoints").iterdir())) == 1


def test_dotted_spellings_do_not_reach_the_home_folder_a_mount_hides(jupyter, storage):
    client, base, home = jupyter["client"], jupyter["base"], jupyter["home"]
    hidden = home / "s3" / "scratch"
    hidden.mkdir(parents=True)
    (hidden / "hidden.txt").write_text("the home file the mount hides")
    # %2E is '.', decoded by the server after the client's own dot-segment handling
    for path in ("%2E/s3/scratch", "x/%2E%2E/s3/scratch", "s3/%2E/scratch"):
        r = client.get(f"{base}/{path}/hidden.txt")
        assert r.status_code == 400 and "segment" in r.json()["message"], (path, r.text)
        r = client.put(
            f"{base}/{path}/new.txt", json={"type": "file", "format": "text", "content": "x"}
        )
        assert r.status_code == 400, (path, r.text)
    assert sorted(p.name for p in hidden.iterdir()) == ["hidden.txt"]
    assert client.get(f"{base}/s3/scratch/hidden.txt").status_code == 404


def test_stand_in_datahub_a_notebook_saved_twice_is_overwritten(jupyter, storage):
    url = f"{jupyter['base']}/datahub/space-a/results/run.ipynb"
    r = jupyter["client"].put(
        f"{jupyter['base']}/datahub/space-a/results", json={"type": "directory"}
    )
    assert r.status_code in (200, 201), r.text
    model = save_twice_and_read(jupyter["client"], url)
    assert model["content"]["cells"][0]["source"] == "second save"
    data = storage["onedata"].read_file(storage["space_id"], "results/run.ipynb")
    assert nbformat.reads(data.decode(), as_version=4).cells[0].source == "second save"


def test_a_mount_in_error_explains_itself_and_secrets_stay_out_of_answers_and_log(jupyter, storage):
    client, base = jupyter["client"], jupyter["base"]
    listing = client.get(f"{base}/datahub2").json()
    assert [m["name"] for m in listing["content"]] == ["README-error.txt"]
    readme = client.get(f"{base}/datahub2/README-error.txt").json()
    assert "did not answer" in readme["content"]
    r = client.put(
        f"{base}/datahub2/x.txt", json={"type": "file", "format": "text", "content": "x"}
    )
    assert r.status_code == 403 and "did not answer" in r.json()["message"]
    r = client.get(f"{base}/s3/scratch/../../etc")
    assert r.status_code in (400, 404)
    answers = client.get(f"{base}/s3/scratch").text + client.get(f"{base}/datahub").text
    for secret in (SECRET, storage["token"]):
        assert secret not in answers
        assert secret not in jupyter["log"].read_text()


def test_an_s3_notebook_keeps_its_date_between_a_save_and_a_listing(jupyter, storage):
    """JupyterLab's conflict check: before each save it asks for the file's date and
    compares it with the one the last save answered ("File Changed" beyond half a
    second). S3 answers a HEAD in seconds and a listing in milliseconds, and s3fs answers
    from its listing cache once the file browser has listed the folder: the date must
    be the same however it was found (it was not, and a second save in Lab waited on a
    dialog)."""
    client, base = jupyter["client"], jupyter["base"]
    url = f"{base}/s3/scratch/dated.ipynb"
    for text in ("first save", "second save", "third save"):
        saved = client.put(url, json={"type": "notebook", "content": notebook(text)})
        assert saved.status_code in (200, 201), saved.text
        listing = client.get(f"{base}/s3/scratch").json()["content"]  # the browser's poll
        listed = next(m for m in listing if m["name"] == "dated.ipynb")
        before_save = client.get(url, params={"content": "0"}).json()  # Lab's check
        assert saved.json()["last_modified"] == listed["last_modified"]
        assert before_save["last_modified"] == saved.json()["last_modified"]
