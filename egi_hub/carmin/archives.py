"""Unpacking a pipeline's results (tar or zip) without trusting the archive.

Why not ``extractall``: results come from a remote platform and the tools it ran. An
archive member could be absolute, climb out with ``..``, be a link pointing outside,
a device file, or expand to fill the disk or the memory. `extract_archive` unpacks into
a folder it creates itself (never merging into an existing one, so it can neither
replace nor, when it gives up, remove anything that was there). Before any member is
read it checks the archive's own declarations: raw tar headers for long names and pax
records (GNU ``L``/``K``, pax ``x``/``g``; tarfile would read them whole, whatever size
they claim) are refused above `MAX_HEADER`, a zip's central directory above the member
limit. Then it reads the whole member list and refuses (with one line naming the member)
absolute names, ``..``/empty segments, control characters, device files and FIFOs, names
given twice (case folded), and more members than allowed; then writes files and folders
(files created with ``O_EXCL|O_NOFOLLOW`` under folders it made), counting the bytes
actually written against the disk's free space less a margin; links come last, and are
kept only if, once all are in place, each resolves inside the destination. Hard links
become copies. Modes keep the owner's execute bit only. On any refusal the folder is
removed again. A damaged, encrypted or oddly compressed archive is one `ArchiveError`
line, never a traceback. Non-ASCII names are fine (zip names without the UTF-8 flag are
read as cp437, as zip says).
"""

from __future__ import annotations

import bz2
import contextlib
import gzip
import lzma
import os
import posixpath
import shutil
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from egi_hub.carmin.errors import CarminError
from egi_hub.names import CONTROL

__all__ = ["ArchiveError", "extract_archive", "space_for"]

MAX_MEMBERS = 100_000
MAX_NAME = 4096
MAX_HEADER = 64 << 10  # bytes of a tar long-name or pax header record
DISK_MARGIN = 256 << 20  # left free on the disk whatever the archive says
BLOCK = 512

#: What reading a damaged, encrypted or unsupported archive can raise, past the formats'
#: own errors: zipfile's RuntimeError (encrypted) and NotImplementedError (method),
#: the decompressors' errors, struct and value errors on mangled headers.
_READ_ERRORS = (
    tarfile.TarError,
    zipfile.BadZipFile,
    zipfile.LargeZipFile,
    EOFError,
    OSError,
    RuntimeError,
    NotImplementedError,
    zlib.error,
    lzma.LZMAError,
    struct.error,
    ValueError,
    UnicodeError,
)


class ArchiveError(CarminError):
    """An archive refused; ``str()`` is the one-line reason."""

    def __init__(self, message: str) -> None:
        super().__init__(None, None, message, "")

    def __str__(self) -> str:
        return self.message


@dataclass
class _Member:
    name: str  # normalised, relative, "/"-separated
    kind: str  # "file", "dir", "symlink", "hardlink"
    mode: int
    target: str = ""
    open: Callable[[], IO[bytes]] | None = None


def _clean(name: str) -> str:
    shown = repr(name[:80])
    if not name or len(name) > MAX_NAME:
        raise ArchiveError(f"archive member {shown}: empty or too long a name")
    if CONTROL.search(name) or "\\" in name:
        raise ArchiveError(f"archive member {shown}: control character or backslash in its name")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"archive member {shown}: absolute path refused")
    segments = [s for s in name.split("/") if s not in ("", ".")]
    if not segments:
        return ""
    if ".." in segments:
        raise ArchiveError(f"archive member {shown}: '..' in its path refused")
    return "/".join(segments)


def _tar_members(archive: tarfile.TarFile) -> Iterator[_Member]:
    for info in archive:
        name = _clean(info.name)
        if info.isdir():
            yield _Member(name, "dir", info.mode)
        elif info.isreg():
            yield _Member(name, "file", info.mode, open=lambda i=info: archive.extractfile(i))
        elif info.issym():
            yield _Member(name, "symlink", 0, target=info.linkname)
        elif info.islnk():
            yield _Member(name, "hardlink", 0, target=_clean(info.linkname))
        else:
            raise ArchiveError(f"archive member {info.name[:80]!r}: a device or FIFO, refused")


def _zip_members(archive: zipfile.ZipFile) -> Iterator[_Member]:
    for info in archive.infolist():
        name = _clean(info.filename)
        unix = info.external_attr >> 16
        kind = unix & 0o170000
        if info.is_dir() or kind == 0o040000:
            yield _Member(name, "dir", unix & 0o7777 or 0o755)
        elif kind == 0o120000:
            with archive.open(info) as data:  # never read whole: it may claim gigabytes
                raw = data.read(MAX_NAME + 1)
            if len(raw) > MAX_NAME:
                raise ArchiveError(f"archive member {info.filename[:80]!r}: too long a link")
            yield _Member(name, "symlink", 0, target=raw.decode("utf-8", "replace"))
        elif kind in (0, 0o100000):
            yield _Member(name, "file", unix & 0o7777, open=lambda i=info: archive.open(i))
        else:
            raise ArchiveError(f"archive member {info.filename[:80]!r}: a device or FIFO, refused")


def _open_decompressed(source: Path) -> IO[bytes]:
    """``source``'s bytes, decompressed when its magic says gzip, bzip2 or xz."""
    with open(source, "rb") as f:
        magic = f.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.open(source, "rb")
    if magic.startswith(b"BZh"):
        return bz2.open(source, "rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.open(source, "rb")
    return open(source, "rb")


def _tar_number(field: bytes) -> int | None:
    if field[:1] in (b"\x80", b"\xff"):  # base-256 (GNU); negative or huge: too big
        return None if field[:1] == b"\xff" else int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        return -1  # not a tar header: tarfile will say so


def _scan_tar_headers(source: Path, max_members: int) -> None:
    """Walk the raw headers (no member is read) and refuse a long-name or pax record
    over `MAX_HEADER`, or more than ``max_members`` headers; a compressed stream is read
    to its end, so a damaged one fails its checksum here, before anything is written."""
    with _open_decompressed(source) as stream:
        headers = 0
        while True:
            block = stream.read(BLOCK)
            if len(block) < BLOCK or block == b"\0" * BLOCK:
                while stream.read(1 << 20):  # to the end: a compressed stream's checksum
                    pass
                return
            size = _tar_number(block[124:136])
            if size is not None and size < 0:
                return  # not a header: tarfile's own parsing reports it
            kind = block[156:157]
            if kind in (b"L", b"K", b"x", b"g") and (size is None or size > MAX_HEADER):
                raise ArchiveError(
                    f"{source.name}: a tar header record over {MAX_HEADER} bytes, refused"
                )
            headers += 1
            if headers > 2 * max_members + 2:  # a member may take a header record too
                raise ArchiveError(f"the archive has more than {max_members} members")
            if size is None:
                return
            if kind not in (b"1", b"2", b"3", b"4", b"5", b"6"):
                skip = -(-size // BLOCK) * BLOCK
                while skip:
                    got = len(stream.read(min(skip, 1 << 20)))
                    if not got:
                        return
                    skip -= got


def _zip_entries(source: Path) -> int | None:
    """The member count a zip's end-of-central-directory record declares (None when not
    found: zipfile then says what is wrong)."""
    with open(source, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        start = max(0, size - (1 << 16) - 22)
        f.seek(start)
        tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < 22:
        return None
    entries = struct.unpack("<H", tail[at + 10 : at + 12])[0]
    locator = at - 20
    if entries == 0xFFFF and locator >= 0 and tail[locator : locator + 4] == b"PK\x06\x07":
        offset = struct.unpack("<Q", tail[locator + 8 : locator + 16])[0]
        with open(source, "rb") as f:
            f.seek(min(offset, size))
            record = f.read(56)
        if record[:4] == b"PK\x06\x06" and len(record) == 56:
            entries = struct.unpack("<Q", record[32:40])[0]
    return entries


def space_for(folder: str | os.PathLike[str], margin: int = DISK_MARGIN) -> int:
    """Bytes that may be written under ``folder``: the disk's free space less
    ``margin`` (0 when it cannot be known: then nothing may be written)."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return 0
    return max(0, free - margin)


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


class _Writer:
    def __init__(self, root: str, max_bytes: int) -> None:
        self.root = root
        self.max_bytes = max_bytes
        self.written = 0

    def path(self, name: str) -> str:
        return os.path.join(self.root, *name.split("/"))

    def folder(self, name: str) -> str:
        """The folder ``name`` made (with parents), checked real and inside."""
        current = self.root
        for segment in [s for s in name.split("/") if s]:
            current = os.path.join(current, segment)
            if os.path.islink(current):
                raise ArchiveError(f"archive member {name[:80]!r}: goes through a link, refused")
            if not os.path.isdir(current):
                try:
                    os.mkdir(current, 0o755)
                except OSError:
                    raise ArchiveError(
                        f"archive member {name[:80]!r}: a file is in the way"
                    ) from None
        return current

    def file(self, name: str, source: IO[bytes], mode: int) -> str:
        parent, _, base = name.rpartition("/")
        path = os.path.join(self.folder(parent), base)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags, 0o700 if mode & 0o100 else 0o600)
        except OSError:
            raise ArchiveError(f"archive member {name[:80]!r}: cannot write it there") from None
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(1 << 20):
                self.written += len(chunk)
                if self.written > self.max_bytes:
                    raise ArchiveError(
                        f"the archive expands to more than {self.max_bytes} bytes "
                        "(the disk's free space, less a margin)"
                    )
                out.write(chunk)
        os.chmod(path, 0o755 if mode & 0o100 else 0o644)
        return path

    def remove_all(self) -> None:
        """Remove the folder this call made, and all in it (links are not followed)."""
        shutil.rmtree(self.root, ignore_errors=True)


def extract_archive(
    path: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    max_bytes: int | None = None,
    max_members: int = MAX_MEMBERS,
) -> list[str]:
    """Unpack the tar (any compression) or zip at ``path`` into the folder ``dest``, which
    this call creates (its parent must exist; `ArchiveError` when ``dest`` exists);
    ``max_bytes`` (else the disk's free space less a margin) caps what is written. The
    names written, relative. `ArchiveError` when refused (``dest`` then removed)."""
    source, target = Path(path), Path(dest)
    try:
        return _extract(source, target, max_bytes, max_members)
    except ArchiveError:
        raise
    except RecursionError:
        raise ArchiveError(f"{source.name}: a damaged archive (nested too deep)") from None
    except _READ_ERRORS as e:
        raise ArchiveError(f"{source.name}: a damaged or unsupported archive ({_why(e)})") from None


def _why(error: BaseException) -> str:
    text = " ".join(str(error).split())[:120]
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _extract(source: Path, target: Path, max_bytes: int | None, max_members: int) -> list[str]:
    with contextlib.ExitStack() as stack:
        if zipfile.is_zipfile(source):
            entries = _zip_entries(source)
            if entries is not None and entries > max_members:
                raise ArchiveError(f"the archive has more than {max_members} members")
            archive_zip = stack.enter_context(zipfile.ZipFile(source))
            reader: Iterator[_Member] = _zip_members(archive_zip)
        else:
            _scan_tar_headers(source, max_members)
            try:
                archive_tar = stack.enter_context(tarfile.open(source, "r:*"))
            except (tarfile.TarError, OSError, EOFError) as e:
                raise ArchiveError(f"{source.name}: not a tar or zip archive ({_why(e)})") from None
            reader = _tar_members(archive_tar)
        members: list[_Member] = []
        for member in reader:
            members.append(member)
            if len(members) > max_members:
                raise ArchiveError(f"the archive has more than {max_members} members")
        _check_members(members)
        try:
            target.mkdir(mode=0o755)
        except FileExistsError:
            raise ArchiveError(f"{target} already exists; not unpacking into it") from None
        root = os.path.realpath(target)
        space = space_for(root)
        writer = _Writer(root, space if max_bytes is None else min(max_bytes, space))
        try:
            _write_all(writer, members)
        except BaseException:
            writer.remove_all()
            raise
    return [m.name for m in members if m.name]


def _check_members(members: list[_Member]) -> None:
    """Names given twice (case folded: they would be one file on some disks), a folder
    that is also a file, links to nothing or outside: refused before writing."""
    kinds: dict[str, str] = {}
    for m in members:
        if not m.name:
            continue
        key = m.name.casefold()
        parts = key.split("/")
        for i in range(1, len(parts)):
            prefix = "/".join(parts[:i])
            if kinds.setdefault(prefix, "dir") != "dir":
                raise ArchiveError(f"archive member {m.name[:80]!r}: under a file, refused")
        seen = kinds.get(key)
        if seen is not None and not (seen == "dir" and m.kind == "dir"):
            raise ArchiveError(f"archive member {m.name[:80]!r}: given twice, refused")
        kinds[key] = m.kind
    files = {m.name for m in members if m.kind == "file"}
    for m in members:
        if m.kind == "hardlink" and m.target not in files:
            raise ArchiveError(f"archive member {m.name[:80]!r}: links to no earlier file")
        if m.kind == "symlink":
            _check_symlink(m)


def _check_symlink(member: _Member) -> None:
    shown = repr(member.name[:80])
    if not member.target or member.target.startswith("/") or CONTROL.search(member.target):
        raise ArchiveError(f"archive member {shown}: a link to an absolute path, refused")
    parent = posixpath.dirname(member.name)
    resolved = posixpath.normpath(posixpath.join(parent, member.target))
    if resolved == ".." or resolved.startswith("../"):
        raise ArchiveError(f"archive member {shown}: a link pointing outside, refused")


def _write_all(writer: _Writer, members: list[_Member]) -> None:
    for m in members:
        if m.kind == "dir" and m.name:
            writer.folder(m.name)
        elif m.kind == "file":
            assert m.open is not None
            try:
                with m.open() as data:
                    writer.file(m.name, data, m.mode)
            except ArchiveError:
                raise
            except _READ_ERRORS as e:
                raise ArchiveError(
                    f"archive member {m.name[:80]!r}: unreadable ({_why(e)})"
                ) from None
    for m in members:
        if m.kind == "hardlink":
            flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
            with os.fdopen(os.open(writer.path(m.target), flags), "rb") as data:
                writer.file(m.name, data, 0o644)
    links = []
    for m in members:
        if m.kind == "symlink":
            parent, _, base = m.name.rpartition("/")
            link = os.path.join(writer.folder(parent), base)
            try:
                os.symlink(m.target, link)
            except OSError:
                raise ArchiveError(
                    f"archive member {m.name[:80]!r}: cannot link it there"
                ) from None
            links.append((m.name, link))
    for name, link in links:  # all in place: none may lead outside, through any other
        if not _inside(writer.root, os.path.realpath(link)):
            raise ArchiveError(f"archive member {name[:80]!r}: a link pointing outside, refused")
