"""`Job`: one piece of shared work (a fetch, a build) that many launches follow.

Twenty people opening one new link at once cause one fetch and one build: the first
launch starts the job, the others join it (`Jobs.run` is single-flight per key). A job's
entries are progress events (``{"phase": ..., "message": ...}``, mybinder's shape); each
follower reads them from the start, then live (`Job.follow`), so a browser that
reconnects mid-build sees the whole log again. A follower that goes away (a closed
tab) never cancels the job for the others; `Job.cancel` (the API's cancel) does.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

__all__ = ["Job", "Jobs"]

MAX_LINES = 20_000  # a job's events kept in memory for followers (the store keeps the log)


class Job:
    """A running or finished piece of work with a log and a result."""

    def __init__(self, key: str, kind: str) -> None:
        self.key = key
        self.kind = kind
        self.lines: list[dict[str, Any]] = []
        self.dropped = 0
        self.started = time.time()
        self.finished: float | None = None
        self.task: asyncio.Task[Any] | None = None
        self._changed = asyncio.Condition()

    def emit(self, event: dict[str, Any]) -> None:
        """Add an event (from the work itself; followers are woken)."""
        self.lines.append(event)
        if len(self.lines) > MAX_LINES:
            cut = len(self.lines) - MAX_LINES
            del self.lines[:cut]
            self.dropped += cut
        asyncio.get_running_loop().create_task(self._notify())

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    @property
    def done(self) -> bool:
        return self.task is not None and self.task.done()

    async def follow(self) -> AsyncIterator[dict[str, Any]]:
        """Every event so far, then new ones until the job ends."""
        seen = self.dropped
        while True:
            async with self._changed:
                start = seen - self.dropped
                if start < 0:  # lines dropped while we waited: say so, go on
                    yield {"phase": self.kind, "message": f"[{-start} lines left out]\n"}
                    start, seen = 0, self.dropped
                fresh = self.lines[start:]
                if not fresh and not self.done:
                    await self._changed.wait()
                    continue
            for line in fresh:
                yield line
            seen += len(fresh)
            if self.done and seen - self.dropped >= len(self.lines):
                return

    async def result(self) -> Any:
        """The work's result; its exception if it failed (followers never cancel it)."""
        assert self.task is not None
        return await asyncio.shield(self.task)

    def cancel(self) -> bool:
        if self.task is None or self.task.done():
            return False
        self.task.cancel()
        return True


class Jobs:
    """Jobs by key: at most one running per key; finished ones are forgotten."""

    def __init__(self) -> None:
        self.running: dict[str, Job] = {}

    def get(self, key: str) -> Job | None:
        return self.running.get(key)

    def run(self, key: str, kind: str, work: Callable[[Job], Awaitable[Any]]) -> Job:
        """The running job for ``key``, or a new one running ``work(job)``."""
        job = self.running.get(key)
        if job is not None:
            return job
        job = Job(key, kind)

        async def wrapped() -> Any:
            try:
                return await work(job)
            finally:
                job.finished = time.time()
                self.running.pop(key, None)
                with contextlib.suppress(RuntimeError):
                    await job._notify()

        self.running[key] = job
        job.task = asyncio.get_running_loop().create_task(wrapped(), name=f"{kind} {key}")
        return job
