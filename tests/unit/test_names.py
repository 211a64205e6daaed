"""Path-safe, collision-free names from usernames."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from egi_hub.names import path_component


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("alice", "alice"),
        ("a.b_c", "a.b_c"),
        ("Alice", "-41lice"),
        ("a-b", "a-2db"),
        ("..", "-2e."),
        (".hidden", "-2ehidden"),
        ("a/b", "a-2fb"),
        ("jörg@egi.eu", "j-c3-b6rg-40egi.eu"),
    ],
)
def test_examples(name, expected):
    assert path_component(name) == expected


def test_empty_name_is_refused():
    with pytest.raises(ValueError):
        path_component("")


@given(st.text(min_size=1), st.text(min_size=1))
def test_injective(a, b):
    if a != b:
        assert path_component(a) != path_component(b)


@given(st.text(min_size=1))
def test_always_one_safe_component(name):
    out = path_component(name)
    assert re.fullmatch(r"[a-z0-9_.\-]+", out)
    assert not out.startswith(".")
    assert "/" not in out
    assert len(out) <= 120


def test_long_names_are_cut_with_a_digest():
    long = "ü" * 200
    out = path_component(long)
    assert len(out) <= 120 and re.search(r"--[0-9a-f]{16}$", out)
    assert path_component(long + "x") != out
    assert len(path_component("a" * 200)) <= 120
