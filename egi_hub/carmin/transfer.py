"""Streaming downloads and uploads: the state both transports share.

Why here: a results file can be gigabytes and a link can drop mid-way. A download goes
to a temporary file beside the destination and is renamed only once complete (length as
announced, md5 as the platform says when it says), so a cut never leaves a truncated
file that looks finished; after a cut it resumes with ``Range`` (``If-Range`` pins the
same version of the file) where the server answers 206, and starts over where it answers
200. An upload is read from disk in chunks (never whole in memory), hashed on the way,
and sent again from the start after a transient failure. The transports (sync and
async client modules) only move bytes; the decisions are made here.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from egi_hub.carmin.errors import CarminError
from egi_hub.carmin.retry import Incomplete, RetryPolicy, give_up

__all__ = ["CHUNK", "Download", "Progress", "Upload"]

CHUNK = 1 << 20
Progress = Callable[[int, int | None], None]  # (bytes done, total or None)
_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class Download:
    """One download to ``dest``: the temporary file, how far it got, its md5."""

    def __init__(self, dest: str | os.PathLike[str], progress: Progress | None = None) -> None:
        self.dest = Path(dest)
        if self.dest.is_dir():
            raise CarminError(None, None, f"{self.dest} is a folder; give a file name")
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.dest.with_name(f".{self.dest.name}.{secrets.token_hex(4)}.part")
        self.progress = progress
        self.received = 0
        self.total: int | None = None
        self.validator: str | None = None  # ETag or Last-Modified, for If-Range
        self._file = None
        self._failures = 0
        self._best = 0
        self._md5 = hashlib.md5(usedforsecurity=False)

    def headers(self) -> dict[str, str]:
        """Headers of the next attempt: a ``Range`` from where the last one stopped."""
        headers = {"Accept": "*/*", "Accept-Encoding": "identity"}
        if self.received:
            headers["Range"] = f"bytes={self.received}-"
            if self.validator:
                headers["If-Range"] = self.validator
        return headers

    @property
    def complete(self) -> bool:
        """All the announced bytes are in (a cut right after the last one loses nothing)."""
        return self._file is not None and self.total is not None and self.received == self.total

    def retry_status(self, status: int, policy: RetryPolicy) -> bool:
        """Whether an attempt answered with ``status`` (not 200/206) is worth another;
        a 416 to our ``Range`` means the file changed: start over."""
        if status == 416 and self.received:
            self.received, self.validator = 0, None
            return True
        return policy.after_status("GET", status, self._failures) is not None

    def failed(self, error: BaseException, policy: RetryPolicy, url: str) -> float:
        """An attempt failed: the wait before the next one, or the final `CarminError`.
        An attempt that got further than any before does not count as a failure (a
        download making progress is never given up; each cut still waits a little)."""
        self._failures = 0 if self.received > self._best else self._failures + 1
        self._best = max(self._best, self.received)
        wait = policy.after_error("GET", error, max(1, self._failures))
        if wait is None:
            raise give_up(error, max(1, self._failures), url) from None
        return wait

    def _restart(self) -> None:
        if self._file is not None:
            self._file.close()
        self._file = open(self.tmp, "wb")
        self.received = 0
        self._md5 = hashlib.md5(usedforsecurity=False)

    def start(self, status: int, headers: Mapping[str, str]) -> None:
        """An attempt's answer came (200 or 206): append or start over."""
        validator = headers.get("etag") or headers.get("last-modified")
        match = _RANGE.match(headers.get("content-range", "").strip())
        if status == 206 and self.received and match and int(match.group(1)) == self.received:
            if self._file is None:
                self._file = open(self.tmp, "ab")
            if match.group(3) != "*":
                self.total = int(match.group(3))
        else:
            self._restart()
            length = headers.get("content-length", "")
            encoded = headers.get("content-encoding", "identity").lower() not in ("", "identity")
            known = status == 200 and length.isdigit() and not encoded
            self.total = int(length) if known else None
        self.validator = validator if validator and not validator.startswith("W/") else None
        self._report()

    def write(self, chunk: bytes) -> None:
        assert self._file is not None
        self._file.write(chunk)
        self._md5.update(chunk)
        self.received += len(chunk)
        if self.total is not None and self.received > self.total:
            raise CarminError(None, None, "the platform sent more bytes than it announced")
        self._report()

    def end(self) -> None:
        """The body ended: `Incomplete` when short of the announced length."""
        assert self._file is not None
        self._file.flush()
        if self.total is not None and self.received < self.total:
            raise Incomplete(f"got {self.received} of {self.total} bytes")

    @property
    def md5(self) -> str:
        return self._md5.hexdigest()

    def finish(self, expected_md5: str | None = None) -> Path:
        """Check the md5 (when the platform gave one) and put the file in place."""
        assert self._file is not None
        self._file.close()
        if expected_md5 and expected_md5.lower() != self.md5:
            self.abort()
            raise CarminError(
                None,
                None,
                f"{self.dest.name}: the downloaded bytes do not match the platform's md5",
                "download it again",
            )
        os.replace(self.tmp, self.dest)
        return self.dest

    def abort(self) -> None:
        """Drop the temporary file (nothing is left that looks like a result)."""
        if self._file is not None:
            self._file.close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(self.received, self.total)


class Upload:
    """One upload from a local file, or from an open binary file (a seekable one, e.g.
    ``fsspec.open("datahub://...")``, read from its start, left open for its owner): its
    size, and its md5 once fully sent."""

    def __init__(
        self, source: str | os.PathLike[str] | BinaryIO, progress: Progress | None = None
    ) -> None:
        self.file: BinaryIO | None = None
        self.progress = progress
        self.md5: str | None = None
        if hasattr(source, "read"):
            self.file = source  # type: ignore[assignment]
            self.source = Path(str(getattr(source, "path", None) or getattr(source, "name", "")))
            try:
                self.size = self.file.seek(0, os.SEEK_END)
                self.file.seek(0)
            except (OSError, ValueError, AttributeError):
                raise CarminError(None, None, f"{self.source}: cannot be read twice") from None
            return
        self.source = Path(source)  # type: ignore[arg-type]
        try:
            info = self.source.stat()
        except OSError as e:
            raise CarminError(None, None, f"cannot read {self.source}: {e.strerror}") from None
        if not self.source.is_file():
            raise CarminError(None, None, f"{self.source} is not a file")
        self.size = info.st_size

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes, chunk by chunk, from the start (one generator per attempt)."""
        digest = hashlib.md5(usedforsecurity=False)
        sent = 0
        with contextlib.ExitStack() as stack:
            if self.file is None:
                f: BinaryIO = stack.enter_context(open(self.source, "rb"))
            else:
                f = self.file
                f.seek(0)
            while chunk := f.read(CHUNK):
                digest.update(chunk)
                sent += len(chunk)
                if self.progress is not None:
                    self.progress(sent, self.size)
                yield chunk
        if sent != self.size:
            raise CarminError(None, None, f"{self.source} changed while being uploaded")
        self.md5 = digest.hexdigest()

    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/octet-stream", "Content-Length": str(self.size)}
