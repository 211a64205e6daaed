"""Unpacking a pipeline's results (tar or zip) without trusting the archive.

Why not ``extractall``: results come from a remote platform and the tools it ran. An
archive member could be absolute, climb out with ``..``, be a link pointing outside,
a device file, or expand to fill the disk. `extract_archive` reads the whole member list
first and refuses (with one line naming the member) absolute names, ``..``/empty
segments, control characters, device files and FIFOs, and more members than allowed;
then writes files and folders (never through a symlink: files are opened with
``O_NOFOLLOW`` under folders checked to be real and inside), counting the bytes actually
written against ``max_bytes``; links come last, and are kept only if, once all are in
place, each resolves inside the destination. Hard links become copies. Modes keep the
owner's execute bit only. On any refusal, what this call wrote is removed again.
Non-ASCII names are fine (zip names without the UTF-8 flag are read as cp437, as zip
says).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from egi_hub.carmin.errors import CarminError
from egi_hub.names import CONTROL

__all__ = ["ArchiveError", "extract_archive"]

MAX_BYTES = 20 << 30
MAX_MEMBERS = 100_000
MAX_NAME = 4096


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
            target = archive.read(info)[:MAX_NAME].decode("utf-8", "replace")
            yield _Member(name, "symlink", 0, target=target)
        elif kind in (0, 0o100000):
            yield _Member(name, "file", unix & 0o7777, open=lambda i=info: archive.open(i))
        else:
            raise ArchiveError(f"archive member {info.filename[:80]!r}: a device or FIFO, refused")


def _inside(root: str, path: str) -> bool:
    return path == root or path.startswith(root + os.sep)


class _Writer:
    def __init__(self, dest: Path, max_bytes: int) -> None:
        self.root = os.path.realpath(dest)
        self.max_bytes = max_bytes
        self.written = 0
        self.created: list[str] = []  # in creation order, removed in reverse on failure

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
                os.mkdir(current, 0o755)
                self.created.append(current)
        return current

    def file(self, name: str, source: IO[bytes], mode: int) -> str:
        parent, _, base = name.rpartition("/")
        folder = self.folder(parent)
        path = os.path.join(folder, base)
        if os.path.isdir(path) and not os.path.islink(path):
            raise ArchiveError(f"archive member {name[:80]!r}: a folder is in the way")
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(path, flags, 0o700 if mode & 0o100 else 0o600)
        except OSError:
            raise ArchiveError(f"archive member {name[:80]!r}: cannot write it there") from None
        self.created.append(path)
        with os.fdopen(fd, "wb") as out:
            while chunk := source.read(1 << 20):
                self.written += len(chunk)
                if self.written > self.max_bytes:
                    raise ArchiveError(f"the archive expands to more than {self.max_bytes} bytes")
                out.write(chunk)
        os.chmod(path, 0o755 if mode & 0o100 else 0o644)
        return path

    def undo(self) -> None:
        for path in reversed(self.created):
            with contextlib.suppress(OSError):
                if os.path.isdir(path) and not os.path.islink(path):
                    os.rmdir(path)
                else:
                    os.unlink(path)


def extract_archive(
    path: str | os.PathLike[str],
    dest: str | os.PathLike[str],
    *,
    max_bytes: int = MAX_BYTES,
    max_members: int = MAX_MEMBERS,
) -> list[str]:
    """Unpack the tar (any compression) or zip at ``path`` into the folder ``dest``
    (made if missing); the names written, relative. `ArchiveError` when refused."""
    source, target = Path(path), Path(dest)
    with contextlib.ExitStack() as stack:
        if zipfile.is_zipfile(source):
            archive_zip = stack.enter_context(zipfile.ZipFile(source))
            reader: Iterator[_Member] = _zip_members(archive_zip)
        else:
            try:
                archive_tar = stack.enter_context(tarfile.open(source, "r:*"))
            except (tarfile.TarError, OSError) as e:
                raise ArchiveError(f"{source.name}: not a tar or zip archive ({e})") from None
            reader = _tar_members(archive_tar)
        members: list[_Member] = []
        try:
            for member in reader:
                members.append(member)
                if len(members) > max_members:
                    raise ArchiveError(f"the archive has more than {max_members} members")
        except (tarfile.TarError, zipfile.BadZipFile, EOFError) as e:
            raise ArchiveError(f"{source.name}: a damaged archive ({e})") from None
        files = {m.name for m in members if m.kind == "file"}
        for m in members:
            if m.kind == "hardlink" and m.target not in files:
                raise ArchiveError(f"archive member {m.name[:80]!r}: links to no earlier file")
            if m.kind == "symlink":
                _check_symlink(m)
        target.mkdir(parents=True, exist_ok=True)
        writer = _Writer(target, max_bytes)
        try:
            _write_all(writer, members)
        except BaseException:
            writer.undo()
            raise
    return [m.name for m in members if m.name]


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
            except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
                if isinstance(e, ArchiveError):
                    raise
                raise ArchiveError(f"archive member {m.name[:80]!r}: unreadable ({e})") from None
    for m in members:
        if m.kind == "hardlink":
            with open(writer.path(m.target), "rb") as data:
                writer.file(m.name, data, 0o644)
    links = []
    for m in members:
        if m.kind == "symlink":
            parent, _, base = m.name.rpartition("/")
            link = os.path.join(writer.folder(parent), base)
            if os.path.lexists(link):
                if os.path.isdir(link) and not os.path.islink(link):
                    raise ArchiveError(f"archive member {m.name[:80]!r}: a folder is in the way")
                os.unlink(link)
            os.symlink(m.target, link)
            writer.created.append(link)
            links.append((m.name, link))
    for name, link in links:  # all in place: none may lead outside, through any other
        if not _inside(writer.root, os.path.realpath(link)):
            raise ArchiveError(f"archive member {name[:80]!r}: a link pointing outside, refused")
