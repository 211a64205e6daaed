"""The settings tables in docs/ are what the traits say (egi_hub.docs_tables)."""

from __future__ import annotations

import difflib
import os

from traitlets import Bool, Integer, List, Unicode, default
from traitlets.config import Configurable

from egi_hub import docs_tables
from egi_hub.docs_tables import render_page, render_table


def test_every_table_in_the_docs_is_up_to_date():
    stale = []
    for page in docs_tables.pages():
        text = page.read_text()
        fresh = render_page(text)
        if fresh != text:
            diff = difflib.unified_diff(text.splitlines(), fresh.splitlines(), lineterm="", n=0)
            stale.append(f"{page.relative_to(docs_tables.DOCS.parent)}:\n" + "\n".join(diff))
    assert not stale, "config tables out of date: run `make docs`\n" + "\n".join(stale)


def test_every_documented_class_has_its_table():
    marked = "".join(page.read_text() for page in docs_tables.pages())
    for name in docs_tables.CLASSES:
        assert f"<!-- config-table: {name} -->" in marked, f"no page shows {name}'s settings"


class Base(Configurable):
    inherited = Bool(False, help="Someone else's setting.").tag(config=True)
    untouched = Bool(False, help="Not egi-hub's business.").tag(config=True)


class Example(Base):
    __module__ = "egi_hub.example"  # egi-hub's own class, as far as the generator can tell

    client_id = Unicode(help="The client. Default: $EXAMPLE_CLIENT_ID.").tag(config=True)
    home = Unicode(
        help="""
        Where things go, with ``code`` and a | pipe,
        folded onto one line.

        Second paragraph, left out.
        """
    ).tag(config=True)
    users = List(
        Unicode(),
        help="""
        Users, like this::

            - alice

        Anyone else is refused.
        """,
    ).tag(config=True)
    size = Integer(3, help="Not configurable.")

    @default("client_id")
    def _default_client_id(self) -> str:
        return os.environ.get("EXAMPLE_CLIENT_ID", "")

    @default("home")
    def _default_home(self) -> str:
        return os.path.expanduser("~/example")

    @default("inherited")
    def _default_inherited(self) -> bool:
        return True


def test_a_table_from_traits_help_type_and_effective_default(monkeypatch):
    monkeypatch.setenv("EXAMPLE_CLIENT_ID", "from-this-machine")
    environ = os.environ
    assert render_table(Example).splitlines() == [
        "| key | type | default | meaning |",
        "| --- | --- | --- | --- |",
        "| `client_id` | str | `$EXAMPLE_CLIENT_ID` | The client. Default: $EXAMPLE_CLIENT_ID. |",
        "| `home` | str | `~/example` | Where things go, with `code` and a \\| pipe, folded onto"
        " one line. |",
        "| `users` | list of str | `[]` | Users, like this. Anyone else is refused. |",
        "| `inherited` | bool | `true` | Someone else's setting. |",
    ]
    assert os.environ is environ
    assert os.environ["EXAMPLE_CLIENT_ID"] == "from-this-machine"


def test_marked_tables_are_replaced_and_the_rest_is_kept(monkeypatch):
    monkeypatch.setattr(docs_tables, "load_class", lambda name: Example)
    monkeypatch.setitem(docs_tables.CLASSES, "Example", "egi_hub.example:Example")
    page = "# Title\n\n<!-- config-table: Example -->\nold\n<!-- end config-table -->\n\nText.\n"
    fresh = render_page(page)
    assert fresh.startswith("# Title\n\n<!-- config-table: Example -->\n| key | type |")
    assert fresh.endswith("| Someone else's setting. |\n<!-- end config-table -->\n\nText.\n")
    assert render_page(fresh) == fresh
