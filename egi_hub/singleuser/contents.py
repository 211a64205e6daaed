"""The storage mounts in JupyterLab's file browser: a contents manager of our own.

Every mount of the mounts document (`egi_hub.singleuser.mounts`) appears at its path
under the browser's root: ``/s3/scratch`` is the folder ``s3`` holding ``scratch``,
``/datahub`` is ``datahub`` with one folder per DataHub space. Requests under a mount go
to that mount's fsspec filesystem (`egi_hub.singleuser.mounts.filesystem`); everything
else goes, unchanged, to Jupyter Server's own file manager. No FUSE and no privileges are
needed, which is how users of the local stack reach their data.

Why not jupyter-fs: it shows each resource in a second file browser of its own (a
frontend extension to install and keep in step with JupyterLab), and takes resources
from static server config or URLs typed into the browser, so credentials that the hub
renews would have to be written into config or URLs. Routing a few paths to fsspec in the
standard browser is a few hundred lines with no frontend code, re-reads the mounts file
when the keeper replaces it, and keeps the credentials in files only the user can read.

What a user sees:

- a mount the hub could not set up (an "error" entry) is a folder holding one read-only
  ``README-error.txt`` that says why, never a silently missing folder;
- a read-only mount lists and opens, and refuses saving, deleting and renaming with a
  message saying it is read-only;
- a notebook saved twice is written twice (each save replaces the object: S3 ``PUT``,
  DataHub truncate-and-write), and checkpoints of files on mounts are kept locally in
  ``checkpoints`` beside this server's mounts document (``~/.egi/servers/<server>/``;
  ``MountsContentsManager.mounts_checkpoint_dir``), so the save command's "create
  checkpoint" works without writing extra objects into buckets, and two servers of one
  user never mix their checkpoints;
- a real folder of the home directory with the same name as a mount's first path
  segment is hidden by the mount. Paths are checked before they are matched against the
  mounts: one with a ``.``, ``..`` or empty segment is refused (400) by every method, for
  the home folder too, since ``./s3/scratch/x`` or ``a/../s3/scratch/x`` would otherwise
  miss the mount and reach the hidden home folder (and write there past read-only).

Downloads (``/files/<path>``) are routed the same way by
`egi_hub.singleuser.files.MountsFilesHandler`, this class's ``files_handler_class``.

Filesystem calls are blocking (s3fs's sync API, httpx's sync client): they run in worker
threads so the server's event loop never waits on storage.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import hashlib
import json
import mimetypes
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import nbformat
from jupyter_server.services.contents.checkpoints import AsyncCheckpoints
from jupyter_server.services.contents.filecheckpoints import AsyncFileCheckpoints
from jupyter_server.services.contents.largefilemanager import AsyncLargeFileManager
from jupyter_server.services.contents.manager import AsyncContentsManager
from tornado.web import HTTPError
from traitlets import Dict, Unicode, default

from egi_hub.singleuser.mounts import (
    MountEntry,
    checkpoints_dir,
    filesystem,
    load_mounts,
    mounts_file,
    write_private,
)

__all__ = ["ERROR_FILE", "MountsCheckpoints", "MountsContentsManager"]

ERROR_FILE = "README-error.txt"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _now() -> datetime.datetime:
    return datetime.datetime.now(tz=datetime.UTC)


def _mtime(info: dict[str, Any], default: datetime.datetime) -> datetime.datetime:
    """The modification time in an fsspec ``info`` (local, s3fs and DataHub spell it apart),
    in whole seconds; ``default`` where it has none (S3 "folders" are key prefixes).

    Whole seconds because one object's date comes in two precisions: S3's HEAD answers
    an HTTP date (seconds), its listings milliseconds, and s3fs answers ``info`` from
    either (its listing cache once the file browser has listed the folder). JupyterLab
    refuses to save over a file whose date moved more than half a second since its last
    save ("File Changed" dialog), so the same object must always carry the same date."""
    return _any_mtime(info, default).replace(microsecond=0)


def _any_mtime(info: dict[str, Any], default: datetime.datetime) -> datetime.datetime:
    for key in ("mtime", "LastModified", "last_modified", "modified", "created"):
        value = info.get(key)
        if isinstance(value, datetime.datetime):
            return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:  # anyone who can write a shared space can set any date: never fail on one
                return datetime.datetime.fromtimestamp(value, tz=datetime.UTC)
            except (ValueError, OverflowError, OSError):
                continue
        if isinstance(value, str):
            try:
                parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                continue
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)
    return default


def _segments(path: str) -> list[str]:
    """The segments of a contents path; 400 for a ``.``, ``..`` or empty one.

    Leading and trailing slashes are dropped (Jupyter sends both forms). Refusing rather
    than resolving keeps one spelling per file, so matching against mount paths cannot be
    sidestepped.
    """
    if not isinstance(path, str):
        raise HTTPError(400, f"A path must be text, not {type(path).__name__}")
    inner = path.strip("/")
    if not inner:
        return []
    parts = inner.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise HTTPError(
            400,
            f"The path {path[:300]!r} is not allowed: it has an empty, '.' or '..' segment "
            "(write the path from the top folder, without them)",
        )
    return parts


def _rel_parts(rel: str) -> list[str]:
    parts = [p for p in rel.split("/") if p]
    for p in parts:
        if p in (".", "..") or _CONTROL.search(p):
            raise HTTPError(400, f"The path {rel!r} is not allowed on a storage mount")
    return parts


class MountsContentsManager(AsyncLargeFileManager):
    """Jupyter's file manager, with the storage mounts routed to their filesystems."""

    mounts_file = Unicode(
        "",
        config=True,
        help="The mounts document to read (default: $EGI_MOUNTS_FILE, else ~/.egi/mounts.json).",
    )
    filesystem_options = Dict(
        config=True,
        help="Extra constructor options per mount kind, e.g. {'datahub': {'verify': ca_path}}.",
    )
    mounts_checkpoint_dir = Unicode(
        "",
        config=True,
        help="Where checkpoints of files on mounts are kept (default: 'checkpoints' beside "
        "the mounts document, i.e. per server).",
    )

    @default("checkpoints_class")
    def _checkpoints_class_default(self) -> type:
        return MountsCheckpoints

    @default("files_handler_class")
    def _files_handler_class_default(self) -> type:
        """``/files/`` (downloads): mount paths from the mounts, as this class routes them."""
        from egi_hub.singleuser.files import MountsFilesHandler

        return MountsFilesHandler

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._stamp: tuple[int, int, int] | None = None
        self._entries: list[MountEntry] = []
        self._filesystems: dict[str, tuple[str, Any]] = {}
        self._staging = Path(tempfile.mkdtemp(prefix="egi-uploads-"))
        # The date shown for folders that have none of their own (the folders that hold
        # the mounts, a mount in error, S3 prefixes): when this server started. The Unix
        # epoch made JupyterLab show "56 years ago" beside every mount.
        self._since = _now()

    # -- which mount -------------------------------------------------------------------

    def _mounts_path(self) -> Path:
        return Path(os.path.expanduser(self.mounts_file)) if self.mounts_file else mounts_file()

    def mounts(self) -> list[MountEntry]:
        """The current mounts (the document is re-read when the keeper replaces it)."""
        path = self._mounts_path()
        try:
            st = path.stat()
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp != self._stamp:
            try:
                self._entries = load_mounts(path) if stamp else []
            except ValueError as e:
                self.log.warning("egi-hub mounts: %s", e)
                self._entries = []
            self._stamp = stamp
        return self._entries

    def route(self, path: str) -> tuple[MountEntry, str] | list[str] | None:
        """``(mount, path inside it)``; the sub-folder names of a folder on the way to
        mounts (``s3`` holds ``scratch``); ``[]`` for a path in such a folder that is no
        mount (nothing is there); or None for an ordinary path of the home folder.

        Every method (and the checkpoints) asks here first, so a path with a ``.``,
        ``..`` or empty segment is refused (400) everywhere before anything is matched."""
        parts = _segments(path)
        if not parts:
            return None
        below: set[str] = set()
        shadowed = False
        for entry in self.mounts():
            n = len(entry.parts)
            if tuple(parts[:n]) == entry.parts:
                return entry, "/".join(parts[n:])
            if len(parts) < n and tuple(parts) == entry.parts[: len(parts)]:
                below.add(entry.parts[len(parts)])
            elif parts[0] == entry.parts[0]:
                shadowed = True  # e.g. "s3/other" beside the mount "s3/scratch"
        if below:
            return sorted(below)
        # Inside a folder that only holds mounts, but no mount: nothing is there, and it
        # must not reach the home folder that the mount's first segment hides.
        return [] if shadowed else None

    def _top_names(self) -> set[str]:
        return {entry.parts[0] for entry in self.mounts()}

    def _fs(self, entry: MountEntry) -> Any:
        """The entry's filesystem, reused while its description does not change."""
        key = hashlib.sha256(json.dumps(entry.to_json(), sort_keys=True).encode()).hexdigest()
        cached = self._filesystems.get(entry.name)
        if cached and cached[0] == key:
            return cached[1]
        options = dict(self.filesystem_options.get(entry.kind) or {})
        try:
            fs = filesystem(entry.name, self.mounts(), **options)
        except Exception as e:  # a credential document refused, a missing token file...
            raise HTTPError(503, f"Storage mount {entry.name!r} cannot be opened: {e}") from None
        self._filesystems[entry.name] = (key, fs)
        return fs

    async def _call(self, entry: MountEntry, path: str, func: Any, *args: Any) -> Any:
        """Run a blocking filesystem call in a thread; storage errors become HTTP errors."""
        try:
            return await asyncio.to_thread(func, *args)
        except HTTPError:
            raise
        except FileNotFoundError:
            raise HTTPError(404, f"No such file or directory: {path}") from None
        except FileExistsError:
            raise HTTPError(409, f"{path} already exists") from None
        except PermissionError as e:
            raise HTTPError(403, f"Storage mount {entry.name!r}: {e}") from None
        except (IsADirectoryError, NotADirectoryError) as e:
            raise HTTPError(400, f"{path}: {e.strerror or e}") from None
        except Exception as e:
            self.log.warning("egi-hub mount %r: %s on %s", entry.name, type(e).__name__, path)
            raise HTTPError(502, f"Storage mount {entry.name!r} failed: {str(e)[:300]}") from None

    def _writable(self, entry: MountEntry, path: str, what: str) -> None:
        if entry.error is not None:
            raise HTTPError(403, f"Storage mount {entry.name!r} is not available: {entry.error}")
        if entry.read_only:
            raise HTTPError(403, f"Storage mount {entry.name!r} is read-only: cannot {what} {path}")

    # -- models ------------------------------------------------------------------------

    @staticmethod
    def _base(path: str, kind: str, writable: bool, when: datetime.datetime) -> dict[str, Any]:
        path = path.strip("/")
        return {
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "type": kind,
            "writable": writable,
            "created": when,
            "last_modified": when,
            "content": None,
            "format": None,
            "mimetype": None,
            "size": None,
            "hash": None,
            "hash_algorithm": None,
        }

    def _folder(self, path: str, names: list[str], content: bool) -> dict[str, Any]:
        model = self._base(path, "directory", False, self._since)
        if content:
            prefix = path.strip("/")
            model["content"] = [
                self._base(f"{prefix}/{n}" if prefix else n, "directory", False, self._since)
                for n in names
            ]
            model["format"] = "json"
        return model

    def _error_model(
        self, entry: MountEntry, path: str, rel: str, content: bool, require_hash: bool = False
    ) -> dict[str, Any]:
        if rel == "":
            model = self._base(path, "directory", False, self._since)
            if content:
                model["content"] = [
                    self._error_model(entry, f"{path}/{ERROR_FILE}", ERROR_FILE, False)
                ]
                model["format"] = "json"
            return model
        if rel != ERROR_FILE:
            raise HTTPError(404, f"Storage mount {entry.name!r} is not available: {entry.error}")
        text = (
            f"The storage mount {entry.name!r} ({entry.kind}) is not available in this "
            f"server:\n\n{entry.error}\n\nThe hub tries again while the server runs; "
            "restarting the server also retries.\n"
        )
        model = self._base(path, "file", False, _now())
        model.update(size=len(text.encode()), mimetype="text/plain")
        if require_hash:
            model.update(self._get_hash(text.encode()))
        if content:
            model.update(content=text, format="text")
        return model

    def _info_model(self, entry: MountEntry, path: str, info: dict[str, Any]) -> dict[str, Any]:
        kind = "directory" if info.get("type") == "directory" else "file"
        if kind == "file" and path.endswith(".ipynb"):
            kind = "notebook"
        model = self._base(path, kind, not entry.read_only, _mtime(info, self._since))
        if kind != "directory":
            model["size"] = info.get("size")
            if kind == "file":
                model["mimetype"] = mimetypes.guess_type(path)[0]
        return model

    def _mount_get(
        self, entry: MountEntry, path: str, rel: str, content: bool, type: str | None,
        format: str | None, require_hash: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        """Blocking: the contents model of ``rel`` on ``entry`` (runs in a thread).

        ``require_hash`` (JupyterLab asks for it when it opens a file, to notice changes
        made behind its back) reads a file's bytes even without its content."""
        fs = self._fs(entry)
        if hasattr(fs, "invalidate_cache"):
            fs.invalidate_cache()  # another writer (a kernel, the hub) may have changed it
        info = {"type": "directory"} if rel == "" else fs.info(rel)
        model = self._info_model(entry, path, info)
        if type == "directory" and model["type"] != "directory":
            raise HTTPError(400, f"{path} is not a directory")
        if type in ("file", "notebook") and model["type"] == "directory":
            raise HTTPError(400, f"{path} is a directory")
        if type == "file" and model["type"] == "notebook":
            model["type"] = "file"
            model["mimetype"] = "application/x-ipynb+json"
        if model["type"] == "directory":
            if not content:
                return model
            children = []
            try:
                listed = fs.ls(rel, detail=True)
            except FileNotFoundError:
                if rel:
                    raise
                # A mount's root is always a folder: an S3 prefix holding no object yet
                # does not exist for S3 (no folders there), and lists as empty.
                listed = []
            for child in listed:
                name = child["name"].rstrip("/").rsplit("/", 1)[-1]
                if not name or (name.startswith(".") and not self.allow_hidden):
                    continue
                if not self.should_list(name):
                    continue
                children.append(self._info_model(entry, f"{path.strip('/')}/{name}", child))
            model.update(content=children, format="json")
            return model
        if not (content or require_hash):
            return model
        data = fs.cat_file(rel)
        if require_hash:
            model.update(self._get_hash(data))
        if content:
            model["size"], model["content"] = None, data  # bytes: decoded by _finish
        else:
            model["size"] = len(data)
        return model

    def _finish(self, model: dict[str, Any], path: str, format: str | None) -> dict[str, Any]:
        """Turn a file's bytes into the model's content (in the event loop's thread: the
        notebook notary's database may only be used there)."""
        data = model["content"]
        if not isinstance(data, bytes):
            return model
        model["size"] = len(data)
        if model["type"] == "notebook":
            try:
                nb = nbformat.reads(data.decode("utf-8"), as_version=4)
            except Exception as e:
                raise HTTPError(400, f"Unreadable notebook {path}: {str(e)[:200]}") from None
            self.mark_trusted_cells(nb, path)
            model.update(content=nb, format="json")
            self.validate_notebook_model(model)
            return model
        if format != "base64":
            try:
                model.update(content=data.decode("utf-8"), format="text")
                model["mimetype"] = model["mimetype"] or "text/plain"
                return model
            except UnicodeDecodeError:
                if format == "text":
                    raise HTTPError(400, f"{path} is not UTF-8 text", reason="bad format") from None
        model.update(content=base64.b64encode(data).decode("ascii"), format="base64")
        model["mimetype"] = model["mimetype"] or "application/octet-stream"
        return model

    # -- the contents API ----------------------------------------------------------------

    async def get(
        self, path: str, content: bool = True, type: str | None = None,
        format: str | None = None, require_hash: bool = False,
    ) -> dict[str, Any]:  # fmt: skip
        where = self.route(path)
        if where is None:
            model = await super().get(path, content, type, format, require_hash)
            if model["type"] == "directory" and path.strip("/") == "" and content:
                tops = self._top_names()
                if tops:
                    items = [m for m in model["content"] if m["name"] not in tops]
                    items += self._folder("", sorted(tops), True)["content"]
                    model["content"] = items
            return model
        if where == []:
            raise HTTPError(404, f"No such file or directory: {path}")
        if isinstance(where, list):
            if type not in (None, "directory"):
                raise HTTPError(400, f"{path} is a directory")
            return self._folder(path, where, content)
        entry, rel = where
        _rel_parts(rel)
        if entry.error is not None:
            return self._error_model(entry, path, rel, content, require_hash)
        model = await self._call(
            entry, path, self._mount_get, entry, path, rel, content, type, format, require_hash
        )
        return self._finish(model, path, format)

    def _encode(self, model: dict[str, Any], path: str) -> bytes:
        if model["type"] == "notebook":
            nb = nbformat.from_dict(model["content"])
            self.check_and_sign(nb, path)
            return nbformat.writes(nb, version=nbformat.NO_CONVERT).encode("utf-8")
        if model.get("format") == "base64":
            try:
                return base64.b64decode(model["content"], validate=True)
            except ValueError:
                raise HTTPError(400, f"The content of {path} is not valid base64") from None
        if not isinstance(model["content"], str):
            raise HTTPError(400, f"The content of {path} is not text")
        return model["content"].encode("utf-8")

    def _stage(self, path: str, data: bytes, chunk: int) -> bytes | None:
        """Chunked uploads: append to a private local file; all bytes at the last chunk."""
        staged = self._staging / hashlib.sha256(path.encode()).hexdigest()
        with open(staged, "wb" if chunk == 1 else "ab") as f:
            f.write(data)
        if chunk != -1:
            return None
        out = staged.read_bytes()
        staged.unlink()
        return out

    async def save(self, model: dict[str, Any], path: str = "") -> dict[str, Any]:
        where = self.route(path)
        if where is None:
            return await super().save(model, path)
        if isinstance(where, list):
            raise HTTPError(403, f"{path} is not inside a storage mount: nothing can be saved here")
        entry, rel = where
        parts = _rel_parts(rel)
        self._writable(entry, path, "save")
        if not parts:
            raise HTTPError(400, f"{path} is the root of storage mount {entry.name!r}")
        if "type" not in model:
            raise HTTPError(400, "No file type provided")
        if model["type"] != "directory" and "content" not in model:
            raise HTTPError(400, "No file content provided")
        self.run_pre_save_hooks(model=model, path=path)
        rel = "/".join(parts)
        fs = self._fs(entry)
        if model["type"] == "directory":
            await self._call(entry, path, self._mkdir, fs, rel)
        else:
            data = self._encode(model, path)
            chunk = model.get("chunk")
            if chunk is not None:
                data = await asyncio.to_thread(self._stage, path, data, int(chunk))
                if data is None:  # more chunks to come: nothing on the mount yet
                    return self._base(path, model["type"], True, _now())
            await self._call(entry, path, fs.pipe_file, rel, data)
        out = await self.get(path, content=False)
        if model["type"] == "notebook":
            checked = self.validate_notebook_model({"content": model["content"]})
            if "message" in checked:
                out["message"] = checked["message"]
        return out

    @staticmethod
    def _mkdir(fs: Any, rel: str) -> None:
        fs.makedirs(rel, exist_ok=True)
        if not fs.isdir(rel):  # object stores have no empty folders: keep one with a marker
            fs.pipe_file(f"{rel}/.keep", b"")

    async def delete_file(self, path: str) -> None:
        where = self.route(path)
        if where is None:
            return await super().delete_file(path)
        if isinstance(where, list):
            raise HTTPError(400 if where else 404, f"{path}: no such file, or it holds mounts")
        entry, rel = where
        parts = _rel_parts(rel)
        if not parts:
            raise HTTPError(
                400, f"{path} is the storage mount {entry.name!r}: it cannot be deleted"
            )
        self._writable(entry, path, "delete")
        fs = self._fs(entry)

        def rm() -> None:
            target = "/".join(parts)
            if fs.isdir(target):
                fs.rm(target, recursive=True)
            else:
                fs.rm_file(target)

        await self._call(entry, path, rm)

    async def rename_file(self, old_path: str, new_path: str) -> None:
        old, new = self.route(old_path), self.route(new_path)
        if old is None and new is None:
            return await super().rename_file(old_path, new_path)
        if not (isinstance(old, tuple) and isinstance(new, tuple) and old[0] == new[0]):
            raise HTTPError(
                400,
                f"Cannot move {old_path} to {new_path}: moving works within one storage mount "
                "(copy and paste between mounts and the home folder instead)",
            )
        entry = old[0]
        src, dst = _rel_parts(old[1]), _rel_parts(new[1])
        if not src or not dst:
            raise HTTPError(400, f"The storage mount {entry.name!r} itself cannot be moved")
        self._writable(entry, old_path, "rename")
        fs = self._fs(entry)

        def mv() -> None:
            if fs.exists("/".join(dst)):
                raise FileExistsError(new_path)
            fs.mv("/".join(src), "/".join(dst), recursive=fs.isdir("/".join(src)))

        await self._call(entry, old_path, mv)

    async def copy(self, from_path: str, to_path: str | None = None) -> dict[str, Any]:
        if self.route(from_path) is None and (to_path is None or self.route(to_path) is None):
            return await super().copy(from_path, to_path)
        return await AsyncContentsManager.copy(self, from_path, to_path)

    async def _exists(self, path: str, kind: str) -> bool | None:
        """None for an ordinary path, else whether ``path`` on a mount is of ``kind``."""
        where = self.route(path)
        if where is None:
            return None
        if isinstance(where, list):
            return bool(where) and kind in ("directory", "any")
        entry, rel = where
        if entry.error is not None:
            if rel == "":
                return kind in ("directory", "any")
            return rel == ERROR_FILE and kind in ("file", "any")
        try:
            _rel_parts(rel)
        except HTTPError:
            return False
        if rel == "":
            return kind in ("directory", "any")
        fs = self._fs(entry)
        check = {"directory": fs.isdir, "file": fs.isfile, "any": fs.exists}[kind]
        try:
            return bool(await asyncio.to_thread(check, rel))
        except OSError:
            return False

    async def dir_exists(self, path: str) -> bool:
        found = await self._exists(path, "directory")
        return await super().dir_exists(path) if found is None else found

    async def file_exists(self, path: str = "") -> bool:
        found = await self._exists(path, "file")
        return await super().file_exists(path) if found is None else found

    def exists(self, path: str) -> Any:
        """Sync for ordinary paths, a coroutine for mounts.

        Jupyter's async file manager calls ``self.exists`` without awaiting (it is sync
        there), while generic code awaits it through ``ensure_async``: both keep working.
        """
        if self.route(path) is None:
            return super().exists(path)
        return self._exists(path, "any")

    async def is_hidden(self, path: str) -> bool:
        where = self.route(path)
        if where is None:
            return await super().is_hidden(path)
        if isinstance(where, list):
            return False
        return any(p.startswith(".") for p in where[1].split("/"))

    def __del__(self) -> None:
        shutil.rmtree(getattr(self, "_staging", ""), ignore_errors=True)


class MountsCheckpoints(AsyncFileCheckpoints):
    """Jupyter's file checkpoints, and for files on mounts a local copy per file.

    Jupyter keeps one checkpoint (id ``"checkpoint"``) per file. For mounts it is kept as
    a private JSON file (the model's type, format and content) under
    ``mounts_checkpoint_dir``, named by a hash of the path: no extra objects in buckets,
    and it works on every mount kind alike.
    """

    def _on_mount(self, path: str) -> bool:
        return isinstance(self.parent.route(path), tuple)

    def _store(self, path: str) -> Path:
        configured = self.parent.mounts_checkpoint_dir
        root = (
            Path(os.path.expanduser(configured))
            if configured
            else checkpoints_dir(self.parent._mounts_path())
        )
        return root / (hashlib.sha256(path.strip("/").encode()).hexdigest() + ".json")

    @staticmethod
    def _model(store: Path) -> dict[str, Any]:
        when = datetime.datetime.fromtimestamp(store.stat().st_mtime, tz=datetime.UTC)
        return {"id": "checkpoint", "last_modified": when}

    async def create_checkpoint(self, contents_mgr: Any, path: str) -> dict[str, Any]:
        if not self._on_mount(path):
            return await super().create_checkpoint(contents_mgr, path)
        model = await contents_mgr.get(path, content=True)
        if model["type"] == "directory":
            raise HTTPError(400, f"{path} is a directory: no checkpoint")
        saved = {"type": model["type"], "format": model["format"], "content": model["content"]}
        store = self._store(path)
        await asyncio.to_thread(write_private, store, json.dumps(saved))
        return self._model(store)

    async def restore_checkpoint(self, contents_mgr: Any, checkpoint_id: str, path: str) -> None:
        if not self._on_mount(path):
            return await super().restore_checkpoint(contents_mgr, checkpoint_id, path)
        store = self._store(path)
        if checkpoint_id != "checkpoint" or not store.exists():
            raise HTTPError(404, f"No checkpoint {checkpoint_id!r} for {path}")
        saved = json.loads(await asyncio.to_thread(store.read_text, encoding="utf-8"))
        await contents_mgr.save(saved, path)

    async def rename_checkpoint(self, checkpoint_id: str, old_path: str, new_path: str) -> None:
        if not self._on_mount(old_path):
            return await super().rename_checkpoint(checkpoint_id, old_path, new_path)
        old = self._store(old_path)
        if old.exists():
            os.replace(old, self._store(new_path))

    async def delete_checkpoint(self, checkpoint_id: str, path: str) -> None:
        if not self._on_mount(path):
            return await super().delete_checkpoint(checkpoint_id, path)
        store = self._store(path)
        if checkpoint_id != "checkpoint" or not store.exists():
            raise HTTPError(404, f"No checkpoint {checkpoint_id!r} for {path}")
        store.unlink()

    async def list_checkpoints(self, path: str) -> list[dict[str, Any]]:
        if not self._on_mount(path):
            return await super().list_checkpoints(path)
        store = self._store(path)
        return [self._model(store)] if store.exists() else []

    async def rename_all_checkpoints(self, old_path: str, new_path: str) -> None:
        await AsyncCheckpoints.rename_all_checkpoints(self, old_path, new_path)

    async def delete_all_checkpoints(self, path: str) -> None:
        await AsyncCheckpoints.delete_all_checkpoints(self, path)
