"""The landing page's "Private repository" part in headless Chromium, on the real local
stack (``egi-hub up`` with ``Resolver.allow_user_tokens``): Alice logs in with the dev
login, pastes a GitHub address, keeps a token for github.com through the real token API
(the page's XSRF token, same origin), sees when it expires, and forgets it. The part is
for git repositories only; the token never shows again. Nothing here is a stand-in.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.a11y import assert_accessible
from tests.integration.test_binder_token_api import token_site
from tests.screens import save_screenshot
from tests.stackrunner import Stack, start_stack

pytestmark = pytest.mark.browser

PREFIX = "/services/binder/"
TOKEN = "ghp_browser0123456789abcdefghijklmnopqrs"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("stack"), token_site())
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def alice(browser, stack: Stack) -> Iterator[BrowserContext]:
    """Alice's browser, logged in at the hub (it bypasses the CSP for axe's script)."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, bypass_csp=True, reduced_motion="reduce"
    )
    context.set_default_timeout(60_000)
    page = context.new_page()
    page.goto(f"{stack.url}/hub/login?next={quote('/hub/home')}")
    page.fill("#username_input", "alice")
    page.click("#login_submit")
    page.wait_for_url(f"{stack.url}/hub/home")
    page.close()
    yield context
    context.close()


def kept_hosts(stack: Stack) -> list[str]:
    """Alice's hosts with a token, as an API client of hers sees them."""
    token = stack.api.post(
        "/users/alice/tokens", json={"scopes": ["access:services!service=binder"]}
    ).json()["token"]
    r = httpx.get(f"{stack.url}{PREFIX}api/v1/tokens", headers={"Authorization": f"token {token}"})
    assert r.status_code == 200, r.text
    return [t["host"] for t in r.json()["tokens"]]


def test_a_user_keeps_and_forgets_a_token_for_the_repositorys_host(alice, stack: Stack):
    page: Page = alice.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(f"{stack.url}{PREFIX}")  # not logged in at the service yet
    part = page.locator("#private-repo")
    expect(part).to_be_hidden()
    page.fill("#repo-input", "https://github.com/my-group/private-analysis")
    page.click("#make-link")
    expect(part).to_contain_text("sign in")
    expect(part.locator(".token-host")).to_have_text("github.com")
    assert page.locator("#token-input").count() == 0
    part.get_by_role("link", name="sign in").click()  # the hub's OAuth, and back
    page.wait_for_url(f"{stack.url}{PREFIX}")
    expect(part).to_be_hidden()

    page.fill("#repo-input", "10.5281/zenodo.1234567")  # a DOI: no token to give
    page.click("#make-link")
    expect(page.locator("#result")).to_be_visible()
    expect(part).to_be_hidden()

    page.fill("#repo-input", "https://github.com/my-group/private-analysis")
    page.click("#make-link")
    expect(part).to_be_visible()
    expect(part.locator("label .token-host")).to_have_text("github.com")
    expect(part).to_contain_text("keeps it in memory for 8 hours")
    page.fill("#token-input", TOKEN)
    page.click("#token-save")
    expect(page.locator("#token-status")).to_contain_text("Token saved for github.com until")
    expect(page.locator("#token-input")).to_have_value("")
    assert kept_hosts(stack) == ["github.com"]
    assert TOKEN not in page.content()
    assert_accessible(page, "#main")
    save_screenshot(page, "binder-private-token")

    page.reload()  # the page remembers nothing; the service says a token is kept
    page.fill("#repo-input", "https://github.com/my-group/private-analysis")
    page.click("#make-link")
    expect(page.locator("#token-status")).to_contain_text("A token for github.com is kept")
    page.click("#token-forget")
    expect(page.locator("#token-status")).to_contain_text("No token is kept for github.com")
    assert kept_hosts(stack) == []
    assert not errors, errors
    page.close()
