"""The Binder service's pages and badge (issue 10): markup in any value renders inert,
nothing a strict Content-Security-Policy would block, every static file present, and a
badge that is valid XML whatever its text."""

from __future__ import annotations

import hashlib
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser

import pytest

from egi_hub.binder_service.badge import MAX_TEXT, badge_svg
from egi_hub.binder_service.pages import (
    PHASES,
    STATIC_DIR,
    render_error,
    render_landing,
    render_launch,
)
from egi_hub.binder_service.specs import PROVIDERS

BASE = "/services/binder/"
SCRIPT = "<script>window.__xss=1</script>"
SVG = "{http://www.w3.org/2000/svg}"


def landing(**kw) -> str:
    values = dict(base_url=BASE, user="alice", hub_url="/hub/", site_name="Grid",
                  providers=PROVIDERS)  # fmt: skip
    return render_landing(**values | kw)


def launch(**kw) -> str:
    values = dict(base_url=BASE, link=f"{BASE}v2/gh/o/r/HEAD", label="GitHub o/r at HEAD",
                  build_url=f"{BASE}build/gh/o/r/HEAD", user="alice", site_name="Grid")  # fmt: skip
    return render_launch(**values | kw)


def error(**kw) -> str:
    values = dict(base_url=BASE, status=400, reason="unknown provider 'x'", site_name="Grid")
    return render_error(**values | kw)


class Tags(HTMLParser):
    """Every start tag with its attributes, and the text inside each <script>."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.script_text: list[str] = []
        self._in_script = False
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.script_text.append(data)

    def attr(self, tag_id: str, name: str) -> str | None:
        return next(a[name] for _, a in self.tags if a.get("id") == tag_id)


PAGES = {
    "landing": landing,
    "launch": launch,
    "confirm": lambda: launch(confirm=True),
    "error": error,
}


@pytest.mark.parametrize("name", PAGES)
def test_pages_need_nothing_a_strict_csp_blocks(name):
    """Scripts and styles only from the service's static folder: no inline script, no
    style attribute or element, no event-handler attribute, nothing from another site."""
    page = Tags(PAGES[name]())
    assert "".join(page.script_text).strip() == ""
    scripts = [a["src"] for tag, a in page.tags if tag == "script"]
    assert scripts and all(src.startswith(f"{BASE}static/") for src in scripts)
    for tag, attrs in page.tags:
        assert tag != "style"
        assert "style" not in attrs, tag
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        for key in ("src", "href", "action"):
            value = attrs.get(key)
            if value is not None:
                assert value.startswith((BASE, "/hub/", "#")), (tag, key, value)


@pytest.mark.parametrize("name", PAGES)
def test_static_files_exist_and_urls_carry_their_hash(name):
    for _tag, attrs in Tags(PAGES[name]()).tags:
        url = attrs.get("src") or attrs.get("href") or ""
        if not url.startswith(f"{BASE}static/"):
            continue
        file, _, version = url.removeprefix(f"{BASE}static/").partition("?v=")
        content = (STATIC_DIR / file).read_bytes()
        assert version == hashlib.sha256(content).hexdigest()[:12]
    # What the style sheet itself loads is beside it.
    css = (STATIC_DIR / "binder.css").read_text()
    for ref in re.findall(r"url\(\"?([^\")]+)\"?\)", css):
        assert (STATIC_DIR / ref).is_file(), ref


def test_a_label_with_markup_renders_as_text():
    html = launch(label=SCRIPT)
    assert SCRIPT not in html
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in html
    assert "<title>Launching &lt;script&gt;" in html


def test_data_attributes_hold_hostile_urls_as_values():
    hostile = f'{BASE}build/x" onmouseover="alert(1)&{SCRIPT}'
    html = launch(build_url=hostile, link=hostile)
    page = Tags(html)
    assert page.attr("main", "data-build-url") == hostile
    assert page.attr("main", "data-link") == hostile
    assert page.attr("try-again", "href") == hostile
    assert SCRIPT not in html and 'x" onmouseover' not in html


def test_launch_page_lists_the_phases_in_order():
    page = Tags(launch())
    phases = [a["data-phase"] for tag, a in page.tags if "data-phase" in a]
    assert phases == [name for name, _ in PHASES]
    assert phases == ["fetching", "waiting", "building", "built", "launching", "ready"]
    assert page.attr("failure-reason", "role") == "alert"


def test_a_link_from_another_site_asks_before_the_launch_starts():
    """confirm: data-confirm tells launch.js to wait; the page says what will run, with a
    Launch button and a Cancel link to the landing page; the progress waits hidden."""
    page = Tags(launch(confirm=True))
    assert page.attr("main", "data-confirm") == "true"
    assert page.attr("main", "data-build-url") == f"{BASE}build/gh/o/r/HEAD"
    assert page.attr("confirm-launch", "type") == "button"
    assert page.attr("confirm-cancel", "href") == BASE
    assert "hidden" in dict(next(a for _, a in page.tags if a.get("id") == "progress"))
    assert "hidden" in dict(next(a for _, a in page.tags if a.get("id") == "launch-for"))
    html = launch(confirm=True)
    text = " ".join(re.sub(r"<[^>]+>", "", html).split())
    assert (
        "GitHub o/r at HEAD will run as you, with your storage mounts and your Check-in "
        "token. Launch it only if you trust it." in text
    )
    assert "<title>Launch GitHub o/r at HEAD? · Grid Binder</title>" in html


def test_a_launch_without_confirm_starts_at_once():
    page = Tags(launch())
    assert not any(a.get("id") in ("confirm", "confirm-launch") for _, a in page.tags)
    assert "data-confirm" not in dict(next(a for _, a in page.tags if a.get("id") == "main"))
    progress = dict(next(a for _, a in page.tags if a.get("id") == "progress"))
    assert "hidden" not in progress
    assert "<title>Launching GitHub o/r at HEAD · Grid Binder</title>" in launch()


def test_a_label_with_markup_in_the_confirmation_renders_as_text():
    html = launch(confirm=True, label=SCRIPT)
    assert SCRIPT not in html
    assert html.count("&lt;script&gt;window.__xss=1&lt;/script&gt;") == 3  # title, lead, text


def test_a_reason_with_markup_renders_as_text():
    html = error(reason=SCRIPT, status=404)
    assert SCRIPT not in html
    assert "&lt;script&gt;" in html
    assert "404 Not Found" in html


def test_an_unknown_status_still_renders():
    assert "599 Error" in error(status=599)


def test_site_name_and_user_are_escaped_on_the_landing_page():
    html = landing(site_name=SCRIPT, user=SCRIPT)
    assert SCRIPT not in html
    assert html.count("&lt;script&gt;") >= 3


def test_landing_page_offers_every_provider_and_says_when_no_one_is_signed_in():
    page = Tags(landing(user=None))
    options = [a["value"] for tag, a in page.tags if tag == "option"]
    assert options == ["", *PROVIDERS]
    assert any(a.get("id") == "sign-in-note" for _, a in page.tags)
    assert not any(a.get("id") == "user-name" for _, a in page.tags)
    assert page.attr("main", "data-check-url") == f"{BASE}api/v1/check/"
    assert any(a.get("href") == "/hub/home" for _, a in page.tags)


def test_base_url_without_a_slash_gets_one():
    page = Tags(landing(base_url="/binder"))
    assert page.attr("main", "data-base-url") == "/binder/"


def test_form_controls_are_labelled_and_described():
    page = Tags(landing())
    labelled = {a["for"] for tag, a in page.tags if tag == "label"}
    ids = {a.get("id") for _, a in page.tags}
    for tag, attrs in page.tags:
        if tag in ("input", "select", "textarea"):
            assert attrs["id"] in labelled, attrs
            for described in (attrs.get("aria-describedby") or "").split():
                assert described in ids, described


# ---- the badge ----


def badge_texts(svg: str) -> list[str]:
    return [t.text or "" for t in ET.fromstring(svg).iter(f"{SVG}text")]


def test_badge_is_valid_svg_with_the_default_texts():
    root = ET.fromstring(badge_svg())
    assert root.tag == f"{SVG}svg"
    assert root.get("aria-label") == "launch: binder"
    assert root.find(f"{SVG}title").text == "launch: binder"
    assert badge_texts(badge_svg()) == ["launch", "binder"]


def test_badge_text_is_escaped():
    hostile = "<script>alert(1)</script> & \"quotes\" 'too'"
    svg = badge_svg(hostile, "]]><x/>")
    assert "<script>" not in svg and "<x/>" not in svg
    root = ET.fromstring(svg)
    assert badge_texts(svg) == [hostile[: MAX_TEXT - 1] + "…", "]]><x/>"]
    assert root.get("aria-label").startswith("<script>")  # an attribute value, not markup


def test_badge_drops_what_xml_cannot_hold_and_caps_the_length():
    svg = badge_svg("la\x00un\x1bch\nnow", "x" * 500 + "\ud800")
    label, message = badge_texts(svg)
    assert label == "la un ch now"
    assert len(message) == MAX_TEXT and message.endswith("…")


def test_longer_text_is_a_wider_badge_with_ids_of_its_own():
    short, long = badge_svg(), badge_svg("launch", "EGI Notebooks Binder")
    width = lambda svg: int(ET.fromstring(svg).get("width"))  # noqa: E731
    assert width(long) > width(short) + 50
    ids = lambda svg: {e.get("id") for e in ET.fromstring(svg).iter() if e.get("id")}  # noqa: E731
    assert ids(short) and not ids(short) & ids(long)
