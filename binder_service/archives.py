"""Safe extraction of the archives Binder fetches (a GitHub release that Zenodo archived
arrives as one zip of the repository).

An archive is hostile input: its entry names may climb out of the destination (``..``,
absolute paths, backslashes that Windows tools read as separators), carry control
characters, or be symlinks and device files (in a zip, the Unix mode sits in the high
bits of an entry's external attributes); its headers may lie about sizes (a zip bomb
declares a few bytes and inflates to gigabytes). So every name is checked before
anything is written, only regular files and directories are made (never a symlink,
never a special file, never a setuid bit), files are opened exclusively without
following links, and the size limit counts the bytes actually written, not what the
headers say. A failure raises `ArchiveError` with a one-line reason; the caller removes
the half-extracted destination (the fetch worker extracts into a scratch directory that
only becomes the content on success).

A single top-level folder is unwrapped, as repo2docker does (``repo-1.0/...`` becomes
the content's root), because that is how GitHub's release zips are laid out.
"""

from __future__ import annotations

import os
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path

from egi_hub.names import CONTROL as _CONTROL

__all__ = ["ArchiveError", "Extracted", "check_member_name", "extract_zip"]

_DRIVE = re.compile(r"^[A-Za-z]:")
MAX_NAME = 4096  # PATH_MAX: longer names cannot be made anyway
MAX_SEGMENT = 255  # NAME_MAX
CHUNK = 1 << 16


class ArchiveError(Exception):
    """An archive that cannot be extracted safely; ``str()`` is the one-line reason."""


@dataclass(frozen=True)
class Extracted:
    """What an extraction wrote: regular files, their bytes, and the folder unwrapped
    (empty when the archive had more than one top-level entry)."""

    files: int
    bytes: int
    unwrapped: str = ""


def check_member_name(name: str, what: str = "archive entry") -> list[str]:
    """The path segments of a relative member name (a zip entry, a record's file key),
    or `ArchiveError` saying why the name is refused: empty, too long, absolute (``/``,
    a drive letter), with a backslash, a control character, or a ``.``/``..``/empty
    segment. A trailing ``/`` (a directory entry) is allowed and dropped."""
    shown = repr(name[:80])
    if not name:
        raise ArchiveError(f"an {what} has an empty name")
    if _CONTROL.search(name):
        raise ArchiveError(f"the {what} {shown} has control characters in its name")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME:
        raise ArchiveError(f"the {what} {shown} has a name longer than {MAX_NAME} bytes")
    if "\\" in name:
        raise ArchiveError(f"the {what} {shown} has a backslash in its name")
    if name.startswith("/") or _DRIVE.match(name):
        raise ArchiveError(f"the {what} {shown} has an absolute path")
    segments = name.removesuffix("/").split("/")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise ArchiveError(f"the {what} {shown} has an empty, '.' or '..' path segment")
        if len(segment.encode("utf-8", "surrogateescape")) > MAX_SEGMENT:
            raise ArchiveError(f"the {what} {shown} has a path segment over {MAX_SEGMENT} bytes")
    return segments


def _kind(info: zipfile.ZipInfo) -> str:
    """``"dir"`` or ``"file"``; `ArchiveError` for a symlink or a special file. Zips made
    on Unix keep ``st_mode`` in the high 16 bits of the external attributes (zero
    otherwise: then the trailing ``/`` says what it is)."""
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    name = repr(info.filename[:80])
    if kind == stat.S_IFLNK:
        raise ArchiveError(f"the archive entry {name} is a symbolic link (refused)")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise ArchiveError(f"the archive entry {name} is a device or special file (refused)")
    if kind == stat.S_IFDIR or info.filename.endswith("/"):
        return "dir"
    return "file"


def _common_folder(entries: list[tuple[list[str], str]]) -> str:
    """The single top-level folder all entries live in, or ``""``."""
    tops = {segments[0] for segments, _ in entries}
    if len(tops) != 1:
        return ""
    top = tops.pop()
    for segments, kind in entries:
        if len(segments) == 1 and kind != "dir":
            return ""  # a top-level file of that name: nothing to unwrap
    return top


def extract_zip(
    path: str | os.PathLike, dest: str | os.PathLike, *, max_bytes: int, max_files: int,
    unwrap: bool = True,
) -> Extracted:  # fmt: skip
    """Extract the zip at ``path`` into the directory ``dest`` (made if missing, must be
    empty), refusing hostile entries (see the module), more than ``max_files`` entries,
    or more than ``max_bytes`` of content as actually inflated. With ``unwrap``, a single
    top-level folder becomes ``dest`` itself."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if any(dest.iterdir()):
        raise ArchiveError("the extraction directory is not empty")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise ArchiveError(f"the archive is not a readable zip file ({e})") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > max_files:
            raise ArchiveError(f"the archive has {len(infos)} entries, over the limit {max_files}")
        entries: list[tuple[list[str], str]] = []
        seen: dict[tuple[str, ...], str] = {}
        for info in infos:
            segments = check_member_name(info.filename)
            kind = _kind(info)
            key = tuple(segments)
            if key in seen and (kind == "file" or seen[key] == "file"):
                raise ArchiveError(f"the archive has the entry {info.filename[:80]!r} twice")
            seen[key] = kind
            entries.append((segments, kind))
        for segments, _ in entries:  # a file cannot also be a folder on the way to another
            for i in range(1, len(segments)):
                if seen.get(tuple(segments[:i])) == "file":
                    shown = "/".join(segments[:i])[:80]
                    raise ArchiveError(f"the archive uses the file {shown!r} as a folder")
        top = _common_folder(entries) if unwrap else ""
        files = written = 0
        for info, (segments, kind) in zip(infos, entries, strict=True):
            if top:
                segments = segments[1:]
                if not segments:
                    continue
            target = dest.joinpath(*segments)
            if kind == "dir":
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            files += 1
            written = _write_member(archive, info, target, written, max_bytes)
    return Extracted(files, written, top)


def _write_member(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, written: int, max_bytes: int
) -> int:
    """Write one regular file, counting inflated bytes against ``max_bytes``; the new
    running total."""
    executable = bool((info.external_attr >> 16) & stat.S_IXUSR)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(target, flags, 0o755 if executable else 0o644)
    except FileExistsError:
        raise ArchiveError(f"the archive has the entry {info.filename[:80]!r} twice") from None
    try:
        with os.fdopen(fd, "wb") as out, archive.open(info) as member:
            while chunk := member.read(CHUNK):
                written += len(chunk)
                if written > max_bytes:
                    raise ArchiveError(
                        f"the archive inflates to more than the limit of {max_bytes} bytes"
                    )
                out.write(chunk)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError) as e:
        raise ArchiveError(f"the archive entry {info.filename[:80]!r} is corrupt ({e})") from None
    except RuntimeError as e:  # an encrypted entry
        raise ArchiveError(
            f"the archive entry {info.filename[:80]!r} is unreadable ({e})"
        ) from None
    return written
