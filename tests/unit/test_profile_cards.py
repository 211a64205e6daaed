"""The spawn form's profile cards (one renderer for both spawners), without a hub."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from egi_hub.context import UserContext
from egi_hub.pages import SitePages
from egi_hub.spawner.cards import profile_cards, render_cards
from egi_hub.spawner.profiles import ProfileListTrait
from egi_hub.spawner.quota import Charge, QuotaPolicy
from tests.spawners import local_vo_spawner

ACCESS = "urn:mace:egi.eu:group:vo.access.egi.eu:role=member#aai.egi.eu"
PROFILES = [
    {
        "display_name": "Small <script>alert(1)</script>",
        "slug": "small",
        "description": "One CPU & one GiB",
        "kubespawner_override": {"cpu_limit": 1, "mem_limit": "1G", "cpu_guarantee": 0.5},
    },
    {
        "display_name": "GPU",
        "slug": "gpu",
        "allowed_vos": ["vo.notebooks.egi.eu"],
        "kubespawner_override": {
            "cpu_limit": 4,
            "mem_limit": "8G",
            "extra_resource_limits": {"nvidia.com/gpu": "1"},
        },
    },
]
LIMITS = {
    "vo.access.egi.eu": {"max_servers": 3, "max_memory": "8G", "per_user": {"max_servers": 1}}
}


class Inputs(HTMLParser):
    """The form's radio buttons and the labels that name them (as a screen reader would)."""

    def __init__(self) -> None:
        super().__init__()
        self.radios: dict[str, dict] = {}
        self.labels: dict[str, str] = {}
        self._label: str | None = None
        self.legend = False

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "input" and a.get("type") == "radio":
            self.radios[a["id"]] = a
        if tag == "label":
            self._label = a.get("for")
            self.labels[self._label] = ""
        if tag == "legend":
            self.legend = True

    def handle_data(self, data):
        if self._label:
            self.labels[self._label] += data

    def handle_endtag(self, tag):
        if tag == "label":
            self._label = None


@pytest.fixture
def spawner(tmp_path):
    SitePages.clear_instance()
    with local_vo_spawner(tmp_path, "alice", [ACCESS], PROFILES) as s:
        s.quota.vo_limits = LIMITS
        yield s
    SitePages.clear_instance()


async def form_of(s) -> str:
    return await s.options_form(s)


async def test_a_card_shows_resources_vo_and_use_and_escapes_everything(spawner):
    spawner.quota.admit(Charge("bob", "", "vo.access.egi.eu", memory=2 * 2**30))
    form = await form_of(spawner)
    assert "<script>" not in form and "Small &lt;script&gt;" in form
    assert "One CPU &amp; one GiB" in form
    assert "up to 1 (0.5 guaranteed)" in form and "up to 1 GiB" in form
    assert re.search(r'egi-profile-vo">vo\.access\.egi\.eu<', form)
    assert "vo.access.egi.eu: 1 of 3 servers, 2 of 8 GiB" in form
    assert 'egi-profile-your-use">0 of 1 server<' in form
    # Only the profile alice's VO allows; being the only one, it is chosen.
    parsed = Inputs()
    parsed.feed(form)
    assert list(parsed.radios) == ["profile-small"]
    assert "checked" in parsed.radios["profile-small"]
    assert parsed.labels["profile-small"].startswith("Small <script>")
    assert parsed.legend and "<fieldset" in form


async def test_full_figures_say_so_in_words(spawner):
    spawner.quota.admit(Charge("alice", "one", "vo.access.egi.eu"))
    form = await form_of(spawner)
    assert "1 of 1 server (full)" in form


async def test_unavailable_profiles_listed_disabled_with_their_enrolment_link(spawner):
    pages = SitePages.instance()
    pages.show_unavailable_profiles = True
    pages.enrolment_urls = {"vo.notebooks.egi.eu": "https://example.org/join?vo=notebooks&x=1"}
    form = await form_of(spawner)
    parsed = Inputs()
    parsed.feed(form)
    assert list(parsed.radios) == ["profile-small", "profile-gpu"]
    assert "disabled" in parsed.radios["profile-gpu"]
    assert "disabled" not in parsed.radios["profile-small"]
    assert "needs membership of" in form
    assert (
        '<a href="https://example.org/join?vo=notebooks&amp;x=1">join vo.notebooks.egi.eu</a>'
        in (form)
    )
    assert "Not available to you" in form  # in words, not in colour only


def test_the_last_started_profile_is_preselected_else_the_default():
    profiles = ProfileListTrait().validate(
        None,
        [
            {"display_name": "A", "slug": "a"},
            {"display_name": "B", "slug": "b", "default": True},
            {"display_name": "C", "slug": "c"},
        ],
    )
    context = UserContext.from_entitlements("x", [ACCESS])
    QuotaPolicy.clear_instance()
    policy, pages = QuotaPolicy.instance(), SitePages()

    def checked(options):
        cards = profile_cards(profiles, [], context, policy, pages, options)
        return [c.slug for c in cards if c.checked]

    assert checked({}) == ["b"]
    assert checked({"profile": "c"}) == ["c"]
    assert checked({"profile": "gone"}) == ["b"]
    html = render_cards(profile_cards(profiles, [], context, policy, pages, {}))
    assert html.count("checked") == 1
    QuotaPolicy.clear_instance()


async def test_no_profile_for_a_user_in_no_vo_tells_them_to_join_one(tmp_path):
    SitePages.clear_instance()
    with local_vo_spawner(tmp_path, "nobody", [], [PROFILES[1]]) as s:
        form = await form_of(s)
    assert "You are not a member of any VO" in form
    assert 'href="https://operations-portal.egi.eu/vo/search"' in form


OWN_IMAGE = {
    "display_name": "Own image",
    "slug": "own",
    "profile_options": {
        "image": {
            "display_name": "Image",
            "choices": {"minimal": {}, "full": {"default": True}},
            "unlisted_choice": {"enabled": True, "display_name": "Image name"},
        }
    },
}


class Fields(HTMLParser):
    """Selects (with their options and the selected one) and text inputs of a form."""

    def __init__(self) -> None:
        super().__init__()
        self.selects: dict[str, list[tuple[str, bool]]] = {}
        self.texts: dict[str, dict] = {}
        self.boxes: dict[str, dict] = {}
        self._select: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "select":
            self._select = a["name"]
            self.selects[self._select] = []
        elif tag == "option" and self._select:
            self.selects[self._select].append((a["value"], "selected" in a))
        elif tag == "input" and a.get("type") == "text":
            self.texts[a["name"]] = a
        elif tag == "div" and "egi-profile-other" in (a.get("class") or ""):
            self.boxes[a["id"]] = a

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None


def fields_of(options):
    profiles = ProfileListTrait().validate(None, [OWN_IMAGE])
    context = UserContext.from_entitlements("x", [ACCESS])
    QuotaPolicy.clear_instance()
    try:
        cards = profile_cards(profiles, [], context, QuotaPolicy.instance(), SitePages(), options)
        html = render_cards(cards)
    finally:
        QuotaPolicy.clear_instance()
    parser = Fields()
    parser.feed(html)
    return parser, html


def test_a_free_value_has_an_other_entry_and_is_refilled_only_when_it_was_used():
    select, text = "profile-option-own--image", "profile-option-own--image--unlisted-choice"
    fields, html = fields_of({"profile": "own", "image": "minimal"})
    assert fields.selects[select] == [
        ("minimal", True),
        ("full", False),
        ("unlisted-choice", False),
    ]
    assert fields.texts[text]["value"] == ""
    assert f'data-egi-other="{text}"' in html and "<script>" in html
    # The last start used a free value: "Other…" selected, the text back in its box.
    used = {"profile": "own", "image": "unlisted-choice", "image--unlisted-choice": "my/img"}
    fields, html = fields_of(used)
    assert ("unlisted-choice", True) in fields.selects[select]
    assert fields.texts[text]["value"] == "my/img"
    assert "Other…" in html and 'for="' + text + '"' in html


@pytest.mark.parametrize(
    "stored",
    [
        {"profile": "own", "image": []},
        {"profile": "own", "image": {"a": 1}},
        {"profile": ["own"], "image": "minimal"},
        {"profile": "own", "image--unlisted-choice": ["x"]},
        {"profile": {"own": 1}},
    ],
)
def test_a_stored_value_that_is_not_text_is_ignored(stored):
    """Options an API request saved before 400s existed must not break the form."""
    fields, _ = fields_of(stored)
    selected = [v for v, on in fields.selects["profile-option-own--image"] if on]
    assert selected in (["full"], ["minimal"])
    assert fields.texts["profile-option-own--image--unlisted-choice"]["value"] == ""


def test_the_form_sends_a_free_value_only_with_other_chosen(spawner):
    prefix = "profile-option-own--"
    form = {"profile": ["own"], prefix + "image": ["minimal"]}
    form[prefix + "image--unlisted-choice"] = ["stale"]
    assert spawner.options_from_form(form) == {"profile": "own", "image": "minimal"}
    form[prefix + "image"] = ["unlisted-choice"]
    assert spawner.options_from_form(form) == {
        "profile": "own",
        "image": "unlisted-choice",
        "image--unlisted-choice": "stale",
    }
    # An option with no choices: the text is the value.
    only_text = {"profile": ["own"], prefix + "tag--unlisted-choice": ["v1"]}
    assert spawner.options_from_form(only_text)["tag--unlisted-choice"] == "v1"


async def test_a_user_in_no_vo_where_no_vo_allows_nothing_is_told_to_join_one(tmp_path):
    """No cards and no Start button that could only be refused: the no-VO message,
    with the enrolment link."""
    SitePages.clear_instance()
    with local_vo_spawner(tmp_path, "carol", [], [PROFILES[0]]) as s:
        s.quota.default_limits = {"max_servers": 0}
        form = await form_of(s)
        assert "You are not a member of any VO" in form and "data-egi-no-start" in form
        assert 'href="https://operations-portal.egi.eu/vo/search"' in form
        assert 'name="profile"' not in form
        # Per user too.
        s.quota.default_limits = {"per_user": {"max_servers": 0}}
        assert "data-egi-no-start" in await form_of(s)


async def test_a_user_in_no_vo_where_no_vo_servers_are_allowed_gets_cards_in_words(tmp_path):
    SitePages.clear_instance()
    with local_vo_spawner(tmp_path, "carol", [], [PROFILES[0]]) as s:
        s.quota.default_limits = {"max_servers": 2}
        form = await form_of(s)
    assert 'name="profile"' in form and "data-egi-no-start" not in form
    assert "not charged to a VO" in form
    assert "Servers not charged to a VO: 0 of 2 servers" in form
    assert "no VO" not in form


async def test_a_profile_charged_to_a_vo_stays_open_to_a_user_in_no_vo(tmp_path):
    """A profile with its own ``vo`` is charged there, not to the no-VO limits."""
    SitePages.clear_instance()
    profile = {**PROFILES[0], "vo": "vo.access.egi.eu"}
    with local_vo_spawner(tmp_path, "carol", [], [profile]) as s:
        s.quota.default_limits = {"max_servers": 0}
        s.quota.vo_limits = LIMITS
        form = await form_of(s)
    assert 'name="profile"' in form and "vo.access.egi.eu: 0 of 3 servers" in form
