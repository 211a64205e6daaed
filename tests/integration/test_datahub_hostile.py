"""``datahub://`` against a hostile Onezone/Oneprovider and a mount's ``spaces`` filter.

Every test talks to `tests/onedata_standin.py` (a stand-in for Onezone and a Oneprovider,
following Onedata's documented REST API), whose answers are bent here the way a hostile
or broken service could bend them: space names with ``/``, ``..`` or control characters,
provider domains carrying userinfo, paths or schemes, child names that are not one file
name. What must hold: only the spaces a mount allows are reachable (by name and by id,
also as a ``mv``/``cp`` destination), the token goes only to a provider address that is a
host name, and a listing never yields a name that joins into another path, nor pages
for ever (a cap on entries and pages, a repeated page token refused).
"""

from __future__ import annotations

import base64
import errno
import logging

import httpx
import pytest

from egi_hub.singleuser import datahub
from egi_hub.singleuser.datahub import DatahubError, DatahubFileSystem
from tests.onedata_standin import ProviderApi, start_onedata_standin


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    running = start_onedata_standin(tmp_path_factory.mktemp("onedata-hostile"))
    yield running
    running.stop()


def make_fs(standin, user: str, **kw) -> DatahubFileSystem:
    return DatahubFileSystem(
        onezone_url=standin.onezone_url,
        token=standin.mint_token(user),
        verify=standin.ca_file,
        skip_instance_cache=True,
        **kw,
    )


@pytest.fixture
def spaces(standin, request):
    """A fresh user with: keep, other, twin x2, and three oddly named spaces."""
    user = "u-" + request.node.name[-30:]
    standin.add_user("idp-" + user, user)
    ids = {
        name: standin.add_space(name, [user])
        for name in ("keep", "other", "twin", "../evil", "a/b", "bell\x07", "nel\u0085")
    }
    ids["twin2"] = standin.add_space("twin", [user])
    for space_id in ids.values():
        if standin.state.spaces[space_id].name in ("keep", "other", "twin"):
            standin.write_file(space_id, "f.txt", b"data of " + space_id.encode())
    return user, ids


def provider_requests(standin) -> list[str]:
    return [
        path
        for _, path, _ in standin.requests()
        if path.startswith(("/api/v3/oneprovider", "/cdmi"))
    ]


# --- the spaces filter (review finding M2) --------------------------------------------


def test_standin_no_filter_shows_every_plain_named_space(standin, spaces):
    user, ids = spaces
    fs = make_fs(standin, user)
    assert sorted(fs.ls("", detail=False)) == sorted(
        ["keep", "other", f"twin@{ids['twin']}", f"twin@{ids['twin2']}"]
    )
    # the oddly named ones are not reachable by name@id either
    for name in ("../evil", "bell\x07", "nel\u0085"):
        spec = f"{name.replace('/', '')}@{ids[name]}"
        with pytest.raises((FileNotFoundError, ValueError)):
            fs.ls(spec)
    with pytest.raises(FileNotFoundError, match="no space 'a@"):
        fs.ls(f"a@{ids['a/b']}")


def test_standin_filter_by_name_and_id_lists_only_those(standin, spaces):
    user, ids = spaces
    fs = make_fs(standin, user, spaces=["keep", ids["twin"]])
    # only one 'twin' is shown, so it goes by its plain name
    assert sorted(fs.ls("", detail=False)) == ["keep", "twin"]
    assert fs.cat_file("twin/f.txt") == b"data of " + ids["twin"].encode()
    assert fs.cat_file(f"twin@{ids['twin']}/f.txt") == b"data of " + ids["twin"].encode()
    by_id = make_fs(standin, user, spaces=[ids["other"]])
    assert by_id.ls("", detail=False) == ["other"]
    assert make_fs(standin, user, spaces=[]).ls("", detail=False) == []


@pytest.mark.parametrize("spec", ["other", "other@{other}", "twin@{twin2}", "keep@{other}"])
def test_standin_paths_into_a_filtered_out_space_are_enoent(standin, spaces, spec):
    user, ids = spaces
    spec = spec.format(**ids)
    fs = make_fs(standin, user, spaces=["keep", ids["twin"]])
    before = len(provider_requests(standin))
    for call in (
        lambda: fs.ls(spec),
        lambda: fs.info(f"{spec}/f.txt"),
        lambda: fs.cat_file(f"{spec}/f.txt"),
        lambda: fs.pipe_file(f"{spec}/new.txt", b"x"),
        lambda: fs.mkdir(f"{spec}/d"),
        lambda: fs.rm(f"{spec}/f.txt"),
    ):
        with pytest.raises(FileNotFoundError, match="in this mount"):
            call()
    assert len(provider_requests(standin)) == before  # never asked the provider
    assert not standin.exists(ids["other"], "new.txt")


def test_standin_mv_and_cp_into_a_filtered_out_space_are_refused(standin, spaces):
    user, ids = spaces
    fs = make_fs(standin, user, spaces=["keep"])
    for dst in ("other/f2.txt", f"other@{ids['other']}/f2.txt", f"twin@{ids['twin']}/f2.txt"):
        with pytest.raises(FileNotFoundError, match="no space"):
            fs.mv("keep/f.txt", dst)
        with pytest.raises(FileNotFoundError, match="no space"):
            fs.cp_file("keep/f.txt", dst)
        with pytest.raises(FileNotFoundError, match="no space"):
            fs.copy("keep/f.txt", dst)
    assert standin.exists(ids["keep"], "f.txt")
    for space_id in (ids["other"], ids["twin"]):
        assert not standin.exists(space_id, "f2.txt")
    with pytest.raises(FileNotFoundError):  # nor out of one
        fs.mv("other/f.txt", "keep/stolen.txt")
    assert not standin.exists(ids["keep"], "stolen.txt")


def test_standin_a_space_renamed_to_an_odd_name_disappears(standin, spaces):
    """Names are checked on every scope answer, not once: Onezone may rename a space."""
    user, ids = spaces
    fs = make_fs(standin, user, spaces=[ids["keep"]])
    assert fs.ls("", detail=False) == ["keep"]
    with standin.state.lock:
        standin.state.spaces[ids["keep"]].name = "../keep"
    fs._scope = None  # as after the scope's 60 s
    assert fs.ls("", detail=False) == []
    with pytest.raises(FileNotFoundError):
        fs.cat_file(f"keep@{ids['keep']}/f.txt")


def test_filter_must_be_a_list_of_text(standin):
    with pytest.raises(ValueError, match="list of space names"):
        DatahubFileSystem(onezone_url=standin.onezone_url, token="t", spaces="keep",
                          skip_instance_cache=True)  # fmt: skip
    with pytest.raises(ValueError, match="list of space names"):
        DatahubFileSystem(onezone_url=standin.onezone_url, token="t", spaces=[1],
                          skip_instance_cache=True)  # fmt: skip


# --- provider domains (M3) ------------------------------------------------------------

BAD_DOMAINS = [
    "x@{host}",  # userinfo: httpx would connect to {host} with it
    "{host}/api/v3/oneprovider/spaces#",  # a path and a fragment
    "{host}?x=",  # a query
    "https://{host}",  # a scheme
    "{host}\r\nX-Injected: 1",  # header-ish control characters
    "{host} ",  # whitespace
    "evil.example\\@{host}",  # a backslash
    "",  # nothing
    "[::1",  # an unclosed IPv6 literal
    "{host}:443",  # two ports
    "bücher.example",  # not ASCII (IDNA would rewrite it)
]


@pytest.mark.parametrize("template", BAD_DOMAINS)
def test_standin_a_provider_with_an_invalid_domain_gets_nothing(standin, spaces, template, caplog):
    user, ids = spaces
    bad = standin.add_provider(
        "hostile", online=True, domain=template.format(host=standin.provider_host)
    )
    with standin.state.lock:
        standin.state.spaces[ids["keep"]].supports = {bad: False}
    fs = make_fs(standin, user)
    token = fs._token.get()
    before = len(provider_requests(standin))
    caplog.set_level(logging.DEBUG)
    for call in (lambda: fs.cat_file("keep/f.txt"), lambda: fs.pipe_file("keep/g.txt", b"x")):
        with pytest.raises(DatahubError) as info:
            call()
        message = str(info.value)
        assert "provider address" in message and "'keep'" in message and "invalid" in message
        assert token not in message
    assert len(provider_requests(standin)) == before  # the token went nowhere
    assert token not in caplog.text


def test_standin_an_invalid_provider_is_skipped_when_a_valid_one_serves(standin, spaces, caplog):
    user, ids = spaces
    bad = standin.add_provider("hostile", online=True, version="99.0.0",  # preferred if valid
                               domain=f"x@{standin.provider_host}")  # fmt: skip
    with standin.state.lock:
        standin.state.spaces[ids["keep"]].supports[bad] = False
    fs = make_fs(standin, user)
    caplog.set_level(logging.WARNING)
    assert fs.cat_file("keep/f.txt") == b"data of " + ids["keep"].encode()
    assert "invalid address" in caplog.text
    assert not any("x@" in h.get("host", "") for _, _, h in standin.requests())


def test_standin_a_redirect_is_an_error_not_followed(standin, spaces):
    """A provider (or anything on the way) answering 3xx never gets the token re-sent."""
    user, _ = spaces
    fs = make_fs(standin, user)
    assert fs._http.follow_redirects is False
    with pytest.raises(DatahubError, match="answered 302"):
        fs._raise(httpx.Response(302, headers={"Location": "https://evil.example/"}), "p")


@pytest.mark.parametrize(
    "url",
    ["http://{host}", "https://u:p@{host}", "https://{host}?q", "https://{host}#f",
     "https://{host}/ x", "https://bad_host.example", "ftp://{host}"],
)  # fmt: skip
def test_configured_urls_are_checked_too(standin, url):
    url = url.format(host=standin.onezone_host)
    with pytest.raises(ValueError, match="https://<host>"):
        DatahubFileSystem(onezone_url=url, token="t", skip_instance_cache=True)
    with pytest.raises(ValueError, match="https://<host>"):
        DatahubFileSystem(provider_url=url, token="t", skip_instance_cache=True)


# --- child names (L2) -----------------------------------------------------------------

ODD_CHILDREN = [
    "a/b",
    "..",
    ".",
    "",
    "x\x00y",
    "esc\x1b[31m",
    "del\x7f",
    "nel\u0085",
    "../../other/f",
]


def test_standin_listing_skips_odd_child_names(standin, spaces, caplog):
    user, ids = spaces
    space_id = ids["keep"]
    standin.write_file(space_id, "dir/fine.txt", b"fine")
    with standin.state.lock:
        parent = standin.state.walk(space_id, ["dir"])
        for name in ODD_CHILDREN:
            standin.state.new_node(name, "REG", space_id, parent.file_id)
    fs = make_fs(standin, user)
    caplog.set_level(logging.WARNING)
    assert fs.ls("keep/dir", detail=False) == ["keep/dir/fine.txt"]  # names only
    assert f"skipped {len(ODD_CHILDREN)} entries" in caplog.text
    assert [e["name"] for e in fs.ls("keep/dir", detail=True)] == ["keep/dir/fine.txt"]
    assert "\x1b" not in caplog.text and "\x00" not in caplog.text
    assert [p for p in fs.find("keep")] == ["keep/dir/fine.txt", "keep/f.txt"]


# --- endless listings (review finding: no bounds on provider answers) ------------------


def endless_children(pages: list[int], *, repeat: bool = False, per_page: int = 0):
    """A stand-in ``children`` answer bent to say ``isLast: false`` for ever, with a new
    page token each time (or the same one again with ``repeat``)."""

    def children(self, node, query, body):
        pages.append(1)
        page = len(pages)
        kids = [
            {"fileId": f"f{page}-{i}", "name": f"e{page:05d}-{i:04d}", "type": "REG", "size": 1}
            for i in range(per_page)
        ]
        token = "same-token" if repeat else f"page-{page}"
        return 200, {"children": kids, "isLast": False, "nextPageToken": token}, {}

    return children


def test_standin_endless_empty_pages_stop_with_a_clear_error(standin, spaces, monkeypatch):
    user, _ = spaces
    pages: list[int] = []
    monkeypatch.setattr(ProviderApi, "children", endless_children(pages))
    fs = make_fs(standin, user)
    with pytest.raises(DatahubError, match="lists more than 100,000 entries or 1,000 pages"):
        fs.ls("keep")
    assert len(pages) == datahub.MAX_PAGES + 1


def test_standin_endless_full_pages_stop_at_the_entry_cap(standin, spaces, monkeypatch):
    user, _ = spaces
    pages: list[int] = []
    monkeypatch.setattr(ProviderApi, "children", endless_children(pages, per_page=1000))
    monkeypatch.setattr(datahub, "MAX_ENTRIES", 5000)  # the real cap is 100,000
    fs = make_fs(standin, user)
    with pytest.raises(DatahubError) as info:
        fs.ls("keep/")
    assert info.value.errno == errno.EFBIG
    assert len(pages) == 6  # 5,000 entries listed, the 6th page is one too many


def test_standin_a_repeated_page_token_stops_the_listing(standin, spaces, monkeypatch):
    user, _ = spaces
    pages: list[int] = []
    monkeypatch.setattr(ProviderApi, "children", endless_children(pages, repeat=True))
    fs = make_fs(standin, user)
    with pytest.raises(DatahubError, match="repeated a page token") as info:
        fs.ls("keep")
    assert info.value.errno == errno.EIO
    assert len(pages) == 2


def test_standin_a_token_narrowed_to_one_space_shows_only_that_space(standin, spaces):
    """What the hub mints for ``spaces: [keep]``: even without a filter in datahub://,
    the token alone hides every other space (Onezone's scope) and the provider refuses
    paths into them."""
    user, ids = spaces
    keep = ids["keep"]
    token = standin.mint_token(
        user,
        [
            {"type": "interface", "interface": "rest"},
            {"type": "data.path", "whitelist": [base64.b64encode(f"/{keep}".encode()).decode()]},
            {"type": "service", "whitelist": [f"opw-{standin.provider_id}"]},
        ],
    )
    fs = DatahubFileSystem(
        onezone_url=standin.onezone_url, token=token, verify=standin.ca_file,
        skip_instance_cache=True,
    )  # fmt: skip
    assert fs.ls("", detail=False) == ["keep"]
    assert fs.cat_file("keep/f.txt") == b"data of " + keep.encode()
    fs.pipe_file("keep/new.txt", b"new")
    with pytest.raises(FileNotFoundError):
        fs.cat_file("other/f.txt")
    with pytest.raises(FileNotFoundError):
        fs.cat_file(f"other@{ids['other']}/f.txt")
