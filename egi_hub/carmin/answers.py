"""Reading a platform's answers within limits of size and time.

Why: an answer is hostile input. A platform (or whatever answers at CARMIN_URL) could
send an endless chunked body, or a JSON document of gigabytes, and a per-read timeout
never ends a body that keeps coming. So both transports stream every answer through a
`Body`: a JSON answer over `MAX_JSON` bytes is refused, an error body is kept to its
first `MAX_ERROR` bytes (enough for the platform's message) and the rest never read, a
log (stdout, stderr) keeps only its last `MAX_TAIL` bytes, and an answer still coming
after ``deadline`` seconds is cut. Big files go through `download` (to disk), not here.
"""

from __future__ import annotations

import time

from egi_hub.carmin.errors import CarminError

__all__ = ["DEADLINE", "MAX_CONTENT", "MAX_ERROR", "MAX_JSON", "MAX_TAIL", "Body"]

MAX_JSON = 16 << 20  # an API answer (a list of executions, a descriptor)
MAX_CONTENT = 64 << 20  # `content()`: a small file in memory
MAX_ERROR = 64 << 10  # an error body: the platform's message is at its start
MAX_TAIL = 64 << 10  # the end of a log: what a user reads when a tool failed
DEADLINE = 300.0  # seconds for one answer, however slowly its bytes come


class Body:
    """One answer's body as it comes: `add` each chunk while it returns True, then
    `bytes`. ``limit`` bytes at most (``tail``: the last ``limit`` kept), an error
    status keeps its first `MAX_ERROR` bytes; `CarminError` past the limit or the
    deadline (``deadline`` seconds from now)."""

    def __init__(
        self, status: int, limit: int, *, tail: bool = False, deadline: float = DEADLINE
    ) -> None:
        self.ok = 200 <= status < 300
        self.limit = limit if self.ok else MAX_ERROR
        self.tail = tail and self.ok
        self.deadline = deadline
        self._ends = time.monotonic() + deadline
        self._data = bytearray()

    def add(self, chunk: bytes) -> bool:
        """Take ``chunk``; False when no more is wanted (an error body is full)."""
        if time.monotonic() > self._ends:
            raise CarminError(
                None,
                None,
                f"the platform's answer was still coming after {self.deadline:g} s; cut",
                "try again later",
            )
        self._data += chunk
        if len(self._data) <= self.limit:
            return True
        if self.tail:
            if len(self._data) > 2 * self.limit:  # trim now and then, not on every chunk
                del self._data[: len(self._data) - self.limit]
            return True
        if not self.ok:
            del self._data[self.limit :]
            return False
        raise CarminError(
            None,
            None,
            f"the platform's answer is over {self.limit >> 20} MiB; refused",
            "is CARMIN_URL right?",
        )

    def bytes(self) -> bytes:
        data = self._data[-self.limit :] if self.tail else self._data
        return bytes(data)
