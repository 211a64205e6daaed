"""egi_hub.carmin.archives: hostile tar and zip results are refused, nothing left behind."""

from __future__ import annotations

import gzip
import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from egi_hub.carmin import ArchiveError, archives, extract_archive


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


def test_an_existing_destination_is_never_merged_into_nor_cleaned(tmp_path):
    # the review's case: a member named like the user's file, then a refusal whose
    # clean-up used to delete the user's own file
    dest = tmp_path / "work"
    dest.mkdir()
    (dest / "thesis.ipynb").write_text("months of work")
    (dest / "out").symlink_to(tmp_path)
    archive = make_tar(
        tmp_path / "w.tar",
        [("file", "thesis.ipynb", b""), ("sym", "d/a", ".."), ("sym", "x", "d/a/..")],
        "w",
    )
    with pytest.raises(ArchiveError, match="already exists"):
        extract_archive(archive, dest)
    assert sorted(p.name for p in dest.iterdir()) == ["out", "thesis.ipynb"]
    assert (dest / "thesis.ipynb").read_text() == "months of work"
    # into a new folder: the chain of links is refused and the folder removed whole
    with pytest.raises(ArchiveError, match="pointing outside"):
        extract_archive(archive, tmp_path / "fresh")
    assert not os.path.lexists(tmp_path / "fresh")


def test_size_limit_counts_bytes_written_and_cleans_up(tmp_path):
    archive = make_tar(
        tmp_path / "big.tar.gz", [("file", "a.bin", b"\0" * 5000), ("file", "b.bin", b"\0" * 5000)]
    )
    dest = tmp_path / "dest"
    with pytest.raises(ArchiveError, match="more than 8000 bytes"):
        extract_archive(archive, dest, max_bytes=8000)
    assert not dest.exists()


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


def test_names_given_twice_case_folded_or_under_a_file_are_refused(tmp_path):
    for members in (
        [("file", "Report.txt", b"a"), ("file", "report.TXT", b"b")],
        [("file", "f", b"A"), ("sym", "f", "."), ("hard", "g", "f")],
        [("file", "a", b"x"), ("file", "a/b", b"y")],
        [("file", "a/b", b"y"), ("file", "a", b"x")],
    ):
        dest = tmp_path / "dest"
        with pytest.raises(ArchiveError, match=r"given twice|under a file"):
            extract_archive(make_tar(tmp_path / "d.tar", members, "w"), dest)
        assert not dest.exists()


def test_the_disk_free_space_caps_what_is_written(tmp_path, monkeypatch):
    archive = make_tar(tmp_path / "a.tar", [("file", "a.bin", b"\0" * 5000)], "w")
    real = archives.shutil.disk_usage

    def small(path):
        usage = real(path)
        return usage._replace(free=archives.DISK_MARGIN + 4000)

    monkeypatch.setattr(archives.shutil, "disk_usage", small)
    with pytest.raises(ArchiveError, match=r"more than 4000 bytes .*free space"):
        extract_archive(archive, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_a_zip_symlink_member_is_never_read_whole(tmp_path):
    # 64 MiB of "a" deflate to ~64 KiB; the link target is read at most MAX_NAME + 1 bytes
    path = tmp_path / "s.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo("link")
        info.external_attr = 0o120777 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with z.open(info, "w") as f:
            for _ in range(64):
                f.write(b"a" * (1 << 20))
    opened: list[int] = []
    real_open = zipfile.ZipFile.open

    def counting_open(self, name, *args, **kwargs):
        handle = real_open(self, name, *args, **kwargs)
        real_read = handle.read

        def read(n=-1):
            opened.append(n)
            return real_read(n)

        handle.read = read
        return handle

    zipfile.ZipFile.open = counting_open
    try:
        with pytest.raises(ArchiveError, match="too long a link"):
            extract_archive(path, tmp_path / "dest")
    finally:
        zipfile.ZipFile.open = real_open
    assert opened == [archives.MAX_NAME + 1]


@pytest.mark.parametrize("kind", ["L", "K", "x", "g"])
def test_tar_header_records_claiming_huge_sizes_are_refused_before_parsing(tmp_path, kind):
    path = tmp_path / "l.tar.gz"
    with gzip.open(path, "wb", compresslevel=1) as g:
        info = tarfile.TarInfo("././@LongLink")
        info.type = kind.encode()
        info.size = 1 << 30  # claims 1 GiB; tarfile would read it whole
        g.write(info.tobuf(format=tarfile.GNU_FORMAT))
        g.write(b"a" * (1 << 20))
    parsed: list[str] = []
    monkey = pytest.MonkeyPatch()
    monkey.setattr(tarfile, "open", lambda *a, **k: parsed.append("tarfile") or None)
    try:
        with pytest.raises(ArchiveError, match="header record over 65536 bytes"):
            extract_archive(path, tmp_path / "dest")
    finally:
        monkey.undo()
    assert parsed == [] and not (tmp_path / "dest").exists()


def test_a_pax_header_over_the_limit_is_refused(tmp_path):
    path = tmp_path / "p.tar"
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("f")
        info.pax_headers = {"comment": "x" * 100_000}
        tar.addfile(info, io.BytesIO(b""))
    with pytest.raises(ArchiveError, match="header record"):
        extract_archive(path, tmp_path / "dest")
    small = tmp_path / "ok.tar"
    with tarfile.open(small, "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("é" * 120)  # a long non-ASCII name: a small pax record
        info.size = 1
        tar.addfile(info, io.BytesIO(b"z"))
    assert extract_archive(small, tmp_path / "ok") == ["é" * 120]


def test_zip_central_directory_over_the_member_limit_is_refused_before_reading(tmp_path):
    archive = make_zip(tmp_path / "m.zip", [(f"f{i}", b"", 0o100644) for i in range(5)])
    monkey = pytest.MonkeyPatch()
    monkey.setattr(zipfile, "ZipFile", lambda *a, **k: pytest.fail("central directory read"))
    try:
        with pytest.raises(ArchiveError, match="more than 3 members"):
            extract_archive(archive, tmp_path / "dest", max_members=3)
    finally:
        monkey.undo()


def _zip_bytes(tmp_path: Path, compression: int = zipfile.ZIP_STORED) -> bytearray:
    path = tmp_path / "src.zip"
    with zipfile.ZipFile(path, "w", compression) as z:
        for n in range(3):
            z.writestr(f"a{n}.txt", os.urandom(2000) + b"x" * 5000)
    return bytearray(path.read_bytes())


def _encrypted(b: bytearray) -> bytearray:
    b[b.find(b"PK\x03\x04") + 6] |= 1
    b[b.find(b"PK\x01\x02") + 8] |= 1
    return b


def _method_99(b: bytearray) -> bytearray:
    b[b.find(b"PK\x03\x04") + 8] = 99
    b[b.find(b"PK\x01\x02") + 10] = 99
    return b


def _bad_deflate(b: bytearray) -> bytearray:
    start = b.find(b"PK\x03\x04")
    for k in range(60, 400):
        b[start + k] ^= 0x55
    return b


def _bad_central(b: bytearray) -> bytearray:
    at = b.find(b"PK\x01\x02")
    b[at : at + 4] = b"XXXX"
    return b


@pytest.mark.parametrize(
    "damage, compression, words",
    [
        (_encrypted, zipfile.ZIP_STORED, "encrypted"),
        (_method_99, zipfile.ZIP_STORED, "compression method"),
        (_bad_deflate, zipfile.ZIP_DEFLATED, "unreadable"),
        (_bad_central, zipfile.ZIP_STORED, "damaged or unsupported"),
    ],
)
def test_damaged_encrypted_or_unsupported_zips_are_one_line(tmp_path, damage, compression, words):
    path = tmp_path / "bad.zip"
    path.write_bytes(damage(_zip_bytes(tmp_path, compression)))
    with pytest.raises(ArchiveError, match=words) as info:
        extract_archive(path, tmp_path / "dest")
    assert "\n" not in str(info.value) and not (tmp_path / "dest").exists()


def test_a_damaged_compressed_tar_fails_its_checksum_before_writing(tmp_path):
    path = tmp_path / "c.tar.gz"
    with tarfile.open(path, "w:gz", compresslevel=0) as tar:
        data = os.urandom(100_000)
        info = tarfile.TarInfo("f")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    damaged = bytearray(path.read_bytes())
    for k in range(2000, 2100):
        damaged[k] ^= 0x55
    path.write_bytes(damaged)
    with pytest.raises(ArchiveError, match=r"CRC|damaged") as info:
        extract_archive(path, tmp_path / "dest")
    assert "\n" not in str(info.value) and not (tmp_path / "dest").exists()
