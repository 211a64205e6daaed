"""Notebook side of storage mounts: the mounts document, the keeper, the contents routing.

No processes, no network: the keeper's HTTP call is replaced by a coroutine returning the
hub's answer, and the contents manager is driven with NFS-kind mounts (local folders) and
error entries; S3 and DataHub through the same routing run in
tests/integration/test_singleuser_storage.py against real/stand-in servers.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import os
import stat
from pathlib import Path
from typing import Any

import nbformat
import pytest
from tornado.web import HTTPError

from egi_hub.singleuser import mounts
from egi_hub.singleuser.contents import ERROR_FILE, MountsContentsManager, _mtime
from egi_hub.singleuser.mounts import (
    MountNotFoundError,
    MountsDocument,
    MountsKeeper,
    MountUnavailableError,
    filesystem,
    load_mounts,
    parse_document,
    store_document,
)

SECRET = "s3-secret-never-shown-0001"
TOKEN = "datahub-token-never-shown-0001"


@pytest.fixture(autouse=True)
def _own_environ(monkeypatch):
    """The keeper exports this server's DataHub defaults into the environment: in a test
    that is the test runner's own, so each test gets a copy, and nothing leaks out."""
    monkeypatch.setattr(os, "environ", dict(os.environ))


def s3_entry(**over: Any) -> dict[str, Any]:
    entry = {
        "name": "scratch",
        "kind": "s3",
        "path": "/s3/scratch",
        "read_only": False,
        "s3": {
            "endpoint_url": "http://127.0.0.1:9000",
            "bucket": "vo-scratch",
            "prefix": "alice",
            "region": "",
            "key": "alicekey0001",
            "secret": SECRET,
        },
    }
    entry.update(over)
    return entry


def datahub_entry(**over: Any) -> dict[str, Any]:
    entry = {
        "name": "datahub",
        "kind": "datahub",
        "path": "/datahub",
        "read_only": False,
        "datahub": {
            "onezone_url": "https://onezone.example.org",
            "token": TOKEN,
            "expires_at": 1767225600,
            "spaces": ["space-a"],
        },
    }
    entry.update(over)
    return entry


def nfs_entry(local: Path, **over: Any) -> dict[str, Any]:
    entry = {
        "name": "shared",
        "kind": "nfs",
        "path": "/nfs/shared",
        "read_only": False,
        "nfs": {"server": "nfs.example.org", "export": "/exports/vo", "local_path": str(local)},
    }
    entry.update(over)
    return entry


# -- the document ------------------------------------------------------------------------


def test_a_contract_document_parses_with_each_kind_and_an_error_entry(tmp_path):
    doc = parse_document(
        {
            "mounts": [
                s3_entry(),
                datahub_entry(),
                nfs_entry(tmp_path),
                {"name": "broken", "kind": "datahub", "path": "/datahub2", "read_only": False,
                 "error": "DataHub: Onezone at https://x did not answer (connection refused)"},
            ],
            "refresh_at": 1767225000,
        }
    )  # fmt: skip
    assert [(m.name, m.kind, m.path, m.error is None) for m in doc.mounts] == [
        ("scratch", "s3", "/s3/scratch", True),
        ("datahub", "datahub", "/datahub", True),
        ("shared", "nfs", "/nfs/shared", True),
        ("broken", "datahub", "/datahub2", False),
    ]
    assert doc.refresh_at == 1767225000
    assert doc.mounts[0].settings["secret"] == SECRET
    assert "Onezone" in doc.mounts[3].error


def test_secrets_stay_out_of_reprs():
    doc = parse_document({"mounts": [s3_entry(), datahub_entry()]})
    assert SECRET not in repr(doc) and TOKEN not in repr(doc)


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "../etc", "kind": "s3"},
        {"name": "a b"},
        {"path": "/s3/../etc"},
        {"path": "relative"},
        {"path": "/s3/$(id)"},
        {"path": "/"},
        {"kind": "ftp"},
    ],
)
def test_an_entry_without_a_usable_name_kind_or_path_is_left_out(bad):
    doc = parse_document({"mounts": [s3_entry(**bad), datahub_entry()]})
    assert [m.name for m in doc.mounts] == ["datahub"]


def test_duplicate_names_and_nested_paths_are_left_out():
    doc = parse_document(
        {
            "mounts": [
                datahub_entry(),
                datahub_entry(path="/other"),  # same name
                s3_entry(name="inner", path="/datahub/inner"),  # inside another mount
                s3_entry(name="outer", path="/s3"),
                s3_entry(name="below", path="/s3/x"),
            ]
        }
    )
    assert [m.name for m in doc.mounts] == ["datahub", "outer"]


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"bucket": 3}, "bucket"),
        ({"secret": ""}, "secret"),
        ({"extra": "x"}, "extra"),
        ({"endpoint_url": "file:///etc"}, "endpoint_url"),
        ({"expires_at": "soon"}, "expires_at"),
    ],
)
def test_an_invalid_kind_object_becomes_an_error_entry_naming_the_field(settings, field):
    raw = s3_entry()
    raw["s3"] = {**raw["s3"], **settings}
    (entry,) = parse_document({"mounts": [raw]}).mounts
    assert entry.settings is None
    assert field in entry.error and "invalid description" in entry.error
    assert SECRET not in entry.error


def test_an_error_sentence_is_cleaned_and_bounded():
    (entry,) = parse_document(
        {"mounts": [datahub_entry(error="line1\nline2\x1b[31m" + "x" * 2000)]}
    ).mounts
    assert "\n" not in entry.error and "\x1b" not in entry.error
    assert len(entry.error) <= mounts.MAX_ERROR


@pytest.mark.parametrize(
    "data",
    [[], {"mounts": {}}, {"mounts": [], "refresh_at": "later"}, {"mounts": [], "refresh_at": True}],
)
def test_a_document_of_the_wrong_shape_is_refused(data):
    with pytest.raises(ValueError, match="mounts document"):
        parse_document(data)


def test_load_mounts_without_a_file_is_empty_and_bad_json_does_not_quote_it(tmp_path):
    assert load_mounts(tmp_path / "none.json") == []
    bad = tmp_path / "bad.json"
    bad.write_text('{"mounts": [{"secret": "' + SECRET + '"')
    with pytest.raises(ValueError) as err:
        load_mounts(bad)
    assert SECRET not in str(err.value)


# -- writing -----------------------------------------------------------------------------


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_store_document_writes_0600_files_credentials_first(tmp_path):
    path, storage = tmp_path / "egi" / "mounts.json", tmp_path / "egi" / "storage"
    doc = parse_document({"mounts": [s3_entry(), datahub_entry()], "refresh_at": 5})
    store_document(doc, path, storage)
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    s3doc = json.loads((storage / "scratch.json").read_text())
    assert s3doc["bucket"] == "vo-scratch" and s3doc["secret"] == SECRET
    assert s3doc["region"] == "us-east-1"  # "" in the document: the s3 layer's default
    assert (storage / "datahub.token").read_text() == TOKEN
    assert mode(storage / "scratch.json") == 0o600 and mode(storage / "datahub.token") == 0o600
    assert json.loads(path.read_text())["refresh_at"] == 5
    assert [m.name for m in load_mounts(path)] == ["scratch", "datahub"]
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_store_document_removes_credentials_of_mounts_gone_or_in_error(tmp_path):
    path, storage = tmp_path / "mounts.json", tmp_path / "storage"
    store_document(parse_document({"mounts": [s3_entry(), datahub_entry()]}), path, storage)
    broken = datahub_entry(error="DataHub: token exchange refused")
    store_document(parse_document({"mounts": [broken]}), path, storage)
    assert sorted(p.name for p in storage.iterdir()) == []
    assert load_mounts(path)[0].error == "DataHub: token exchange refused"


def test_the_stored_document_holds_no_secret_and_reads_back(tmp_path):
    """Secrets go to the credential files only (on Kubernetes a memory-backed folder);
    the document on the home volume names the mounts without them."""
    path, storage = tmp_path / "mounts.json", tmp_path / "storage"
    s3 = s3_entry()
    s3["s3"]["session_token"] = "sts-session-token-never-on-disk"
    written = store_document(parse_document({"mounts": [s3, datahub_entry()]}), path, storage)
    assert written.mounts[0].settings["secret"] == SECRET  # in memory, as the hub said
    text = path.read_text()
    for secret in (SECRET, TOKEN, "sts-session-token-never-on-disk"):
        assert secret not in text
    stored = {m["name"]: m for m in json.loads(text)["mounts"]}
    assert "key" not in stored["scratch"]["s3"] and "token" not in stored["datahub"]["datahub"]
    assert stored["scratch"]["s3"]["bucket"] == "vo-scratch"
    back = load_mounts(path)
    assert [(m.name, m.error) for m in back] == [("scratch", None), ("datahub", None)]
    # From the hub, a missing secret is still an error entry (only stored ones omit it).
    del s3["s3"]["key"]
    assert "'key'" in parse_document({"mounts": [s3]}).mounts[0].error


def test_remove_credentials_removes_ours_only(tmp_path):
    path, storage = tmp_path / "mounts.json", tmp_path / "storage"
    store_document(parse_document({"mounts": [s3_entry(), datahub_entry()]}), path, storage)
    (storage / ".scratch.json.123.tmp").write_text("half")
    outside = tmp_path / "outside.json"
    outside.write_text("not ours")
    (storage / "link.json").symlink_to(outside)
    (storage / "notes.txt").write_text("the user's own")
    removed = mounts.remove_credentials(storage)
    assert sorted(p.name for p in removed) == [
        ".scratch.json.123.tmp",
        "datahub.token",
        "link.json",
        "scratch.json",
    ]
    assert outside.read_text() == "not ours"  # a link is removed, never followed
    assert [p.name for p in storage.iterdir()] == ["notes.txt"]
    assert path.exists()  # the document (no secret) and its folder stay
    (storage / "notes.txt").unlink()
    store_document(parse_document({"mounts": [s3_entry()]}), path, storage)
    mounts.remove_credentials(storage)
    assert not storage.exists()  # empty: removed too
    assert mounts.remove_credentials(storage) == []  # twice: nothing to do


def test_s3_credentials_the_s3_layer_refuses_become_an_error_entry(tmp_path):
    raw = s3_entry()
    raw["s3"]["bucket"] = "Not_A_Bucket"
    written = store_document(parse_document({"mounts": [raw]}), tmp_path / "m.json", tmp_path)
    assert "not an S3 bucket name" in written.mounts[0].error
    assert not (tmp_path / "scratch.json").exists()


def test_an_interrupted_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "mounts.json"
    mounts.write_private(path, "old")

    def boom(*args: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(mounts.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        mounts.write_private(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["mounts.json"]


# -- the keeper --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("refresh_in", "wait"),
    [(None, mounts.PERIOD), (-50, mounts.MIN_WAIT), (1, mounts.MIN_WAIT), (600, 600),
     (10_000, mounts.PERIOD)],
)  # fmt: skip
def test_next_fetch_at_refresh_at_within_5s_and_15min(refresh_in, wait):
    doc = MountsDocument((), None if refresh_in is None else 1000 + refresh_in)
    assert MountsKeeper.wait_after(doc, now=1000) == wait


def test_backoff_doubles_up_to_five_minutes():
    assert [MountsKeeper.backoff(n) for n in (1, 2, 3, 4, 10)] == [5, 10, 20, 40, 300]


def test_the_keeper_asks_for_its_named_server(monkeypatch, tmp_path):
    monkeypatch.setenv("JUPYTERHUB_SERVER_NAME", "gpu box")
    keeper = MountsKeeper("http://hub/hub/api/", "tok", tmp_path / "m.json")
    assert keeper.url == "http://hub/hub/api/egi/mounts?server=gpu%20box"
    monkeypatch.delenv("JUPYTERHUB_SERVER_NAME")
    assert MountsKeeper("http://hub/hub/api", "t", tmp_path).url.endswith("/egi/mounts")


class ScriptedKeeper(MountsKeeper):
    """The keeper with the hub's answers scripted (no HTTP) and sleeps recorded."""

    def __init__(self, answers: list[Any], tmp: Path) -> None:
        super().__init__("http://hub/hub/api", "tok", tmp / "mounts.json", tmp / "storage")
        self.answers = answers
        self.calls = 0

    async def get(self) -> Any:
        self.calls += 1
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_the_keeper_retries_with_backoff_then_follows_refresh_at(tmp_path, monkeypatch):
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    monkeypatch.setattr(mounts.asyncio, "sleep", fake_sleep)
    monkeypatch.setattr(mounts.time, "time", lambda: 1000.0)
    keeper = ScriptedKeeper(
        [OSError("refused"), OSError("refused"), {"mounts": [datahub_entry()], "refresh_at": 1600},
         {"mounts": []}, None],
        tmp_path,
    )  # fmt: skip
    await asyncio.wait_for(keeper.run(), timeout=10)
    assert sleeps == [5, 10, 600, mounts.PERIOD]
    assert keeper.calls == 5  # stopped when the hub said it has no mounts (403/404)
    assert load_mounts(tmp_path / "mounts.json") == []  # the last document written


async def test_a_renewed_token_replaces_the_token_file(tmp_path):
    renewed = datahub_entry()
    renewed["datahub"] = {**renewed["datahub"], "token": "renewed-token-0002"}
    keeper = ScriptedKeeper([{"mounts": [datahub_entry()]}, {"mounts": [renewed]}], tmp_path)
    await keeper.fetch()
    assert (tmp_path / "storage" / "datahub.token").read_text() == TOKEN
    await keeper.fetch()
    assert (tmp_path / "storage" / "datahub.token").read_text() == "renewed-token-0002"


def test_outside_jupyterhub_the_extension_starts_no_keeper(monkeypatch, tmp_path):
    monkeypatch.delenv("JUPYTERHUB_API_URL", raising=False)
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN", raising=False)
    monkeypatch.setenv("EGI_MOUNTS_FILE", str(tmp_path / "m.json"))
    server = type("ServerApp", (), {})()
    mounts._load_jupyter_server_extension(server)
    assert not hasattr(server, "_egi_mounts_task")


def test_linking_installs_the_contents_manager_unless_the_site_chose_one(monkeypatch):
    from traitlets.config import Config

    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "x")

    class FakeApp:
        def __init__(self, config: Config) -> None:
            self.config = config
            self.contents_manager_class = None
            self.log = type("L", (), {"info": lambda *a: None})()

    app = FakeApp(Config())
    mounts._link_jupyter_server_extension(app)
    assert app.contents_manager_class is MountsContentsManager
    site = Config()
    site.ServerApp.contents_manager_class = "jupytext.TextFileContentsManager"
    app = FakeApp(site)
    mounts._link_jupyter_server_extension(app)
    assert app.contents_manager_class is None


def test_the_shipped_jupyter_config_enables_the_mounts_extension():
    from egi_hub.singleuser_config import JUPYTER_CONFIG_DIR

    config = Path(JUPYTER_CONFIG_DIR) / "jupyter_server_config.d" / "egi_hub.json"
    enabled = json.loads(config.read_text())["ServerApp"]["jpserver_extensions"]
    assert enabled["egi_hub.singleuser.mounts"] is True


# -- filesystem() ------------------------------------------------------------------------


def test_filesystem_of_an_nfs_mount_is_its_local_folder(tmp_path):
    (tmp_path / "data.txt").write_text("hi")
    entries = list(parse_document({"mounts": [nfs_entry(tmp_path)]}).mounts)
    fs = filesystem("shared", entries)
    assert fs.cat_file("data.txt") == b"hi"
    fs.pipe_file("new.txt", b"x")
    assert (tmp_path / "new.txt").read_bytes() == b"x"


def test_a_read_only_nfs_mount_refuses_writes(tmp_path):
    entries = list(parse_document({"mounts": [nfs_entry(tmp_path, read_only=True)]}).mounts)
    fs = filesystem("shared", entries)
    for write in (lambda: fs.pipe_file("a", b"x"), lambda: fs.open("a", "wb"), lambda: fs.rm("a")):
        with pytest.raises(PermissionError, match="read-only"):
            write()
    assert list(tmp_path.iterdir()) == []


def test_filesystem_names_the_problem_for_unknown_and_error_mounts():
    entries = list(parse_document({"mounts": [datahub_entry(error="DataHub: refused")]}).mounts)
    with pytest.raises(MountNotFoundError, match=r"'nope'.*'datahub'"):
        filesystem("nope", entries)
    with pytest.raises(MountUnavailableError, match="DataHub: refused"):
        filesystem("datahub", entries)


def test_filesystem_of_an_s3_mount_reads_its_credential_document_under_the_prefix(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("EGI_STORAGE_DIR", str(tmp_path / "storage"))
    path = tmp_path / "mounts.json"
    store_document(parse_document({"mounts": [s3_entry()]}), path)
    fs = filesystem("scratch", load_mounts(path))
    assert fs.path == "alice" and fs.fs.name == "scratch"
    assert SECRET not in repr(fs.fs)
    with pytest.raises(ValueError, match="not allowed"):
        fs._join("../bob/x")


def test_filesystem_of_a_datahub_mount_reads_the_token_file(tmp_path, monkeypatch):
    monkeypatch.setenv("EGI_STORAGE_DIR", str(tmp_path / "storage"))
    path = tmp_path / "mounts.json"
    store_document(parse_document({"mounts": [datahub_entry()]}), path)
    fs = filesystem("datahub", load_mounts(path))
    assert fs.onezone_url == "https://onezone.example.org"
    assert fs._token.get() == TOKEN and TOKEN not in repr(fs)


# -- the contents manager ----------------------------------------------------------------


@pytest.fixture
def cm(tmp_path, monkeypatch):
    home, nfs, ro = tmp_path / "home", tmp_path / "nfs", tmp_path / "ro"
    for d in (home, nfs, ro):
        d.mkdir()
    (home / "notes.txt").write_text("home")
    (home / "nfs").mkdir()  # a real folder shadowed by the mount's first segment
    (ro / "readme.txt").write_text("read me")
    doc = {
        "mounts": [
            nfs_entry(nfs),
            nfs_entry(ro, name="ro", path="/nfs/ro", read_only=True),
            datahub_entry(name="broken", path="/datahub",
                          error="DataHub: Onezone did not answer (connection refused)"),
        ]
    }  # fmt: skip
    del doc["mounts"][2]["datahub"]
    store_document(parse_document(doc), tmp_path / "mounts.json", tmp_path / "storage")
    manager = MountsContentsManager(
        root_dir=str(home),
        mounts_file=str(tmp_path / "mounts.json"),
        mounts_checkpoint_dir=str(tmp_path / "checkpoints"),
    )
    manager.test_paths = {"home": home, "nfs": nfs, "ro": ro, "tmp": tmp_path}
    return manager


def notebook(text: str) -> dict[str, Any]:
    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(text))
    return json.loads(nbformat.writes(nb))


async def test_the_root_lists_home_files_and_the_mounts_first_segments(cm):
    root = await cm.get("")
    names = sorted((m["name"], m["type"]) for m in root["content"])
    assert names == [("datahub", "directory"), ("nfs", "directory"), ("notes.txt", "file")]
    nfs = await cm.get("nfs")
    assert sorted(m["name"] for m in nfs["content"]) == ["ro", "shared"]
    assert sorted(m["path"] for m in nfs["content"]) == ["nfs/ro", "nfs/shared"]
    assert (await cm.get("notes.txt"))["content"] == "home"  # everything else: unchanged


async def test_folders_without_dates_of_their_own_show_when_the_server_started(cm):
    """The folders that hold mounts, and a mount in error, have no date of their own:
    they show the server's start, never the Unix epoch ("56 years ago" in JupyterLab)."""
    since = datetime.datetime.now(tz=datetime.UTC) - datetime.timedelta(minutes=5)
    root = {m["name"]: m for m in (await cm.get(""))["content"]}
    nfs = await cm.get("nfs")
    broken = await cm.get("datahub")
    for model in (root["datahub"], root["nfs"], nfs, *nfs["content"], broken):
        assert model["last_modified"] > since and model["created"] > since, model["path"]


@pytest.mark.parametrize("value", [1e12, -1e12, float("nan"), float("inf"), 10**30, "soon"])
def test_a_date_out_of_range_falls_back_instead_of_breaking_the_listing(value):
    """Whoever can write a shared space (or a hostile provider) sets any mtime: one file
    dated in the year 33658 made its whole folder a 502 for everyone."""
    default = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    assert _mtime({"mtime": value}, default) == default
    assert _mtime({"mtime": value, "created": 0}, default).year == 1970  # the next key


async def test_a_notebook_saved_twice_on_a_mount_is_overwritten(cm):
    path = "nfs/shared/analysis.ipynb"
    first = await cm.save({"type": "notebook", "content": notebook("v1")}, path)
    assert first["type"] == "notebook" and first["writable"] and first["content"] is None
    await cm.save({"type": "notebook", "content": notebook("v2")}, path)
    model = await cm.get(path)
    assert model["content"]["cells"][0]["source"] == "v2"
    on_disk = nbformat.read(cm.test_paths["nfs"] / "analysis.ipynb", as_version=4)
    assert on_disk.cells[0].source == "v2"
    listing = await cm.get("nfs/shared")
    assert [(m["name"], m["type"]) for m in listing["content"]] == [("analysis.ipynb", "notebook")]


async def test_text_binary_folders_rename_copy_and_delete_on_a_mount(cm):
    nfs = cm.test_paths["nfs"]
    await cm.save({"type": "directory"}, "nfs/shared/sub")
    await cm.save({"type": "file", "format": "text", "content": "hello"}, "nfs/shared/sub/a.txt")
    await cm.save({"type": "file", "format": "base64", "content": "//4A"}, "nfs/shared/b.bin")
    assert (nfs / "b.bin").read_bytes() == b"\xff\xfe\x00"
    assert (await cm.get("nfs/shared/b.bin"))["format"] == "base64"
    assert await cm.dir_exists("nfs/shared/sub") and await cm.file_exists("nfs/shared/sub/a.txt")
    assert await cm.dir_exists("nfs") and not await cm.file_exists("nfs")
    await cm.rename("nfs/shared/sub/a.txt", "nfs/shared/sub/c.txt")
    assert (nfs / "sub" / "c.txt").read_text() == "hello"
    copied = await cm.copy("nfs/shared/sub/c.txt", "nfs/shared/sub")
    assert copied["path"] == "nfs/shared/sub/c-Copy1.txt"
    assert (nfs / "sub" / "c-Copy1.txt").read_text() == "hello"
    await cm.copy("notes.txt", "nfs/shared")  # home -> mount
    assert (nfs / "notes.txt").read_text() == "home"
    await cm.delete("nfs/shared/sub")
    assert not (nfs / "sub").exists()
    with pytest.raises(HTTPError) as err:
        await cm.rename("nfs/shared/notes.txt", "notes2.txt")
    assert err.value.status_code == 400 and "within one storage mount" in err.value.log_message


async def test_new_untitled_notebook_in_a_mount(cm):
    model = await cm.new_untitled("nfs/shared", type="notebook")
    assert model["path"] == "nfs/shared/Untitled.ipynb"
    assert (cm.test_paths["nfs"] / "Untitled.ipynb").exists()


async def test_a_read_only_mount_lists_and_reads_but_refuses_writes(cm):
    listing = await cm.get("nfs/ro")
    assert [(m["name"], m["writable"]) for m in listing["content"]] == [("readme.txt", False)]
    assert (await cm.get("nfs/ro/readme.txt"))["content"] == "read me"
    for attempt in (
        cm.save({"type": "file", "format": "text", "content": "x"}, "nfs/ro/new.txt"),
        cm.delete("nfs/ro/readme.txt"),
        cm.rename("nfs/ro/readme.txt", "nfs/ro/other.txt"),
    ):
        with pytest.raises(HTTPError) as err:
            await attempt
        assert err.value.status_code == 403 and "read-only" in err.value.log_message
    assert sorted(p.name for p in cm.test_paths["ro"].iterdir()) == ["readme.txt"]


async def test_a_mount_in_error_shows_a_readme_saying_why(cm):
    folder = await cm.get("datahub")
    assert [(m["name"], m["writable"]) for m in folder["content"]] == [(ERROR_FILE, False)]
    readme = await cm.get(f"datahub/{ERROR_FILE}")
    assert "Onezone did not answer (connection refused)" in readme["content"]
    with pytest.raises(HTTPError) as err:
        await cm.save({"type": "file", "format": "text", "content": "x"}, "datahub/x.txt")
    assert err.value.status_code == 403 and "connection refused" in err.value.log_message
    assert await cm.file_exists(f"datahub/{ERROR_FILE}") and not await cm.file_exists("datahub/x")


@pytest.mark.parametrize("path", ["nfs/shared/../../x", "nfs/shared/./x", "nfs/shared/a\x01b"])
async def test_dot_segments_and_control_characters_are_refused_on_mounts(cm, path):
    with pytest.raises(HTTPError) as err:
        await cm.save({"type": "file", "format": "text", "content": "x"}, path)
    assert err.value.status_code == 400
    assert not (cm.test_paths["tmp"] / "x").exists()


async def test_mount_roots_and_their_folders_cannot_be_deleted_or_written(cm):
    for attempt, status in (
        (cm.delete("nfs/shared"), 400),
        (cm.delete("nfs"), 400),
        (cm.save({"type": "file", "format": "text", "content": "x"}, "nfs/x.txt"), 403),
        (cm.rename("nfs/shared", "elsewhere"), 400),
    ):
        with pytest.raises(HTTPError) as err:
            await attempt
        assert err.value.status_code == status, attempt
    assert (cm.test_paths["home"] / "nfs").is_dir()  # the shadowed home folder untouched
    assert list((cm.test_paths["home"] / "nfs").iterdir()) == []
    with pytest.raises(HTTPError) as err:
        await cm.get("nfs/x.txt")
    assert err.value.status_code == 404 and not await cm.exists("nfs/x.txt")


async def test_checkpoints_of_mount_files_are_kept_locally(cm):
    path = "nfs/shared/n.ipynb"
    await cm.save({"type": "notebook", "content": notebook("v1")}, path)
    checkpoint = await cm.create_checkpoint(path)
    assert checkpoint["id"] == "checkpoint"
    await cm.save({"type": "notebook", "content": notebook("v2")}, path)
    assert [c["id"] for c in await cm.list_checkpoints(path)] == ["checkpoint"]
    await cm.restore_checkpoint("checkpoint", path)
    assert (await cm.get(path))["content"]["cells"][0]["source"] == "v1"
    stores = list((cm.test_paths["tmp"] / "checkpoints").iterdir())
    assert len(stores) == 1 and mode(stores[0]) == 0o600
    assert not (cm.test_paths["nfs"] / ".ipynb_checkpoints").exists()
    await cm.rename(path, "nfs/shared/m.ipynb")
    assert await cm.list_checkpoints("nfs/shared/m.ipynb")
    await cm.delete("nfs/shared/m.ipynb")
    assert await cm.list_checkpoints("nfs/shared/m.ipynb") == []
    # files in the home folder keep Jupyter's own checkpoints
    await cm.create_checkpoint("notes.txt")
    assert (cm.test_paths["home"] / ".ipynb_checkpoints").is_dir()


async def test_chunked_uploads_reach_the_mount_at_the_last_chunk(cm):
    path = "nfs/shared/big.bin"
    for chunk, data in ((1, "AAE="), (2, "AgM="), (-1, "BA==")):
        await cm.save({"type": "file", "format": "base64", "content": data, "chunk": chunk}, path)
        if chunk != -1:
            assert not (cm.test_paths["nfs"] / "big.bin").exists()
    assert (cm.test_paths["nfs"] / "big.bin").read_bytes() == b"\x00\x01\x02\x03\x04"


async def test_a_replaced_mounts_file_is_picked_up(cm):
    tmp = cm.test_paths["tmp"]
    assert await cm.dir_exists("nfs/shared")
    store_document(parse_document({"mounts": []}), tmp / "mounts.json", tmp / "storage")
    os.utime(tmp / "mounts.json", ns=(1, 1))  # a different stamp even within one tick
    assert not await cm.dir_exists("nfs/shared")
    assert (await cm.get("nfs"))["type"] == "directory"  # the real home folder again


async def test_a_mount_root_that_does_not_exist_yet_lists_as_empty(cm, monkeypatch):
    # An S3 prefix with no object under it does not exist for S3 (it has no folders): the
    # mount's root still lists, empty, so a user can create the first notebook there.
    from fsspec.implementations.dirfs import DirFileSystem
    from fsspec.implementations.memory import MemoryFileSystem

    empty = DirFileSystem(path="/no-object-yet", fs=MemoryFileSystem())
    monkeypatch.setattr(cm, "_fs", lambda entry: empty)
    listing = await cm.get("nfs/shared")
    assert listing["type"] == "directory" and listing["content"] == []
    with pytest.raises(HTTPError) as err:
        await cm.get("nfs/shared/sub")
    assert err.value.status_code == 404


async def test_files_on_mounts_carry_the_hash_jupyterlab_asks_for(cm):
    # JupyterLab 4 opens files with ?hash=1; Jupyter Server refuses a model without one.
    import hashlib

    await cm.save({"type": "file", "format": "text", "content": "hello"}, "nfs/shared/a.txt")
    for content in (True, False):
        model = await cm.get("nfs/shared/a.txt", content=content, require_hash=True)
        assert model["hash"] == hashlib.new(cm.hash_algorithm, b"hello").hexdigest()
        assert model["hash_algorithm"] == cm.hash_algorithm and model["size"] == 5
    readme = await cm.get(f"datahub/{ERROR_FILE}", require_hash=True)
    assert readme["hash"] == hashlib.new(cm.hash_algorithm, readme["content"].encode()).hexdigest()
    assert (await cm.get("nfs/shared/a.txt"))["hash"] is None  # read only when asked for


# -- review findings: unnormalised paths (M4) ----------------------------------------------

BAD_SPELLINGS = [
    "./nfs/shared/hidden.txt",
    "x/../nfs/shared/hidden.txt",
    "nfs/./shared/hidden.txt",
    "nfs//shared/hidden.txt",
    "nfs/shared/../shared/hidden.txt",
]


@pytest.fixture
def shadowed(cm):
    """A file in the home folder that the mount nfs/shared hides."""
    hidden = cm.test_paths["home"] / "nfs" / "shared"
    hidden.mkdir()
    (hidden / "hidden.txt").write_text("the home file the mount hides")
    return hidden


def _home_unchanged(cm, shadowed: Path) -> None:
    assert sorted(p.name for p in shadowed.iterdir()) == ["hidden.txt"]
    assert (shadowed / "hidden.txt").read_text() == "the home file the mount hides"
    assert sorted(p.name for p in cm.test_paths["nfs"].iterdir()) == []


@pytest.mark.parametrize("path", BAD_SPELLINGS)
async def test_dot_and_empty_segments_never_reach_the_home_folder_a_mount_hides(cm, shadowed, path):
    new = path.replace("hidden.txt", "new.txt")
    attempts = {
        "get": lambda: cm.get(path),
        "get without content": lambda: cm.get(path, content=False),
        "save": lambda: cm.save({"type": "file", "format": "text", "content": "x"}, new),
        "save over": lambda: cm.save({"type": "file", "format": "text", "content": "x"}, path),
        "delete": lambda: cm.delete(path),
        "rename from": lambda: cm.rename(path, "moved.txt"),
        "rename to": lambda: cm.rename("notes.txt", new),
        "copy from": lambda: cm.copy(path, ""),
        "copy to": lambda: cm.copy("notes.txt", new.rsplit("/", 1)[0]),
        "file_exists": lambda: cm.file_exists(path),
        "dir_exists": lambda: cm.dir_exists(path.rsplit("/", 1)[0]),
        "exists": lambda: asyncio.sleep(0, cm.exists(path)),
        "is_hidden": lambda: cm.is_hidden(path),
        "create_checkpoint": lambda: cm.create_checkpoint(path),
        "list_checkpoints": lambda: cm.list_checkpoints(path),
        "restore_checkpoint": lambda: cm.restore_checkpoint("checkpoint", path),
        "delete_checkpoint": lambda: cm.delete_checkpoint("checkpoint", path),
        "new_untitled": lambda: cm.new_untitled(path.rsplit("/", 1)[0], type="file"),
    }
    for what, attempt in attempts.items():
        with pytest.raises(HTTPError) as err:
            await attempt()
        assert err.value.status_code == 400, what
        assert "'.' or '..' segment" in err.value.log_message, what
    _home_unchanged(cm, shadowed)
    assert (cm.test_paths["home"] / "notes.txt").read_text() == "home"
    assert not (cm.test_paths["home"] / "moved.txt").exists()
    assert not (cm.test_paths["home"] / ".ipynb_checkpoints").exists()


async def test_a_read_only_mount_cannot_be_written_by_a_dotted_spelling(cm):
    for path in ("./nfs/ro/new.txt", "nfs/ro/./new.txt", "nfs/x/../ro/new.txt"):
        with pytest.raises(HTTPError) as err:
            await cm.save({"type": "file", "format": "text", "content": "x"}, path)
        assert err.value.status_code == 400
    assert sorted(p.name for p in cm.test_paths["ro"].iterdir()) == ["readme.txt"]
    assert list((cm.test_paths["home"] / "nfs").iterdir()) == []


async def test_plain_spellings_still_work_with_outer_slashes(cm, shadowed):
    assert (await cm.get("/notes.txt/"))["content"] == "home"
    saved = await cm.save({"type": "file", "format": "text", "content": "x"}, "/nfs/shared/n.txt")
    assert saved["path"] == "nfs/shared/n.txt"
    assert (cm.test_paths["nfs"] / "n.txt").read_text() == "x"
    with pytest.raises(HTTPError) as err:  # the mount hides the home file, plainly spelt
        await cm.get("nfs/shared/hidden.txt")
    assert err.value.status_code == 404
    assert (await cm.get("/"))["type"] == "directory"


# -- review findings: per-server files (M1) ------------------------------------------------


def _server_env(monkeypatch, home: Path, folder: str) -> None:
    """The environment the hub's spawner gives one server (storage_mounts/spawner.py)."""
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("EGI_MOUNTS_FILE", f"~/.egi/servers/{folder}/mounts.json")
    monkeypatch.setenv("EGI_STORAGE_DIR", f"~/.egi/servers/{folder}/storage")


def test_the_paths_follow_the_server_environment_expanded(monkeypatch, tmp_path):
    from egi_hub.singleuser.s3 import storage_dir

    _server_env(monkeypatch, tmp_path, "named-gpu")
    base = tmp_path / ".egi" / "servers" / "named-gpu"
    assert mounts.mounts_file() == base / "mounts.json"
    assert storage_dir() == base / "storage"
    assert mounts.checkpoints_dir() == base / "checkpoints"
    # given only its mounts file, a server keeps its credentials beside it
    monkeypatch.delenv("EGI_STORAGE_DIR")
    assert storage_dir() == base / "storage"
    # neither: the single-server defaults, as before
    monkeypatch.delenv("EGI_MOUNTS_FILE")
    assert mounts.mounts_file() == tmp_path / ".egi" / "mounts.json"
    assert storage_dir() == tmp_path / ".egi" / "storage"
    assert mounts.checkpoints_dir() == tmp_path / ".egi" / "checkpoints"


def test_the_extension_exports_the_expanded_paths_for_kernels(monkeypatch, tmp_path):
    _server_env(monkeypatch, tmp_path, "default")
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "x")
    app = type("App", (), {"config": {}, "contents_manager_class": None})()
    mounts._link_jupyter_server_extension(app)
    base = tmp_path / ".egi" / "servers" / "default"
    assert os.environ["EGI_MOUNTS_FILE"] == str(base / "mounts.json")
    assert os.environ["EGI_STORAGE_DIR"] == str(base / "storage")


def test_two_servers_of_one_user_keep_their_own_credentials(monkeypatch, tmp_path):
    # Each keeper writes and prunes in its own folder: the second server's document (which
    # does not name "scratch") must not delete the first server's S3 credentials.
    _server_env(monkeypatch, tmp_path, "default")
    store_document(parse_document({"mounts": [s3_entry(), datahub_entry()]}))
    _server_env(monkeypatch, tmp_path, "named-gpu")
    renewed = datahub_entry()
    renewed["datahub"] = {**renewed["datahub"], "token": "gpu-server-token-0002"}
    store_document(parse_document({"mounts": [renewed]}))
    servers = tmp_path / ".egi" / "servers"
    assert sorted(p.name for p in (servers / "default" / "storage").iterdir()) == [
        "datahub.token",
        "scratch.json",
    ]
    assert (servers / "default" / "storage" / "datahub.token").read_text() == TOKEN
    assert (servers / "named-gpu" / "storage" / "datahub.token").read_text() == (
        "gpu-server-token-0002"
    )
    # each server's filesystem() reads its own token file
    fs = filesystem("datahub", load_mounts())
    assert fs._token.get() == "gpu-server-token-0002"
    _server_env(monkeypatch, tmp_path, "default")
    assert filesystem("datahub", load_mounts())._token.get() == TOKEN
    assert not (tmp_path / ".egi" / "storage").exists()  # nothing in the shared folder


async def test_checkpoints_of_mount_files_are_kept_per_server(monkeypatch, tmp_path):
    nfs = tmp_path / "nfs"
    nfs.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    for folder in ("default", "named-gpu"):
        _server_env(monkeypatch, home, folder)
        store_document(parse_document({"mounts": [nfs_entry(nfs)]}))
        manager = MountsContentsManager(root_dir=str(home))  # everything from the env
        await manager.save({"type": "notebook", "content": notebook(folder)}, "nfs/shared/n.ipynb")
        await manager.create_checkpoint("nfs/shared/n.ipynb")
    servers = home / ".egi" / "servers"
    stores = {f: list((servers / f / "checkpoints").iterdir()) for f in ("default", "named-gpu")}
    assert all(len(s) == 1 for s in stores.values())
    sources = {f: json.loads(s[0].read_text())["content"] for f, s in stores.items()}
    assert sources["default"]["cells"][0]["source"] == "default"
    assert sources["named-gpu"]["cells"][0]["source"] == "named-gpu"
    assert not (home / ".egi" / "checkpoints").exists()


# -- review findings: log redaction (L1) ---------------------------------------------------


@pytest.fixture
def redacted_log():
    """A handler on the root logger formatting records as a deployment would."""
    import io
    import logging

    from egi_hub.singleuser import s3

    factory = logging.getLogRecordFactory()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield s3._REDACTOR, stream
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        logging.setLogRecordFactory(factory)


def test_secrets_are_redacted_from_loggers_made_later_and_from_tracebacks(redacted_log):
    import logging

    redactor, stream = redacted_log
    secret = "late-logger-secret-0042"
    redactor.add([secret])
    # loggers that did not exist when the secret was added, in and out of the S3 libraries
    for name in ("botocore.endpoint.child-made-later", "some.other.library"):
        log = logging.getLogger(name)
        log.debug("headers: %s", {"X-Amz-Security-Token": secret})
        try:
            raise RuntimeError(f"request failed with {secret}")
        except RuntimeError:
            log.exception("call failed")
        log.warning("where: %s", secret, stack_info=True)
    text = stream.getvalue()
    assert secret not in text
    assert text.count("***") >= 6
    assert "RuntimeError: request failed with ***" in text  # the traceback is still shown
    assert "child-made-later" in text and "some.other.library" in text


def test_redaction_survives_another_record_factory_installed_later(redacted_log):
    import logging

    redactor, stream = redacted_log
    redactor.add(["first-secret-0001"])
    ours = logging.getLogRecordFactory()
    seen: list[str] = []

    def theirs(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = ours(*args, **kwargs)
        seen.append(record.name)
        return record

    logging.setLogRecordFactory(theirs)  # a library wrapping ours
    redactor.add(["second-secret-0002"])  # wraps theirs: each must run once, no loop
    logging.getLogger("x.y").warning("first-secret-0001 and second-secret-0002")
    assert stream.getvalue().strip() == "x.y WARNING *** and ***"
    assert seen == ["x.y"]


def test_records_without_secrets_are_left_alone(redacted_log):
    import logging

    redactor, stream = redacted_log
    redactor.add(["unused-secret-0003"])
    logging.getLogger("plain").info("%d files in %s", 3, "bucket")
    try:
        raise ValueError("plain failure")
    except ValueError:
        logging.getLogger("plain").exception("oops")
    text = stream.getvalue()
    assert "plain INFO 3 files in bucket" in text
    assert "ValueError: plain failure" in text and "***" not in text


def test_datahub_urls_work_in_kernels_from_the_first_datahub_mount(tmp_path, monkeypatch):
    """What kernels inherit for ``datahub://`` with no options: the mount's Onezone and
    token file, never the token; given options never mix with it."""
    from egi_hub.singleuser.datahub import DEFAULTS_ENV, DatahubFileSystem

    doc = parse_document({"mounts": [s3_entry(), datahub_entry()]})
    mounts.export_datahub_defaults(doc, tmp_path)
    defaults = json.loads(os.environ[DEFAULTS_ENV])
    assert defaults["onezone_url"] == doc.mounts[1].settings["onezone_url"]
    assert defaults["token_file"] == str(tmp_path / "datahub.token")
    assert TOKEN not in os.environ[DEFAULTS_ENV]
    fs = DatahubFileSystem(skip_instance_cache=True)
    assert fs.onezone_url == "https://onezone.example.org" and fs.allowed == ("space-a",)
    assert fs._token._file == tmp_path / "datahub.token"
    own = DatahubFileSystem(provider_url="https://op.example", token="t", skip_instance_cache=True)
    assert own.onezone_url is None and own._token.get() == "t" and own.allowed is None
    # No DataHub mount any more: nothing to take, and a clear refusal.
    mounts.export_datahub_defaults(parse_document({"mounts": [s3_entry()]}), tmp_path)
    assert DEFAULTS_ENV not in os.environ
    with pytest.raises(ValueError, match="no DataHub mount"):
        DatahubFileSystem(skip_instance_cache=True)
