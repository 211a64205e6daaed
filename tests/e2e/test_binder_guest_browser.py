"""Anonymous Binder in headless Chromium, on the real local stack with guests on.

A visitor with no account opens a Binder link: the hub's guest page says what a guest
gets (looked at, and checked for accessibility), "Continue as a guest" logs the browser
in as a new guest, the launch page asks before it starts (the visitor came from the
hub's page, not the Binder page), and the session's JupyterLab opens. Real git, the
venv builder and a real wheel, as in `test_binder_browser`; nothing here is a stand-in.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from playwright.sync_api import Page, expect

from tests.a11y import assert_accessible
from tests.gitserver import GitServer
from tests.integration.test_binder_local import binder_site
from tests.screens import save_screenshot
from tests.stackrunner import Stack, start_stack
from tests.wheels import make_wheel

pytestmark = pytest.mark.browser

PREFIX = "/services/binder/"
NOTEBOOK = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
GUEST_LAB = re.compile(r"^http://127\.0\.0\.1:\d+/user/guest--[0-9a-f]{12}/binder-[0-9a-f-]+/lab")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    wheels = tmp_path_factory.mktemp("wheels")
    make_wheel(wheels)
    site = {**binder_site(wheels), "BinderGuests": {"enabled": True}}
    running = start_stack(tmp_path_factory.mktemp("stack"), site)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def page(browser) -> Iterator[Page]:
    """A visitor's browser: no hub login, no cookie."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, bypass_csp=True, reduced_motion="reduce"
    )
    context.set_default_timeout(60_000)
    page = context.new_page()
    yield page
    context.close()


def test_a_visitor_continues_as_a_guest_and_lands_in_jupyterlab(
    page: Page, stack: Stack, git: GitServer
):
    git.commit("demo", {"requirements.txt": "egi_binder_demo==1.0\n", "index.ipynb": NOTEBOOK})
    link = f"{stack.url}{PREFIX}v2/git/{quote(git.git_url('demo'), safe='')}/HEAD"
    page.goto(f"{link}?labpath=index.ipynb")
    page.wait_for_url(re.compile(r"/hub/binder-guest\?next="))
    expect(page.locator("h1")).to_have_text("Launch without an account")
    expect(page.locator("#egi-guest-terms")).to_contain_text("no data spaces")
    expect(page.locator("#egi-guest-login")).to_have_attribute("href", re.compile("/hub/login"))
    assert_accessible(page)
    save_screenshot(page, "binder-guest")

    page.click("#egi-guest-button")
    expect(page.locator("#confirm")).to_be_visible()
    expect(page.locator("#confirm-text")).to_contain_text("will run in your guest session")
    save_screenshot(page, "binder-guest-confirm")
    page.click("#confirm-launch")
    page.wait_for_url(GUEST_LAB, timeout=180_000)
    expect(page.locator(".jp-Notebook").first).to_be_visible(timeout=120_000)
