"""The Helm values reference in docs/ is what the chart's schema says (egi_hub.docs_helm)."""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path

import pytest

from egi_hub import docs_helm
from egi_hub.docs_helm import key_rows, render_page, render_reference, render_type


def test_the_reference_in_the_docs_is_up_to_date():
    pages = [
        p for p in sorted(docs_helm.DOCS.rglob("*.md")) if docs_helm.MARKER.search(p.read_text())
    ]
    assert pages, "no page shows the Helm values reference"
    for page in pages:
        text = page.read_text()
        fresh = render_page(text)
        diff = "\n".join(
            difflib.unified_diff(text.splitlines(), fresh.splitlines(), lineterm="", n=0)
        )
        assert fresh == text, f"{page.name}: out of date: run `make docs`\n{diff}"


def test_every_top_level_key_of_the_chart_is_in_the_reference():
    schema, values = docs_helm.load_chart()
    shown = {row[0].split(".")[0] for row in key_rows(schema, values)}
    assert shown == set(schema["properties"])
    page = (docs_helm.DOCS / "admin" / "helm-values.md").read_text()
    for key in values:
        assert f"`{key}" in page, key


SCHEMA = {
    "$defs": {
        "image": {
            "type": "object",
            "additionalProperties": False,
            "description": "an image",
            "properties": {"repository": {"type": "string", "description": "where"}},
        },
        "free": {"type": "object", "description": "a map"},
    },
    "properties": {
        "name": {"type": "string", "description": "The | name."},
        "hub": {
            "type": "object",
            "additionalProperties": False,
            "description": "The hub.",
            "properties": {
                "image": {"$ref": "#/$defs/image"},
                "db": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "type": {"enum": ["sqlite-pvc", "postgres"], "description": "kind"},
                        "size": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
                    },
                },
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                "extra": {"$ref": "#/$defs/free"},
                "ports": {"type": "array", "items": {"type": ["integer", "string"]}},
                "namespaces": {
                    "type": "object",
                    "additionalProperties": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"name": {"type": "string", "description": "ns"}},
                    },
                },
            },
        },
    },
}
VALUES = {
    "name": "",
    "hub": {"image": {"repository": "egi-hub/hub"}, "db": {"type": "sqlite-pvc"}, "ports": [8081]},
}


def test_rows_open_closed_objects_and_keep_maps_and_types_whole():
    rows = {key: (kind, default, text) for key, kind, default, text in key_rows(SCHEMA, VALUES)}
    assert rows["name"] == ("string", '`""`', "The \\| name.")
    assert rows["hub"] == ("object", "", "The hub.")
    assert rows["hub.image"] == ("[image](#image)", "`{repository: egi-hub/hub}`", "")
    assert rows["hub.db.type"] == ("one of `sqlite-pvc`, `postgres`", "`sqlite-pvc`", "kind")
    assert rows["hub.db.size"][0] == "integer or string"
    assert rows["hub.labels"][:2] == ("map of string", "")  # no default in values: empty
    assert rows["hub.ports"][:2] == ("list of integer or string", "`[8081]`")
    assert rows["hub.namespaces.<name>.name"] == ("string", "", "ns")
    assert "hub.image.repository" not in rows  # a shared type: described once, below


def test_the_reference_describes_each_shared_type_once():
    text = render_reference(SCHEMA, VALUES)
    assert text.count("#### image") == 1
    assert "| `repository` | string | where |" in text
    assert "#### free" in text and "object: a map" in text
    assert text.index("### `hub`") < text.index("### Types")
    assert render_type({"type": "array"}) == "list"


def test_check_lists_a_stale_page_and_main_rewrites_it(tmp_path: Path, capsys):
    chart = tmp_path / "chart"
    chart.mkdir()
    (chart / "values.schema.json").write_text(json.dumps(SCHEMA))
    (chart / "values.yaml").write_text("name: ''\n")
    docs = tmp_path / "docs"
    docs.mkdir()
    page = docs / "values.md"
    page.write_text("# Values\n\n<!-- helm-values -->\nold\n<!-- end helm-values -->\ntail\n")
    (docs / "other.md").write_text("no markers\n")
    args = ["--docs", str(docs), "--chart", str(chart)]
    assert docs_helm.main([*args, "--check"]) == 1
    assert "values.md: Helm values reference out of date" in capsys.readouterr().err
    assert docs_helm.main(args) == 0
    text = page.read_text()
    assert "old" not in text and "| `name` | string |" in text and text.endswith("tail\n")
    assert docs_helm.main([*args, "--check"]) == 0
    assert docs_helm.stale_pages(docs, chart) == []
    capsys.readouterr()
    assert docs_helm.main([*args, "--undescribed"]) == 1  # hub, hub.db, hub.labels...
    assert "hub.db.size\nhub.labels\n" in capsys.readouterr().out


@pytest.mark.parametrize("page", ["helm.md", "helm-values.md"])
def test_the_pages_are_linked_from_the_index(page: str):
    index = (docs_helm.DOCS / "index.md").read_text()
    assert f"(admin/{page})" in index


def _anchors(text: str) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation but - dropped, spaces to -."""
    heads = re.findall(r"^#+ (.*)$", text, re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


@pytest.mark.parametrize(
    "page",
    [
        "docs/admin/helm.md",
        "docs/admin/helm-values.md",
        "helm/egi-hub/README.md",
        "docs/admin/quotas.md",  # pages that link to helm.md's sections
        "docs/admin/binder.md",
    ],
)
def test_the_pages_links_lead_somewhere(page: str):
    root = docs_helm.ROOT
    text = (root / page).read_text()
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        file = (root / page).parent / path if path else root / page
        assert file.exists(), f"{page}: {target}"
        if anchor and file.suffix == ".md":
            assert anchor in _anchors(file.read_text()), f"{page}: {target}"
