"""``datahub://`` (egi_hub.singleuser.datahub) against the Onedata stand-in over HTTPS.

Every test here talks to `tests/onedata_standin.py`, a stand-in for Onezone and a
Oneprovider (proved with Onedata's own client in test_onedata_standin.py). fsspec's own
abstract suite runs at the end; classes of it that are not run are listed with why.
"""

from __future__ import annotations

import errno
import os
import time

import fsspec
import pytest
from fsspec.tests.abstract import (
    AbstractCopyTests,
    AbstractFixtures,
    AbstractGetTests,
    AbstractOpenTests,
    AbstractPipeTests,
    AbstractPutTests,
)

from egi_hub.singleuser.datahub import DatahubFileSystem
from tests.onedata_standin import start_onedata_standin


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    running = start_onedata_standin(tmp_path_factory.mktemp("onedata"))
    running.add_user("checkin-alice", "alice-id")
    running.add_user("checkin-bob", "bob-id")
    yield running
    assert running.state.errors == []
    running.stop()


def make_fs(standin, token=None, **kw) -> DatahubFileSystem:
    return DatahubFileSystem(
        onezone_url=standin.onezone_url,
        token=token,
        verify=standin.ca_file,
        skip_instance_cache=True,
        **kw,
    )


@pytest.fixture
def space(standin, request):
    name = "sp-" + request.node.name[-40:].replace("[", "-").replace("]", "")
    return name, standin.add_space(name, ["alice-id"])


@pytest.fixture
def fs(standin):
    return make_fs(standin, standin.mint_token("alice-id"))


def test_standin_write_read_overwrite_twice(fs, standin, space):
    """Saving a file a second (third) time truncates: the known onedatarestfsspec bug."""
    name, space_id = space
    path = f"datahub://{name}/notebooks/analysis.ipynb"
    with fsspec.open(path, "wb", **fs.storage_options) as f:  # via the registered protocol
        f.write(b'{"cells": ["a long first version"]}')
    fs.pipe_file(path, b'{"cells": []}')
    assert fs.cat_file(path) == b'{"cells": []}'
    with fs.open(path, "wb") as f:
        f.write(b"{}")
    assert standin.read_file(space_id, "notebooks/analysis.ipynb") == b"{}"
    assert fs.info(path)["size"] == 2 and fs.info(path)["type"] == "file"
    # An empty save empties the file.
    fs.touch(path)
    assert fs.cat_file(path) == b""


def test_standin_big_multiblock_write_and_range_reads(fs, standin, space):
    name, space_id = space
    data = os.urandom(3 * 2**20 + 17)
    with fs.open(f"{name}/big.bin", "wb", block_size=2**20) as f:
        for i in range(0, len(data), 300_000):
            f.write(data[i : i + 300_000])
    assert standin.read_file(space_id, "big.bin") == data
    assert fs.cat_file(f"{name}/big.bin", start=10, end=20) == data[10:20]
    assert fs.cat_file(f"{name}/big.bin", start=-5) == data[-5:]
    assert fs.cat_file(f"{name}/big.bin", start=len(data) + 3) == b""
    with fs.open(f"{name}/big.bin", "rb", block_size=4096) as f:
        f.seek(2**20 + 5)
        assert f.read(100) == data[2**20 + 5 : 2**20 + 105]
    ranges = [r for _, r, h in standin.requests() if "range" in h and "/content" in r]
    assert ranges, "reads use Range requests"


def test_standin_ls_pages_past_1000(fs, standin, space):
    name, space_id = space
    for i in range(2345):
        standin.write_file(space_id, f"many/f{i:05d}", b"x")
    names = fs.ls(f"{name}/many", detail=False)
    assert names == [f"{name}/many/f{i:05d}" for i in range(2345)]
    pages = [r for m, r, _ in standin.requests() if "/children" in r]
    assert all("limit=1000" in r for r in pages)
    assert fs.ls(f"{name}/many/f00001") == [fs.info(f"{name}/many/f00001")]


def test_standin_root_lists_spaces_and_ambiguous_names(standin):
    standin.add_user("checkin-carol", "carol-id")
    a = standin.add_space("twin", ["carol-id"])
    b = standin.add_space("twin", ["carol-id"])
    standin.add_space("solo", ["carol-id"])
    fs = make_fs(standin, standin.mint_token("carol-id"))
    assert sorted(fs.ls("", detail=False)) == sorted(["solo", f"twin@{a}", f"twin@{b}"])
    fs.pipe_file(f"twin@{a}/x", b"A")
    assert standin.read_file(a, "x") == b"A" and not standin.exists(b, "x")
    with pytest.raises(FileNotFoundError, match="name>@<spaceId"):
        fs.ls("twin")
    with pytest.raises(FileNotFoundError, match="no space"):
        fs.ls("nosuchspace")


def test_standin_mkdir_rm_mv(fs, standin, space):
    name, space_id = space
    fs.makedirs(f"{name}/a/b/c")
    fs.makedirs(f"{name}/a/b/c", exist_ok=True)
    with pytest.raises(FileExistsError):
        fs.makedirs(f"{name}/a/b/c")
    with pytest.raises(FileExistsError):
        fs.mkdir(f"{name}/a")
    fs.pipe_file(f"{name}/a/b/c/f.txt", b"hello")
    with pytest.raises(OSError) as e:
        fs.rmdir(f"{name}/a/b/c")
    assert e.value.errno == errno.ENOTEMPTY
    with pytest.raises(OSError) as e:
        fs.rm(f"{name}/a")
    assert e.value.errno == errno.ENOTEMPTY

    fs.mv(f"{name}/a/b/c/f.txt", f"{name}/a/g.txt")
    assert standin.read_file(space_id, "a/g.txt") == b"hello"
    assert not fs.exists(f"{name}/a/b/c/f.txt")
    fs.mv(f"{name}/a/g.txt", f"{name}/a/b")  # into an existing directory
    assert fs.cat_file(f"{name}/a/b/g.txt") == b"hello"
    fs.mv(f"{name}/a/b", f"{name}/moved")  # a directory
    assert fs.isdir(f"{name}/moved/c") and fs.isfile(f"{name}/moved/g.txt")
    cdmi = [h for m, r, h in standin.requests() if r.startswith("/cdmi/")]
    assert all(h["x-cdmi-specification-version"] == "1.1.1" for h in cdmi)

    fs.rm(f"{name}/moved", recursive=True)
    assert not fs.exists(f"{name}/moved")
    fs.rmdir(f"{name}/a")
    assert fs.ls(name) == []


def test_standin_errors_map_to_python_exceptions(fs, standin, space):
    name, _ = space
    fs.pipe_file(f"{name}/file", b"1")
    fs.mkdir(f"{name}/dir")
    with pytest.raises(FileNotFoundError):
        fs.cat_file(f"{name}/missing")
    with pytest.raises(FileNotFoundError):
        fs.info(f"{name}/missing/deeper")
    assert not fs.exists(f"{name}/missing")
    with pytest.raises(NotADirectoryError):
        fs.pipe_file(f"{name}/file/inside", b"x")
    with pytest.raises(IsADirectoryError):
        fs.cat_file(f"{name}/dir")
    with pytest.raises(IsADirectoryError):
        fs.rm_file(f"{name}/dir")
    with pytest.raises(FileExistsError):
        fs.pipe_file(f"{name}/file", b"2", mode="create")
    with pytest.raises(FileExistsError):
        fs.open(f"{name}/file", "xb")
    other = standin.add_space("other-" + name[-20:], ["alice-id"])
    with pytest.raises(OSError, match="between spaces") as e:
        fs.mv(f"{name}/file", f"other-{name[-20:]}/file")
    assert e.value.errno == errno.EXDEV and not standin.exists(other, "file")


@pytest.mark.parametrize("bad", ["..", "a/../../x", "./a", "a/b\x00c", "a\nb", "a/\x7f"])
def test_standin_dotdot_and_control_chars_refused(fs, standin, space, bad):
    name, _ = space
    before = len(standin.requests())
    with pytest.raises(ValueError, match="not allowed"):
        fs.cat_file(f"{name}/{bad}")
    with pytest.raises(ValueError, match="not allowed"):
        fs.pipe_file(f"{name}/{bad}", b"x")
    assert len(standin.requests()) == before, "refused before any request"


def test_standin_token_file_renewal(standin, space, tmp_path):
    """A renewed token written to the token file is used without a new filesystem."""
    name, _ = space
    token_file = tmp_path / "datahub-token"
    old = standin.mint_token("alice-id", ttl=3600)
    token_file.write_text(old + "\n")
    fs = make_fs(standin, token_file=str(token_file))
    fs.pipe_file(f"{name}/t", b"1")
    standin.revoke(old)
    with pytest.raises(PermissionError, match="refused the access token"):
        fs.cat_file(f"{name}/t")
    new = standin.mint_token("alice-id", ttl=3600)
    token_file.write_text(new + "\n")
    assert fs.cat_file(f"{name}/t") == b"1"
    used = {h.get("x-auth-token") for _, _, h in standin.requests()[-3:]}
    assert used <= {new, None}
    # An expired token is a clear PermissionError too, without the token in the message.
    expired = standin.mint_token("alice-id", [{"type": "time", "validUntil": int(time.time()) - 5}])
    token_file.write_text(expired)
    with pytest.raises(PermissionError) as e:
        fs.ls(name)
    assert expired not in str(e.value) and expired not in repr(fs)


def test_standin_readonly_token_and_readonly_support(standin, space):
    name, space_id = space
    standin.write_file(space_id, "r.txt", b"read me")
    ro = make_fs(standin, standin.mint_token("alice-id", [{"type": "data.readonly"}]))
    assert ro.cat_file(f"{name}/r.txt") == b"read me"
    with pytest.raises(PermissionError, match="read-only"):
        ro.pipe_file(f"{name}/r.txt", b"no")
    with pytest.raises(PermissionError, match="read-only"):
        ro.rm(f"{name}/r.txt")

    ro_space = standin.add_space("rosupport", ["bob-id"], readonly_support=True)
    standin.write_file(ro_space, "s.txt", b"s")
    bob = make_fs(standin, standin.mint_token("bob-id"))
    assert bob.cat_file("rosupport/s.txt") == b"s"
    with pytest.raises(PermissionError, match="read-only"):
        bob.pipe_file("rosupport/s.txt", b"no")
    assert standin.read_file(ro_space, "s.txt") == b"s"


def test_standin_offline_provider_skipped(standin):
    offline = standin.add_provider("offline", online=False)
    old = standin.add_provider("old", online=True, version="20.02.19")
    space_id = standin.add_space("mixed", ["bob-id"], other_supports={offline: False, old: False})
    standin.write_file(space_id, "m", b"m")
    bob = make_fs(standin, standin.mint_token("bob-id"))
    assert bob.cat_file("mixed/m") == b"m"
    bob.pipe_file("mixed/m", b"mm")
    assert standin.read_file(space_id, "mixed/m".split("/", 1)[1]) == b"mm"


def test_standin_users_do_not_see_each_others_spaces(standin, space):
    name, _ = space
    bob = make_fs(standin, standin.mint_token("bob-id"))
    assert name not in bob.ls("", detail=False)
    with pytest.raises(FileNotFoundError):
        bob.cat_file(f"{name}/anything")


def test_standin_provider_url_only(standin, space):
    name, space_id = space
    standin.write_file(space_id, "p", b"via provider")
    fs = DatahubFileSystem(
        provider_url=standin.provider_url,
        token=standin.mint_token("alice-id"),
        verify=standin.ca_file,
        skip_instance_cache=True,
    )
    assert name in fs.ls("", detail=False)
    assert fs.cat_file(f"{name}/p") == b"via provider"


def test_constructor_refuses_bad_options(standin):
    with pytest.raises(ValueError, match="onezone_url= or provider_url="):
        DatahubFileSystem(token="t", skip_instance_cache=True)
    with pytest.raises(ValueError, match="https"):
        DatahubFileSystem(onezone_url="http://x", token="t", skip_instance_cache=True)
    with pytest.raises(ValueError, match="exactly one"):
        DatahubFileSystem(onezone_url=standin.onezone_url, skip_instance_cache=True)


# --- fsspec's abstract suite against datahub:// (stand-in) --------------------------------
#
# Run: AbstractCopyTests, AbstractGetTests, AbstractPutTests, AbstractOpenTests,
# AbstractPipeTests (all classes fsspec.tests.abstract exports). mv.py holds only module
# functions for LocalFileSystem (no class to subclass); our mv is tested above.


class DatahubFixtures(AbstractFixtures):
    """Each test runs in a fresh space of the stand-in, as a fresh bucket would be."""

    @pytest.fixture(scope="class")
    @classmethod
    def _standin(cls, tmp_path_factory):
        running = start_onedata_standin(tmp_path_factory.mktemp("onedata-abstract"))
        running.add_user("checkin-dora", "dora-id")
        yield running
        assert running.state.errors == []
        running.stop()

    @pytest.fixture
    def fs(self, _standin):
        return make_fs(_standin, _standin.mint_token("dora-id"))

    @pytest.fixture
    def fs_path(self, _standin, request):
        name = f"abstract{len(_standin.state.spaces)}"
        _standin.add_space(name, ["dora-id"])
        return name


class TestDatahubCopyStandin(DatahubFixtures, AbstractCopyTests):
    pass


class TestDatahubGetStandin(DatahubFixtures, AbstractGetTests):
    pass


class TestDatahubPutStandin(DatahubFixtures, AbstractPutTests):
    pass


class TestDatahubOpenStandin(DatahubFixtures, AbstractOpenTests):
    pass


class TestDatahubPipeStandin(DatahubFixtures, AbstractPipeTests):
    pass
