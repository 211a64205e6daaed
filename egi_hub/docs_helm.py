"""The Helm chart's values reference in ``docs/`` generated from the chart
(``python -m egi_hub.docs_helm``, run by ``make docs``).

The chart's ``values.schema.json`` is what ``helm install`` enforces, so it is the one
source for the reference: each key's path, type and ``description``; the default is the
one in ``values.yaml``. A page asks for the reference with marker comments::

    <!-- helm-values -->
    (generated; rewritten by `make docs`)
    <!-- end helm-values -->

Objects the schema closes (``additionalProperties: false``) are opened into one row per
key; free-form maps (labels, ``hub.config``, resources) are one row. The schema's shared
definitions (``$defs``: image, resources, security contexts, quota limits) are one row
where used and described once, under "Types". ``--check`` lists out-of-date pages and
exits 1 (``tests/unit/test_docs_helm.py`` does the same check); ``--undescribed`` lists
the keys whose schema has no ``description`` yet (their row says nothing).
"""

from __future__ import annotations

import argparse
import functools
import json
import re
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from .docs_tables import refresh_pages

__all__ = [
    "CHART",
    "key_rows",
    "main",
    "render_page",
    "render_reference",
    "stale_pages",
    "undescribed",
]

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "helm" / "egi-hub"
DOCS = ROOT / "docs"
MARKER = re.compile(r"(<!-- helm-values -->\n)(?P<body>.*?)(<!-- end helm-values -->)", re.DOTALL)
MISSING = object()


def _def_name(node: Mapping[str, Any]) -> str | None:
    ref = node.get("$ref", "")
    return ref.rsplit("/", 1)[-1] if ref.startswith("#/$defs/") else None


def render_type(node: Mapping[str, Any]) -> str:
    """A short type: ``string``, ``list of string``, ``map of image``, ``one of `a`, `b```."""
    name = _def_name(node)
    if name:
        return f"[{name}](#{name.lower()})"
    if "enum" in node:
        shown = (v if isinstance(v, str) else json.dumps(v) for v in node["enum"])
        return "one of " + ", ".join(f"`{v}`" for v in shown)
    for combiner in ("oneOf", "anyOf"):
        if combiner in node:
            return " or ".join(dict.fromkeys(render_type(n) for n in node[combiner]))
    kinds = node.get("type", "object" if "properties" in node else "any")
    if isinstance(kinds, list):
        return " or ".join(kinds)
    if kinds == "array":
        items = node.get("items")
        return f"list of {render_type(items)}" if isinstance(items, dict) else "list"
    if kinds == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map of {render_type(node['additionalProperties'])}"
    return kinds


def _closed(node: Mapping[str, Any]) -> bool:
    return node.get("additionalProperties") is False and bool(node.get("properties"))


def _flow(value: Any) -> str:
    """A default in YAML's flow style, as values.yaml would write it."""
    if value is MISSING:
        return ""
    if value == "":
        return '`""`'
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6)
    text = text.strip().removesuffix("...").strip()
    return "`" + text.replace("|", "\\|") + "`"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def key_rows(
    schema: Mapping[str, Any], values: Any, path: str = ""
) -> Iterator[tuple[str, str, str, str]]:
    """(key, type, default, description) of every documented key under ``schema``."""
    for key, node in schema.get("properties", {}).items():
        where = f"{path}.{key}" if path else key
        default = values.get(key, MISSING) if isinstance(values, Mapping) else MISSING
        if _closed(node) and not _def_name(node):
            if node.get("description"):
                yield where, "object", "", _cell(node["description"])
            yield from key_rows(node, default if default is not MISSING else {}, where)
            continue
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and _closed(extra) and not _def_name(extra):
            yield where, render_type(node), _flow(default), _cell(node.get("description", ""))
            yield from key_rows(extra, {}, f"{where}.<name>")
            continue
        yield where, render_type(node), _flow(default), _cell(node.get("description", ""))


def _table(rows: list[tuple[str, str, str, str]]) -> list[str]:
    lines = ["| key | type | default | description |", "| --- | --- | --- | --- |"]
    for key, kind, default, description in rows:
        lines.append(f"| `{key}` | {kind} | {default} | {description} |")
    return lines


def _used_defs(schema: Mapping[str, Any]) -> list[str]:
    """The $defs a schema refers to, directly or through other $defs, in first-use order."""
    defs = schema.get("$defs", {})
    found: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            name = _def_name(node)
            if name and name not in found and name in defs:
                found.append(name)
                walk(defs[name])
            for key, value in node.items():
                if key != "$defs":
                    walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    return found


def render_reference(schema: Mapping[str, Any], values: Mapping[str, Any]) -> str:
    """The Markdown reference: a table per top-level section, then the shared types."""
    lines: list[str] = []
    top = [k for k, n in schema.get("properties", {}).items() if not _closed(n)]
    if top:
        lines += ["### Top level", ""]
        subset = {"properties": {k: schema["properties"][k] for k in top}}
        lines += [*_table(list(key_rows(subset, values))), ""]
    for key, node in schema.get("properties", {}).items():
        if key in top:
            continue
        lines += [f"### `{key}`", ""]
        if node.get("description"):
            lines += [_cell(node["description"]), ""]
        lines += [*_table(list(key_rows(node, values.get(key) or {}, key))), ""]
    defs = schema.get("$defs", {})
    used = _used_defs(schema)
    if used:
        lines += ["### Types", ""]
        for name in used:
            node = defs[name]
            lines += [f"#### {name}", ""]
            what = _cell(node.get("description", ""))
            if _closed(node):
                lines += [what, ""] if what else []
                rows = [
                    (f"`{k}`", render_type(n), _cell(n.get("description", "")))
                    for k, n in node["properties"].items()
                ]
                lines += ["| key | type | description |", "| --- | --- | --- |"]
                lines += [f"| {k} | {t} | {d} |" for k, t, d in rows]
            else:
                lines.append(f"{render_type(node)}" + (f": {what}" if what else ""))
            lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def load_chart(chart: Path = CHART) -> tuple[dict[str, Any], dict[str, Any]]:
    """The chart's schema and default values."""
    schema = json.loads((chart / "values.schema.json").read_text())
    values = yaml.safe_load((chart / "values.yaml").read_text()) or {}
    return schema, values


def render_page(text: str, chart: Path = CHART) -> str:
    """``text`` with its marked reference regenerated."""
    if not MARKER.search(text):
        return text
    reference = render_reference(*load_chart(chart))
    return MARKER.sub(lambda m: f"{m[1]}{reference}{m[3]}", text)


def stale_pages(docs: Path = DOCS, chart: Path = CHART) -> list[Path]:
    """Pages whose reference differs from what the chart says."""
    stale = []
    for page in sorted(docs.rglob("*.md")):
        text = page.read_text()
        if MARKER.search(text) and render_page(text, chart) != text:
            stale.append(page)
    return stale


def undescribed(chart: Path = CHART) -> list[str]:
    """Keys the reference shows without a description (the schema owes them one)."""
    schema, values = load_chart(chart)
    return [row[0] for row in key_rows(schema, values) if not row[3]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m egi_hub.docs_helm", description=__doc__)
    parser.add_argument("--docs", type=Path, default=DOCS, help="the docs folder")
    parser.add_argument("--chart", type=Path, default=CHART, help="the chart folder")
    parser.add_argument("--check", action="store_true", help="only list out-of-date pages")
    parser.add_argument(
        "--undescribed", action="store_true", help="list the keys the schema does not describe"
    )
    args = parser.parse_args(argv)
    if args.undescribed:
        missing = undescribed(args.chart)
        print("\n".join(missing))
        return 1 if missing else 0
    stale = stale_pages(args.docs, args.chart)
    render = functools.partial(render_page, chart=args.chart)
    return refresh_pages(stale, render, "Helm values reference", args.check)


if __name__ == "__main__":
    sys.exit(main())
