"""The CARMIN stand-in's pipelines: Boutiques descriptors as CARMIN ``Pipeline`` objects.

Each descriptor file becomes one pipeline. Its identifier is the descriptor's ``name``
in the spec's dialect and ``name/tool-version`` in VIP's (VIP names pipelines
``App/Version``). Parameters come from the descriptor: inputs with their CARMIN types
(File, String, Boolean for a Flag, Int64/Double for a Number, List for a list), outputs
as returned values in the spec's dialect. VIP lists inputs only, always with a
``defaultValue`` (null when none: VIP's own client reads the key), and adds the
``results-directory`` File parameter it adds to every pipeline. Descriptor ``tags``
with string values are the pipeline's ``properties``.

`check_inputs` checks an execution's ``inputValues`` against the descriptor before
anything runs (unknown, missing and ill-typed values refused, values sent as strings
accepted as VIP's client sends them) and gives back the Boutiques invocation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS_DIRECTORY = "results-directory"  # VIP's extra parameter


class InputError(Exception):
    """An ``inputValues`` problem: ``kind`` is missing or invalid, ``name`` the field."""

    def __init__(self, kind: str, name: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.name = name
        self.message = message


@dataclass
class Pipeline:
    identifier: str
    descriptor_path: Path
    descriptor: dict[str, Any]
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.descriptor["name"]

    @property
    def version(self) -> str:
        return str(self.descriptor.get("tool-version", "1.0"))

    def inputs(self) -> list[dict[str, Any]]:
        return list(self.descriptor.get("inputs", []))

    def outputs(self) -> list[dict[str, Any]]:
        return list(self.descriptor.get("output-files", []))

    def to_json(self, dialect: str, home: str) -> dict[str, Any]:
        params = [parameter(i, dialect) for i in self.inputs()]
        if dialect == "vip":
            params.append(
                {
                    "name": RESULTS_DIRECTORY,
                    "type": "File",
                    "isOptional": False,
                    "isReturnedValue": False,
                    "defaultValue": home,
                    "description": "Results directory",
                }
            )
        else:
            for out in self.outputs():
                params.append(
                    {
                        "name": out["id"],
                        "type": "File",
                        "isOptional": bool(out.get("optional", False)),
                        "isReturnedValue": True,
                        "description": out.get("description", out.get("name", "")),
                    }
                )
        return {
            "identifier": self.identifier,
            "name": self.name,
            "version": self.version,
            "description": self.descriptor.get("description", ""),
            "canExecute": True,
            "parameters": params,
            "properties": dict(self.properties),
        }


def carmin_type(inp: dict[str, Any]) -> str:
    if inp.get("list"):
        return "List"
    kind = inp.get("type")
    if kind == "Flag":
        return "Boolean"
    if kind == "Number":
        return "Int64" if inp.get("integer") else "Double"
    return "File" if kind == "File" else "String"


def parameter(inp: dict[str, Any], dialect: str) -> dict[str, Any]:
    param: dict[str, Any] = {
        "name": inp["id"],
        "type": carmin_type(inp),
        "isOptional": bool(inp.get("optional", False)) or inp.get("type") == "Flag",
        "isReturnedValue": False,
        "description": inp.get("description", inp.get("name", "")),
    }
    if "default-value" in inp:
        param["defaultValue"] = inp["default-value"]
    elif dialect == "vip":
        param["defaultValue"] = None
    return param


def load_pipelines(paths: list[Path], dialect: str) -> dict[str, Pipeline]:
    catalogue: dict[str, Pipeline] = {}
    for path in paths:
        descriptor = json.loads(Path(path).read_text())
        name = descriptor["name"]
        ident = f"{name}/{descriptor.get('tool-version', '1.0')}" if dialect == "vip" else name
        tags = descriptor.get("tags", {})
        props = {k: v for k, v in tags.items() if isinstance(v, str)}
        catalogue[ident] = Pipeline(ident, Path(path).resolve(), descriptor, props)
    return catalogue


def _scalar(inp: dict[str, Any], value: Any) -> Any:
    """One value of input ``inp``, typed as Boutiques wants; ValueError if ill-typed."""
    kind = inp.get("type")
    if kind == "Flag":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ValueError("expected a boolean")
    if kind == "Number":
        if isinstance(value, bool):
            raise ValueError("expected a number")
        if isinstance(value, str):
            try:
                value = float(value) if not inp.get("integer") else int(value)
            except ValueError:
                raise ValueError("expected a number") from None
        if not isinstance(value, (int, float)):
            raise ValueError("expected a number")
        if inp.get("integer") and (isinstance(value, float) and not value.is_integer()):
            raise ValueError("expected an integer")
        if inp.get("integer"):
            value = int(value)
        if "minimum" in inp and value < inp["minimum"]:
            raise ValueError(f"below the minimum {inp['minimum']}")
        if "maximum" in inp and value > inp["maximum"]:
            raise ValueError(f"above the maximum {inp['maximum']}")
        return value
    if not isinstance(value, str) or value == "":
        raise ValueError("expected a non-empty string")
    if "value-choices" in inp and value not in inp["value-choices"]:
        raise ValueError(f"not one of {inp['value-choices']}")
    return value


def check_inputs(
    pipeline: Pipeline, values: Any, dialect: str
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """The Boutiques invocation for ``values`` and the File inputs (id -> the values as
    given: platform paths or URLs); InputError for any unknown, missing or ill-typed one."""
    if not isinstance(values, dict):
        raise InputError("invalid", "inputValues", "inputValues must be an object")
    by_id = {i["id"]: i for i in pipeline.inputs()}
    extra = set(values) - set(by_id) - ({RESULTS_DIRECTORY} if dialect == "vip" else set())
    if extra:
        name = sorted(extra)[0]
        raise InputError("invalid", name, f"Input field '{name}' is not a pipeline parameter")
    invocation: dict[str, Any] = {}
    files: dict[str, list[str]] = {}
    for ident, inp in by_id.items():
        if ident not in values or values[ident] is None:
            if not inp.get("optional", False) and inp.get("type") != "Flag":
                if "default-value" not in inp:
                    raise InputError("missing", ident, f"Input field '{ident}' is missing")
            continue
        raw = values[ident]
        items = raw if isinstance(raw, list) else [raw]
        if isinstance(raw, list) and not inp.get("list"):
            if len(raw) != 1:
                raise InputError("invalid", ident, f"Input field '{ident}' takes one value")
        try:
            typed = [_scalar(inp, v) for v in items]
        except ValueError as e:
            raise InputError("invalid", ident, f"Input field '{ident}' is not valid: {e}") from None
        if inp.get("type") == "File":
            files[ident] = list(typed)
        invocation[ident] = typed if inp.get("list") else typed[0]
    return invocation, files
