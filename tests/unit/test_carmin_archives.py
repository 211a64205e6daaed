"""egi_hub.carmin.archives: hostile tar and zip results are refused, nothing left behind."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from egi_hub.carmin import ArchiveError, extract_archive


def make_tar(path: Path, members: list[tuple[str, str, bytes | str]], mode: str = "w:gz") -> Path:
    """members: (kind, name, data or link target); kind in file, dir, sym, hard, fifo, chr."""
    with tarfile.open(path, mode) as tar:
        for kind, name, data in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = {
                "dir": tarfile.DIRTYPE,
                "sym": tarfile.SYMTYPE,
                "hard": tarfile.LNKTYPE,
                "fifo": tarfile.FIFOTYPE,
                "chr": tarfile.CHRTYPE,
            }[kind]
            if kind in ("sym", "hard"):
                info.linkname = data
            tar.addfile(info)
    return path


def make_zip(path: Path, members: list[tuple[str, bytes, int]]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data, unix_mode in members:
            info = zipfile.ZipInfo(name)
            info.external_attr = unix_mode << 16
            z.writestr(info, data)
    return path


def test_good_tar_with_non_ascii_names_and_internal_links(tmp_path):
    archive = make_tar(
        tmp_path / "r.tar.gz",
        [
            ("dir", "out", b""),
            ("file", "out/résultat-ü.txt", b"hello"),
            ("file", "out/sub/data.bin", b"\x00" * 10),
            ("sym", "out/link", "résultat-ü.txt"),
            ("sym", "out/sub/up", "../résultat-ü.txt"),
            ("hard", "out/copy", "out/sub/data.bin"),
        ],
    )
    dest = tmp_path / "dest"
    names = extract_archive(archive, dest)
    assert "out/résultat-ü.txt" in names
    assert (dest / "out" / "résultat-ü.txt").read_bytes() == b"hello"
    assert (dest / "out" / "link").read_bytes() == b"hello"
    assert (dest / "out" / "sub" / "up").read_bytes() == b"hello"
    assert (dest / "out" / "copy").read_bytes() == b"\x00" * 10
    assert not (dest / "out" / "copy").is_symlink()


@pytest.mark.parametrize(
    "members, words",
    [
        ([("file", "../evil.txt", b"x")], "'..'"),
        ([("file", "a/../../evil.txt", b"x")], "'..'"),
        ([("file", "/etc/evil.txt", b"x")], "absolute"),
        ([("sym", "link", "/etc/passwd")], "absolute"),
        ([("sym", "link", "../../outside")], "pointing outside"),
        ([("sym", "a/link", "../../x")], "pointing outside"),
        ([("fifo", "pipe", b"")], "device or FIFO"),
        ([("chr", "dev", b"")], "device or FIFO"),
        ([("hard", "h", "/etc/passwd")], "absolute"),
        ([("hard", "h", "missing")], "no earlier file"),
        ([("file", "a\x1bb", b"x")], "control character"),
    ],
)
def test_hostile_tar_members_are_refused_before_writing(tmp_path, members, words):
    archive = make_tar(tmp_path / "bad.tar", [("file", "ok.txt", b"fine"), *members], "w")
    dest = tmp_path / "dest"
    with pytest.raises(ArchiveError, match=words) as info:
        extract_archive(archive, dest)
    assert "\n" not in str(info.value)
    assert not (dest / "ok.txt").exists()
    assert not (tmp_path / "evil.txt").exists()


def test_links_escaping_through_other_links_are_undone(tmp_path):
    # each link looks inside on its own; together "b/../x" leaves the destination
    archive = make_tar(
        tmp_path / "chain.tar",
        [("dir", "deep", b""), ("sym", "b", "."), ("sym", "deep/c", "../b/../escape")],
        "w",
    )
    dest = tmp_path / "dest"
    with pytest.raises(ArchiveError, match="pointing outside"):
        extract_archive(archive, dest)
    assert not os.path.lexists(dest / "b") and not os.path.lexists(dest / "deep" / "c")


def test_existing_symlink_in_destination_is_not_followed(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "out").symlink_to(outside)
    (dest / "f.txt").symlink_to(outside / "f.txt")
    for members in ([("file", "out/x.txt", b"x")], [("file", "f.txt", b"x")]):
        archive = make_tar(tmp_path / "a.tar", members, "w")
        with pytest.raises(ArchiveError):
            extract_archive(archive, dest)
    assert list(outside.iterdir()) == []


def test_size_limit_counts_bytes_written_and_cleans_up(tmp_path):
    archive = make_tar(
        tmp_path / "big.tar.gz", [("file", "a.bin", b"\0" * 5000), ("file", "b.bin", b"\0" * 5000)]
    )
    dest = tmp_path / "dest"
    with pytest.raises(ArchiveError, match="more than 8000 bytes"):
        extract_archive(archive, dest, max_bytes=8000)
    assert list(dest.iterdir()) == []


def test_member_count_limit(tmp_path):
    archive = make_tar(tmp_path / "many.tar", [("file", f"f{i}", b"") for i in range(5)], "w")
    with pytest.raises(ArchiveError, match="more than 3 members"):
        extract_archive(archive, tmp_path / "dest", max_members=3)


def test_zip_good_and_hostile(tmp_path):
    good = make_zip(
        tmp_path / "g.zip",
        [("dir/", b"", 0o040755), ("dir/ça.txt", b"oui", 0o100644), ("run.sh", b"#!", 0o100755)],
    )
    dest = tmp_path / "dest"
    extract_archive(good, dest)
    assert (dest / "dir" / "ça.txt").read_text() == "oui"
    assert stat.S_IMODE((dest / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "dir" / "ça.txt").stat().st_mode) == 0o644
    for members, words in [
        ([("../up.txt", b"x", 0o100644)], "'..'"),
        ([("/abs.txt", b"x", 0o100644)], "absolute"),
        ([("C:/win.txt", b"x", 0o100644)], "absolute"),
        ([("l", b"../../etc/passwd", 0o120777)], "pointing outside"),
        ([("dev", b"", 0o020644)], "device or FIFO"),
    ]:
        bad = make_zip(tmp_path / "b.zip", [("fine.txt", b"x", 0o100644), *members])
        with pytest.raises(ArchiveError, match=words):
            extract_archive(bad, tmp_path / "dest2")
        assert not (tmp_path / "dest2" / "fine.txt").exists()
    assert not (tmp_path / "up.txt").exists()


def test_not_an_archive(tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"this is not an archive at all" * 10)
    with pytest.raises(ArchiveError, match="not a tar or zip archive"):
        extract_archive(junk, tmp_path / "dest")
