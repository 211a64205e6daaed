"""Profiles per VO and quota refusals as a user sees them (headless Debian Chromium)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.test_browser import login
from tests.integration.test_quota_local import quota_site
from tests.stackrunner import ALICE_ENTITLEMENTS, BOB_ENTITLEMENTS, start_stack

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def quota_stack(tmp_path_factory):
    site = quota_site({"vo.access.egi.eu": {"max_servers": 0}})
    site["DevAuthenticator"]["users"] = {
        "alice": {"entitlements": ALICE_ENTITLEMENTS},
        "bob": {"entitlements": BOB_ENTITLEMENTS},
    }
    stack = start_stack(tmp_path_factory.mktemp("quota-ui"), site)
    yield stack
    stack.stop()


def profile_names(page: Page) -> list[str]:
    return page.locator('input[name="profile"]').evaluate_all("els => els.map(e => e.value)")


def test_users_see_only_the_profiles_their_vos_allow(page: Page, quota_stack):
    login(page, quota_stack, "bob")
    page.goto(f"{quota_stack.url}/hub/spawn")
    assert profile_names(page) == ["small", "large"]
    page.context.clear_cookies()
    login(page, quota_stack, "alice")
    page.goto(f"{quota_stack.url}/hub/spawn")
    assert profile_names(page) == ["small"]


def test_a_refused_spawn_says_which_limit(page: Page, quota_stack):
    login(page, quota_stack, "alice")
    page.goto(f"{quota_stack.url}/hub/spawn")
    page.locator('#spawn_form input[type="submit"], #spawn_form button[type="submit"]').click()
    expect(page.get_by_text("Error: Quota reached: max_servers = 0")).to_be_visible()
    expect(page.get_by_text("limit of vo.access.egi.eu")).to_be_visible()
    page.screenshot(path=str(quota_stack.data_dir.parent / "quota-refused.png"))


def test_a_chosen_profile_starts_jupyterlab_with_its_limits(page: Page, quota_stack):
    login(page, quota_stack, "bob")
    page.goto(f"{quota_stack.url}/hub/spawn")
    page.locator("#profile-large").check()
    page.locator('#spawn_form input[type="submit"], #spawn_form button[type="submit"]').click()
    page.wait_for_url(lambda url: "/user/bob/lab" in url, timeout=90_000)
    expect(page.locator(".jp-LauncherCard").first).to_be_visible()
    model = quota_stack.user("bob")["servers"][""]
    assert model["user_options"] == {"profile": "large"}
    quota_stack.stop_server("bob")
