"""End to end in headless Chromium (Debian's chromium): dev login, spawn, JupyterLab, a cell."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

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
    page.screenshot(path=str(stack.data_dir.parent / "jupyterlab.png"))
    stack.stop_server("alice")


def test_spawn_page_shows_why_a_server_failed(page: Page, crashing_stack: Stack):
    login(page, crashing_stack, "carol")
    page.goto(f"{crashing_stack.url}/hub/spawn")
    expect(page.get_by_text("exited with status 3")).to_be_visible()
    expect(page.get_by_text("egi-test: cannot import module xyz")).to_be_visible()
    page.screenshot(path=str(crashing_stack.data_dir.parent / "spawn-failed.png"))
