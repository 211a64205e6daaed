"""The home page as users see it (headless Debian Chromium): servers, VOs, quota use, hours.

Two users in different VOs, with quotas set, each start a server; the usage log is
seeded with past runs (one inside the 30-day window, one before it, and the other
user's). Each user's home page shows their own server, VOs, use and hours, and nothing
of the other's.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import Page, expect

from tests.a11y import assert_accessible
from tests.e2e.test_browser import login
from tests.integration.test_quota_local import quota_site
from tests.screens import save_screenshot
from tests.stackrunner import ALICE_ENTITLEMENTS, start_stack, wait_for

pytestmark = pytest.mark.browser

ACCESS = "vo.access.egi.eu"
NOTEBOOKS = "vo.notebooks.egi.eu"
BOB_NOTEBOOKS_ONLY = ["urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu"]


def past_run(user: str, vo: str, profile: str, days_ago: float, hours: float) -> list[str]:
    """A start and a stop line, as QuotaPolicy writes them, for a run that ended long ago."""
    start = datetime.now(UTC) - timedelta(days=days_ago)
    stop = start + timedelta(hours=hours)
    record = {"user": user, "server": "", "vo": vo, "profile": profile}
    record |= {"cpu": 1.0, "memory": 2**30, "gpu": 0, "start": start.isoformat()}
    return [
        json.dumps({"event": "start", **record, "stop": None}),
        json.dumps({"event": "stop", **record, "stop": stop.isoformat()}),
    ]


@pytest.fixture(scope="module")
def home_stack(tmp_path_factory):
    site = quota_site(
        {
            ACCESS: {"max_servers": 3, "max_memory": "8G", "per_user": {"max_servers": 1}},
            NOTEBOOKS: {"max_servers": 2, "max_cpu": 8},
        }
    )
    site["DevAuthenticator"]["users"] = {
        "alice": {"entitlements": ALICE_ENTITLEMENTS},
        "bob": {"entitlements": BOB_NOTEBOOKS_ONLY},
    }
    tmp = tmp_path_factory.mktemp("home")
    data_dir = tmp / "data"
    data_dir.mkdir(mode=0o700)
    lines = past_run("alice", ACCESS, "small", days_ago=3, hours=2)
    lines += past_run("alice", ACCESS, "small", days_ago=40, hours=100)  # before the window
    lines += past_run("bob", NOTEBOOKS, "large", days_ago=1, hours=7)
    (data_dir / "usage.jsonl").write_text("".join(line + "\n" for line in lines))
    stack = start_stack(tmp, site)
    yield stack
    stack.stop()


def start_server(stack, user: str, options: dict) -> None:
    r = stack.api.post(f"/users/{user}/server", json=options)
    assert r.status_code in (201, 202), r.text
    wait_for(
        lambda: (stack.user(user)["servers"].get("") or {}).get("ready"),
        90,
        f"{user}'s server to be ready",
    )


def open_home(page: Page, stack, user: str, options: dict) -> None:
    """Log in (which stores the user's VOs), start their server, open the home page."""
    page.context.clear_cookies()
    login(page, stack, user)
    start_server(stack, user, options)
    page.goto(f"{stack.url}/hub/home")
    expect(page.locator("#egi-home")).to_be_visible()


def test_home_page_shows_own_servers_vos_use_and_hours(page: Page, home_stack):
    open_home(page, home_stack, "bob", {"profile": "large"})
    open_home(page, home_stack, "alice", {"profile": "small"})

    server = page.locator('#egi-servers tr[data-egi-server=""]')
    expect(server.locator("th")).to_have_text("default server")
    expect(server.locator(".egi-server-status")).to_have_text("running")
    expect(server.locator(".egi-server-profile")).to_have_text("Small")
    expect(server.locator(".egi-server-vo")).to_have_text(ACCESS)
    expect(server.locator(".egi-server-resources")).to_have_text("1 CPU, 1 GiB memory")

    vo = page.locator(f'#egi-vos tr[data-egi-vo="{ACCESS}"]')
    expect(vo.locator(".egi-vo-use")).to_contain_text("1 of 3 servers")
    expect(vo.locator(".egi-vo-use")).to_contain_text("1 of 8 GiB")
    expect(vo.locator(".egi-use-you")).to_contain_text("1 of 1 server")
    expect(vo.locator(".egi-use-you")).to_contain_text("full")
    # 2 hours from the seeded run (the one 40 days ago is outside the window), plus the
    # minutes of the server running now.
    expect(vo.locator(".egi-vo-hours")).to_have_text(re.compile(r"^2\.[0-4] h$"))
    expect(page.locator("#egi-vos tbody tr")).to_have_count(1)
    save_screenshot(page, "home-page")

    # Nothing of bob's: his VO, his profile, his hours.
    text = page.locator("#egi-home").inner_text()
    for foreign in (NOTEBOOKS, "Large", "7.0 h", "bob"):
        assert foreign not in text
    assert_accessible(page)

    # Bob sees his own: the large profile charged to his VO, his 7 hours, no alice.
    page.context.clear_cookies()
    login(page, home_stack, "bob")
    page.goto(f"{home_stack.url}/hub/home")
    server = page.locator('#egi-servers tr[data-egi-server=""]')
    expect(server.locator(".egi-server-profile")).to_have_text("Large")
    expect(server.locator(".egi-server-vo")).to_have_text(NOTEBOOKS)
    expect(server.locator(".egi-server-resources")).to_have_text("4 CPUs, 4 GiB memory")
    vo = page.locator(f'#egi-vos tr[data-egi-vo="{NOTEBOOKS}"]')
    expect(vo.locator(".egi-vo-use")).to_contain_text("1 of 2 servers")
    expect(vo.locator(".egi-vo-use")).to_contain_text("4 of 8 CPUs")
    expect(vo.locator(".egi-vo-hours")).to_have_text(re.compile(r"^7\.[0-4] h$"))
    text = page.locator("#egi-home").inner_text()
    for foreign in (ACCESS, "Small", "2.0 h", "alice"):
        assert foreign not in text
    save_screenshot(page, "home-page-other-vo")

    home_stack.stop_server("alice")
    home_stack.stop_server("bob")


def test_home_page_without_servers_in_the_dark_theme(browser, home_stack):
    context = browser.new_context(color_scheme="dark", viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        login(page, home_stack, "alice")
        page.goto(f"{home_stack.url}/hub/home")
        expect(page.locator("html")).to_have_attribute("data-bs-theme", "dark")
        expect(page.locator("#egi-no-servers")).to_have_text("No server is running.")
        vo = page.locator(f'#egi-vos tr[data-egi-vo="{ACCESS}"]')
        expect(vo.locator(".egi-vo-use")).to_contain_text("0 of 3 servers")
        expect(vo.locator(".egi-vo-hours")).to_have_text(re.compile(r"^2\.[0-4] h$"))
        assert_accessible(page)  # the colour contrast of the dark theme too
        save_screenshot(page, "home-page-dark")
    finally:
        context.close()
