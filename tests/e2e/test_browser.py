"""End to end in headless Chromium (Debian's chromium): dev login, spawn, JupyterLab, a cell."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.a11y import assert_accessible
from tests.screens import save_screenshot
from tests.stackrunner import Stack

pytestmark = pytest.mark.browser


def login(page: Page, stack: Stack, username: str) -> None:
    page.goto(f"{stack.url}/hub/login")
    expect(page.locator("#egi-dev-login-warning")).to_contain_text("Development login")
    page.fill("#username_input", username)
    page.click("#login_submit")
    page.wait_for_url(lambda url: "/hub/login" not in url)


def test_dev_user_runs_a_cell_in_jupyterlab(page: Page, stack: Stack):
    login(page, stack, "alice")
    # Start the server: JupyterLab opens on its launcher.
    page.goto(f"{stack.url}/hub/spawn")
    page.wait_for_url(re.compile(r".*/user/alice/lab.*"), timeout=90_000)
    page.locator('.jp-LauncherCard[data-category="Notebook"]').first.click()
    # Wait until the kernel is connected and idle (the status bar says so) before typing.
    expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible()
    editor = page.locator(".jp-Notebook .jp-Cell").first.locator(".cm-content")
    editor.click()
    expect(page.locator(".jp-Notebook.jp-mod-editMode")).to_have_count(1)
    editor.press_sequentially("print(6*7)")
    expect(editor).to_have_text("print(6*7)")
    page.keyboard.press("Shift+Enter")
    output = page.locator(".jp-OutputArea-output").first
    expect(output).to_have_text("42", timeout=60_000)
    save_screenshot(page, "jupyterlab-cell")
    stack.stop_server("alice")


def test_spawn_page_shows_why_a_server_failed(page: Page, crashing_stack: Stack):
    login(page, crashing_stack, "carol")
    page.goto(f"{crashing_stack.url}/hub/spawn")
    # No options form: a start that fails within slow_spawn_timeout is an error page,
    # with the log's last lines as lines (a <pre>), not run together into one paragraph.
    expect(page.locator("#egi-error-title")).to_have_text("Internal Server Error")
    error = page.locator("#egi-error-detail")
    expect(error).to_contain_text("exited with status 3")
    log = error.locator("pre.egi-spawn-log")
    expect(log).to_contain_text("egi-test: cannot import module xyz")
    assert "\n" in log.inner_text().strip()  # lines, not one run-on paragraph
    assert "Error:" not in error.inner_text()
    assert str(crashing_stack.data_dir) not in error.inner_text()  # no hub-side path
    assert_accessible(page)
    save_screenshot(page, "spawn-failed")
