"""Spawn progress as it happens: events a start adds, streamed by ``Spawner.progress()``.

JupyterHub reads ``progress()`` (``GET /hub/api/users/<u>/server/progress``, the
spawn-pending page) while ``start()`` runs, and stops reading when the spawn ends. A
start adds its events with `ProgressEvents.progress_event` as each step happens; the
reader yields each one as soon as it is added, waiting on a signal in between (no
polling, nothing held back until the end). ``progress_end`` says that no more will
come, so a reader that delegates afterwards (KubeSpawner's pod events) can go on.

The events of one start live until the server's state is cleared (at the next start,
or at stop): a page opened late still sees them all, in order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

__all__ = ["ProgressEvents"]


class ProgressEvents:
    """Mixed into a spawner: a list of progress events and a way to follow it."""

    _egi_events: list[dict[str, Any]]
    _egi_events_ended: bool
    _egi_events_signal: asyncio.Event | None

    def _progress_log(self) -> list[dict[str, Any]]:
        if "_egi_events" not in self.__dict__:
            self._progress_reset()
        return self._egi_events

    def _progress_reset(self) -> None:
        waiting = self.__dict__.get("_egi_events_signal")
        self._egi_events = []
        self._egi_events_ended = False
        self._egi_events_signal = None
        if waiting is not None:  # a reader of the old list looks again, at the new one
            waiting.set()

    def _progress_wake(self) -> None:
        signal, self._egi_events_signal = self._egi_events_signal, None
        if signal is not None:
            signal.set()

    def progress_event(
        self, progress: int | None, message: str, html_message: str | None = None
    ) -> None:
        """Add an event (``progress`` out of 100, or None to leave the bar as it is)."""
        event: dict[str, Any] = {"message": message}
        if progress is not None:
            event["progress"] = progress
        if html_message:
            event["html_message"] = html_message
        self._progress_log().append(event)
        self._progress_wake()

    def progress_end(self) -> None:
        """No more events from this start."""
        self._progress_log()
        self._egi_events_ended = True
        self._progress_wake()

    @property
    def progress_events(self) -> list[dict[str, Any]]:
        """The events added so far by the current (or last) start."""
        return list(self._progress_log())

    async def follow_progress(self) -> AsyncIterator[dict[str, Any]]:
        """Yield every event of the current start as it is added, until `progress_end`.

        JupyterHub stops reading when the spawn ends, so a start that never ends its
        events (a cancelled one) leaves no reader waiting.
        """
        current: list[dict[str, Any]] | None = None
        seen = 0
        while True:
            events = self._progress_log()
            if events is not current:  # cleared under us: a new start began
                current, seen = events, 0
            while seen < len(events):
                yield dict(events[seen])
                seen += 1
            if self._egi_events_ended:
                return
            if self._egi_events_signal is None:
                self._egi_events_signal = asyncio.Event()
            await self._egi_events_signal.wait()

    def clear_state(self) -> None:
        super().clear_state()  # type: ignore[misc]
        self._progress_reset()
