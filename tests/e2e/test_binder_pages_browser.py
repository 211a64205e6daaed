"""The Binder service's pages in headless Chromium: the landing page turns each kind of
pasted address or DOI into the link `RepoSpec.path` builds, and the progress page follows
a launch's event stream to the session or to its failure.

The pages are served by a small tornado app in this module, with the real render
functions, static files and badge, a check API that calls the real `parse_launch`, and
a test event stream in mybinder's shape that plays a scripted launch. The script stops at
gates that the test opens, so each step is looked at while the next one provably has not
been sent yet (no timing). Every response carries a strict Content-Security-Policy, and
one test drives the pages with it enforced; the others bypass it, since axe and
Playwright inject scripts of their own.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from playwright.sync_api import Page, expect
from tornado import web
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from egi_hub.binder_service.badge import badge_svg
from egi_hub.binder_service.pages import STATIC_DIR, render_error, render_landing, render_launch
from egi_hub.binder_service.specs import PROVIDERS, BadSpec, RepoSpec, parse_launch
from tests.a11y import assert_accessible
from tests.screens import save_screenshot
from tests.stackrunner import wait_for

pytestmark = pytest.mark.browser

BASE = "/services/binder/"
SITE = "Test Grid Notebooks"
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def label_of(spec: RepoSpec) -> str:
    what = f"{PROVIDERS[spec.provider]} {spec.repo}"
    return f"{what} at {spec.ref}" if spec.ref else what


def spec_path(handler: web.RequestHandler, prefix: str) -> str:
    """The request's path after ``prefix``, still percent-escaped (tornado's path
    arguments are decoded, which would turn a git URL's ``%2F`` into ``/``)."""
    return handler.request.path[len(prefix) :]


def query_of(handler: web.RequestHandler) -> dict[str, str]:
    return {k: handler.get_query_argument(k) for k in handler.request.query_arguments}


class Base(web.RequestHandler):
    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", CSP)


class Static(web.StaticFileHandler):
    def set_default_headers(self) -> None:
        self.set_header("Content-Security-Policy", CSP)


class Landing(Base):
    def get(self) -> None:
        self.write(
            render_landing(
                base_url=BASE, user="alice", hub_url="/hub/", site_name=SITE, providers=PROVIDERS
            )
        )


class Badge(Base):
    def get(self) -> None:
        self.set_header("Content-Type", "image/svg+xml; charset=utf-8")
        self.write(badge_svg())


class Check(Base):
    """The check API as the lead's service answers it: 200 path and label, 400 reason."""

    def get(self, _: str) -> None:
        try:
            request = parse_launch(spec_path(self, f"{BASE}api/v1/check/"), query_of(self))
        except BadSpec as err:
            self.set_status(400)
            self.write({"reason": str(err)})
            return
        self.write({"path": request.spec.path, "label": label_of(request.spec)})


class Launch(Base):
    def get(self, _: str) -> None:
        path = spec_path(self, BASE)
        try:
            request = parse_launch(path, query_of(self))
        except BadSpec as err:
            self.set_status(400)
            self.write(render_error(base_url=BASE, status=400, reason=str(err), site_name=SITE))
            return
        query = f"?{self.request.query}" if self.request.query else ""
        self.write(
            render_launch(
                base_url=BASE,
                link=self.request.uri,
                label=label_of(request.spec),
                build_url=f"{BASE}build/{path.removeprefix('v2/')}{query}",
                user="alice",
                site_name=SITE,
                # As app.py: a link not opened from the service's own pages asks first.
                confirm=self.request.headers.get("Sec-Fetch-Site") != "same-origin",
            )
        )


class Elsewhere(web.RequestHandler):
    """A page of another site (the test opens it as ``localhost``, the pages being at
    ``127.0.0.1``: another host, so Chromium sends ``Sec-Fetch-Site: cross-site``; another
    port of the same host would be ``same-site``) with a link to a launch."""

    def get(self, key: str) -> None:
        target = f"{self.settings['pages_url']}{BASE}v2/{key}"
        self.write(
            "<!DOCTYPE html><html lang='en'><head><title>Elsewhere</title></head><body><main>"
            f"<a id='go' href='{target}'>Run this notebook</a></main></body></html>"
        )


class NoIcon(Base):
    def get(self) -> None:
        self.set_status(204)


class Session(Base):
    def get(self, name: str) -> None:
        self.write(
            "<!DOCTYPE html><html lang='en'><head><title>Session</title></head>"
            f"<body><main><h1 id='session'>Session {name}</h1></main></body></html>"
        )


BUILD_LINES = ["Collecting numpy==2.1.0", "Collecting pandas", "Successfully installed numpy"]
FLOOD = 6000  # log lines, more than the page keeps
FAILURE = "pip could not install the requirements: no version of nosuchpkg matches"


class BuildStream(Base):
    """A launch's events, scripted by the repository's name: ``fails`` ends in failed,
    ``flood`` sends more log lines than the page keeps, then fails, ``drops`` drops the
    first connection before its end, ``evil`` is ready at a
    ``javascript:`` address; any other is a launch that builds and becomes ready. The
    stream waits at gates (``<key>:queued``, ``<key>:built``) the test opens."""

    server: PagesServer

    def initialize(self, server: PagesServer) -> None:
        self.server = server
        self.sent = 0

    async def event(self, **data) -> None:
        self.sent += 1
        self.write(f"id: {self.sent}\ndata: {json.dumps(data)}\n\n")
        await self.flush()

    async def get(self, _: str) -> None:
        key = spec_path(self, f"{BASE}build/")
        self.server.connections[key] += 1
        attempt = self.server.connections[key]
        repo = parse_launch("v2/" + key).spec.repo
        if "drops" in repo and attempt > 1:
            await self.server.gate(f"{key}:reconnect").wait()  # nothing sent: reconnecting
        self.set_header("Content-Type", "text/event-stream")
        self.set_header("Cache-Control", "no-cache")
        self.write("retry: 200\n\n")
        repo_name = repo
        await self.event(phase="fetching", message=f"Fetching {repo_name}\n")
        await self.event(phase="waiting", position=2, message="Waiting for a build slot\n")
        if "flood" in repo:
            for batch in range(FLOOD // 100):
                lines = "".join(f"line {n}\n" for n in range(batch * 100, batch * 100 + 100))
                await self.event(phase="building", message=lines)
            await self.event(phase="failed", message="flood over\n")
            return
        if "fails" not in repo and "drops" not in repo:
            await self.server.gate(f"{key}:queued").wait()
        await self.event(phase="building", message="Step 1/2: installing the requirements\n")
        for line in BUILD_LINES:
            await self.event(phase="building", message=line + "\n")
        if "fails" in repo:
            await self.event(phase="failed", message=FAILURE + "\n")
            return
        if "drops" in repo and attempt == 1:
            return  # the connection ends without ready or failed
        if "drops" not in repo:
            await self.server.gate(f"{key}:built").wait()
        await self.event(phase="built", message="Built environment 3f2a9c\n")
        await self.event(phase="launching", message="Starting your server\n")
        url = "javascript:alert(1)" if "evil" in repo else f"/session/{attempt}"
        await self.event(phase="ready", url=url, token="not-for-the-page", message="Ready\n")


class PagesServer:
    """The tornado app above on 127.0.0.1 (a free port), its own event loop in a thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.gates: dict[str, asyncio.Event] = {}
        self.connections: Counter[str] = Counter()
        sockets = bind_sockets(0, "127.0.0.1")
        self.url = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(self.loop)
            HTTPServer(self.app()).add_sockets(sockets)
            started.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, name="binder-pages", daemon=True)
        self.thread.start()
        assert started.wait(10), "the pages server did not start"

    def app(self) -> web.Application:
        return web.Application(
            [
                (BASE, Landing),
                (f"{BASE}badge.svg", Badge),
                (f"{BASE}static/(.*)", Static, {"path": str(STATIC_DIR)}),
                (f"{BASE}api/v1/check/(.*)", Check),
                (f"{BASE}v2/(.*)", Launch),
                (f"{BASE}build/(.*)", BuildStream, {"server": self}),
                ("/session/(.*)", Session),
                ("/elsewhere/(.*)", Elsewhere),
                ("/favicon.ico", NoIcon),  # asked for by the session page
            ],
            pages_url=self.url,
        )

    def gate(self, name: str) -> asyncio.Event:
        """The gate ``name`` (the loop's thread only)."""
        return self.gates.setdefault(name, asyncio.Event())

    def release(self, name: str) -> None:
        self.loop.call_soon_threadsafe(lambda: self.gate(name).set())

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def server() -> Iterator[PagesServer]:
    running = PagesServer()
    yield running
    running.stop()


@pytest.fixture
def page(browser) -> Iterator[Page]:
    """A page that bypasses the pages' CSP (axe is injected as an inline script), asks
    for reduced motion (screenshots without a half-faded pulse) and fails the test on
    any script error."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, bypass_csp=True, reduced_motion="reduce"
    )
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    yield page
    context.close()
    assert not errors, f"script errors on the page: {errors}"


def make_link(page: Page, server: PagesServer, text: str, *, provider: str = "",
              ref: str = "", file: str = "") -> str:  # fmt: skip
    """Fill the landing page's form and get the link; returns the check request's URL."""
    page.goto(f"{server.url}{BASE}")
    page.fill("#repo-input", text)
    if provider:
        page.select_option("#provider-select", provider)
    page.fill("#ref-input", ref)
    page.fill("#file-input", file)
    with page.expect_request(lambda r: "/api/v1/check/" in r.url) as check:
        page.click("#make-link")
    return check.value.url


LINK_CASES = [
    ("https://github.com/binder-examples/requirements", {},
     RepoSpec("gh", "binder-examples/requirements", "HEAD"), ""),
    ("https://github.com/o/r.git", {"ref": "fix-(1)!'é/x"},
     RepoSpec("gh", "o/r", "fix-(1)!'é/x"), ""),
    ("https://github.com/o/r/tree/feature/x", {}, RepoSpec("gh", "o/r", "feature/x"), ""),
    ("https://github.com/o/r/blob/main/notebooks/intro.ipynb", {},
     RepoSpec("gh", "o/r", "main"), "notebooks/intro.ipynb"),
    ("git@github.com:o/r.git", {}, RepoSpec("gh", "o/r", "HEAD"), ""),
    ("o/r", {"provider": "gh"}, RepoSpec("gh", "o/r", "HEAD"), ""),
    ("https://gitlab.com/group/sub/repo", {}, RepoSpec("gl", "group/sub/repo", "HEAD"), ""),
    ("https://gitlab.com/group/repo/-/tree/dev", {}, RepoSpec("gl", "group/repo", "dev"), ""),
    ("git://127.0.0.1:9418/repo.git", {"file": "notebooks/a b&c.ipynb"},
     RepoSpec("git", "git://127.0.0.1:9418/repo.git", "HEAD"), "notebooks/a b&c.ipynb"),
    ("https://git.example.org/team/project.git", {"ref": "v1.0"},
     RepoSpec("git", "https://git.example.org/team/project.git", "v1.0"), ""),
    ("https://github.com/o/r", {"provider": "git"},
     RepoSpec("git", "https://github.com/o/r", "HEAD"), ""),
    ("10.5281/zenodo.3242074", {}, RepoSpec("zenodo", "10.5281/zenodo.3242074"), ""),
    ("https://doi.org/10.5281/zenodo.3242074", {},
     RepoSpec("zenodo", "10.5281/zenodo.3242074"), ""),
    ("https://zenodo.org/records/3242074", {}, RepoSpec("zenodo", "10.5281/zenodo.3242074"), ""),
    ("https://doi.org/10.6084/m9.figshare.9782777.v1", {},
     RepoSpec("doi", "10.6084/m9.figshare.9782777.v1"), ""),
    ("doi:10.7910/DVN/TJCLKP", {}, RepoSpec("doi", "10.7910/DVN/TJCLKP"), ""),
]  # fmt: skip


@pytest.mark.parametrize(("text", "form", "spec", "labpath"), LINK_CASES)
def test_pasted_address_gives_the_link_repospec_builds(page, server, text, form, spec, labpath):
    check_url = make_link(page, server, text, **form)
    query = f"?labpath={quote(labpath, safe='/')}" if labpath else ""
    # The page built the path itself, as RepoSpec.path does, and the service agreed.
    assert check_url == f"{server.url}{BASE}api/v1/check/{spec.path}{query}"
    link = f"{server.url}{BASE}{spec.path}{query}"
    expect(page.locator("#result")).to_be_visible()
    expect(page.locator("#link-output")).to_have_value(link)
    expect(page.locator("#launch-button")).to_have_attribute("href", link)
    expect(page.locator("#result-label")).to_have_text(label_of(spec))
    badge = f"{server.url}{BASE}badge.svg"
    expect(page.locator("#badge-markdown")).to_have_value(f"[![Binder]({badge})]({link})")
    expect(page.locator("#badge-rst")).to_have_value(
        f".. image:: {badge}\n   :target: {link}\n   :alt: Binder"
    )
    # The link's query is what parse_launch reads back as the file to open.
    request = parse_launch(spec.path, {"labpath": labpath} if labpath else {})
    assert request.spec == spec
    assert request.urlpath == (f"lab/tree/{labpath}" if labpath else "")


@pytest.mark.parametrize(
    ("text", "form", "field", "reason"),
    [
        ("https://user:secret@git.example.org/r.git", {}, "repo",
         "the repository URL needs a host and must not carry credentials"),
        ("file:///etc/passwd", {}, "repo", "the repository URL must start with"),
        ("https://github.com/o/r", {"ref": "bad..ref"}, "ref", "'bad..ref' is not a valid git ref"),
        ("https://github.com/o/r", {"file": "../../etc/passwd"}, "file",
         "labpath must not contain '.' or '..' segments"),
    ],
)  # fmt: skip
def test_refused_link_shows_the_service_reason_by_its_field(
    page, server, text, form, field, reason
):
    make_link(page, server, text, **form)
    expect(page.locator(f"#{field}-error")).to_contain_text(reason)
    expect(page.locator(f"#{field}-input")).to_have_attribute("aria-invalid", "true")
    expect(page.locator(f"#{field}-input")).to_be_focused()
    expect(page.locator("#result")).to_be_hidden()


def test_address_that_names_nothing_is_refused_in_the_page(page, server):
    page.goto(f"{server.url}{BASE}")
    checks: list[str] = []
    page.on("request", lambda r: checks.append(r.url) if "/api/v1/check/" in r.url else None)
    page.fill("#repo-input", "just some words")
    page.press("#repo-input", "Enter")  # the keyboard submits the form
    expect(page.locator("#repo-error")).to_contain_text("Paste the repository's full address")
    page.fill("#repo-input", "10.5281/zenodo.3242074")
    page.fill("#ref-input", "main")
    page.press("#ref-input", "Enter")
    expect(page.locator("#ref-error")).to_contain_text("A DOI names one archived record")
    assert checks == []


def test_markup_in_a_reason_stays_text(page, server):
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    markup = "<img src=x onerror=window.__xss=1>"
    make_link(page, server, "https://github.com/o/r", ref=markup)
    expect(page.locator("#ref-error")).to_have_text(f"{markup!r} is not a valid git ref"
                                                    " (branch, tag or commit)")  # fmt: skip
    assert page.evaluate("window.__xss") is None
    assert dialogs == []


def test_landing_page_result_is_accessible_in_both_themes(page, server):
    make_link(page, server, "https://github.com/binder-examples/requirements",
              file="index.ipynb")  # fmt: skip
    expect(page.locator("#result")).to_be_visible()
    expect(page.locator("#badge-preview")).to_have_js_property("complete", True)
    assert page.locator("#badge-preview").evaluate("img => img.naturalWidth") > 50
    assert_accessible(page)
    save_screenshot(page, "binder-landing")
    # An error, in the dark theme (the toggle stores the hub's own key).
    page.fill("#repo-input", "file:///etc/passwd")
    page.click("#make-link")
    expect(page.locator("#repo-error")).to_contain_text("must start with")
    page.click("#theme-toggle")
    expect(page.locator("html")).to_have_attribute("data-bs-theme", "dark")
    assert page.evaluate("localStorage.getItem('jupyterhub-bs-theme')") == "dark"
    assert_accessible(page)
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-bs-theme", "dark")


def test_copy_button_copies_the_link(browser, server):
    context = browser.new_context(
        bypass_csp=True, permissions=["clipboard-read", "clipboard-write"]
    )
    try:
        page = context.new_page()
        make_link(page, server, "https://github.com/o/r")
        link = f"{server.url}{BASE}v2/gh/o/r/HEAD"
        expect(page.locator("#link-output")).to_have_value(link)
        page.click('button[data-copy="link-output"]')
        expect(page.locator("#copy-status")).to_have_text("Copied: Launch link.")
        assert page.evaluate("navigator.clipboard.readText()") == link
    finally:
        context.close()


def phase(page: Page, name: str):
    return page.locator(f'#phases .phase[data-phase="{name}"]')


def test_progress_follows_the_stream_to_the_session(page, server):
    """Landing page → Launch → each step as its event arrives → the session's page."""
    make_link(page, server, "https://github.com/o/builds")
    key = "gh/o/builds/HEAD"
    page.click("#launch-button")
    page.wait_for_url(f"{server.url}{BASE}v2/{key}")
    expect(page.locator("#launch-label")).to_have_text("GitHub o/builds at HEAD")
    # Fetched, then held in the queue: two launches ahead, nothing built yet.
    expect(phase(page, "fetching")).to_have_attribute("data-state", "done")
    expect(phase(page, "waiting")).to_have_attribute("data-state", "active")
    expect(phase(page, "waiting")).to_contain_text("2 launches ahead of you")
    expect(page.locator("#launch-status")).to_have_text(
        "Waiting for a builder: 2 launches ahead of you"
    )
    expect(phase(page, "building")).to_have_attribute("data-state", "pending")
    server.release(f"{key}:queued")
    # Building, held before built: the log has the lines so far, in order.
    expect(phase(page, "building")).to_have_attribute("data-state", "active")
    expect(phase(page, "building")).to_have_attribute("aria-current", "step")
    log = page.locator("#build-log")
    expect(log).to_contain_text(BUILD_LINES[-1])
    text = log.inner_text()
    assert text.index("Fetching o/builds") < text.index(BUILD_LINES[0]) < text.index(BUILD_LINES[1])
    expect(phase(page, "waiting")).to_have_attribute("data-state", "done")
    expect(phase(page, "built")).to_have_attribute("data-state", "pending")
    expect(page.locator("#share")).not_to_have_attribute("open", "")
    assert page.locator("#link-output").input_value() == f"{server.url}{BASE}v2/{key}"
    assert_accessible(page)
    save_screenshot(page, "binder-launch-progress")
    server.release(f"{key}:built")
    page.wait_for_url(f"{server.url}/session/1")
    expect(page.locator("#session")).to_have_text("Session 1")


def requested(page: Page, urls: list[str]) -> list[str]:
    """``urls`` (filled by a request listener) once every request the page made so far
    has been seen: Playwright delivers request events in order, so a probe request made
    now comes after all earlier ones."""
    with page.expect_request(lambda r: r.url.endswith("/favicon.ico?probe")):
        page.evaluate("fetch('/favicon.ico?probe')")
    return list(urls)


def test_a_link_from_another_site_asks_first_and_starts_on_launch(page, server):
    """A link followed from another site: the page says what will run and waits; the
    Launch button (focused) starts the launch as a page without confirmation does."""
    key = "gh/o/asks/HEAD"
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if f"{BASE}build/" in r.url else None)
    page.goto(f"{server.url.replace('127.0.0.1', 'localhost')}/elsewhere/{key}")
    page.click("#go")
    page.wait_for_url(f"{server.url}{BASE}v2/{key}")
    confirm = page.locator("#confirm")
    expect(confirm).to_be_visible()
    expect(confirm).to_contain_text(
        "GitHub o/asks at HEAD will run as you, with your storage mounts and your Check-in token."
        " Launch it only if you trust it."
    )
    expect(page.locator("#confirm-launch")).to_be_focused()
    expect(page.locator("#launch-title")).to_have_text("Launch this environment?")
    expect(page).to_have_title(f"Launch GitHub o/asks at HEAD? · {SITE} Binder")
    expect(page.locator("#progress")).to_be_hidden()
    expect(page.locator("#confirm-cancel")).to_have_attribute("href", BASE)
    assert requested(page, streams) == [] and server.connections[key] == 0
    assert_accessible(page)
    page.click("#theme-toggle")
    expect(page.locator("html")).to_have_attribute("data-bs-theme", "dark")
    assert_accessible(page)
    page.click("#theme-toggle")
    # The keyboard launches it (the button has the focus).
    page.locator("#confirm-launch").focus()
    page.keyboard.press("Enter")
    expect(confirm).to_be_hidden()
    expect(page.locator("#launch-title")).to_have_text("Starting a Binder session")
    expect(page.locator("#launch-title")).to_be_focused()
    expect(page).to_have_title(f"Launching GitHub o/asks at HEAD · {SITE} Binder")
    expect(page.locator("#launch-label")).to_be_visible()
    expect(phase(page, "waiting")).to_have_attribute("data-state", "active")
    assert requested(page, streams) == [f"{server.url}{BASE}build/{key}"]
    server.release(f"{key}:queued")
    server.release(f"{key}:built")
    page.wait_for_url(f"{server.url}/session/1")


def test_cancel_on_the_confirmation_goes_to_the_landing_page(page, server):
    page.goto(f"{server.url.replace('127.0.0.1', 'localhost')}/elsewhere/gh/o/cancelled/HEAD")
    page.click("#go")
    page.click("#confirm-cancel")
    page.wait_for_url(f"{server.url}{BASE}")
    expect(page.locator("#repo-input")).to_be_visible()
    assert server.connections["gh/o/cancelled/HEAD"] == 0


def test_a_link_from_this_site_starts_at_once(page, server):
    """The landing page's Launch, the failed page's Try again (same origin): no question."""
    make_link(page, server, "https://github.com/o/fails-here")
    page.click("#launch-button")
    expect(page.locator("#failure-reason")).to_have_text(FAILURE)
    expect(page.locator("#confirm")).to_have_count(0)
    assert server.connections["gh/o/fails-here/HEAD"] == 1
    with page.expect_navigation():
        page.click("#try-again")
    expect(page.locator("#failure-reason")).to_have_text(FAILURE)
    expect(page.locator("#confirm")).to_have_count(0)
    assert server.connections["gh/o/fails-here/HEAD"] == 2


def open_launch(page: Page, url: str) -> None:
    """Open a launch link as a typed address does (``Sec-Fetch-Site: none``): the page
    asks first; Enter on its focused Launch button starts the launch."""
    page.goto(url)
    expect(page.locator("#confirm-launch")).to_be_focused()
    page.keyboard.press("Enter")


def test_failed_launch_shows_the_reason_and_closes_the_stream(page, server):
    open_launch(page, f"{server.url}{BASE}v2/gh/o/fails/HEAD")
    alert = page.locator("#failure-reason")
    expect(alert).to_have_text(FAILURE)
    expect(alert).to_have_attribute("role", "alert")
    expect(page.locator("#launch-title")).to_have_text("Launch failed")
    expect(phase(page, "building")).to_have_attribute("data-state", "failed")
    expect(phase(page, "fetching")).to_have_attribute("data-state", "done")
    expect(page.locator("#build-log")).to_contain_text(BUILD_LINES[-1])
    expect(page.locator("#try-again")).to_have_attribute("href", f"{BASE}v2/gh/o/fails/HEAD")
    assert_accessible(page)
    save_screenshot(page, "binder-launch-failed")
    # Closed: the browser does not open the stream again (one connection in all).
    expect(page).to_have_title(f"Launch failed: GitHub o/fails at HEAD · {SITE} Binder")
    assert server.connections["gh/o/fails/HEAD"] == 1


def test_long_log_keeps_its_last_lines_and_follows_the_end(page, server):
    open_launch(page, f"{server.url}{BASE}v2/gh/o/flood/HEAD")
    expect(page.locator("#failure-reason")).to_have_text("flood over")
    log = page.locator("#build-log")
    expect(page.locator("#log-trimmed")).to_be_visible()
    lines = log.evaluate("pre => pre.textContent").splitlines()
    assert len(lines) == 5000
    assert lines[-2:] == [f"line {FLOOD - 1}", "flood over"]
    assert lines[0] == f"line {FLOOD + 1 - 5000}"  # "Waiting…" and lines 0-1000 dropped
    # Scrolled to the end as the lines came.
    assert log.evaluate("pre => pre.scrollHeight - pre.scrollTop - pre.clientHeight") < 2


def test_dropped_stream_reconnects_and_shows_each_line_once(page, server):
    """The first connection ends after the build lines; the browser opens the stream
    again, which replays every event from the start: the page skips the ids it has."""
    key = "gh/o/drops/HEAD"
    sessions: list[str] = []
    # The session answers 204, so the page stays and its log can be read after ready.
    page.route(
        f"{server.url}/session/*", lambda route: (sessions.append(route.request.url),
                                                  route.fulfill(status=204))
    )  # fmt: skip
    open_launch(page, f"{server.url}{BASE}v2/{key}")
    # The second connection is held unanswered: the page says it is reconnecting.
    expect(page.locator("#reconnecting")).to_be_visible()
    expect(page.locator("#launch-status")).to_have_text("Connection lost: reconnecting…")
    expect(phase(page, "building")).to_have_attribute("data-state", "active")
    wait_for(lambda: server.connections[key] == 2, 30, "the browser to open the stream again")
    server.release(f"{key}:reconnect")
    expect(phase(page, "ready")).to_have_attribute("data-state", "active")
    expect(page.locator("#reconnecting")).to_be_hidden()
    text = page.locator("#build-log").inner_text()
    assert text.count(BUILD_LINES[0]) == 1, text
    assert text.count("Waiting for a build slot") == 1, text
    assert "Built environment 3f2a9c" in text
    assert sessions == [f"{server.url}/session/2"]


def test_ready_at_a_script_address_is_refused(page, server):
    open_launch(page, f"{server.url}{BASE}v2/gh/o/evil/HEAD")
    server.release("gh/o/evil/HEAD:queued")
    server.release("gh/o/evil/HEAD:built")
    expect(page.locator("#failure-reason")).to_contain_text("not a web page")
    assert page.url == f"{server.url}{BASE}v2/gh/o/evil/HEAD"


def test_bad_link_is_an_error_page(page, server):
    page.goto(f"{server.url}{BASE}v2/nope/x")
    expect(page.locator("#error-title")).to_have_text("400 Bad Request")
    expect(page.locator("#error-reason")).to_contain_text("unknown provider 'nope'")
    assert_accessible(page)


def test_pages_run_under_a_strict_csp(browser, server):
    """No inline script or style, nothing from elsewhere: with the CSP enforced, the
    landing page makes a link and the progress page reaches the session."""
    context = browser.new_context()
    try:
        page = context.new_page()
        page.set_default_timeout(30_000)
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda err: problems.append(str(err)))
        make_link(page, server, "https://github.com/o/csp")
        expect(page.locator("#result")).to_be_visible()
        expect(page.locator("#badge-preview")).to_have_js_property("complete", True)
        server.release("gh/o/csp/HEAD:queued")
        server.release("gh/o/csp/HEAD:built")
        page.click("#launch-button")
        page.wait_for_url(f"{server.url}/session/1")
        assert problems == []
    finally:
        context.close()
