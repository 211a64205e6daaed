"""Where ``%carmin results ID --to DIR`` puts files, and how, without trusting names.

Why a module: result names come from the platform (and from the tools it ran), so they
are hostile input landing in the user's home. Files go into a folder this call creates,
``DIR/<execution id>`` (``-2``, ``-3`` ... when taken), so results never mix with, nor
replace, what was there; each name is made harmless (`safe_local_name`: no dotfile such
as ``.bashrc`` or ``.ipython``, no control character, ``\\`` or ``/``) and unique ignoring
case; each file is downloaded to a temporary name then hard-linked to its own name,
which fails rather than replaces when something appeared there meanwhile; archives are
unpacked by `extract_archive` into a folder it creates beside them (an archive refused
is kept as a file, and said). Files on other hosts (a returned URL) are fetched without
the platform's credentials (the client's rule).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path as LocalPath
from typing import Any, Protocol

from egi_hub.carmin.archives import ArchiveError, extract_archive
from egi_hub.carmin.errors import CarminError
from egi_hub.carmin.magics.views import TextBlock, Throttle
from egi_hub.carmin.models import Path
from egi_hub.names import CONTROL_CHARS

__all__ = [
    "ARCHIVE_SUFFIXES",
    "Saved",
    "UniqueNames",
    "fetch_new",
    "new_folder",
    "safe_local_name",
    "save_results",
]

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")
MAX_LOCAL_NAME = 200  # bytes of a local file name (file systems allow 255)
_UNSAFE_IN_NAME = re.compile(f"[{CONTROL_CHARS}\\\\/]")


def _short_line(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def safe_local_name(name: str, fallback: str = "result") -> str:
    """``name`` as one harmless local file name: control characters, ``\\`` and ``/``
    become ``_``, a leading ``.`` becomes ``_`` (no dotfile: ``.bashrc``, ``.ipython``),
    what cannot be encoded is replaced, and it is cut to `MAX_LOCAL_NAME` bytes keeping
    its suffix."""
    name = _UNSAFE_IN_NAME.sub("_", name.strip())
    name = name.encode("utf-8", "replace").decode("utf-8")
    if name.startswith("."):
        name = "_" + name[1:]
    if not name.strip("_ "):
        name = fallback
    if len(name.encode()) > MAX_LOCAL_NAME:
        stem, dot, suffix = name.rpartition(".")
        suffix = dot + suffix if dot and len(suffix.encode()) < 20 else ""
        stem = name[: len(name) - len(suffix)]
        room = MAX_LOCAL_NAME - len(suffix.encode())
        stem = stem.encode()[:room].decode("utf-8", "ignore")
        name = stem + suffix
    return name


class UniqueNames:
    """Local names for one ``results --to``: safe, and unique ignoring case (``A.txt``
    and ``a.txt`` are one file on some disks): a taken name becomes ``2-name`` ..."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def claim(self, name: str, suffix: str = "") -> str:
        base = safe_local_name(name)
        candidate = base
        if candidate.casefold() in self.used and suffix:
            candidate = safe_local_name(base + suffix)
        n = 1
        while candidate.casefold() in self.used:
            n += 1
            candidate = safe_local_name(f"{n}-{base}")
        self.used.add(candidate.casefold())
        return candidate


def new_folder(parent: LocalPath, identifier: str) -> LocalPath:
    """A folder this call creates in ``parent``, named after the execution
    (``ID``, else ``ID-2``, ...): results never mix with (nor replace) files already
    there."""
    base = safe_local_name(identifier, "results")
    for n in range(1, 1000):
        folder = parent / (base if n == 1 else f"{base}-{n}")
        try:
            folder.mkdir(mode=0o755)
        except FileExistsError:
            continue
        return folder
    raise CarminError(None, None, f"too many folders named {base}-N in {parent}")


def fetch_new(client: _Downloader, result: Path, dest: LocalPath, progress: Any) -> None:
    """Download ``result`` to ``dest``, a name that must not exist yet: the bytes go to a
    temporary name, then are linked in place (an existing file is never replaced)."""
    temporary = dest.with_name(f".{secrets.token_hex(6)}.{dest.name}")
    client.download(result, temporary, progress=progress)
    try:
        try:
            os.link(temporary, dest)
        except FileExistsError:
            raise CarminError(None, None, f"{dest} appeared meanwhile; not replacing it") from None
        except OSError:  # a file system without hard links: claim the name, then rename
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            os.close(fd)
            os.replace(temporary, dest)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


def _strip_archive_suffix(name: str) -> str:
    lower = name.lower()
    for suffix in sorted(ARCHIVE_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name + ".contents"


class _Downloader(Protocol):
    def download(self, source: Path, dest: LocalPath, *, progress: Any = None) -> Any: ...


class _Board(Protocol):
    def update(self, view: Any) -> None: ...


@dataclass
class Saved:
    """What one ``results --to`` did: the folder it made, the files written (archives
    and what they held), and the archives refused (one line each)."""

    folder: LocalPath
    written: list[LocalPath] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def save_results(
    client: _Downloader, results: list[Path], to: LocalPath, identifier: str, board: _Board
) -> Saved:
    """Download ``results`` (the files, not folders) of execution ``identifier`` into a
    new folder in ``to`` (made if missing), unpacking archives; progress on ``board``."""
    parent = to.expanduser()
    parent.mkdir(parents=True, exist_ok=True)  # the user's own folder: it may exist
    saved = Saved(new_folder(parent, identifier))
    names = UniqueNames()
    for result in results:
        if result.is_directory:
            continue
        dest = saved.folder / names.claim(result.name)
        show = Throttle(lambda text: board.update(TextBlock(text)), f"downloading {dest.name}")
        fetch_new(client, result, dest, show)
        saved.written.append(dest)
        if dest.name.lower().endswith(ARCHIVE_SUFFIXES):
            target = saved.folder / names.claim(_strip_archive_suffix(dest.name), ".contents")
            try:
                unpacked = extract_archive(dest, target)
            except ArchiveError as e:
                saved.refused.append(f"{dest.name} not unpacked: {e}")
                continue
            saved.written.extend(target / n for n in unpacked if (target / n).is_file())
    lines = [f"wrote {len(saved.written)} file(s) in {saved.folder}:"]
    lines += [f"  {_short_line(str(p.relative_to(saved.folder)))}" for p in saved.written]
    lines += [_short_line(r) for r in saved.refused]
    board.update(TextBlock("\n".join(lines)))
    return saved
