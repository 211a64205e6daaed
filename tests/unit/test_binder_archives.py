"""Safe zip extraction (binder_service.archives) against hostile archives built here."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import pytest

from egi_hub.binder_service.archives import ArchiveError, check_member_name, extract_zip

LIMITS = {"max_bytes": 1 << 20, "max_files": 100}


def make_zip(path: Path, entries: list[tuple[str, bytes] | zipfile.ZipInfo], **kw) -> Path:
    """A zip with ``(name, data)`` entries, or ZipInfo entries (data in ``kw['data']``)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for entry in entries:
            if isinstance(entry, zipfile.ZipInfo):
                z.writestr(entry, kw.get("data", b""))
            else:
                z.writestr(*entry)
    return path


def unix_entry(name: str, mode: int) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # Unix: the mode is in the high bits
    info.external_attr = mode << 16
    return info


def test_a_release_zip_is_extracted_and_its_top_folder_unwrapped(tmp_path):
    archive = make_zip(
        tmp_path / "a.zip",
        [
            ("repo-1.0/", b""),
            ("repo-1.0/requirements.txt", b"six\n"),
            ("repo-1.0/binder/postBuild", b"echo hi\n"),
            ("repo-1.0/notebooks/intro.ipynb", b"{}"),
        ],
    )
    done = extract_zip(archive, tmp_path / "out", **LIMITS)
    assert done.unwrapped == "repo-1.0" and done.files == 3
    assert (tmp_path / "out" / "requirements.txt").read_text() == "six\n"
    assert (tmp_path / "out" / "notebooks" / "intro.ipynb").read_text() == "{}"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "binder",
        "notebooks",
        "requirements.txt",
    ]


def test_two_top_level_entries_are_kept_as_they_are(tmp_path):
    archive = make_zip(tmp_path / "a.zip", [("a/x.txt", b"x"), ("b.txt", b"b")])
    done = extract_zip(archive, tmp_path / "out", **LIMITS)
    assert done.unwrapped == ""
    assert (tmp_path / "out" / "a" / "x.txt").exists() and (tmp_path / "out" / "b.txt").exists()


def test_a_nested_top_folder_is_unwrapped_once(tmp_path):
    archive = make_zip(tmp_path / "a.zip", [("top/inner/f.txt", b"f")])
    done = extract_zip(archive, tmp_path / "out", **LIMITS)
    assert done.unwrapped == "top"
    assert (tmp_path / "out" / "inner" / "f.txt").read_text() == "f"


def test_unwrap_can_be_turned_off(tmp_path):
    archive = make_zip(tmp_path / "a.zip", [("top/f.txt", b"f")])
    extract_zip(archive, tmp_path / "out", unwrap=False, **LIMITS)
    assert (tmp_path / "out" / "top" / "f.txt").exists()


@pytest.mark.parametrize(
    "name, why",
    [
        ("../evil.txt", "'..'"),
        ("top/../../evil.txt", "'..'"),
        ("/etc/evil", "absolute"),
        ("C:/evil", "absolute"),
        ("top\\..\\evil", "backslash"),
        ("top/a\x1b[31mb", "control"),  # (zipfile itself cuts names at a NUL)
        ("top/a\nb", "control"),
        ("top//x", "empty"),
        ("./x", "'.'"),
    ],
)
def test_zip_slip_and_odd_names_are_refused_before_anything_is_written(tmp_path, name, why):
    archive = make_zip(tmp_path / "a.zip", [("fine.txt", b"ok"), (name, b"evil")])
    with pytest.raises(ArchiveError, match=why) as refused:
        extract_zip(archive, tmp_path / "out", **LIMITS)
    assert "\n" not in str(refused.value)
    assert list((tmp_path / "out").iterdir()) == []  # checked before writing
    assert not (tmp_path / "evil.txt").exists()


def test_a_symlink_entry_is_refused(tmp_path):
    link = unix_entry("top/link", stat.S_IFLNK | 0o777)
    archive = make_zip(tmp_path / "a.zip", [("top/f", b"x"), link], data=b"/etc/passwd")
    with pytest.raises(ArchiveError, match="symbolic link"):
        extract_zip(archive, tmp_path / "out", **LIMITS)
    assert not any(p.is_symlink() for p in (tmp_path / "out").rglob("*"))


@pytest.mark.parametrize("kind", [stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK])
def test_device_and_special_files_are_refused(tmp_path, kind):
    archive = make_zip(tmp_path / "a.zip", [unix_entry("dev", kind | 0o600)])
    with pytest.raises(ArchiveError, match="special file"):
        extract_zip(archive, tmp_path / "out", **LIMITS)


def test_modes_keep_the_executable_bit_and_drop_setuid(tmp_path):
    entries = [
        unix_entry("postBuild", stat.S_IFREG | 0o4755),
        unix_entry("data.txt", stat.S_IFREG | 0o666),
    ]
    archive = make_zip(tmp_path / "a.zip", entries, data=b"#!/bin/sh\n")
    extract_zip(archive, tmp_path / "out", **LIMITS)
    post = (tmp_path / "out" / "postBuild").stat().st_mode
    assert post & stat.S_IXUSR and not post & (stat.S_ISUID | stat.S_ISGID)
    assert not (tmp_path / "out" / "data.txt").stat().st_mode & (stat.S_IXUSR | stat.S_IWOTH)


def test_a_bomb_is_stopped_by_the_bytes_written_not_by_its_headers(tmp_path):
    archive = make_zip(tmp_path / "bomb.zip", [("top/zeros", b"\0" * (4 << 20))])
    assert archive.stat().st_size < 64 << 10  # a small file...
    # ...whose header is made to lie: the central directory says 10 bytes.
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as z:
        info = z.infolist()[0]
    real = info.file_size.to_bytes(4, "little")
    fake = (10).to_bytes(4, "little")
    assert data.count(real) >= 2
    archive.write_bytes(bytes(data).replace(real, fake))
    with zipfile.ZipFile(archive) as z:
        assert z.infolist()[0].file_size == 10
    with pytest.raises(ArchiveError) as refused:
        extract_zip(archive, tmp_path / "out", max_bytes=1 << 20, max_files=10)
    # zipfile itself stops at the declared size (a CRC mismatch: corrupt), or the limit
    # stops it: either way nothing near 4 MiB is written.
    assert "limit" in str(refused.value) or "corrupt" in str(refused.value)
    written = sum(p.stat().st_size for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written <= 1 << 20


def test_content_over_the_limit_is_refused_while_writing(tmp_path):
    archive = make_zip(tmp_path / "big.zip", [(f"top/f{i}", b"\0" * (300 << 10)) for i in range(5)])
    with pytest.raises(ArchiveError, match="limit of 1048576 bytes"):
        extract_zip(archive, tmp_path / "out", max_bytes=1 << 20, max_files=100)
    written = sum(p.stat().st_size for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert written <= 1 << 20


def test_too_many_entries_are_refused(tmp_path):
    archive = make_zip(tmp_path / "many.zip", [(f"f{i}", b"") for i in range(11)])
    with pytest.raises(ArchiveError, match="11 entries, over the limit 10"):
        extract_zip(archive, tmp_path / "out", max_bytes=1 << 20, max_files=10)


@pytest.mark.filterwarnings("ignore:Duplicate name")
def test_duplicate_entries_and_files_used_as_folders_are_refused(tmp_path):
    twice = make_zip(tmp_path / "twice.zip", [("a", b"1"), ("a", b"2")])
    with pytest.raises(ArchiveError, match="twice"):
        extract_zip(twice, tmp_path / "out1", **LIMITS)
    folder = make_zip(tmp_path / "folder.zip", [("a", b"1"), ("a/b", b"2")])
    with pytest.raises(ArchiveError, match="as a folder"):
        extract_zip(folder, tmp_path / "out2", **LIMITS)


def test_not_a_zip_and_a_non_empty_destination(tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"not a zip at all")
    with pytest.raises(ArchiveError, match="not a readable zip"):
        extract_zip(junk, tmp_path / "out", **LIMITS)
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    with pytest.raises(ArchiveError, match="not empty"):
        extract_zip(make_zip(tmp_path / "a.zip", [("f", b"")]), full, **LIMITS)


def test_member_names():
    assert check_member_name("a/b/c.txt") == ["a", "b", "c.txt"]
    assert check_member_name("dir/") == ["dir"]
    for bad in ("", "..", "a/../b", "/x", "a\\b", "a\x7fb", "a\x85b", "x" * 300):
        with pytest.raises(ArchiveError):
            check_member_name(bad)
