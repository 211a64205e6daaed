"""Profile cards and quota refusals as a user sees them (headless Debian Chromium).

Two users in different VOs: alice (vo.access.egi.eu, whose limit is 0 servers here)
and bob (vo.notebooks.egi.eu too), and carol in no VO (servers not charged to a VO are
not allowed here, as in site.example.yaml). The site lists the profiles a user's VOs do
not allow, disabled (``SitePages.show_unavailable_profiles``). A second stack lets
vo.access.egi.eu run one server: the common refusal, a VO's servers all running.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.a11y import assert_accessible
from tests.e2e.test_browser import login
from tests.integration.test_quota_local import quota_site, wait_ready
from tests.screens import save_screenshot
from tests.stackrunner import ALICE_ENTITLEMENTS, BOB_ENTITLEMENTS, start_stack

pytestmark = pytest.mark.browser

JOIN_NOTEBOOKS = "https://example.org/enrol/vo.notebooks.egi.eu"


@pytest.fixture(scope="module")
def quota_stack(tmp_path_factory):
    site = quota_site({"vo.access.egi.eu": {"max_servers": 0}})
    site["DevAuthenticator"]["users"] = {
        "alice": {"entitlements": ALICE_ENTITLEMENTS},
        "bob": {"entitlements": BOB_ENTITLEMENTS},
        "carol": {"entitlements": []},
    }
    site["SitePages"] = {
        "show_unavailable_profiles": True,
        "enrolment_urls": {"vo.notebooks.egi.eu": JOIN_NOTEBOOKS},
    }
    stack = start_stack(tmp_path_factory.mktemp("quota-ui"), site)
    yield stack
    stack.stop()


def profile_names(page: Page, selector: str = 'input[name="profile"]') -> list[str]:
    return page.locator(selector).evaluate_all("els => els.map(e => e.value)")


def card(page: Page, slug: str):
    return page.locator(f'.egi-profile-card[data-profile="{slug}"]')


def submit(page: Page) -> None:
    page.locator('#spawn_form input[type="submit"], #spawn_form button[type="submit"]').click()


def test_cards_show_resources_where_each_server_is_charged_and_the_use(page: Page, quota_stack):
    login(page, quota_stack, "bob")
    page.goto(f"{quota_stack.url}/hub/spawn")
    assert profile_names(page) == ["small", "large"]
    expect(page.get_by_role("group", name="Choose a profile")).to_be_visible()
    large = card(page, "large")
    expect(large.get_by_label("Large")).to_be_enabled()
    expect(large.locator(".egi-profile-vo")).to_have_text("vo.notebooks.egi.eu")
    expect(large.locator(".egi-profile-use")).to_have_text("vo.notebooks.egi.eu: no limits")
    expect(large).to_contain_text("up to 4 GiB")
    expect(card(page, "small").locator(".egi-profile-vo")).to_have_text("vo.notebooks.egi.eu")
    save_screenshot(page, "spawn-form-cards")


def test_profiles_of_other_vos_are_disabled_with_the_enrolment_link(page: Page, quota_stack):
    login(page, quota_stack, "alice")
    page.goto(f"{quota_stack.url}/hub/spawn")
    assert profile_names(page, 'input[name="profile"]:enabled') == ["small"]
    expect(page.locator("#profile-small")).to_be_checked()  # the one choice: preselected
    small = card(page, "small")
    expect(small.locator(".egi-profile-vo")).to_have_text("vo.access.egi.eu")
    # vo.access.egi.eu's limit is 0 here: said in words, not by a colour.
    expect(small.locator(".egi-profile-use")).to_have_text(
        "vo.access.egi.eu: 0 of 0 servers (full)"
    )
    large = card(page, "large")
    expect(page.locator("#profile-large")).to_be_disabled()
    expect(large.locator(".egi-profile-needs")).to_contain_text(
        "needs membership of vo.notebooks.egi.eu"
    )
    link = large.get_by_role("link", name="join vo.notebooks.egi.eu")
    expect(link).to_have_attribute("href", JOIN_NOTEBOOKS)
    save_screenshot(page, "spawn-form-unavailable-profile")


def test_a_vo_without_servers_is_refused_in_words(page: Page, quota_stack):
    login(page, quota_stack, "alice")
    page.goto(f"{quota_stack.url}/hub/spawn")
    submit(page)
    expect(page.get_by_text("vo.access.egi.eu allows no servers at all.")).to_be_visible()
    expect(page.get_by_text("HTTP 403")).to_have_count(0)
    expect(page.get_by_text("Quota reached")).to_have_count(0)
    # The records stay honest: no options of a server that never ran.
    model = quota_stack.api.get("/users/alice", params={"include_stopped_servers": "1"}).json()
    assert model["servers"].get("", {}).get("user_options", {}) == {}


def test_a_chosen_profile_starts_jupyterlab_with_its_limits(page: Page, quota_stack):
    login(page, quota_stack, "bob")
    page.goto(f"{quota_stack.url}/hub/spawn")
    page.locator("#profile-large").check()
    submit(page)
    page.wait_for_url(lambda url: "/user/bob/lab" in url, timeout=90_000)
    expect(page.locator(".jp-LauncherCard").first).to_be_visible()
    model = quota_stack.user("bob")["servers"][""]
    assert model["user_options"] == {"profile": "large"}
    quota_stack.stop_server("bob")


def test_a_user_in_no_vo_is_told_to_join_one_instead_of_cards(page: Page, quota_stack):
    """No VO, and no servers for users in none: the form says so, with the enrolment
    link, and offers no cards and no Start button that could only be refused."""
    login(page, quota_stack, "carol")
    page.goto(f"{quota_stack.url}/hub/spawn")
    message = page.locator("#egi-no-start")
    expect(message).to_contain_text("You are not a member of any VO")
    link = message.get_by_role("link", name="Join a VO, then log out and log in again")
    expect(link).to_have_attribute("href", "https://operations-portal.egi.eu/vo/search")
    expect(page.locator(".egi-profile-card")).to_have_count(0)
    expect(page.get_by_role("button", name="Start")).to_have_count(0)
    expect(page.get_by_text("no VO)")).to_have_count(0)
    expect(page.get_by_text("Quota reached")).to_have_count(0)
    assert_accessible(page)
    save_screenshot(page, "spawn-form-no-vo")


@pytest.fixture(scope="module")
def one_server_stack(tmp_path_factory):
    site = quota_site({"vo.access.egi.eu": {"max_servers": 1}})
    stack = start_stack(tmp_path_factory.mktemp("quota-one"), site)
    yield stack
    stack.stop()


def test_a_refused_spawn_names_the_limit_and_the_running_server(page: Page, one_server_stack):
    """The common case: the VO allows one server and alice's default server is it."""
    stack = one_server_stack
    login(page, stack, "alice")
    stack.api.post("/users/alice/server", json={"profile": "small"})
    wait_ready(stack, "alice", 1)
    try:
        page.goto(f"{stack.url}/hub/spawn/alice/second")
        submit(page)
        error = page.locator("#egi-spawn-error")
        expect(error).to_contain_text("vo.access.egi.eu allows 1 server and 1 is running.")
        expect(error).to_contain_text("Running now: your default server.")
        home = error.get_by_role("link", name="Stop one on your home page to start another")
        expect(home).to_have_attribute("href", "/hub/home")
        expect(page.get_by_text("alice/")).to_have_count(0)
        expect(page.get_by_text("HTTP 403")).to_have_count(0)
        assert_accessible(page)
        save_screenshot(page, "spawn-refused-quota")
    finally:
        stack.stop_server("alice")
