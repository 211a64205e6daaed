"""Server-hours per VO from the usage log that `QuotaPolicy.usage_log` writes.

The log has one JSON line per server start and stop::

    {"event": "start", "user": "alice", "server": "", "vo": "vo.access.egi.eu",
     "profile": "small", "cpu": 1.0, "memory": 1073741824, "gpu": 0,
     "start": "2025-05-01T10:00:00+00:00", "stop": null}

A stop line repeats its run's start, so it is a whole run by itself; a start line with
no stop yet is a server still running (or one whose hub died before it could write the
stop). The home page shows each user's hours over the last 30 days.

The log only grows, and can grow large on a busy hub: `UsageReport` reads it
incrementally (from where it stopped, only when its size or modification time
changed), keeps what it read as runs per user, and forgets runs that ended before the
window. Reading is blocking file work: `UsageReport.hours` does it in a thread, never on
the hub's event loop. Lines that are not well-formed records are skipped, not fatal:
one bad line must not hide everyone's hours.

Memory stays bounded whatever the log holds. A last line without its newline is held
over for the next read only up to `MAX_LINE` (1 MiB, far more than any record): past
that, the read skips to the next newline and counts the line as malformed. A start
line without a stop is kept while it may still be a running server: one per server
(a later start of the same server supersedes it), forgotten once the user's page shows
the server is not running with that start, and after `MAX_OPEN` in any case.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

__all__ = ["WINDOW", "Run", "UsageReport", "hours_by_vo", "parse_record", "parse_time"]

log = logging.getLogger(__name__)

WINDOW = timedelta(days=30)
CHUNK = 1 << 20  # bytes read at a time
MAX_LINE = 1 << 20  # longest unfinished last line held over for the next read
MAX_OPEN = timedelta(days=120)  # a start without a stop older than this is forgotten


@dataclass(frozen=True)
class Run:
    """One server run: who, which server, charged to which VO, from when until when
    (``stop`` None: no stop recorded yet)."""

    user: str
    server: str
    vo: str | None
    start: datetime
    stop: datetime | None = None


def parse_time(value: Any) -> datetime | None:
    """An ISO time as an aware datetime (a naive one is UTC), or None if it is not one."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_record(line: str | bytes) -> tuple[str, Run] | None:
    """``(event, run)`` from one log line, or None when the line is not a usable record."""
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    event, user, server, vo = (data.get(k) for k in ("event", "user", "server", "vo"))
    if event not in ("start", "stop") or not isinstance(user, str) or not user:
        return None
    if not isinstance(server, str) or not (vo is None or isinstance(vo, str)):
        return None
    start = parse_time(data.get("start"))
    stop = parse_time(data.get("stop")) if event == "stop" else None
    if start is None or (event == "stop" and (stop is None or stop < start)):
        return None
    return event, Run(user=user, server=server, vo=vo or None, start=start, stop=stop)


def hours_by_vo(
    runs: list[Run],
    now: datetime,
    running: Mapping[str, datetime] | None = None,
    window: timedelta = WINDOW,
) -> dict[str | None, float]:
    """Hours per VO of ``runs`` inside ``[now - window, now]``.

    A run without a stop counts until ``now`` when its server runs: when ``running``
    (server name -> start of its current run) is not given, or names that server with
    that start. A run without a stop whose server is not running any more (the hub
    stopped before it wrote the stop line) is not counted: its end is unknown.
    """
    since = now - window
    hours: dict[str | None, float] = defaultdict(float)
    for run in runs:
        stop = run.stop
        if stop is None:
            if running is not None and running.get(run.server) != run.start:
                continue
            stop = now
        seconds = (min(stop, now) - max(run.start, since)).total_seconds()
        if seconds > 0:
            hours[run.vo] += seconds / 3600
    return dict(hours)


class UsageReport:
    """Everyone's runs from one usage log, kept current by reading only what was added."""

    def __init__(
        self, path: str, window: timedelta = WINDOW, max_open: timedelta = MAX_OPEN
    ) -> None:
        self.path = path
        self.window = window
        self.max_open = max_open
        self._lock = threading.Lock()
        self._seen: tuple[int, int, int] | None = None  # (inode, size, mtime_ns) read
        self._offset = 0
        self._skipping = False  # inside an over-long line: read on to its newline
        self._closed: dict[str, list[Run]] = defaultdict(list)
        self._open: dict[tuple[str, str], Run] = {}  # (user, server): its unfinished run
        self.skipped = 0  # lines that were not records

    def _reset(self) -> None:
        self._offset = 0
        self._skipping = False
        self._closed.clear()
        self._open.clear()
        self.skipped = 0

    def refresh(self, now: datetime | None = None) -> None:
        """Read what was appended since the last call (blocking: call it in a thread).

        A log that shrank or was replaced (rotation) is read again from its start. A
        last line without its newline yet is left for the next call.
        """
        with self._lock:
            try:
                st = os.stat(self.path)
            except FileNotFoundError:
                self._reset()
                self._seen = None
                return
            seen = (st.st_ino, st.st_size, st.st_mtime_ns)
            if seen == self._seen:
                return
            if self._seen is None or st.st_ino != self._seen[0] or st.st_size < self._offset:
                self._reset()
            self._read()
            self._seen = seen
            self._forget(now or datetime.now(UTC))

    def _read(self) -> None:
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            rest = b""
            while chunk := f.read(CHUNK):
                if self._skipping:  # the rest of an over-long line: up to its newline
                    end = chunk.find(b"\n")
                    if end < 0:
                        self._offset += len(chunk)
                        continue
                    self._offset += end + 1
                    self._skipping = False
                    chunk = chunk[end + 1 :]
                lines = (rest + chunk).split(b"\n")
                rest = lines.pop()
                for line in lines:
                    self._offset += len(line) + 1
                    if line.strip():
                        self._add(line)
                if len(rest) > MAX_LINE:  # no record is this long: never hold it over
                    self.skipped += 1
                    log.warning(
                        "usage log %s: skipping a line of more than %d bytes at offset %d",
                        self.path,
                        MAX_LINE,
                        self._offset,
                    )
                    self._offset += len(rest)
                    self._skipping = True
                    rest = b""

    def _add(self, line: bytes) -> None:
        record = parse_record(line)
        if record is None:
            self.skipped += 1
            log.debug("usage log %s: skipping a line that is not a record", self.path)
            return
        event, run = record
        key = (run.user, run.server)
        if event == "start":
            # One server runs once at a time: a later start means the earlier run
            # ended, its stop never written (the hub died); its end is unknown.
            self._open[key] = run
        else:
            if key in self._open and self._open[key].start == run.start:
                del self._open[key]
            self._closed[run.user].append(run)

    def _forget(self, now: datetime) -> None:
        """Drop finished runs that ended before the window, and starts without a stop
        older than ``max_open``: the aggregate stays bounded."""
        since = now - self.window
        for key in [k for k, run in self._open.items() if run.start < now - self.max_open]:
            del self._open[key]
        for user in list(self._closed):
            kept = [run for run in self._closed[user] if run.stop and run.stop > since]
            if kept:
                self._closed[user] = kept
            else:
                del self._closed[user]

    def forget_stopped(self, user: str, running: Mapping[str, datetime]) -> None:
        """Forget ``user``'s starts without a stop whose server is not running with
        that start (``running``: server name -> start of its current run): the stop
        was never written, and `hours_by_vo` would not count them. A stop line read
        later still brings the run back, whole."""
        with self._lock:
            for key in [k for k in self._open if k[0] == user]:
                if running.get(key[1]) != self._open[key].start:
                    del self._open[key]

    def runs(self, user: str) -> list[Run]:
        """This user's runs read so far: finished ones in the window, and unfinished ones."""
        with self._lock:
            closed = list(self._closed.get(user, ()))
            unfinished = [run for run in self._open.values() if run.user == user]
        return closed + unfinished

    async def hours(
        self,
        user: str,
        running: Mapping[str, datetime] | None = None,
        now: datetime | None = None,
    ) -> dict[str | None, float]:
        """``user``'s hours per VO over the window (see `hours_by_vo`).

        All of it in a thread: reading the log, and taking the lock that another page's
        read may hold, never wait on the hub's event loop.
        """
        now = now or datetime.now(UTC)

        def compute() -> dict[str | None, float]:
            self.refresh(now)
            result = hours_by_vo(self.runs(user), now, running, self.window)
            if running is not None:
                self.forget_stopped(user, running)
            return result

        return await asyncio.to_thread(compute)
