"""The CARMIN stand-in's data area: platform paths (``/vip/Home/a.txt``) kept as files.

A platform path is absolute, slash-separated, and maps to the same path below one local
folder. Hostile paths are refused here, once, for every operation: ``.``/``..`` or empty
segments, control characters, and anything that resolves (through a symlink) outside
the folder. Writes stream to a temporary file beside the target and replace it at the
end, so a cut upload never leaves a half file under the name; directories download as a
gzip tarball built in a temporary file (so it has a length and serves ``Range``).
"""

from __future__ import annotations

import hashlib
import io
import mimetypes
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

CONTROL = {chr(c) for c in range(32)} | {"\x7f"}


class DataError(Exception):
    """A refused data operation: ``kind`` is one of bad_path, not_found, exists,
    not_directory, is_directory, no_parent, bad_archive, too_large."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class TooLarge(DataError):
    def __init__(self, limit: int) -> None:
        super().__init__("too_large", f"the content exceeds the limit of {limit} bytes a request")


class DataArea:
    """Platform paths below ``root``; every public method takes a platform path."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root.resolve()

    # -- paths ---------------------------------------------------------------------
    def segments(self, platform_path: str) -> list[str]:
        if not isinstance(platform_path, str) or not platform_path.startswith("/"):
            raise DataError("bad_path", f"not an absolute platform path: {platform_path!r}")
        if len(platform_path) > 4096 or any(ch in CONTROL for ch in platform_path):
            raise DataError("bad_path", "a platform path may not hold control characters")
        parts = platform_path.strip("/").split("/") if platform_path.strip("/") else []
        if any(p in ("", ".", "..") for p in parts):
            raise DataError("bad_path", f"'.', '..' and empty segments refused: {platform_path}")
        return parts

    def local(self, platform_path: str) -> Path:
        """The local path of ``platform_path``, checked to stay inside the area."""
        path = self.root.joinpath(*self.segments(platform_path))
        real = Path(os.path.realpath(path))
        if real != self.root and self.root not in real.parents:
            raise DataError("bad_path", f"the path leaves the data area: {platform_path}")
        return path

    def platform(self, local: Path) -> str:
        rel = local.resolve().relative_to(self.root).as_posix()
        return "/" if rel == "." else "/" + rel

    def normal(self, platform_path: str) -> str:
        return "/" + "/".join(self.segments(platform_path))

    def existing(self, platform_path: str) -> Path:
        path = self.local(platform_path)
        if not path.exists():
            raise DataError("not_found", f"no such path: {self.normal(platform_path)}")
        return path

    # -- reading -------------------------------------------------------------------
    def exists(self, platform_path: str) -> bool:
        return self.local(platform_path).exists()

    def properties(self, platform_path: str) -> dict[str, Any]:
        """Dialect-neutral properties: path, lastModificationDate, isDirectory, size,
        mimeType (files only)."""
        path = self.existing(platform_path)
        st = path.stat()
        is_dir = stat.S_ISDIR(st.st_mode)
        props: dict[str, Any] = {
            "path": self.normal(platform_path),
            "lastModificationDate": int(st.st_mtime),
            "isDirectory": is_dir,
            "size": tree_size(path) if is_dir else st.st_size,
        }
        if not is_dir:
            props["mimeType"] = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        return props

    def listing(self, platform_path: str) -> list[dict[str, Any]]:
        path = self.existing(platform_path)
        if not path.is_dir():
            raise DataError("not_directory", f"not a directory: {self.normal(platform_path)}")
        base = self.normal(platform_path).rstrip("/")
        return [self.properties(f"{base}/{child.name}") for child in sorted(path.iterdir())]

    def md5(self, platform_path: str) -> str:
        path = self.existing(platform_path)
        if path.is_dir():
            raise DataError("is_directory", f"a directory has no md5: {platform_path}")
        digest = hashlib.md5()
        with path.open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
        return digest.hexdigest()

    def tarball(self, platform_path: str, into: Path) -> Path:
        """A gzip tarball of a directory (members named below the directory's name)."""
        path = self.existing(platform_path)
        fd, name = tempfile.mkstemp(prefix="tarball-", suffix=".tar.gz", dir=into)
        os.close(fd)
        with tarfile.open(name, "w:gz") as tar:
            tar.add(path, arcname=path.name or "root")
        return Path(name)

    # -- writing -------------------------------------------------------------------
    def parent_of(self, platform_path: str) -> Path:
        path = self.local(platform_path)
        if path == self.root:
            raise DataError("bad_path", "the root cannot be written")
        if not path.parent.is_dir():
            raise DataError("no_parent", f"the parent directory does not exist: {platform_path}")
        return path

    def mkdir(self, platform_path: str, *, parents: bool = False) -> None:
        path = self.local(platform_path)
        if path.exists():
            raise DataError("exists", f"the path already exists: {self.normal(platform_path)}")
        if parents:
            path.mkdir(parents=True)
        else:
            self.parent_of(platform_path).mkdir()

    def write_stream(
        self, platform_path: str, chunks: Iterable[bytes], limit: int | None = None
    ) -> None:
        """Write ``chunks`` to the path (replacing a file); nothing appears under the
        name unless every chunk arrived."""
        path = self.parent_of(platform_path)
        if path.is_dir():
            raise DataError("is_directory", f"a directory is there: {platform_path}")
        fd, tmp = tempfile.mkstemp(prefix=".upload-", dir=path.parent)
        written = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    written += len(chunk)
                    if limit is not None and written > limit:
                        raise TooLarge(limit)
                    out.write(chunk)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def write_bytes(self, platform_path: str, data: bytes) -> None:
        self.write_stream(platform_path, [data])

    def extract_zip(self, platform_path: str, data: bytes) -> None:
        """Create a directory from a zip archive, refusing members that would land
        outside it (``..``, absolute names, symlinks)."""
        target = self.parent_of(platform_path)
        if target.exists():
            raise DataError("exists", f"the path already exists: {self.normal(platform_path)}")
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
            members = archive.infolist()
        except zipfile.BadZipFile as e:
            raise DataError("bad_archive", f"not a zip archive: {e}") from None
        for m in members:
            name = m.filename
            parts = [p for p in name.replace("\\", "/").split("/") if p]
            if name.startswith(("/", "\\")) or ".." in parts or (len(name) > 1 and name[1] == ":"):
                raise DataError("bad_archive", f"archive member leaves the directory: {name!r}")
            if stat.S_ISLNK(m.external_attr >> 16):
                raise DataError("bad_archive", f"archive member is a symlink: {name!r}")
        staging = Path(tempfile.mkdtemp(prefix=".unzip-", dir=target.parent))
        try:
            for m in members:
                dest = staging.joinpath(*[p for p in m.filename.split("/") if p])
                if m.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(m) as src, dest.open("wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def delete(self, platform_path: str) -> None:
        path = self.existing(platform_path)
        if path == self.root:
            raise DataError("bad_path", "the root cannot be deleted")
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()


def tree_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total
