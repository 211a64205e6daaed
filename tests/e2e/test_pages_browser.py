"""The hub's own pages as users see them (headless Debian Chromium): the site's name, logo
and links, the login methods, readable refusals and failed starts, both themes, axe.

One local stack with ``SitePages`` set and three profiles: ``small`` (anyone), ``large``
(vo.notebooks.egi.eu only) and ``broken``, whose server exits at once with a log line.
``slow_spawn_timeout`` is 0, so every start goes through the progress page, as a slow
start on a busy site does.
"""

from __future__ import annotations

import sys
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Page, expect

from tests.a11y import assert_accessible
from tests.conftest import CRASH, TEST_SERVICE
from tests.e2e.test_browser import login
from tests.screens import save_screenshot
from tests.stackrunner import ALICE_ENTITLEMENTS, BOB_ENTITLEMENTS, start_stack

pytestmark = pytest.mark.browser

SITE_NAME = "Test Grid Notebooks"
LOGO = (
    "data:image/svg+xml,"
    "%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 10 10'%3E"
    "%3Ccircle cx='5' cy='5' r='5' fill='%23264'/%3E%3C/svg%3E"
)
SUPPORT = "https://support.example.org/notebooks"
TERMS = "https://example.org/notebooks/terms"
PRIVACY = "https://example.org/notebooks/privacy"
NOTEBOOKS_ENROL = "https://example.org/enrol/notebooks"

PROFILES = [
    {"display_name": "Small", "slug": "small", "default": True},
    {"display_name": "Large", "slug": "large", "allowed_vos": ["vo.notebooks.egi.eu"]},
    {
        "display_name": "Broken",
        "slug": "broken",
        "kubespawner_override": {"cmd": [sys.executable, "-c", CRASH]},
    },
]


def pages_site() -> dict:
    return {
        "SitePages": {
            "site_name": SITE_NAME,
            "logo_url": LOGO,
            "support_url": SUPPORT,
            "terms_url": TERMS,
            "privacy_url": PRIVACY,
            "enrolment_urls": {"vo.notebooks.egi.eu": NOTEBOOKS_ENROL},
        },
        "DevAuthenticator": {
            "users": {
                "alice": {"entitlements": ALICE_ENTITLEMENTS},
                "bob": {"entitlements": BOB_ENTITLEMENTS},
            }
        },
        "EGILocalSpawner": {"profile_list": PROFILES},
        "JupyterHub": {
            "tornado_settings": {"slow_spawn_timeout": 0},
            "services": [{"name": TEST_SERVICE, "api_token": "__API_TOKEN__"}],
            "load_roles": [{"name": "admin", "services": [TEST_SERVICE]}],
        },
    }


@pytest.fixture(scope="module")
def site_stack(tmp_path_factory):
    stack = start_stack(tmp_path_factory.mktemp("pages"), pages_site())
    yield stack
    stack.stop()


def expect_site_frame(page: Page) -> None:
    """The site's name, logo and footer links, as `SitePages` sets them."""
    expect(page).to_have_title(f"Sign in · {SITE_NAME}")
    expect(page.locator("#egi-site-name")).to_have_text(SITE_NAME)
    expect(page.locator("img#egi-logo")).to_have_attribute("src", LOGO)
    expect(page.locator("#egi-support-link")).to_have_attribute("href", SUPPORT)
    expect(page.locator("#egi-terms-link")).to_have_attribute("href", TERMS)
    expect(page.locator("#egi-privacy-link")).to_have_attribute("href", PRIVACY)


def submit_spawn_form(page: Page) -> None:
    page.locator("#spawn_form button[type=submit]").click()


def choose_profile(page: Page, slug: str) -> None:
    """Post ``slug`` as the profile, whether the form offers it or not (as a crafted
    request would): the form's own profile inputs are replaced by one hidden input."""
    page.locator("#spawn_form").evaluate(
        """(form, slug) => {
            form.querySelectorAll('[name="profile"]').forEach(e => e.remove());
            const input = document.createElement('input');
            input.type = 'hidden'; input.name = 'profile'; input.value = slug;
            form.appendChild(input);
        }""",
        slug,
    )


def test_login_page_names_the_site_and_marks_the_dev_login(page: Page, site_stack):
    page.goto(f"{site_stack.url}/hub/login")
    expect_site_frame(page)
    expect(page.locator("h1")).to_have_text(f"Sign in to {SITE_NAME}")
    expect(page.locator("#egi-dev-login-title")).to_have_text("Development login")
    expect(page.locator("#egi-dev-login-warning")).to_contain_text("not connected to EGI Check-in")
    assert_accessible(page)
    save_screenshot(page, "login-dev")


def test_empty_dev_username_asks_for_one(page: Page, site_stack):
    page.goto(f"{site_stack.url}/hub/login")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click("#login_submit")
    assert answer.value.status == 400
    expect(page.locator("#egi-login-error")).to_have_text(
        "Please enter a username (one of: alice, bob)."
    )
    expect(page.locator("#username_input")).to_be_visible()
    assert_accessible(page)
    save_screenshot(page, "login-empty-username")


def test_dev_login_shows_markup_in_usernames_as_text(page: Page, site_stack):
    """A link to the login page with a script in ``username``, and POSTed usernames with
    markup in them, show as text: no script runs (no dialog, no ``window.__xss``)."""
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    script = '"><script>window.__xss=1;alert(1)</script>'
    page.goto(f"{site_stack.url}/hub/login?{urlencode({'username': script})}")
    expect(page.locator("#username_input")).to_have_value(script)
    assert page.evaluate("window.__xss") is None
    save_screenshot(page, "login-username-escaped")
    # A name that JupyterHub finds invalid ('/'): the form again, the name in its box.
    invalid = '"><img src=x onerror="window.__xss=2;alert(2)">/'
    page.fill("#username_input", invalid)
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click("#login_submit")
    assert answer.value.status == 403
    expect(page.locator("#username_input")).to_have_value(invalid)
    assert page.evaluate("window.__xss") is None
    # A name no one in the site file has: JupyterHub shows the refusal in the form, which
    # quotes the name.
    unknown = "<img src=x onerror=window.__xss=3;alert(3)>"
    page.fill("#username_input", unknown)
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click("#login_submit")
    assert answer.value.status == 403
    expect(page.locator("#egi-login-error")).to_contain_text(f"Unknown user {unknown!r}")
    expect(page.locator("#egi-dev-login img")).to_have_count(0)
    expect(page.locator("#username_input")).to_have_value(unknown)
    assert page.evaluate("window.__xss") is None
    save_screenshot(page, "login-unknown-user")
    assert dialogs == []


def test_dark_theme_is_readable(browser, site_stack):
    context = browser.new_context(color_scheme="dark", viewport={"width": 1280, "height": 900})
    try:
        page = context.new_page()
        page.goto(f"{site_stack.url}/hub/login")
        expect(page.locator("html")).to_have_attribute("data-bs-theme", "dark")
        expect(page.locator("#egi-dev-login-warning")).to_be_visible()
        assert_accessible(page)  # axe's colour-contrast rule, on the dark colours
        save_screenshot(page, "login-dark")
        login(page, site_stack, "bob")
        page.goto(f"{site_stack.url}/hub/spawn")
        expect(page.locator("#spawn_form")).to_be_visible()
        expect(page.locator("html")).to_have_attribute("data-bs-theme", "dark")
        assert_accessible(page)
        save_screenshot(page, "spawn-form-dark")
    finally:
        context.close()


def test_refused_profile_reads_as_words(page: Page, site_stack):
    login(page, site_stack, "alice")
    page.goto(f"{site_stack.url}/hub/spawn")
    expect(page).to_have_title(f"Start a server · {SITE_NAME}")
    assert_accessible(page)
    save_screenshot(page, "spawn-form")
    choose_profile(page, "large")
    submit_spawn_form(page)
    # The refusal ends the start: the progress page's message, or (when the refusal came
    # first) the "could not start" page; either way in words, with the enrolment link.
    error = page.locator("#egi-spawn-error, #progress-message").filter(has_text="Large")
    expect(error).to_contain_text("needs membership of vo.notebooks.egi.eu")
    expect(error.locator(f'a[href="{NOTEBOOKS_ENROL}"]')).to_be_visible()
    text = error.inner_text()
    assert "Error:" not in text and "HTTP 403" not in text, text
    assert_accessible(page)
    save_screenshot(page, "spawn-refused-profile")


def test_failed_start_shows_its_log_as_lines(page: Page, site_stack):
    login(page, site_stack, "alice")
    page.goto(f"{site_stack.url}/hub/spawn")
    choose_profile(page, "broken")
    submit_spawn_form(page)
    # slow_spawn_timeout 0: the progress page, whose stream ends with the failure (or,
    # when the server died first, the "could not start" page): the log's lines, escaped.
    log = page.locator("#progress-message pre.egi-spawn-log, #egi-spawn-error pre.egi-spawn-log")
    expect(log).to_contain_text("egi-test: cannot import module xyz", timeout=60_000)
    expect(page.get_by_text("exited with status 3").first).to_be_visible()
    if page.locator("#progress-bar").count():  # the progress page (not the failed page)
        expect(page.locator("#progress-bar")).to_have_class("progress-bar bg-danger")
        expect(page.locator("h1")).to_have_text("Your server could not start")
    assert_accessible(page)
    save_screenshot(page, "spawn-pending-failed")
    # Back to the server's URL: the "could not start" page, with the same lines.
    page.goto(f"{site_stack.url}/hub/user/alice/")
    expect(page.locator("h1")).to_have_text("Your server could not start")
    expect(page.locator("#egi-spawn-error pre.egi-spawn-log")).to_contain_text(
        "egi-test: cannot import module xyz"
    )
    assert_accessible(page)
    save_screenshot(page, "server-failed")


def test_error_page_says_what_is_wrong(page: Page, site_stack):
    login(page, site_stack, "alice")
    answer = page.goto(f"{site_stack.url}/hub/admin")  # alice is no admin
    assert answer is not None and answer.status == 403
    expect(page.locator("#egi-error-title")).to_have_text("Forbidden")
    expect(page.locator("#egi-error-help")).to_contain_text("Error 403.")
    expect(page.locator("#egi-error-help a").first).to_have_attribute("href", SUPPORT)
    assert_accessible(page)
    save_screenshot(page, "error-forbidden")


def test_checkin_login_page_has_the_checkin_button(page: Page, checkin):
    stack, _ = checkin
    page.goto(f"{stack.url}/hub/login")
    expect(page).to_have_title("Sign in · EGI Notebooks")  # SitePages' defaults
    expect(page.locator("h1")).to_have_text("Sign in to EGI Notebooks")
    button = page.locator("#egi-login-button")
    expect(button).to_have_text("Sign in with EGI Check-in")
    expect(page.locator("#egi-dev-login-warning")).to_have_count(0)
    expect(page.locator("#egi-login-terms a").first).to_have_attribute(
        "href", "https://www.egi.eu/terms-of-use/"
    )
    expect(page.locator("svg#egi-logo")).to_be_visible()  # egi-hub's own mark
    assert_accessible(page)
    save_screenshot(page, "login-checkin")
