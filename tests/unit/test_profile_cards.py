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
