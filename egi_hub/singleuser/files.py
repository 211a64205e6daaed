"""Downloads of files on storage mounts: ``/files/<path>`` routed like the file browser.

JupyterLab's "Download" (and "Open in New Browser Tab") fetches ``/files/<path>``, which
Jupyter Server answers with the contents manager's ``files_handler_class``. For a file
manager that is a static-file handler reading the home folder on disk, so for a path on a
mount it served the *home* file the mount hides (or a 404), never the mount's file.

`MountsFilesHandler` asks `egi_hub.singleuser.contents.MountsContentsManager.route`, the
one place that decides what a path is:

- a file on a mount is streamed from the mount's fsspec filesystem in blocks, each read in
  a worker thread (the server's event loop never waits on storage, and a large file is
  never held in memory), with the Content-Type Jupyter's own handlers would send and
  ``Content-Disposition: attachment`` for ``?download=1`` and notebooks; read-only mounts
  download too, and a mount in error serves its ``README-error.txt``;
- a folder on the way to mounts, a mount's root or a path in such a folder that is no
  mount is a 404 (never the hidden home folder);
- a home path goes, unchanged, to Jupyter's stock handler (Range requests, hidden files);
- a path with a ``.``, ``..`` or empty segment (also as ``%2e%2e``) or control characters
  is a 400 before anything is matched, for the home folder too.

Authentication, authorization (the ``contents`` resource, read) and the XSRF check are
the stock handler's, as is the sandboxing Content-Security-Policy.
"""

from __future__ import annotations

import asyncio
import mimetypes
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import AuthenticatedFileHandler
from tornado import web

from egi_hub.names import CONTROL as _CONTROL

__all__ = ["MountsFilesHandler", "content_type"]

CHUNK = 1024 * 1024  # bytes per read: one thread hop per MiB


def content_type(name: str) -> str:
    """The Content-Type Jupyter's files handlers send for a file called ``name``."""
    if name.lower().endswith(".ipynb"):
        return "application/x-ipynb+json"
    mime, encoding = mimetypes.guess_type(name)
    if encoding == "gzip":
        return "application/gzip"  # RFC 6713
    if encoding is not None or mime is None:
        return "application/octet-stream"
    return "text/plain; charset=UTF-8" if mime == "text/plain" else mime


class MountsFilesHandler(AuthenticatedFileHandler):
    """``/files/<path>``: files on storage mounts from their filesystems, the rest from
    the home folder as Jupyter serves it."""

    @web.authenticated
    @authorized
    async def head(self, path: str) -> None:  # type: ignore[override]
        self.check_xsrf_cookie()
        await self._serve(path, include_body=False)

    @web.authenticated
    @authorized
    async def get(self, path: str, include_body: bool = True) -> None:  # type: ignore[override]
        self.check_xsrf_cookie()
        await self._serve(path, include_body)

    async def _serve(self, path: str, include_body: bool) -> None:
        if _CONTROL.search(path):
            raise web.HTTPError(400, "control characters are not allowed in a path")
        cm = self.contents_manager
        where = cm.route(path)  # 400 for '.', '..' or empty segments
        if where is None:
            await self._home(path, include_body)
            return
        if not isinstance(where, tuple):
            raise web.HTTPError(404, f"{path}: a folder, or no such file")
        entry, rel = where
        from egi_hub.singleuser.contents import ERROR_FILE, _rel_parts

        parts = _rel_parts(rel)
        if not parts:
            raise web.HTTPError(404, f"{path} is the folder of a storage mount")
        if not cm.allow_hidden and any(p.startswith(".") for p in parts):
            raise web.HTTPError(404)
        name = parts[-1]
        if entry.error is not None:
            if rel != ERROR_FILE:
                raise web.HTTPError(404, f"Storage mount {entry.name!r} is not available")
            model = await cm.get(path, content=True, type="file", format="text")
            self._headers_for(name, len(model["content"].encode()))
            if include_body:
                self.write(model["content"].encode())
            return
        fs = cm._fs(entry)
        info = await cm._call(entry, path, fs.info, rel)
        if info.get("type") == "directory":
            raise web.HTTPError(404, f"{path} is a folder")
        size = info.get("size")
        size = size if isinstance(size, int) and size >= 0 else None
        if not include_body:
            self._headers_for(name, size)
            return
        f = await cm._call(entry, path, fs.open, rel, "rb")
        try:
            first = await cm._call(entry, path, f.read, CHUNK if size is None else min(CHUNK, size))
            self._headers_for(name, size)
            await self._stream(f, first, size, entry.name)
        finally:
            await asyncio.to_thread(f.close)

    async def _stream(self, f: Any, first: bytes, size: int | None, mount: str) -> None:
        """Write ``first`` and the rest of ``f``: exactly ``size`` bytes when known (the
        file may change meanwhile: a short read ends the connection, so the client sees a
        truncated download, never a silently different one)."""
        sent, data = 0, first
        while data:
            if size is not None:
                data = data[: size - sent]
            self.write(data)
            sent += len(data)
            await self.flush()
            if size is not None and sent >= size:
                return
            data = await asyncio.to_thread(
                f.read, CHUNK if size is None else min(CHUNK, size - sent)
            )
        if size is not None and sent < size:
            self.log.warning("egi-hub mount %r: a download ended early (%d/%d)", mount, sent, size)
            self.request.connection.close()

    def _headers_for(self, name: str, size: int | None) -> None:
        self.set_header("Content-Type", content_type(name))
        if size is not None:
            self.set_header("Content-Length", str(size))
        if name.lower().endswith(".ipynb") or self.get_argument("download", None):
            self.set_attachment_header(name)
        self.set_header("Cache-Control", "no-cache")

    async def _home(self, path: str, include_body: bool) -> None:
        """The stock handler's GET (its decorators already ran in ours)."""
        if path.lower().endswith(".ipynb") or self.get_argument("download", None):
            self.set_attachment_header(path.rsplit("/", 1)[-1])
        await web.StaticFileHandler.get(self, path, include_body=include_body)
