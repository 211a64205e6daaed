"""Reading a ``%carmin`` line (and a ``%%carmin launch`` cell body) into a `Command`.

Why argparse with its exits removed: IPython's own ``magic_arguments`` calls
``sys.exit`` through argparse on a bad option, which a notebook shows as a
``SystemExit`` traceback. Here every mistake raises `MagicArgumentError`, one line
naming the problem and the usage of the subcommand, and ``--help`` raises
`MagicHelp` carrying the help text (the magic prints it). Nothing here talks to a
platform: parsing is pure, so unit tests run without a kernel.

``--param k=v`` values stay text: the pipeline's Boutiques descriptor types them later
(`egi_hub.carmin.inputs.check_inputs`). A repeated key makes a list, as does a value
in brackets (``--param files=[a.txt,b.txt]``). A cell body is a YAML or JSON mapping
of parameter names to values; ``--param`` wins over the body for the same name.
"""

from __future__ import annotations

import argparse
import json
import keyword
import shlex
from dataclasses import dataclass, field
from typing import Any, NoReturn

import yaml

from egi_hub.names import CONTROL

__all__ = [
    "SUBCOMMANDS",
    "Command",
    "MagicArgumentError",
    "MagicHelp",
    "parse_body",
    "parse_command",
    "parse_params",
]

MAX_BODY = 1 << 20  # characters of a cell body: an invocation, not a data file


class MagicArgumentError(ValueError):
    """A ``%carmin`` line that cannot be understood; ``str()`` is the one line to show."""


class MagicHelp(Exception):
    """``--help`` was asked for; ``str()`` is the help text."""


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser that raises instead of printing and exiting."""

    def error(self, message: str) -> NoReturn:
        usage = " ".join(self.format_usage().split()[1:])
        raise MagicArgumentError(f"{message} (usage: {usage})")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise MagicArgumentError(message or f"%{self.prog}: exit {status}")

    def print_help(self, file: Any = None) -> None:
        raise MagicHelp(self.format_help())

    def print_usage(self, file: Any = None) -> None:
        raise MagicHelp(self.format_usage())


@dataclass
class Command:
    """One ``%carmin`` invocation: the subcommand and its options."""

    name: str
    output: str | None = None  # -o VAR
    pipeline: str | None = None
    filter: str | None = None
    identifier: str | None = None
    run_name: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    wait: bool = False
    to: str | None = None
    limit: int = 20


def _variable(text: str) -> str:
    if not text.isidentifier() or keyword.iskeyword(text):
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a Python variable name")
    return text


def _limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 10_000:
        raise argparse.ArgumentTypeError(f"expected a number from 1 to 10000, got {text[:20]!r}")
    return int(text)


def _parsers() -> dict[str, _Parser]:
    def new(name: str, description: str) -> _Parser:
        parser = _Parser(prog=f"carmin {name}", description=description, add_help=True)
        parser.add_argument(
            "-o",
            "--output",
            metavar="VAR",
            type=_variable,
            help=("keep the result object in the variable VAR"),
        )
        return parser

    parsers = {
        "platform": new("platform", "What the platform is and supports."),
        "pipelines": new("pipelines", "The pipelines you may run (FILTER: in name or id)."),
        "describe": new("describe", "A pipeline's parameters."),
        "launch": new("launch", "Launch a pipeline (a cell body: YAML or JSON parameters)."),
        "status": new("status", "An execution's status, or this session's executions'."),
        "results": new("results", "An execution's result files (downloaded with --to)."),
        "kill": new("kill", "Stop an execution."),
        "history": new("history", "Your executions on the platform, newest first."),
    }
    parsers["pipelines"].add_argument("filter", nargs="?", help="text in the name or id")
    parsers["describe"].add_argument("pipeline", help="a pipeline's id or name")
    launch = parsers["launch"]
    launch.add_argument("pipeline", help="a pipeline's id or name")
    launch.add_argument("--name", dest="run_name", help="a name for the execution")
    launch.add_argument(
        "--param", "-p", action="append", default=[], metavar="K=V", help="a parameter value"
    )
    launch.add_argument("--wait", action="store_true", help="block this cell until it ends")
    parsers["status"].add_argument("identifier", nargs="?", help="an execution's id")
    parsers["results"].add_argument("identifier", help="an execution's id")
    parsers["results"].add_argument("--to", metavar="DIR", help="download into DIR")
    parsers["kill"].add_argument("identifier", help="an execution's id")
    parsers["history"].add_argument(
        "--limit", type=_limit, default=20, help="how many (default 20)"
    )
    return parsers


SUBCOMMANDS = tuple(_parsers())


def usage() -> str:
    """One line per subcommand, for ``%carmin`` alone or an unknown subcommand."""
    lines = ["%carmin SUBCOMMAND [options] [-o VAR]   (%carmin SUBCOMMAND --help for more)"]
    for parser in _parsers().values():
        usage = " ".join(parser.format_usage().split()[1:])
        lines.append(f"  {usage:<60} {parser.description}")
    return "\n".join(lines)


def _split(line: str) -> list[str]:
    if CONTROL.search(line.replace("\t", " ")):
        raise MagicArgumentError("the line has control characters")
    try:
        return shlex.split(line)
    except ValueError as e:  # "No closing quotation"
        raise MagicArgumentError(f"cannot read the line: {str(e).lower()}") from None


def _value(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == "[" and text[-1] == "]":
        inner = text[1:-1].strip()
        return [item.strip() for item in inner.split(",")] if inner else []
    return text


def parse_params(items: list[str]) -> dict[str, Any]:
    """``["k=v", ...]`` as ``{k: v}``; a repeated key or ``[a,b]`` gives a list."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise MagicArgumentError(f"--param {item[:60]!r}: expected NAME=VALUE")
        value = _value(raw)
        if key in params:
            before = params[key] if isinstance(params[key], list) else [params[key]]
            params[key] = before + (value if isinstance(value, list) else [value])
        else:
            params[key] = value
    return params


def parse_body(body: str) -> dict[str, Any]:
    """A ``%%carmin launch`` cell body (YAML or JSON): a mapping of parameter names to
    values (scalars or lists of scalars). Empty: no parameters."""
    if len(body) > MAX_BODY:
        raise MagicArgumentError(f"the cell body is over {MAX_BODY} characters")
    if not body.strip():
        return {}
    try:
        data = json.loads(body) if body.lstrip().startswith("{") else yaml.safe_load(body)
    except RecursionError:
        raise MagicArgumentError("the cell body is nested too deeply") from None
    except (ValueError, yaml.YAMLError) as e:
        where = getattr(e, "problem_mark", None) or getattr(e, "lineno", None)
        line = f" (line {where.line + 1})" if hasattr(where, "line") else ""
        line = line or (f" (line {where})" if isinstance(where, int) else "")
        raise MagicArgumentError(f"the cell body is not YAML or JSON{line}") from None
    if not isinstance(data, dict):
        raise MagicArgumentError("the cell body must map parameter names to values")
    params: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise MagicArgumentError(f"parameter name {key!r}: expected text")
        items = value if isinstance(value, list) else [value]
        for item in items:
            if isinstance(item, dict | list):
                raise MagicArgumentError(f"parameter {key!r}: values must be plain values")
        params[key] = value
    return params


def parse_command(line: str, cell: str | None = None) -> Command:
    """The `Command` of ``%carmin LINE`` (``cell``: the body of ``%%carmin LINE``)."""
    words = _split(line)
    if not words:
        raise MagicHelp(usage())
    name, rest = words[0], words[1:]
    if name in ("-h", "--help", "help"):
        raise MagicHelp(usage())
    parsers = _parsers()
    if name not in parsers:
        raise MagicArgumentError(
            f"unknown subcommand {name[:40]!r}: use one of {', '.join(SUBCOMMANDS)}"
        )
    if cell is not None and name != "launch":
        raise MagicArgumentError(f"%%carmin {name} takes no cell body (only %%carmin launch)")
    ns = parsers[name].parse_args(rest)
    command = Command(name=name, output=ns.output)
    for attr in ("pipeline", "filter", "identifier", "run_name", "wait", "to", "limit"):
        if hasattr(ns, attr):
            setattr(command, attr, getattr(ns, attr))
    if name == "launch":
        command.params = parse_body(cell) if cell is not None else {}
        command.params.update(parse_params(ns.param))
    return command
