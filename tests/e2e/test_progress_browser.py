"""The progress page as a user sees it (headless Debian Chromium): events as they happen.

The chosen profile's server waits at a gate (a file) before it listens, so the page is
looked at while the server is provably not ready: the bar has moved and the event log
holds the admission (with the VO it is charged to), the process start and the wait,
all delivered through the npm proxy's event stream. Then the gate opens and the page
takes the user to JupyterLab. Nothing depends on timing.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.a11y import assert_accessible
from tests.e2e.test_browser import login
from tests.integration.test_spawn_progress import gated_site
from tests.screens import save_screenshot
from tests.stackrunner import start_stack

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def gated_stack(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("progress-ui")
    stack = start_stack(tmp, gated_site(tmp / "gate"))
    stack.gate = tmp / "gate"
    yield stack
    stack.stop()


def test_progress_page_fills_before_the_server_is_ready(page: Page, gated_stack):
    login(page, gated_stack, "alice")
    page.goto(f"{gated_stack.url}/hub/spawn")
    page.locator("#profile-gated").check()
    page.locator('#spawn_form button[type="submit"], #spawn_form input[type="submit"]').click()
    page.wait_for_url(re.compile(r".*/hub/spawn-pending/alice.*"))

    log = page.locator("#progress-log")
    expect(log).to_contain_text("charged to vo.access.egi.eu", timeout=60_000)
    expect(log).to_contain_text("Server process started")
    expect(log).to_contain_text("Waiting for the server to answer", timeout=60_000)
    assert not gated_stack.gate.exists()  # so the server cannot be ready yet
    assert float(page.locator("#progress-bar").get_attribute("aria-valuenow") or 0) > 0
    assert gated_stack.user("alice")["servers"][""]["ready"] is False
    page.locator("#progress-details summary").click()  # the event log, as users open it
    expect(log).to_be_visible()
    save_screenshot(page, "spawn-pending-progress")
    assert_accessible(page)

    gated_stack.gate.touch()
    page.wait_for_url(re.compile(r".*/user/alice/lab.*"), timeout=90_000)
    gated_stack.stop_server("alice")
