"""Streaming downloads and uploads: the state both transports share.

Why here: a results file can be gigabytes and a link can drop mid-way. A download goes
to a temporary file beside the destination and is renamed only once complete (length as
announced, md5 as the platform says when it says), so a cut never leaves a truncated
file that looks finished; after a cut it resumes with ``Range`` (``If-Range`` pins the
same version of the file) where the server answers 206, and starts over where it answers
200. A download never takes more than the disk's free space (an endless answer would
fill it). An upload is read from disk in chunks (never whole in memory) and sent again from
the start after a transient failure. The transports (sync and async client modules) only
move bytes; the decisions are made here.

Checksums cost: md5 runs at about the speed of a loopback link, so hashing in the I/O
thread halved transfers. A transfer hashes only when it will be compared with the
platform's md5 (``verify`` and a platform that offers one), and then in a `Hasher`
worker thread fed through a bounded queue (hashlib releases the GIL on large buffers),
so hashing overlaps the network. A download's file is written through a buffer of
`CHUNK` bytes: few system calls, and the bytes of a cut attempt are kept for the resume.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import re
import secrets
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import BinaryIO

from egi_hub.carmin.errors import CarminError
from egi_hub.carmin.retry import Incomplete, RetryPolicy, give_up

__all__ = ["CHUNK", "Download", "Hasher", "Progress", "Upload"]

CHUNK = 1 << 20
Progress = Callable[[int, int | None], None]  # (bytes done, total or None)
_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


class Hasher:
    """The md5 of a stream of chunks, computed by a worker thread.

    Chunks are gathered into blocks of about `CHUNK` bytes and handed over through a
    queue of ``depth`` blocks: memory stays bounded, and the caller waits only when
    hashing falls behind the network. `hexdigest` waits for the last block; `close`
    stops the worker when the digest is not wanted (a failed attempt)."""

    def __init__(self, depth: int = 4) -> None:
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._queue: queue.Queue[bytes | None] = queue.Queue(depth)
        self._pending: list[bytes] = []
        self._size = 0
        self._digest: str | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="carmin-hash", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (block := self._queue.get()) is not None:
            self._md5.update(block)

    def update(self, chunk: bytes) -> None:
        if self._closed:
            raise RuntimeError("this hasher is closed")
        self._pending.append(chunk)
        self._size += len(chunk)
        if self._size >= CHUNK:
            self._hand_over()

    def _hand_over(self) -> None:
        if self._pending:
            self._queue.put(b"".join(self._pending))
            self._pending, self._size = [], 0

    def hexdigest(self) -> str:
        """The md5 of every chunk given (waits for the worker to finish them)."""
        if self._digest is None:
            if self._closed:
                raise RuntimeError("this hasher is closed")
            self._hand_over()
            self.close()
            self._digest = self._md5.hexdigest()
        return self._digest

    def close(self) -> None:
        """Stop the worker (after the blocks already queued)."""
        if not self._closed:
            self._closed = True
            self._pending = []
            self._queue.put(None)
            self._thread.join()


def _free_space(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 1 << 62  # unknown: the disk itself will say


class Download:
    """One download to ``dest``: the temporary file, how far it got, and its md5 when
    ``verify`` (computed on the way, to compare with the platform's)."""

    def __init__(
        self,
        dest: str | os.PathLike[str],
        progress: Progress | None = None,
        *,
        verify: bool = True,
    ) -> None:
        self.dest = Path(dest)
        if self.dest.is_dir():
            raise CarminError(None, None, f"{self.dest} is a folder; give a file name")
        self.dest.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.dest.with_name(f".{self.dest.name}.{secrets.token_hex(4)}.part")
        self.room = _free_space(self.dest.parent)  # an endless answer must not fill the disk
        self.progress = progress
        self.received = 0
        self.total: int | None = None
        self.validator: str | None = None  # ETag or Last-Modified, for If-Range
        self.verify = verify
        self._file: BinaryIO | None = None
        self._failures = 0
        self._best = 0
        self._hasher: Hasher | None = None

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
        self._close()
        self._file = open(self.tmp, "wb", buffering=CHUNK)  # kept across attempts
        self.received = 0
        self._hasher = Hasher() if self.verify else None

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._hasher is not None:
            self._hasher.close()
            self._hasher = None

    def start(self, status: int, headers: Mapping[str, str]) -> None:
        """An attempt's answer came (200 or 206): append or start over."""
        validator = headers.get("etag") or headers.get("last-modified")
        match = _RANGE.match(headers.get("content-range", "").strip())
        if status == 206:
            resumed = self.received and self._file is not None
            if not (resumed and match and int(match.group(1)) == self.received):
                # not where we stopped: never written as if it were; ask for the whole
                self.received, self.validator = 0, None
                raise Incomplete("the platform sent another part of the file")
            if match.group(3) != "*":
                self.total = int(match.group(3))
        else:
            self._restart()
            length = headers.get("content-length", "")
            encoded = headers.get("content-encoding", "identity").lower() not in ("", "identity")
            known = status == 200 and length.isdigit() and not encoded
            self.total = int(length) if known else None
            if self.total is not None and self.total > self.room:
                raise self._too_big()
        self.validator = validator if validator and not validator.startswith("W/") else None
        self._report()

    def write(self, chunk: bytes) -> None:
        assert self._file is not None
        self._file.write(chunk)
        if self._hasher is not None:
            self._hasher.update(chunk)
        self.received += len(chunk)
        if self.total is not None and self.received > self.total:
            raise CarminError(None, None, "the platform sent more bytes than it announced")
        if self.received > self.room:
            raise self._too_big()
        self._report()

    def end(self) -> None:
        """The body ended: `Incomplete` when short of the announced length."""
        assert self._file is not None
        self._file.flush()
        if self.total is not None and self.received < self.total:
            raise Incomplete(f"got {self.received} of {self.total} bytes")

    @property
    def md5(self) -> str | None:
        """The md5 of the bytes received (None when not verifying)."""
        return self._hasher.hexdigest() if self._hasher is not None else None

    def finish(self, expected_md5: str | None = None) -> Path:
        """Check the md5 (when verifying and the platform gave one) and put the file in
        place."""
        assert self._file is not None
        self._file.close()
        if expected_md5 and self.verify and expected_md5.lower() != self.md5:
            self.abort()
            raise CarminError(
                None,
                None,
                f"{self.dest.name}: the downloaded bytes do not match the platform's md5",
                "download it again",
            )
        self._close()
        os.replace(self.tmp, self.dest)
        return self.dest

    def abort(self) -> None:
        """Drop the temporary file (nothing is left that looks like a result)."""
        self._close()
        with contextlib.suppress(FileNotFoundError):
            self.tmp.unlink()

    def _too_big(self) -> CarminError:
        return CarminError(
            None,
            None,
            f"{self.dest.name}: larger than the free space on the disk ({self.room} bytes)",
            "free some space or download elsewhere",
        )

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(self.received, self.total)


class Upload:
    """One upload from a local file, or from an open binary file (a seekable one, e.g.
    ``fsspec.open("datahub://...")``, read from its start, left open for its owner): its
    size, and when ``verify`` its md5 once fully sent."""

    def __init__(
        self,
        source: str | os.PathLike[str] | BinaryIO,
        progress: Progress | None = None,
        *,
        verify: bool = True,
    ) -> None:
        self.file: BinaryIO | None = None
        self.progress = progress
        self.verify = verify
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
        self.md5 = None
        sent = 0
        with contextlib.ExitStack() as stack:
            hasher = Hasher() if self.verify else None
            if hasher is not None:
                stack.callback(hasher.close)
            if self.file is None:
                f: BinaryIO = stack.enter_context(open(self.source, "rb"))
            else:
                f = self.file
                f.seek(0)
            while chunk := f.read(CHUNK):
                if hasher is not None:
                    hasher.update(chunk)
                sent += len(chunk)
                if self.progress is not None:
                    self.progress(sent, self.size)
                yield chunk
            if sent != self.size:
                raise CarminError(None, None, f"{self.source} changed while being uploaded")
            if hasher is not None:
                self.md5 = hasher.hexdigest()

    def check(self, remote_md5: str | None, path: str) -> None:
        """`CarminError` when the platform's md5 of ``path`` is not the one sent."""
        if remote_md5 and self.md5 and remote_md5.lower() != self.md5:
            raise CarminError(
                None,
                None,
                f"{path}: the platform's md5 differs from the file sent",
                "upload it again",
            )

    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/octet-stream", "Content-Length": str(self.size)}
