"""The S3 mount layer (egi_hub.singleuser.s3) against a real S3 server: ``rclone serve s3``.

rclone checks each request's AWS v4 signature, so a wrong secret is refused by the
server itself, as a production S3 service refuses it. No stand-in here.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import pickle
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fsspec.implementations.dirfs import DirFileSystem

from egi_hub.singleuser import s3 as s3mod
from egi_hub.singleuser.s3 import (
    S3CredentialsError,
    S3CredentialsRefusedError,
    S3Mount,
    S3MountCredentials,
    S3ReadOnlyError,
    check_key,
    credentials_path,
    load_credentials,
    open_mount,
)
from tests.s3server import S3Server, start_s3_server

ALICE = ("alicekey0001", "alice-Secret-0001/xyz")
BOB = ("bobkey000002", "bob-Secret-0002/abc")
TOKEN = "session-Token-ABCDEF-0003"
BUCKET = "vo-access-scratch"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    running = start_s3_server(tmp_path_factory.mktemp("s3"), keys=[ALICE, BOB])
    running.make_bucket(BUCKET)
    running.make_bucket("other-bucket")
    yield running
    running.stop()


def creds(server: S3Server, keys: tuple[str, str] = ALICE, **kw) -> S3MountCredentials:
    fields = {"name": "scratch", "bucket": BUCKET, **kw}
    return S3MountCredentials(
        endpoint_url=server.endpoint_url, key=keys[0], secret=keys[1], **fields
    )


def write_doc(path: Path, c: S3MountCredentials) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(c.to_document()))
    os.replace(tmp, path)  # as the credential keeper replaces it: atomically


# -- through the mount, into the server ----------------------------------------------------


def test_write_read_overwrite_list_delete_land_in_the_server(server: S3Server):
    m = S3Mount(creds(server))
    m.pipe_file("notebooks/a.ipynb", b'{"cells": []}')
    assert server.path_of(BUCKET, "notebooks/a.ipynb").read_bytes() == b'{"cells": []}'
    assert m.cat_file("notebooks/a.ipynb") == b'{"cells": []}'

    with m.open("notebooks/a.ipynb", "wb") as f:  # saved a second time: overwritten
        f.write(b'{"cells": [1]}')
    assert m.cat_file("notebooks/a.ipynb") == b'{"cells": [1]}'
    assert server.path_of(BUCKET, "notebooks/a.ipynb").read_bytes() == b'{"cells": [1]}'

    with m.open("notebooks/b.txt", "w") as f:
        f.write("text")
    assert sorted(m.ls("notebooks", detail=False)) == ["notebooks/a.ipynb", "notebooks/b.txt"]
    assert "notebooks" in m.ls("", detail=False)  # names are relative to the bucket
    assert m.info("notebooks/b.txt")["size"] == 4
    with m.open("notebooks/b.txt", "r") as f:
        assert f.read() == "text"

    m.rm("notebooks/b.txt")
    assert not m.exists("notebooks/b.txt")
    assert not server.path_of(BUCKET, "notebooks/b.txt").exists()
    m.rm("notebooks/a.ipynb")
    assert not server.path_of(BUCKET, "notebooks/a.ipynb").exists()


def test_large_multipart_files_and_ranged_reads_read_back(server: S3Server):
    """Files saved whole (one PUT) and over s3fs's multipart threshold (50 MiB) read back
    whole, by ranges and through open(): botocore's default checksum validation refused
    such reads against S3-compatible servers (FlexibleChecksumError), so a saved file
    could not be read again."""
    m = S3Mount(creds(server))
    for size in (6 << 20, 60 << 20):
        data = os.urandom(size)
        m.pipe_file("big/data.bin", data)  # 60 MiB: a multipart upload with checksums
        assert server.path_of(BUCKET, "big/data.bin").stat().st_size == size
        assert m.cat_file("big/data.bin") == data
        assert m.cat_file("big/data.bin", start=10, end=100) == data[10:100]
        with m.open("big/data.bin", "rb") as f:
            f.seek(3 << 20)
            assert f.read(1 << 20) == data[3 << 20 : 4 << 20]
    with m.open("big/streamed.bin", "wb") as f:  # written in blocks, as a notebook save
        for _ in range(7):
            f.write(data[: 8 << 20])
    assert m.cat_file("big/streamed.bin", start=1, end=5) == data[1:5]
    m.rm("big", recursive=True)


def test_invalidate_cache_forgets_folder_listings(server: S3Server):
    m, other = S3Mount(creds(server)), S3Mount(creds(server, keys=BOB))
    m.pipe_file("cached/one.txt", b"1")
    assert m.ls("cached", detail=False) == ["cached/one.txt"]
    other.pipe_file("cached/two.txt", b"2")  # another client writes
    m.invalidate_cache()
    assert m.ls("cached", detail=False) == ["cached/one.txt", "cached/two.txt"]
    m.rm("cached", recursive=True)


def test_paths_are_keys_of_the_mounts_bucket_only(server: S3Server):
    m = S3Mount(creds(server))
    m.pipe_file("/lead/slash.txt", b"x")  # a leading slash is the mount root
    assert server.path_of(BUCKET, "lead/slash.txt").read_bytes() == b"x"
    assert not server.path_of("other-bucket", "lead").exists()
    m.rm("lead/slash.txt")


@pytest.mark.parametrize(
    "path",
    [
        "..",
        "../other-bucket/x",
        "a/../../other-bucket/x",
        "a/./b",
        "a//b",
        "s3://other/x",
        "a/\x00b",
        "a\nb",
        "./x",
    ],
)
def test_object_keys_with_dot_segments_are_refused(server: S3Server, path: str):
    m = S3Mount(creds(server))
    with pytest.raises(ValueError, match=r"not allowed|control character"):
        m.pipe_file(path, b"escape")
    with pytest.raises(ValueError):
        m.cat_file(path)
    with pytest.raises(ValueError):
        m.ls([path])
    assert not any(p.name == "escape" for p in server.root.rglob("*"))


def test_check_key_normalises_slashes_only():
    assert check_key("/a/b/") == "a/b"
    assert check_key("") == check_key("/") == ""
    assert check_key("a..b/c.") == "a..b/c."  # dots inside a name are fine


# -- read-only -------------------------------------------------------------------------


def test_a_read_only_mount_reads_and_refuses_every_write(server: S3Server):
    S3Mount(creds(server)).pipe_file("ro/kept.txt", b"kept")
    ro = S3Mount(creds(server, read_only=True))
    assert ro.cat_file("ro/kept.txt") == b"kept"
    writes = {
        "pipe_file": lambda: ro.pipe_file("ro/new.txt", b"1"),
        "open wb": lambda: ro.open("ro/new.txt", "wb"),
        "open a": lambda: ro.open("ro/kept.txt", "a"),
        "open w": lambda: ro.open("ro/new.txt", "w"),
        "rm": lambda: ro.rm("ro/kept.txt"),
        "rm_file": lambda: ro.rm_file("ro/kept.txt"),
        "mv": lambda: ro.mv("ro/kept.txt", "ro/moved.txt"),
        "rename": lambda: ro.rename("ro/kept.txt", "ro/moved.txt"),
        "copy": lambda: ro.copy("ro/kept.txt", "ro/copy.txt"),
        "touch": lambda: ro.touch("ro/new.txt"),
        "mkdir": lambda: ro.mkdir("ro/dir"),
        "makedirs": lambda: ro.makedirs("ro/dir"),
        "write_text": lambda: ro.write_text("ro/new.txt", "1"),
        "write_bytes": lambda: ro.write_bytes("ro/new.txt", b"1"),
        "put_file": lambda: ro.put_file(__file__, "ro/new.txt"),
    }
    for what, write in writes.items():
        with pytest.raises(S3ReadOnlyError, match="'scratch' is read-only") as e:
            write()
        assert isinstance(e.value, PermissionError), what
    assert sorted(p.name for p in server.path_of(BUCKET, "ro").iterdir()) == ["kept.txt"]
    assert server.path_of(BUCKET, "ro/kept.txt").read_bytes() == b"kept"


READ_METHODS = set(
    """
    _cat _cat_file _cat_ranges _du _exists _expand_path _find _get _get_file
    _get_kwargs_from_urls _get_pyarrow_filesystem _glob _info _isdir _isfile _isfilestore
    _join _ls _ls_from_cache _open _parent _process_limits _relpath _relpath_detail
    _relpath_walk_entries _size _sizes _strip_protocol _walk cat cat_file cat_ranges
    checksum clear_instance_cache created current disk_usage download du end_transaction
    exists expand_path find from_dict from_json get get_file get_mapper glob head info
    invalidate_cache isdir isfile lexists listdir ls modified open open_async read_block
    read_bytes read_text set_session sign size sizes start_transaction stat tail to_dict
    to_json transaction_type tree ukey unstrip_protocol walk
    """.split()
)


def test_every_fsspec_method_is_known_to_read_or_guarded_as_a_write():
    """A method fsspec adds later must be sorted here before read_only can be trusted."""
    public = {
        n
        for n in dir(DirFileSystem)
        if not n.startswith("__") and callable(getattr(DirFileSystem, n))
    }
    unsorted = public - READ_METHODS - s3mod.WRITE_METHODS
    assert not unsorted, f"sort these fsspec methods into reads or WRITE_METHODS: {unsorted}"
    # _open is reached only through open/open_async, which check the mode.
    assert not set(inspect.signature(S3Mount.open).parameters) - {"self", "path", "mode", "kwargs"}


# -- wrong credentials, never shown -----------------------------------------------------


def test_a_wrong_secret_is_refused_with_a_clear_message(server: S3Server):
    S3Mount(creds(server)).pipe_file("shared.txt", b"s")
    wrong = ("alicekey0001", "not-the-Secret-9999")
    bad = S3Mount(creds(server, keys=wrong))
    ops = {
        "ls": lambda: bad.ls(""),
        "cat": lambda: bad.cat_file("shared.txt"),
        "info": lambda: bad.info("shared.txt"),  # a HEAD: 403 without a body
        "open rb": lambda: bad.open("shared.txt", "rb").read(),
        "pipe": lambda: bad.pipe_file("new.txt", b"1"),
    }
    for what, op in ops.items():
        with pytest.raises(S3CredentialsRefusedError) as e:
            op()
        msg = str(e.value)
        assert "S3 mount 'scratch'" in msg and "the S3 server refused the key/secret" in msg, what
        assert wrong[1] not in msg and wrong[1] not in repr(e.value), what

    with pytest.raises(S3CredentialsRefusedError, match="refused the key/secret"):
        with bad.open("new.txt", "wb") as f:  # the upload happens on close
            f.write(b"1")
    assert not server.path_of(BUCKET, "new.txt").exists()


def test_an_unknown_key_id_is_refused_too(server: S3Server):
    bad = S3Mount(creds(server, keys=("nobodykey999", "whatever-secret-1")))
    with pytest.raises(S3CredentialsRefusedError, match="refused the key/secret"):
        bad.ls("")


def test_the_secret_never_appears_in_reprs_exceptions_or_logs(
    server: S3Server, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.DEBUG)  # botocore logs request headers at DEBUG
    c = creds(server, session_token=TOKEN)
    m = S3Mount(c)
    m.pipe_file("logged.txt", b"1")
    m.cat_file("logged.txt")
    m.ls("")
    wrong = creds(server, keys=("alicekey0001", "wrong-Secret-7777"), session_token=TOKEN)
    with pytest.raises(PermissionError) as e:
        S3Mount(wrong).ls("")
    secrets = [ALICE[1], TOKEN, "wrong-Secret-7777"]
    assert "CALL: " in caplog.text  # the client's debug logs were captured
    shown = [repr(c), str(c), repr(m), repr(wrong), str(e.value), repr(e.value), caplog.text]
    for text in shown:
        for secret in secrets:
            assert secret not in text
    with pytest.raises(TypeError, match="not serialised"):
        pickle.dumps(m)
    with pytest.raises(TypeError, match="not serialised"):
        m.to_json()


def test_expired_credentials_say_so(server: S3Server):
    m = S3Mount(creds(server, expires_at=time.time() - 10))
    with pytest.raises(S3CredentialsRefusedError, match=r"expired at .* not been renewed"):
        m.ls("")


# -- the credential document ------------------------------------------------------------


def test_a_mount_from_its_document_follows_renewed_credentials(
    server: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("EGI_STORAGE_DIR", str(tmp_path))
    path = credentials_path("scratch")
    assert path == tmp_path / "scratch.json"
    write_doc(path, creds(server, keys=("alicekey0001", "stale-Secret-0000")))
    m = open_mount("scratch")
    with pytest.raises(S3CredentialsRefusedError):
        m.ls("")
    write_doc(path, creds(server, keys=BOB))  # the keeper renews: no restart
    m.pipe_file("renewed.txt", b"ok")
    assert server.path_of(BUCKET, "renewed.txt").read_bytes() == b"ok"
    write_doc(path, creds(server, bucket="other-bucket"))
    with pytest.raises(S3CredentialsError, match="another bucket"):
        m.ls("")


def test_documents_round_trip_and_bad_ones_name_the_field_not_the_value(
    server: S3Server, tmp_path: Path
):
    c = creds(server, session_token=TOKEN, expires_at=2_000_000_000)
    path = tmp_path / "scratch.json"
    write_doc(path, c)
    assert load_credentials(path) == c
    doc = c.to_document()
    bad_docs = {
        "unknown field": {**doc, "password": ALICE[1]},
        "missing": {k: v for k, v in doc.items() if k != "secret"},
        "wrong type": {**doc, "read_only": "no"},
        "bool as number": {**doc, "expires_at": True},
        "version": {**doc, "version": 2},
        "kind": {**doc, "kind": "nfs"},
        "name": {**doc, "name": "../etc"},
        "endpoint path": {**doc, "endpoint_url": server.endpoint_url + "/other"},
        "endpoint user": {**doc, "endpoint_url": "http://u:p@127.0.0.1:1"},
        "endpoint scheme": {**doc, "endpoint_url": "file:///etc"},
        "bucket": {**doc, "bucket": "Bad_Bucket"},
        "secret control": {**doc, "secret": ALICE[1] + "\n"},
        "empty key": {**doc, "key": ""},
    }
    for what, bad in bad_docs.items():
        path.write_text(json.dumps(bad))
        with pytest.raises(S3CredentialsError) as e:
            load_credentials(path)
        assert ALICE[1] not in str(e.value) and TOKEN not in str(e.value), what
    path.write_text('{"secret": "' + ALICE[1] + '", oops}')
    with pytest.raises(S3CredentialsError, match="not JSON") as e:
        load_credentials(path)
    assert ALICE[1] not in str(e.value)
    with pytest.raises(S3CredentialsError, match="not given to this user"):
        load_credentials(tmp_path / "absent.json")
    with pytest.raises(S3CredentialsError, match="not allowed"):
        credentials_path("../../etc/passwd")


# -- bucket names from templates ------------------------------------------------------------


@pytest.mark.parametrize("vo", ["vo.access.egi.eu", "vo-access.egi.eu", "Vo_X", "-x"])
def test_a_vo_bucket_template_expands_to_a_name_the_server_accepts(server: S3Server, vo: str):
    """``bucket: "{vo}-scratch"`` for real VO names: rclone (like AWS) refuses dots and
    capitals in bucket labels, so the expansion escapes them and the bucket works."""
    from egi_hub.storage_mounts.templates import expand

    bucket = expand("{vo}-scratch", username="alice", vo=vo, style="bucket")
    server.make_bucket(bucket)
    fs = S3Mount(creds(server, bucket=bucket))
    fs.pipe_file("hello.txt", b"hi")
    assert server.path_of(bucket, "hello.txt").read_bytes() == b"hi"
