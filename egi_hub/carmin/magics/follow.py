"""Following an execution to its end without holding the kernel.

Why a task on the kernel's loop: ipykernel runs cells on an asyncio loop that keeps
running between cells, so a task created there polls the platform (with
`AsyncCarminClient`, never blocking) while the user runs other cells. ``--wait`` follows
in the cell instead, with the blocking client: that cell (only) waits until the end.
Both drive the same `Run`: its `Backoff` says when to ask next (soon after a launch,
then less often, reset when the status changes), `Run.observe` takes each answer and
updates the `Board`, and a failed execution's stderr tail is fetched once at the end.

Final statuses: Finished, ExecutionFailed, Killed, InitializationFailed. ``Ready`` is
not final (it waits to be played; VIP's own client wrongly stops there), ``Unknown``
neither. A follower that loses the platform (the client gave up after its retries)
says so on the board and stops; ``%carmin status ID`` asks again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from egi_hub.carmin.aclient import AsyncCarminClient
from egi_hub.carmin.client import CarminClient
from egi_hub.carmin.errors import CarminError
from egi_hub.carmin.magics.views import Board, StatusView
from egi_hub.carmin.models import Execution, ExecutionStatus

__all__ = ["Backoff", "Run"]

FAILED = (ExecutionStatus.EXECUTION_FAILED, ExecutionStatus.INITIALIZATION_FAILED)


@dataclass
class Backoff:
    """Delays between polls: ``first``, growing by ``factor`` up to ``cap`` seconds;
    back to ``first`` when something changed."""

    first: float = 0.5
    factor: float = 1.5
    cap: float = 15.0
    _next: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._next = self.first

    def next(self, changed: bool) -> float:
        if changed:
            self._next = self.first
        delay = self._next
        self._next = min(self.cap, self._next * self.factor)
        return delay


class Run:
    """An execution this session launched (or asked about) and its place on the page.

    ``execution`` is the latest answer; ``history`` the statuses shown, in order;
    ``task`` the background follower, if any. ``await run.wait()`` (top-level ``await``
    in a notebook cell) waits for the end without blocking the kernel."""

    def __init__(
        self,
        execution: Execution,
        board: Board | None = None,
        backoff: Backoff | None = None,
        note: str = "",
    ) -> None:
        self.execution = execution
        self.board = board
        self.backoff = backoff or Backoff()
        self.history: list[str] = [execution.status.value]
        self.stderr_tail = ""
        self.lost: str = ""
        self.note = note
        self.task: asyncio.Task[None] | None = None
        self._ended = asyncio.Event() if _loop_running() else None
        if execution.status.is_final and self._ended is not None:
            self._ended.set()

    def __repr__(self) -> str:
        return repr(self.view())

    @property
    def identifier(self) -> str:
        return self.execution.identifier

    @property
    def status(self) -> ExecutionStatus:
        return self.execution.status

    @property
    def done(self) -> bool:
        return self.execution.status.is_final or bool(self.lost)

    def view(self) -> StatusView:
        note = self.lost or self.note
        if not note and not self.execution.status.is_final:
            note = "following…"
        return StatusView(self.execution, note, self.stderr_tail)

    def show(self) -> None:
        if self.board is not None:
            self.board.update(self.view())

    def observe(self, execution: Execution) -> bool:
        """Take a new answer; whether the status changed."""
        changed = execution.status is not self.execution.status
        self.execution = execution
        if changed:
            self.history.append(execution.status.value)
        self.note = ""
        self.show()
        return changed

    def _end(self, stderr: str = "") -> None:
        if stderr:
            self.stderr_tail = stderr
        self.show()
        if self._ended is not None:
            self._ended.set()

    def _lose(self, error: CarminError) -> None:
        self.lost = f"stopped following: {error} (ask again with %carmin status {self.identifier})"
        self._end()

    # -- following --------------------------------------------------------------------

    def follow_sync(
        self,
        client: CarminClient,
        timeout: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """Poll until a final status (or ``timeout`` seconds), in this cell."""
        deadline = None if timeout is None else time.monotonic() + timeout
        changed = True
        while not self.execution.status.is_final:
            delay = self.backoff.next(changed)
            if deadline is not None and time.monotonic() + delay > deadline:
                self.note = "still running; follow it with %carmin status"
                self.show()
                return
            sleep(delay)
            try:
                changed = self.observe(client.execution(self.identifier))
            except CarminError as e:
                self._lose(e)
                raise
        stderr = ""
        if self.execution.status in FAILED:
            try:
                stderr = client.stderr(self.identifier)
            except CarminError:
                stderr = ""
        self._end(stderr)

    async def follow_async(self, client: AsyncCarminClient) -> None:
        """Poll until a final status, on the running loop; never raises (the board
        says what went wrong)."""
        changed = True
        try:
            while not self.execution.status.is_final:
                await asyncio.sleep(self.backoff.next(changed))
                changed = self.observe(await client.execution(self.identifier))
            stderr = ""
            if self.execution.status in FAILED:
                try:
                    stderr = await client.stderr(self.identifier)
                except CarminError:
                    stderr = ""
            self._end(stderr)
        except CarminError as e:
            self._lose(e)
        except asyncio.CancelledError:
            self.lost = "stopped following (the extension was unloaded)"
            self._end()
            raise
        except Exception as e:  # never a silent "Task exception was never retrieved"
            self._lose(CarminError(None, None, f"{type(e).__name__}: {e}"))

    def start(self, client: AsyncCarminClient) -> asyncio.Task[None] | None:
        """Follow in the background on the running loop (None when there is none:
        outside a kernel, ``%carmin status`` asks by hand)."""
        if not _loop_running() or self.execution.status.is_final:
            return None
        self.task = asyncio.get_running_loop().create_task(self.follow_async(client))
        return self.task

    async def wait(self, timeout: float | None = None) -> Execution:  # noqa: ASYNC109
        """The execution once it ended (``await run.wait()`` in a cell)."""
        if self._ended is None:
            raise RuntimeError("this run is not followed on an event loop")
        await asyncio.wait_for(self._ended.wait(), timeout)
        return self.execution


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
