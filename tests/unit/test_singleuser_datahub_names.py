"""The checks `egi_hub.singleuser.datahub` applies to what Onezone and providers answer:
provider addresses (host names), space and child names, configured base URLs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from egi_hub.singleuser.datahub import _all_plain_names, check_base_url, check_host, plain_name


@pytest.mark.parametrize(
    "host",
    ["datahub.egi.eu", "oneprovider-01.example.org:8443", "localhost", "127.0.0.1:4433",
     "[::1]:443", "[2001:db8::1]", "xn--bcher-kva.example", "a.example."],
)  # fmt: skip
def test_host_names_and_addresses_pass(host):
    assert check_host(host) == host


@pytest.mark.parametrize(
    "host",
    ["", "user@host.example", "u:p@host.example", "host.example/x", "host.example?x",
     "host.example#x", "https://host.example", "host .example", "host.example\n",
     "host\x00.example", "host.example:0", "host.example:65536", "host.example:",
     "host.example:80:80", "-host.example", "host-.example", "a..b", "under_score.example",
     "bücher.example", "1.2.3", "2130706433", "0x7f.0.0.1", "::1", "[::1", "[::1]x",
     "[not-v6]:443", "[::1]:", "a" * 64 + ".example", None, 42, "host.example\\x"],
)  # fmt: skip
def test_anything_else_is_refused(host):
    assert check_host(host) is None


@pytest.mark.parametrize("name", ["space-a", "My data (2024)", "ünïcode", "a@b", "x" * 255])
def test_plain_names(name):
    assert plain_name(name)


@pytest.mark.parametrize(
    "name",
    ["", ".", "..", "a/b", "/", "x\x00", "x\x1b[31m", "x\x7f", "x\u0085", "x\t", "x" * 256,
     None, 3],
)  # fmt: skip
def test_names_that_could_join_into_another_path(name):
    assert not plain_name(name)


def test_base_urls():
    assert check_base_url("https://datahub.egi.eu/", "onezone_url") == "https://datahub.egi.eu"
    for bad in ("http://x.example", "https://u@x.example", "https://x.example?a",
                "https://x.example#a", "https://x example", "https:///path"):  # fmt: skip
        with pytest.raises(ValueError, match="onezone_url"):
            check_base_url(bad, "onezone_url")


_NAME_PARTS = st.sampled_from(["a", "b.txt", ".", "..", "/", "\x00", "\x1b", "\x85", "é", ""])
_CHILD = st.one_of(
    st.builds(lambda parts: {"name": "".join(parts)}, st.lists(_NAME_PARTS, max_size=4)),
    st.builds(lambda n: {"name": "x" * n}, st.integers(250, 260)),
    st.just({"name": 7}),
    st.just({"size": 1}),
    st.just("not a mapping"),
)


@given(st.lists(_CHILD, max_size=6))
def test_the_page_at_once_check_agrees_with_the_per_name_check(children):
    """The listing's fast path accepts a page exactly when every name is a plain name
    (then the per-entry check is skipped), so it can never let an odd name through."""
    every = all(isinstance(c, dict) and plain_name(c.get("name")) for c in children)
    names = _all_plain_names(children)
    assert (names is not None) == every
    if names is not None:
        assert names == [c["name"] for c in children]
