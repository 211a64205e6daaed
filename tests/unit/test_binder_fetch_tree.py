"""The fetched tree's last check: links may not lead out, however they are chained."""

from __future__ import annotations

import os

import pytest

from egi_hub.binder_service.fetch_worker import WorkerError, check_tree


def tree(tmp_path):
    root = tmp_path / "work"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "file.txt").write_text("x")
    (tmp_path / "secret.txt").write_text("outside")
    return root


def test_links_inside_the_tree_pass(tmp_path):
    root = tree(tmp_path)
    os.symlink("b/file.txt", root / "a" / "inside")
    os.symlink("a", root / "dir-link")
    assert check_tree(root, max_bytes=10**6, max_files=100)[0] == 1


@pytest.mark.parametrize(
    "links",
    [
        [("E", "/etc/passwd")],
        [("E", "../secret.txt")],
        # each step looks inside, the whole climbs out
        [("a/b/L", ".."), ("E", "a/b/L/../../../secret.txt")],
        [("a/b/up", "../.."), ("E", "a/b/up/../secret.txt")],
    ],
)
def test_a_link_whose_target_is_outside_is_refused_even_through_other_links(tmp_path, links):
    root = tree(tmp_path)
    for name, target in links:
        os.symlink(target, root / name)
    with pytest.raises(WorkerError, match="pointing outside"):
        check_tree(root, max_bytes=10**6, max_files=100)
