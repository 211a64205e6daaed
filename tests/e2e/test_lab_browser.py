"""JupyterLab on the single-user side, as a user sees it (headless Debian Chromium).

A real local stack whose profiles set ``mem_limit``/``cpu_limit``: Lab opens without the
"official Jupyter news" prompt, its status bar shows memory against the profile's limit
(jupyter-resource-usage), and the metrics endpoint answers with that limit. A second
profile points ``JUPYTER_CONFIG_PATH`` at a site's own Jupyter config dir, as a site
would to turn the prompt back on: the prompt then shows, which also proves that the
quiet check above would see it.
"""

from __future__ import annotations

import json
import re

import httpx
import pytest
from playwright.sync_api import Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.e2e.test_browser import login
from tests.integration.test_quota_local import quota_site
from tests.screens import save_screenshot
from tests.stackrunner import start_stack, wait_for

pytestmark = pytest.mark.browser

NEWS = "Would you like to get notified about official Jupyter news?"
GIB = 1024**3
LIMITS = {"cpu_limit": 1, "mem_limit": "1G"}


def lab_site(site_config: str) -> dict:
    site = quota_site({"vo.access.egi.eu": {"max_servers": 2}})
    site["EGILocalSpawner"]["profile_list"] = [
        {
            "display_name": "Small",
            "slug": "small",
            "default": True,
            "kubespawner_override": LIMITS,
        },
        {
            "display_name": "Small, with the site's own Lab settings",
            "slug": "site-news",
            "kubespawner_override": {
                **LIMITS,
                "environment": {"JUPYTER_CONFIG_PATH": site_config},
            },
        },
    ]
    return site


@pytest.fixture(scope="module")
def lab_stack(tmp_path_factory):
    """The stack, with alice's default server (Small) and her ``site-news`` server running."""
    tmp = tmp_path_factory.mktemp("lab")
    site_config = tmp / "site-jupyter"
    (site_config / "labconfig").mkdir(parents=True)
    overrides = {"@jupyterlab/apputils-extension:notification": {"fetchNews": "none"}}
    (site_config / "labconfig" / "default_setting_overrides.json").write_text(json.dumps(overrides))
    stack = start_stack(tmp, lab_site(str(site_config)))
    try:
        stack.dev_login("alice")  # her VOs come with her login
        stack.start_server("alice")
        r = stack.api.post("/users/alice/servers/site-news", json={"profile": "site-news"})
        assert r.status_code in (201, 202), r.text
        wait_for(
            lambda: stack.user("alice")["servers"].get("site-news", {}).get("ready"),
            90,
            "alice's site-news server to be ready",
        )
        yield stack
    finally:
        stack.stop()


def open_lab(page: Page, stack, server_path: str) -> None:
    login(page, stack, "alice")
    page.goto(f"{stack.url}/user/alice/{server_path}lab")
    expect(page.locator(".jp-LauncherCard").first).to_be_visible(timeout=90_000)


def test_metrics_endpoint_answers_with_the_profile_limits(lab_stack):
    r = httpx.get(
        f"{lab_stack.url}/user/alice/api/metrics/v1",
        headers={"Authorization": f"token {lab_stack.api_token}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    metrics = r.json()
    assert metrics["limits"]["memory"]["rss"] == GIB
    assert metrics["limits"]["memory"]["warn"] is False
    assert metrics["limits"]["cpu"] == {"cpu": 1.0}  # no CPU warning (see .defaults)
    assert metrics["rss"] > 0
    assert "cpu_percent" in metrics  # CPU tracking on (egi_hub.singleuser.defaults)


def test_lab_shows_memory_against_the_limit_and_no_news_prompt(page: Page, lab_stack):
    open_lab(page, lab_stack, "")
    # Lab's status bar, where jupyter-resource-usage writes "CPU:  1.80 % | Mem:  115.75 /
    # 1024.00 MB" (the profile's 1 GiB is 1024 MB).
    statusbar = page.get_by_role("contentinfo", name="Bottom Panel")
    usage = re.compile(r"CPU:\s+[\d.]+ % \| Mem:\s+[\d.]+ / 1024\.00 MB")
    expect(statusbar).to_contain_text(usage, timeout=30_000)
    # Not in its warning state (an extra class, red text) while well within the limits.
    expect(page.get_by_title("Current resource usage")).to_have_class("jp-StatusBar-TextItem")
    # The window: no prompt within 10 s of Lab loading (the next test sees one).
    with pytest.raises(PlaywrightTimeoutError):
        page.get_by_text(NEWS).wait_for(state="visible", timeout=10_000)
    save_screenshot(page, "lab-resource-usage")


def test_a_site_turns_the_news_prompt_back_on_with_its_own_config_dir(page: Page, lab_stack):
    open_lab(page, lab_stack, "site-news/")
    expect(page.get_by_text(NEWS)).to_be_visible(timeout=30_000)
