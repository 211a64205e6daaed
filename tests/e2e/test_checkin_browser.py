"""Check-in login in headless Chromium against a real OIDC provider (npm oidc-provider)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.a11y import assert_accessible
from tests.screens import save_screenshot

pytestmark = pytest.mark.browser


def provider_login(page: Page, hub_url: str, account: str) -> None:
    page.goto(f"{hub_url}/hub/login")
    page.get_by_text("Sign in with EGI Check-in").click()
    page.fill('input[name="login"]', account)
    page.fill('input[name="password"]', "any")
    # The login form, then the consent page (offline_access), as on a first Check-in login.
    for _ in range(2):
        with page.expect_navigation():
            page.locator('button[type="submit"]').first.click()
        if "/interaction/" not in page.url:
            return
    raise AssertionError(f"still at the provider: {page.url}")


def test_vo_member_logs_in_and_gets_a_server(page: Page, checkin):
    stack, _ = checkin
    provider_login(page, stack.url, "bob")
    page.goto(f"{stack.url}/hub/spawn")
    page.wait_for_url(re.compile(r".*/user/bob@egi\.eu/lab.*"), timeout=90_000)
    expect(page.locator(".jp-LauncherCard").first).to_be_visible()
    stack.stop_server("bob@egi.eu")


def test_user_outside_the_vos_sees_enrolment_links(page: Page, checkin):
    stack, _ = checkin
    provider_login(page, stack.url, "eve")
    expect(page.locator("#egi-error-title")).to_have_text("Not a member of an allowed VO")
    expect(page.get_by_text("is not a member of a Virtual Organisation")).to_be_visible()
    links = page.locator("#egi-vo-enrolment a")
    # vo.access.egi.eu: the site file's (deprecated) CheckinAuthenticator.enrolment_urls;
    # vo.notebooks.egi.eu has none: SitePages' default, the VO search of the EGI portal.
    expect(links).to_have_count(2)
    expect(links.nth(0)).to_have_attribute("href", "https://aai.egi.eu/registry/enrol/access")
    expect(links.nth(1)).to_have_attribute("href", "https://operations-portal.egi.eu/vo/search")
    assert_accessible(page)
    save_screenshot(page, "login-refused-vo")
