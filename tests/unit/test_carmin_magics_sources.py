"""Where a launch's File inputs come from (egi_hub.carmin.magics.sources): local files,
``datahub://`` URLs (a fake fsspec filesystem standing in for Onedata here) and platform
paths; a bad one refused before anything is sent; uploads streamed into a folder of
their own."""

from __future__ import annotations

import importlib
import io
import re

import pytest
from fsspec.implementations.memory import MemoryFileSystem

from egi_hub.carmin.errors import CarminError, CarminInputError
from egi_hub.carmin.magics.sources import (
    DEFAULT_UPLOAD_DIR,
    file_inputs,
    plan_sources,
    upload_dir,
    upload_sources,
)
from egi_hub.carmin.transfer import Upload

DESCRIPTOR = {
    "inputs": [
        {"id": "f", "type": "File"},
        {"id": "many", "type": "File", "list": True},
        {"id": "s", "type": "String"},
    ]
}


class FakeDatahub(MemoryFileSystem):
    """An in-memory stand-in for the datahub:// filesystem (its own store)."""

    protocol = "datahub"
    store: dict = {}
    pseudo_dirs = [""]
    cachable = False

    @classmethod
    def _strip_protocol(cls, path):
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        return "/" + str(path).removeprefix("datahub://").strip("/")


@pytest.fixture
def datahub(monkeypatch):
    registry = importlib.import_module("fsspec.registry")  # the module, not fsspec.registry
    monkeypatch.setitem(registry._registry, "datahub", FakeDatahub)
    FakeDatahub.store.clear()
    fs = FakeDatahub()
    fs.pipe("/space/data/scan é.nii", b"N" * 3_000_000)
    yield fs
    FakeDatahub.store.clear()


class FakeClient:
    """Records the platform calls of `upload_sources`, reading every upload through the
    real `Upload` (so an open file streams as it would to the platform)."""

    def __init__(self, existing=()):
        self.folders = set(existing)
        self.calls = []
        self.uploads = {}

    def exists(self, path):
        self.calls.append(("exists", path))
        return path in self.folders

    def mkdir(self, path):
        self.calls.append(("mkdir", path))
        self.folders.add(path)

    def upload(self, source, path, progress=None):
        self.calls.append(("upload", path))
        upload = Upload(source, progress)
        self.uploads[path] = b"".join(upload.chunks())
        assert upload.md5


def test_file_inputs_of_a_descriptor():
    assert file_inputs(DESCRIPTOR) == {"f", "many"}
    assert file_inputs({"inputs": [{"type": "File"}, "junk", {"id": 3, "type": "File"}]}) == set()


def test_classification(tmp_path, datahub):
    (tmp_path / "local é.txt").write_text("x")
    inputs = {
        "f": "local é.txt",
        "many": ["/vip/Home/on-platform.txt", "datahub://space/data/scan é.nii", "https://h/x"],
        "s": "not-a-file-at-all",
    }
    planned = plan_sources(inputs, file_inputs(DESCRIPTOR), cwd=tmp_path)
    assert [(s.parameter, s.kind, s.name) for s in planned] == [
        ("f", "local", "local é.txt"),
        ("many", "fsspec", "scan é.nii"),
    ]
    absolute = plan_sources({"f": str(tmp_path / "local é.txt")}, {"f"}, cwd="/")
    assert absolute[0].kind == "local"
    as_url = plan_sources({"f": f"file://{tmp_path}/local%20%C3%A9.txt"}, {"f"}, cwd="/")
    assert as_url[0].where == str(tmp_path / "local é.txt")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("missing.txt", "no local file 'missing.txt'"),
        ("sub", "is not a file"),
        ("ftpx://host/file", "no filesystem for ftpx:// URLs"),
        ("file:///nowhere/at/all", "no local file /nowhere/at/all"),
        ("datahub://", "names no file"),
        ("datahub://space/..", "no usable file name"),
        ("dir/\x01x", "no local file"),
    ],
)
def test_bad_sources_are_refused_before_anything(tmp_path, datahub, value, message):
    (tmp_path / "sub").mkdir()
    with pytest.raises(CarminInputError) as info:
        plan_sources({"f": value}, {"f"}, cwd=tmp_path)
    assert message in str(info.value) and info.value.parameter == "f"


def test_uploads_go_to_a_folder_of_their_own_and_values_are_replaced(tmp_path, datahub):
    (tmp_path / "a.txt").write_bytes(b"alpha")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "a.txt").write_bytes(b"second a")
    inputs = {
        "f": "a.txt",
        "many": ["other/a.txt", "datahub://space/data/scan é.nii", "/vip/Home/x", "a.txt"],
        "s": "a.txt",
    }
    sources = plan_sources(inputs, {"f", "many"}, cwd=tmp_path)
    client = FakeClient(existing={"/vip"})
    seen = []
    resolved = upload_sources(
        client,
        inputs,
        sources,
        "/vip/Home/uploads",
        progress=lambda s: lambda done, total: seen.append((s.name, done, total)),
    )
    folder = resolved["f"].rsplit("/", 1)[0]
    assert folder.startswith("/vip/Home/uploads/") and resolved["f"] == f"{folder}/a.txt"
    assert resolved["many"] == [
        f"{folder}/2-a.txt",
        f"{folder}/scan é.nii",
        "/vip/Home/x",
        f"{folder}/3-a.txt",
    ]
    assert resolved["s"] == "a.txt"  # not a File input: untouched
    assert client.uploads[f"{folder}/a.txt"] == b"alpha"
    assert client.uploads[f"{folder}/2-a.txt"] == b"second a"
    assert client.uploads[f"{folder}/scan é.nii"] == b"N" * 3_000_000
    mkdirs = [c[1] for c in client.calls if c[0] == "mkdir"]
    assert mkdirs == ["/vip/Home", "/vip/Home/uploads", folder]
    assert ("scan é.nii", 3_000_000, 3_000_000) in seen
    assert len([s for s in seen if s[0] == "scan é.nii"]) >= 3  # streamed in chunks


def test_an_unreadable_datahub_file_is_one_clear_error(datahub):
    sources = plan_sources({"f": "datahub://space/gone.txt"}, {"f"})
    with pytest.raises(CarminError, match=re.escape("datahub://space/gone.txt: cannot read it")):
        upload_sources(FakeClient({"/vip", "/vip/Home", "/vip/Home/u"}), {}, sources, "/vip/Home/u")


def test_nothing_to_upload_sends_nothing():
    client = FakeClient()
    assert upload_sources(client, {"f": "/vip/Home/x"}, [], "/vip/Home/u") == {"f": "/vip/Home/x"}
    assert client.calls == []


def test_an_open_file_upload_is_read_again_from_its_start():
    data = io.BytesIO(b"0123456789" * 1000)
    data.read(77)
    upload = Upload(data)
    assert upload.size == 10_000
    assert b"".join(upload.chunks()) == data.getvalue()
    assert b"".join(upload.chunks()) == data.getvalue()  # a retry starts over


def test_upload_dir_from_the_environment():
    assert upload_dir({}) == DEFAULT_UPLOAD_DIR
    assert upload_dir({"CARMIN_UPLOAD_DIR": "/vip/Home/mine/"}) == "/vip/Home/mine"
    for bad in ("relative/dir", "/a\nb"):
        with pytest.raises(CarminError, match="not a platform path"):
            upload_dir({"CARMIN_UPLOAD_DIR": bad})
