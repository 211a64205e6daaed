"""docs/images holds the pictures the docs show, and the docs show only pictures it holds."""

from __future__ import annotations

from tests.screens import DOCS, publish, referenced_images


def test_every_committed_picture_is_shown_by_a_doc_page_and_every_link_resolves():
    committed = {path.name for path in (DOCS / "images").glob("*.png")}
    linked = referenced_images()
    assert committed - linked == set(), "pictures no doc page links: link or delete them"
    assert linked - committed == set(), "doc pages link pictures that docs/images lacks"


def test_publish_copies_only_the_linked_pictures(tmp_path):
    docs, taken = tmp_path / "docs", tmp_path / "taken"
    (docs / "user").mkdir(parents=True)
    taken.mkdir()
    (docs / "user" / "a.md").write_text("![A](../images/shown.png)\n![B](../images/gone.png)\n")
    (taken / "shown.png").write_bytes(b"new")
    (taken / "extra.png").write_bytes(b"not linked")
    assert publish(taken, docs) == (["shown.png"], ["gone.png"])
    assert sorted(p.name for p in (docs / "images").iterdir()) == ["shown.png"]
    assert (docs / "images" / "shown.png").read_bytes() == b"new"
