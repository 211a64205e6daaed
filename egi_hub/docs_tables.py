"""The settings tables of ``docs/`` generated from the traits (``python -m egi_hub.docs_tables``).

Hand-written tables drifted from the code (``clock_skew``'s table left out ``nbf``), so
the trait is the only source: its name, type, effective default and the first paragraph
of its ``help=``. A page asks for a table with marker comments::

    <!-- config-table: CheckinAuthenticator -->
    (generated; rewritten by `make docs`)
    <!-- end config-table -->

A table lists the configurable traits that egi-hub's own classes define (mixins
included) and the inherited ones whose default egi-hub changes. Defaults are computed
the way the class computes them, on an instance that is never initialised, in a neutral
environment (no environment variables, ``HOME`` shown as ``~``), so a page does not
depend on the machine that generated it. A default taken from an environment variable
the help names (``$EGI_CHECKIN_CLIENT_ID``) is shown as that variable.
``--check`` lists out-of-date pages and exits 1; ``tests/unit/test_docs_tables.py``
does the same check.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib
import inspect
import json
import os
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from traitlets import (
    Bool,
    CaselessStrEnum,
    Container,
    Dict,
    Enum,
    Float,
    HasTraits,
    Int,
    TraitType,
    Unicode,
    Union,
)
from traitlets.traitlets import DefaultHandler

__all__ = ["CLASSES", "main", "owned_traits", "render_page", "render_table", "stale_pages"]

# The configurable classes egi-hub documents, by the name a page's marker uses.
CLASSES = {
    "CheckinAuthenticator": "egi_hub.authenticator.checkin:CheckinAuthenticator",
    "DevAuthenticator": "egi_hub.authenticator.dev:DevAuthenticator",
    "EGILocalSpawner": "egi_hub.spawner.local:EGILocalSpawner",
    "EGIKubeSpawner": "egi_hub.spawner.kube:EGIKubeSpawner",
    "QuotaPolicy": "egi_hub.spawner.quota:QuotaPolicy",
    "LocalStack": "egi_hub.stack:LocalStack",
    "SitePages": "egi_hub.pages:SitePages",
    "MountCredentials": "egi_hub.storage_mounts.credentials:MountCredentials",
    "KubeMounts": "egi_hub.storage_mounts.kube:KubeMounts",
    "BinderService": "egi_hub.binder_service.service:BinderService",
    "BinderGuests": "egi_hub.binder_service.guests:BinderGuests",
    "Resolver": "egi_hub.binder_service.resolver:Resolver",
    "GitProvider": "egi_hub.binder_service.providers.git:GitProvider",
    "RecordProvider": "egi_hub.binder_service.providers.records:RecordProvider",
    "VenvBuilder": "egi_hub.binder_service.builders.venv:VenvBuilder",
    "DockerBuilder": "egi_hub.binder_service.builders.docker:DockerBuilder",
    "KubernetesBuilder": "egi_hub.binder_service.builders.kubernetes:KubernetesBuilder",
}
# Inherited traits left out although egi-hub sets their default: options_form's default
# is the profile form (when profile_list is set), apply_user_options' the hook that
# takes the profile options: code, not a value a table can show.
SKIP = frozenset({"options_form", "apply_user_options"})
DOCS = Path(__file__).resolve().parents[1] / "docs"
MARKER = re.compile(
    r"(<!-- config-table: (?P<name>\w+) -->\n)(?P<body>.*?)(<!-- end config-table -->)", re.DOTALL
)
ENV_VAR = re.compile(r"\$\{?([A-Z][A-Z0-9_]*)")


def load_class(name: str) -> type[HasTraits]:
    """The class a marker names (imported on demand: only ``make docs`` needs them all)."""
    module, _, attr = CLASSES[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def _own(klass: type) -> bool:
    return klass.__module__.split(".")[0] == "egi_hub"


def owned_traits(cls: type[HasTraits]) -> list[str]:
    """Configurable traits egi-hub defines on ``cls``, then inherited ones it re-defaults."""
    all_traits = cls.class_traits(config=True)
    names: list[str] = []
    redefaulted: list[str] = []
    for klass in cls.__mro__:
        if not _own(klass):
            continue
        for attr, value in vars(klass).items():
            if isinstance(value, TraitType) and attr in all_traits:
                names.append(attr)
            elif isinstance(value, DefaultHandler) and value.trait_name in all_traits:
                redefaulted.append(value.trait_name)
    ordered = dict.fromkeys([*names, *redefaulted])
    return [name for name in ordered if name not in SKIP]


@contextlib.contextmanager
def neutral_environment(**variables: str) -> Iterator[None]:
    """``os.environ`` replaced by ``HOME=~`` (plus ``variables``) for dynamic defaults."""
    # Replaced, not cleared (B003): the process's real environment is never touched.
    saved = os.environ
    os.environ = {"HOME": "~", "PATH": "", **variables}  # type: ignore[assignment]  # noqa: B003
    try:
        yield
    finally:
        os.environ = saved  # noqa: B003


def _default(cls: type[HasTraits], name: str, **variables: str) -> Any:
    # __new__ without __init__: no config loading, no start-up checks, no side effects.
    with neutral_environment(**variables):
        return cls.__new__(cls).trait_defaults(name)


def _plain(value: Any) -> Any:
    """A value as the site file would write it (dataclass values as their fields)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items() if v is not None}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    if isinstance(value, str) and value.startswith(sys.prefix + os.sep):
        return "<sys.prefix>" + value[len(sys.prefix) :]
    return value


def render_value(value: Any) -> str:
    """A default as Markdown code, in YAML's flow style (strings bare at the top level)."""
    value = _plain(value)
    if callable(value):
        return "computed"
    if isinstance(value, str):
        text = value if value else '""'
    else:
        text = json.dumps(value, ensure_ascii=False, default=str)
        if " at 0x" in text:  # an object without a stable text: name its type only
            text = type(value).__name__
    return f"`{text}`" if text else '`""`'


def render_default(cls: type[HasTraits], name: str, help_text: str) -> str:
    """The effective default; from an environment variable when the help names one."""
    neutral = render_value(_default(cls, name))
    for var in dict.fromkeys(ENV_VAR.findall(help_text)):
        from_env = render_value(_default(cls, name, **{var: f"${var}"}))
        if from_env != neutral:
            return from_env if neutral == '`""`' else f"{from_env}, else {neutral}"
    return neutral


def render_type(trait: TraitType) -> str:
    """A short type: ``str``, ``list of str``, ``one of `a`, `b```, or the trait's own text."""
    if _own(type(trait)):
        own_text = next(
            (vars(k)["info_text"] for k in type(trait).__mro__ if "info_text" in vars(k)), ""
        )
        if own_text and own_text != TraitType.info_text:
            return re.sub(r"^an? ", "", own_text)
        return type(trait).__name__.removesuffix("Trait")
    if isinstance(trait, Enum | CaselessStrEnum):
        return "one of " + ", ".join(f"`{v}`" for v in trait.values or ())
    if isinstance(trait, Union):
        return " or ".join(render_type(t) for t in trait.trait_types)
    if isinstance(trait, Container):
        inner = getattr(trait, "_trait", None)
        return "list" + (f" of {render_type(inner)}" if inner is not None else "")
    simple = {Bool: "bool", Int: "int", Float: "float", Unicode: "str", Dict: "dict"}
    for kind, text in simple.items():
        if isinstance(trait, kind):
            return text
    return type(trait).__name__


def render_help(help_text: str) -> str:
    """The first paragraph, on one line, in Markdown (reST ````code```` to `code`).

    A first paragraph that introduces a literal block (``values::``) ends before the
    example, and the next paragraph of prose joins it: a table cell holds no YAML.
    """
    paragraphs = [p for p in inspect.cleandoc(help_text or "").split("\n\n") if p.strip()]
    first = paragraphs[0] if paragraphs else ""
    if first.endswith("::"):
        prose = [p for p in paragraphs[1:] if not p.startswith((" ", "\t"))]
        first = first[:-2] + "." + (" " + prose[0] if prose else "")
    text = " ".join(first.split())
    text = re.sub(r"``([^`]+)``", r"`\1`", text)
    return text.replace("|", "\\|")


def render_table(cls: type[HasTraits]) -> str:
    """The Markdown table of ``cls``'s settings."""
    traits = cls.class_traits()
    rows = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    for name in owned_traits(cls):
        trait = traits[name]
        cells = [
            f"`{name}`",
            render_type(trait).replace("|", "\\|"),
            render_default(cls, name, trait.help or "").replace("|", "\\|"),
            render_help(trait.help),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def render_page(text: str) -> str:
    """``text`` with every marked table regenerated."""

    def table(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in CLASSES:
            raise KeyError(f"config-table: unknown class {name!r} (known: {', '.join(CLASSES)})")
        return f"{match[1]}{render_table(load_class(name))}{match[4]}"

    return MARKER.sub(table, text)


def pages(docs: Path = DOCS) -> list[Path]:
    """The Markdown pages under ``docs``."""
    return sorted(docs.rglob("*.md"))


def stale_pages(docs: Path = DOCS) -> list[Path]:
    """Pages whose tables differ from what the traits say."""
    return [p for p in pages(docs) if render_page(p.read_text()) != p.read_text()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m egi_hub.docs_tables", description=__doc__)
    parser.add_argument("--docs", type=Path, default=DOCS, help="the docs folder")
    parser.add_argument("--check", action="store_true", help="only list out-of-date pages")
    args = parser.parse_args(argv)
    return refresh_pages(stale_pages(args.docs), render_page, "config tables", args.check)


def refresh_pages(stale: list[Path], render: Callable[[str], str], what: str, check: bool) -> int:
    """Write each ``stale`` page anew with ``render``, or (``check``) name it: the exit
    status of ``make docs``'s generators (1: a page is out of date, with ``check``)."""
    for page in stale:
        if check:
            print(f"{page}: {what} out of date: run `make docs`", file=sys.stderr)
        else:
            page.write_text(render(page.read_text()))
            print(f"updated {page}")
    return 1 if check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
