"""One exception for everything a CARMIN platform (or the way to it) refuses.

Why one class with a hint: a notebook user gets one line saying what the platform said
(its ``errorCode`` and message, when it sent one) and what to do next, never a traceback
wall nor the API key. The hints name the magics (``%carmin ...``) because that is where
most users meet these errors; scripts read the same advice.
"""

from __future__ import annotations

import json
from typing import Any

from egi_hub.carmin.models import ErrorCodeAndMessage

__all__ = [
    "KEY_HINT",
    "TOO_MANY_HINT",
    "CarminError",
    "CarminInputError",
    "error_from_response",
]

KEY_HINT = (
    "set your API key: CARMIN_API_KEY (or VIP_API_KEY), CarminClient(api_key=...), or the "
    "file ~/.egi/carmin_api_key (chmod 600)"
)
TOO_MANY_HINT = "too many running executions: wait for one to finish or kill one"
PIPELINES_HINT = "list them with %carmin pipelines"
EXECUTIONS_HINT = "list them with %carmin history"
_HINTS_BY_CODE = {
    2000: TOO_MANY_HINT,
    2001: TOO_MANY_HINT,
    8007: PIPELINES_HINT,  # VIP: no such pipeline
    8015: EXECUTIONS_HINT,  # VIP: no such execution
    40101: KEY_HINT,
}
_NOT_FOUND_HINTS = {
    "pipeline": PIPELINES_HINT,
    "execution": EXECUTIONS_HINT,
    "path": "check the path (list a folder with CarminClient.list)",
}
MAX_MESSAGE = 300  # characters of a platform's message shown; bodies can be whole pages


class CarminError(Exception):
    """A platform's refusal or a failed exchange: HTTP ``status`` (None when no answer
    came), the platform's ``code`` and ``message``, and a ``hint`` on what to do."""

    def __init__(self, status: int | None, code: int | None, message: str, hint: str = "") -> None:
        super().__init__(status, code, message, hint)
        self.status = status
        self.code = code
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        where = []
        if self.code is not None:
            where.append(f"error {self.code}")
        if self.status is not None:
            where.append(f"HTTP {self.status}")
        head = f"CARMIN {', '.join(where)}: " if where else "CARMIN: "
        return head + self.message + (f" ({self.hint})" if self.hint else "")

    def __repr__(self) -> str:
        return (
            f"CarminError(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r}, hint={self.hint!r})"
        )

    @property
    def too_many_executions(self) -> bool:
        return self.code in (2000, 2001)


class CarminInputError(CarminError, ValueError):
    """Inputs refused before anything was sent; ``parameter`` names the culprit."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(None, None, message, "")
        self.parameter = parameter

    def __str__(self) -> str:
        return self.message


def _short(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def hint_for(status: int | None, code: int | None, about: str = "") -> str:
    """The advice for an error: by the platform's code first, then by HTTP status."""
    if code in _HINTS_BY_CODE:
        return _HINTS_BY_CODE[code]
    if status in (401, 403):
        return KEY_HINT
    if status == 404 and about in _NOT_FOUND_HINTS:
        return _NOT_FOUND_HINTS[about]
    if status == 413:
        return "the request is too large for this platform (VIP takes about 15 MB at a time)"
    if status is not None and status >= 500:
        return "the platform had an internal error; try again later"
    return ""


def error_from_response(status: int, body: bytes, about: str = "") -> CarminError:
    """A `CarminError` from a failed response: the platform's ``{errorCode,
    errorMessage}`` when the body is one, else the start of the body or the status."""
    parsed: Any = None
    try:
        parsed = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        parsed = None
    code: int | None = None
    try:
        error = ErrorCodeAndMessage.from_json(parsed)
        code, message = error.code, _short(error.message) or "(no message)"
    except ValueError:
        text = body.decode("utf-8", "replace").strip()
        if text.lstrip().startswith("<"):
            text = ""  # an HTML error page says nothing a user can use in one line
        message = _short(text) if text else f"the platform answered HTTP {status}"
    if about and status == 404 and code is None:
        message = f"{about} not found: {message}"
    return CarminError(status, code, message, hint_for(status, code, about))
