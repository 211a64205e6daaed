"""Checking a launch's inputs against the pipeline's Boutiques descriptor, before sending.

Why before: a platform finds a bad parameter only after queueing (VIP answers minutes
later with a failed execution), and the magics take parameters as text. `check_inputs`
refuses unknown names, missing required inputs, ill-typed values, values outside the
descriptor's choices or bounds, wrong list lengths and broken groups (mutually
exclusive, one required, all or none) and ``requires-inputs``/``disables-inputs``, each
with one line naming the parameter; it returns the values converted to their types
(``"3"`` for a Number becomes 3, ``"true"`` for a Flag becomes True) for the platform.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

from egi_hub.carmin.errors import CarminInputError
from egi_hub.carmin.models import ParameterType, Pipeline
from egi_hub.names import CONTROL

__all__ = ["check_inputs", "descriptor_from_pipeline"]

_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(name: str, message: str) -> CarminInputError:
    return CarminInputError(name, f"parameter {name!r}: {message}")


def _number(name: str, spec: Mapping[str, Any], value: Any) -> int | float:
    if isinstance(value, bool):
        raise _fail(name, f"expected a number, got {_show(value)}")
    if isinstance(value, str):
        try:
            value = float(value.strip()) if not value.strip().lstrip("+-").isdigit() else int(value)
        except ValueError:
            raise _fail(name, f"expected a number, got {_show(value)}") from None
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise _fail(name, f"expected a finite number, got {_show(value)}")
    if spec.get("integer"):
        if isinstance(value, float) and not value.is_integer():
            raise _fail(name, f"expected an integer, got {_show(value)}")
        value = int(value)
    low, high = spec.get("minimum"), spec.get("maximum")
    if isinstance(low, int | float) and not isinstance(low, bool):
        if value < low or (spec.get("exclusive-minimum") and value == low):
            op = ">" if spec.get("exclusive-minimum") else ">="
            raise _fail(name, f"must be {op} {low}, got {value}")
    if isinstance(high, int | float) and not isinstance(high, bool):
        if value > high or (spec.get("exclusive-maximum") and value == high):
            op = "<" if spec.get("exclusive-maximum") else "<="
            raise _fail(name, f"must be {op} {high}, got {value}")
    return value


def _text(name: str, value: Any, kind: str) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise _fail(name, f"expected {kind}, got {_show(value)}")
    value = str(value)
    if CONTROL.search(value):
        raise _fail(name, "has control characters")
    if kind == "a file" and not value.strip():
        raise _fail(name, "an empty file name")
    return value


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise _fail(name, f"expected true or false, got {_show(value)}")


def _one(name: str, spec: Mapping[str, Any], value: Any) -> Any:
    kind = spec.get("type")
    if kind == "Number":
        result: Any = _number(name, spec, value)
    elif kind == "Flag":
        result = _flag(name, value)
    elif kind == "File":
        result = _text(name, value, "a file")
    else:
        result = _text(name, value, "text")
    choices = spec.get("value-choices")
    if isinstance(choices, list) and choices and result not in choices:
        shown = ", ".join(str(c) for c in choices[:10]) + (", ..." if len(choices) > 10 else "")
        raise _fail(name, f"{_show(result)} is not one of: {shown}")
    return result


def _value(name: str, spec: Mapping[str, Any], value: Any) -> Any:
    if not spec.get("list"):
        if isinstance(value, list | tuple):
            raise _fail(name, "takes one value, not a list")
        return _one(name, spec, value)
    items = list(value) if isinstance(value, list | tuple) else [value]
    low, high = spec.get("min-list-entries"), spec.get("max-list-entries")
    if isinstance(low, int) and len(items) < low:
        raise _fail(name, f"needs at least {low} values, got {len(items)}")
    if isinstance(high, int) and len(items) > high:
        raise _fail(name, f"takes at most {high} values, got {len(items)}")
    return [_one(name, spec, item) for item in items]


def check_inputs(
    descriptor: Mapping[str, Any], inputs: Mapping[str, Any], *, extra: Iterable[str] = ()
) -> dict[str, Any]:
    """The ``inputs`` converted to their Boutiques types, or `CarminInputError` (a
    `ValueError`) naming the first parameter at fault. Names are the inputs' ``id``;
    ``extra`` names platform parameters the descriptor does not list (VIP's
    ``results-directory``), passed through as they are. None values count as absent."""
    specs: dict[str, Mapping[str, Any]] = {}
    for spec in descriptor.get("inputs") or []:
        if isinstance(spec, Mapping) and isinstance(spec.get("id"), str):
            specs[spec["id"]] = spec
    allowed = set(extra)
    given = {k: v for k, v in inputs.items() if v is not None}
    result: dict[str, Any] = {}
    for name, value in given.items():
        if name in allowed and name not in specs:
            result[name] = value
            continue
        if name not in specs:
            known = ", ".join(sorted(specs)[:20]) or "none"
            raise _fail(str(name), f"unknown parameter (this pipeline takes: {known})")
        result[name] = _value(name, specs[name], value)
    for name, spec in specs.items():
        if name not in given and not spec.get("optional") and "default-value" not in spec:
            kind = spec.get("type", "String")
            described = f": {spec['description']}" if spec.get("description") else ""
            raise _fail(name, f"missing required {kind} parameter{described}"[:200])
    present = {n for n in given if n in specs}
    for name in present:
        for needed in specs[name].get("requires-inputs") or []:
            if needed not in present:
                raise _fail(name, f"needs parameter {needed!r} as well")
        for disabled in specs[name].get("disables-inputs") or []:
            if disabled in present:
                raise _fail(name, f"cannot be given together with {disabled!r}")
    for group in descriptor.get("groups") or []:
        if not isinstance(group, Mapping):
            continue
        members = [m for m in group.get("members") or [] if isinstance(m, str)]
        chosen = [m for m in members if m in present]
        label = str(group.get("id") or group.get("name") or ", ".join(members))
        if group.get("mutually-exclusive") and len(chosen) > 1:
            raise _fail(chosen[1], f"excludes {chosen[0]!r} (group {label})")
        if group.get("one-is-required") and not chosen:
            raise _fail(label, f"give one of: {', '.join(members)}")
        if group.get("all-or-none") and chosen and len(chosen) != len(members):
            missing = [m for m in members if m not in present]
            raise _fail(missing[0], f"group {label} takes all of its parameters or none")
    return result


_FROM_CARMIN = {
    ParameterType.FILE: {"type": "File"},
    ParameterType.STRING: {"type": "String"},
    ParameterType.BOOLEAN: {"type": "Flag"},
    ParameterType.INT64: {"type": "Number", "integer": True},
    ParameterType.DOUBLE: {"type": "Number"},
    ParameterType.LIST: {"type": "String", "list": True},
}


def descriptor_from_pipeline(pipeline: Pipeline) -> dict[str, Any]:
    """A Boutiques-like descriptor from a CARMIN `Pipeline`'s parameters, for platforms
    that serve no Boutiques descriptor."""
    inputs = []
    for p in pipeline.parameters:
        if p.returned:
            continue
        spec: dict[str, Any] = {"id": p.name, "name": p.name, "optional": p.optional}
        spec.update(_FROM_CARMIN.get(p.type, {"type": "String"}))
        if p.default is not None:
            spec["default-value"] = p.default
        if p.description:
            spec["description"] = p.description
        inputs.append(spec)
    return {"name": pipeline.name, "inputs": inputs}
