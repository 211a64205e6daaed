"""Resource quantities as sites write them: CPU (``2``, ``0.5``, ``500m``) and memory
(``1G``, ``512Mi``, ``1.5G``, or a number of bytes).

Memory units follow JupyterHub's ``mem_limit`` (its ByteSpecification): ``K``, ``M``,
``G``, ``T`` are powers of 1024, exactly like ``Ki``, ``Mi``, ``Gi``, ``Ti``. So the
``1G`` of a quota and the ``1G`` of a profile's ``mem_limit`` are the same 1,073,741,824
bytes, whichever spawner applies the profile.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation

__all__ = ["QuantityError", "format_bytes", "parse_cpu", "parse_memory"]

_MEMORY_UNITS = {
    "": 1,
    "k": 2**10,
    "K": 2**10,
    "M": 2**20,
    "G": 2**30,
    "T": 2**40,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}
_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")


class QuantityError(ValueError):
    """A quantity that cannot be read."""


def _number(value: object, what: str) -> tuple[Decimal, str]:
    if isinstance(value, bool):
        raise QuantityError(f"expected a {what}, got a boolean")
    if isinstance(value, int | float):
        # YAML reads .nan, .inf and 1e999 as floats: a limit of nan would admit anything.
        if isinstance(value, float) and not math.isfinite(value):
            raise QuantityError(f"a {what} must be a finite number, got {value}")
        if value < 0:
            raise QuantityError(f"a {what} cannot be negative ({value})")
        return Decimal(str(value)), ""
    if not isinstance(value, str):
        raise QuantityError(f"expected a {what}, got {type(value).__name__}")
    match = _QUANTITY.match(value)
    if not match:
        raise QuantityError(f"{value!r} is not a {what} (e.g. 2, 0.5, 1G, 512Mi)")
    try:
        return Decimal(match.group(1)), match.group(2)
    except InvalidOperation:  # pragma: no cover - the pattern only admits numbers
        raise QuantityError(f"{value!r} is not a {what}") from None


def parse_cpu(value: object) -> float:
    """CPUs as a float: ``2``, ``0.5`` or ``500m`` (millicores)."""
    number, unit = _number(value, "CPU quantity")
    if unit == "m":
        number /= 1000
    elif unit:
        raise QuantityError(f"{value!r}: unknown CPU unit {unit!r} (use cores or m)")
    return float(number)


def parse_memory(value: object) -> int:
    """Bytes: a number of bytes, or with a unit (k, M, G, T, Ki, Mi, Gi, Ti)."""
    number, unit = _number(value, "memory quantity")
    if unit not in _MEMORY_UNITS:
        units = ", ".join(u for u in _MEMORY_UNITS if u)
        raise QuantityError(f"{value!r}: unknown memory unit {unit!r} (use {units})")
    return int(number * _MEMORY_UNITS[unit])


def format_bytes(value: int) -> str:
    """A short human form in the same units: ``1G``, ``512M``, ``1.5G``, ``0``."""
    for unit, size in (("T", 2**40), ("G", 2**30), ("M", 2**20), ("K", 2**10)):
        if value >= size:
            text = f"{value / size:.2f}".rstrip("0").rstrip(".")
            return f"{text}{unit}"
    return str(value)
