"""When to try a request again, and how long to wait first.

Why explicit: a notebook user on a flaky link should see a transient 502 or a reset
connection absorbed, but a real refusal at once, and never an execution launched twice.
So: idempotent requests (GET, PUT, DELETE, HEAD) are retried on 5xx (but 501), 429,
timeouts and network errors; a POST (``createExecution``, ``authenticate``) only when it
surely did not reach the platform (no connection made) or was refused before any work
(429). Not on a 503: a proxy may say it after the platform got the request, and a
retried launch would run the pipeline twice. Waits grow
exponentially from ``base`` up to ``cap`` with "equal jitter" (between half and all of
the step, so many clients do not retry in step), a ``Retry-After`` of the server is
honoured up to ``cap``, and the number of attempts is bounded. ``sleep``/``asleep`` and
``rng`` are injectable so tests check the policy without waiting.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from egi_hub.carmin.errors import CarminError

__all__ = ["IDEMPOTENT", "Incomplete", "RetryPolicy", "give_up"]


class Incomplete(Exception):
    """A body ended before its announced end (or a download got a transient status):
    worth another attempt."""


IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
_TRANSIENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, Incomplete)


def give_up(error: BaseException, attempts: int, url: str) -> CarminError:
    """The one-line error after the last failed attempt of an exchange."""
    if isinstance(error, CarminError):
        return error
    kind = "timed out" if isinstance(error, httpx.TimeoutException) else "failed"
    what = str(error) if isinstance(error, Incomplete) else type(error).__name__
    return CarminError(
        None,
        None,
        f"the request to the platform {kind} after {attempts} attempt(s) ({what})",
        f"is the platform at {url} reachable? (CARMIN_URL sets another one)",
    )


@dataclass
class RetryPolicy:
    """``attempts`` tries in all (1 = no retry); waits of ``base * 2**n`` capped at
    ``cap`` seconds, jittered."""

    attempts: int = 4
    base: float = 0.5
    cap: float = 8.0
    rng: random.Random = field(default_factory=random.Random)
    sleep: Callable[[float], None] = time.sleep
    asleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("a retry policy needs at least one attempt")
        if self.base < 0 or self.cap < 0:
            raise ValueError("retry waits cannot be negative")

    def delay(self, failures: int, retry_after: str | None = None) -> float:
        """Seconds to wait after the ``failures``-th failure (1 = the first)."""
        step = min(self.cap, self.base * 2 ** max(0, failures - 1))
        wait = step / 2 + self.rng.random() * step / 2
        if retry_after:
            try:
                asked = float(retry_after)
            except ValueError:
                asked = 0.0  # an HTTP date: not worth parsing, the backoff stands
            if asked == asked and asked > wait:  # not NaN
                wait = min(self.cap, asked)
        return wait

    def after_error(self, method: str, error: BaseException, failures: int) -> float | None:
        """The wait before trying again after the ``failures``-th failed exchange, or
        None to give up."""
        if failures >= self.attempts or not self.retry_error(method, error):
            return None
        return self.delay(failures)

    def after_status(
        self, method: str, status: int, failures: int, retry_after: str | None = None
    ) -> float | None:
        """The wait before trying again after an answer with ``status`` (``failures``
        failures before it), or None to take the answer as it is."""
        if failures + 1 >= self.attempts or not self.retry_status(method, status):
            return None
        return self.delay(failures + 1, retry_after)

    def retry_status(self, method: str, status: int) -> bool:
        """Whether an answer with ``status`` is worth another try."""
        if status == 429:
            return True
        return method.upper() in IDEMPOTENT and status >= 500 and status != 501

    def retry_error(self, method: str, error: BaseException) -> bool:
        """Whether a failed exchange (no answer) is worth another try."""
        if isinstance(error, _NOT_SENT):
            return True
        return method.upper() in IDEMPOTENT and isinstance(error, _TRANSIENT)
