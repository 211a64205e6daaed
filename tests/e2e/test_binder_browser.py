"""Binder end to end in headless Chromium, on the real local stack (issue 10's Tests).

One ``egi-hub up`` for the module (hub, proxy, local spawner, the Binder service it
starts by default), real git (``git daemon`` on 127.0.0.1), the venv builder installing
a real wheel that pip downloads over HTTP (`WheelIndex`, pip's ``--find-links``, so no
package index is needed), and Alice's browser logged in with the dev login once. She
pastes a git URL on the landing page, launches, watches the phases and the build log
on the progress page and lands in JupyterLab, where the requirement imports in a
notebook; a commit that changes only a notebook launches with no build; a DOI link
launches an archived record (Zenodo and the DOI proxy are stand-ins,
`tests.zenodo_standin`, the only ones here); a link followed from another site asks
before it starts; a bad link shows its reason and the service goes on serving.

Waits are on conditions, never on time: the wheel's download is held while the page is
looked at mid-build, and the page's request for the session is answered "204 No
Content" (Playwright routing; the page stays as it is at ``ready``) while the finished
steps are looked at, then the test opens the session's address the page asked for. So
nothing depends on how fast a build or a start is.
"""

from __future__ import annotations

import io
import json
import re
import threading
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote

import pytest
from playwright.sync_api import BrowserContext, Page, Route, expect

from egi_hub.binder_service.specs import RepoSpec
from tests.a11y import assert_accessible
from tests.gitserver import GitServer, start_git_server
from tests.integration.test_binder_local import binder_site, launch
from tests.screens import save_screenshot
from tests.stackrunner import Stack, start_stack, wait_for
from tests.wheels import make_wheel
from tests.zenodo_standin import ZenodoStandin, serve, start_zenodo_standin

pytestmark = pytest.mark.browser

PREFIX = "/services/binder/"
KERNEL = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}
NOTEBOOK = json.dumps(
    {"cells": [], "metadata": {"kernelspec": KERNEL}, "nbformat": 4, "nbformat_minor": 5}
)
REQUIREMENTS = "egi_binder_demo==1.0\n"
SESSION = re.compile(r"^http://127\.0\.0\.1:\d+/user/alice/binder-[0-9a-f]+-[0-9a-f]+/")
LAB = re.compile(r"^http://127\.0\.0\.1:\d+/user/alice/binder-[0-9a-f]+-[0-9a-f]+/lab")
BUILD_TIMEOUT = 180_000  # ms: a first build on a busy machine


@dataclass
class WheelIndex:
    """pip's ``--find-links`` over HTTP on 127.0.0.1: a page linking the test wheel, and
    the wheel. While `held`, the wheel's download waits, so a build stays in
    ``building`` (its log showing pip collecting the wheel) until the test releases it."""

    wheel: Path
    open: threading.Event = field(default_factory=threading.Event)
    asked: threading.Event = field(default_factory=threading.Event)
    requests: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.open.set()
        self.server = serve(self.route, self.requests, "wheels")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def route(self, path: str, _query: str) -> tuple[int, dict[str, str], bytes]:
        name = self.wheel.name
        if path == "/":
            page = f'<!DOCTYPE html><html><body><a href="{name}">{name}</a></body></html>'
            return 200, {"Content-Type": "text/html"}, page.encode()
        if path == f"/{name}":
            self.asked.set()
            self.open.wait(300)
            headers = {"Content-Type": "application/octet-stream", "Cache-Control": "no-store"}
            return 200, headers, self.wheel.read_bytes()
        return 404, {"Content-Type": "text/plain"}, b"not found"

    @contextmanager
    def held(self) -> Iterator[None]:
        """Downloads of the wheel wait until the block ends."""
        self.asked.clear()
        self.open.clear()
        try:
            yield
        finally:
            self.open.set()

    def stop(self) -> None:
        self.open.set()
        self.server.shutdown()
        self.server.server_close()


def zip_of(files: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(name, text)
    return buf.getvalue()


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WheelIndex]:
    index = WheelIndex(make_wheel(tmp_path_factory.mktemp("wheels")))
    yield index
    index.stop()


@pytest.fixture(scope="module")
def git(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    """A git daemon serving ``demo``: the wheel as its requirement, and a notebook."""
    server = start_git_server(tmp_path_factory.mktemp("git"))
    server.commit("demo", {"requirements.txt": REQUIREMENTS, "index.ipynb": NOTEBOOK})
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def zenodo() -> Iterator[ZenodoStandin]:
    """Zenodo and the DOI proxy (stand-ins): one record, a zip of a small repository in
    one top-level folder, as Zenodo archives a GitHub release."""
    standin = start_zenodo_standin()
    release = zip_of({"egi-demo-1.0/requirements.txt": REQUIREMENTS,
                      "egi-demo-1.0/archived.ipynb": NOTEBOOK})  # fmt: skip
    standin.publish({"egi-demo-v1.0.zip": release}, version="v1.0", title="EGI demo")
    yield standin
    standin.stop()


@pytest.fixture(scope="module")
def stack(
    tmp_path_factory: pytest.TempPathFactory, wheels: WheelIndex, zenodo: ZenodoStandin
) -> Iterator[Stack]:
    site = binder_site(wheels.wheel.parent)
    site["VenvBuilder"]["pip_args"] = ["--no-index", "--find-links", wheels.url]
    site["RecordProvider"] = {"doi_resolver_url": zenodo.doi_url, "zenodo_urls": [zenodo.url]}
    running = start_stack(tmp_path_factory.mktemp("stack"), site)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def elsewhere() -> Iterator[str]:
    """A page of another site with a link: ``<url>?to=<escaped link>``. It is opened as
    ``localhost`` (the stack being at ``127.0.0.1``): another host, so Chromium sends
    ``Sec-Fetch-Site: cross-site`` with the click (another port of the same host is
    ``same-site``)."""

    def route(_path: str, query: str) -> tuple[int, dict[str, str], bytes]:
        target = unquote(query.removeprefix("to="))
        page = (
            "<!DOCTYPE html><html lang='en'><head><title>A blog</title></head><body><main>"
            f"<a id='go' href='{target}'>Run this notebook</a></main></body></html>"
        )
        return 200, {"Content-Type": "text/html"}, page.encode()

    server = serve(route, [], "elsewhere")
    yield f"http://localhost:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def alice(browser, stack: Stack) -> Iterator[BrowserContext]:
    """Alice's browser, logged in at the hub once for the module. It bypasses the pages'
    CSP (axe is injected as an inline script) and asks for reduced motion (screenshots
    without a half-faded pulse)."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, bypass_csp=True, reduced_motion="reduce"
    )
    context.set_default_timeout(60_000)
    page = context.new_page()
    page.goto(f"{stack.url}/hub/login?next={quote('/hub/home')}")  # the dev login; no spawn
    page.fill("#username_input", "alice")
    page.click("#login_submit")
    page.wait_for_url(f"{stack.url}/hub/home")
    page.close()
    yield context
    context.close()


@pytest.fixture
def page(alice: BrowserContext) -> Iterator[Page]:
    """A tab of Alice's browser; a script error on the service's pages fails the test."""
    page = alice.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)) if PREFIX in page.url else None)
    yield page
    page.close()
    assert not errors, f"script errors on the Binder pages: {errors}"


def link_of(stack: Stack, spec: RepoSpec, query: str = "") -> str:
    return f"{stack.url}{PREFIX}{spec.path}{query}"


def phase(page: Page, name: str):
    return page.locator(f'#phases .phase[data-phase="{name}"]')


def failure(page: Page) -> str | None:
    """The reason on the progress page, if the launch failed there."""
    if PREFIX in page.url and page.locator("#launch-failed").is_visible():
        return page.locator("#failure-reason").inner_text()
    return None


def reach(page: Page, name: str, timeout: float = BUILD_TIMEOUT) -> None:
    """Wait until the step ``name`` is in progress; a failed launch fails at once, with
    the page's reason."""
    either = f'#phases .phase[data-phase="{name}"][data-state="active"], #launch-failed'
    expect(page.locator(either).locator("visible=true").first).to_be_visible(timeout=timeout)
    assert failure(page) is None, f"the launch failed: {failure(page)}"


def land_in_lab(page: Page, timeout: float = BUILD_TIMEOUT / 1000) -> None:
    """Wait until the progress page has gone to the session's JupyterLab (or failed)."""
    wait_for(lambda: LAB.match(page.url) or failure(page), timeout, "the session")
    assert failure(page) is None, f"the launch failed: {failure(page)}"
    page.wait_for_url(LAB)


class HeldSession:
    """Keeps the progress page from leaving for the session: its request for the
    session's address is answered ``204 No Content`` (the page stays, as it is at
    ``ready``) and noted; `go` then opens that address."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.urls: list[str] = []

        def hold(route: Route) -> None:
            self.urls.append(route.request.url)
            route.fulfill(status=204)

        page.route(SESSION, hold, times=1)

    def wait(self, timeout: float = BUILD_TIMEOUT / 1000) -> str:
        """The session's address, once the page has asked for it."""
        wait_for(lambda: failure(self.page) or self.urls, timeout, "the session")
        assert self.urls, f"the launch failed: {failure(self.page)}"
        return self.urls[0]

    def go(self) -> None:
        self.page.goto(self.urls[0])
        self.page.wait_for_url(LAB, timeout=120_000)


def open_link(page: Page, link: str) -> None:
    """Open a launch link as a typed address or a bookmark does (``Sec-Fetch-Site:
    none``): the page asks first, and Enter on its focused Launch button starts."""
    page.goto(link)
    expect(page.locator("#confirm-launch")).to_be_focused()
    page.keyboard.press("Enter")


def ensure_built(stack: Stack, git: GitServer) -> None:
    """The demo's environment, built (by the first test, or here when a test runs alone)."""
    client = stack.dev_login("alice")
    client.follow_redirects = True
    builds = client.get(f"{PREFIX}api/v1/builds").json()["builds"]
    if not any(b["state"] == "built" for b in builds):
        events = launch(client, f"git/{quote(git.git_url('demo'), safe='')}/HEAD")
        assert events[-1]["phase"] == "ready", events[-3:]
    client.close()


def run_in_notebook(page: Page, code: str) -> None:
    """Type ``code`` in the open notebook's first cell and run it, once its kernel idles."""
    expect(page.locator(".jp-Notebook").first).to_be_visible(timeout=120_000)
    expect(page.get_by_text(re.compile(r"\| Idle$")).first).to_be_visible(timeout=60_000)
    editor = page.locator(".jp-Notebook .jp-Cell").first.locator(".cm-content")
    editor.click()
    expect(page.locator(".jp-Notebook.jp-mod-editMode")).to_have_count(1)
    editor.press_sequentially(code)
    expect(editor).to_have_text(code)
    page.keyboard.press("Shift+Enter")


def test_a_pasted_git_url_launches_into_jupyterlab_where_the_requirement_imports(
    page: Page, stack: Stack, git: GitServer, wheels: WheelIndex
):
    url = git.git_url("demo")
    link = link_of(stack, RepoSpec("git", url, "HEAD"), "?labpath=index.ipynb")
    page.goto(f"{stack.url}{PREFIX}")
    page.fill("#repo-input", url)
    page.fill("#file-input", "index.ipynb")
    page.click("#make-link")
    expect(page.locator("#link-output")).to_have_value(link)
    expect(page.locator("#launch-button")).to_have_attribute("href", link)
    badge = f"{stack.url}{PREFIX}badge.svg"
    expect(page.locator("#badge-markdown")).to_have_value(f"[![Binder]({badge})]({link})")
    expect(page.locator("#badge-preview")).to_have_js_property("complete", True)
    assert page.locator("#badge-preview").evaluate("img => img.naturalWidth") > 50
    save_screenshot(page, "binder-real-landing")

    # Launch: the build waits for the wheel's download while the page is looked at.
    with wheels.held():
        session = HeldSession(page)
        page.click("#launch-button")
        page.wait_for_url(link)
        expect(page.locator("#confirm")).to_have_count(0)  # from this site: no question
        reach(page, "building")
        wait_for(wheels.asked.is_set, 120, "pip to ask for the wheel")
        log = page.locator("#build-log")
        expect(log).to_contain_text("Collecting egi_binder_demo==1.0")
        for done in ("waiting", "fetching"):
            expect(phase(page, done)).to_have_attribute("data-state", "done")
        expect(phase(page, "built")).to_have_attribute("data-state", "pending")
        expect(page.locator("#launch-status")).to_have_text("Building the environment…")
        save_screenshot(page, "binder-real-progress")

    # Ready: every step was named by the stream (done, not skipped), the log has the install.
    target = session.wait()
    assert target.endswith("/lab/tree/index.ipynb"), target
    for done in ("waiting", "fetching", "building", "built", "launching"):
        expect(phase(page, done)).to_have_attribute("data-state", "done")
    expect(phase(page, "ready")).to_have_attribute("data-state", "active")
    expect(log).to_contain_text(re.compile(r"Successfully installed egi[-_]binder[-_]demo-1\.0"))
    expect(page.locator("#launch-status")).to_have_text("Ready: opening your session…")
    session.go()

    # JupyterLab, in the environment: the requirement imports in the notebook.
    assert page.url.endswith("/lab/tree/index.ipynb"), page.url
    code = (
        'import egi_binder_demo, sys; print(egi_binder_demo.VERSION, "/binder/envs/" in sys.prefix)'
    )
    run_in_notebook(page, code)
    expect(page.locator(".jp-OutputArea-output").first).to_have_text("1.0 True", timeout=60_000)
    save_screenshot(page, "binder-lab")


def test_a_notebook_only_commit_launches_without_a_build(page: Page, stack: Stack, git: GitServer):
    ensure_built(stack, git)
    sha = git.commit("demo", {"second.ipynb": NOTEBOOK})
    link = link_of(stack, RepoSpec("git", git.git_url("demo"), sha))  # the commit's own link
    session = HeldSession(page)
    open_link(page, link)
    session.wait()
    expect(phase(page, "building")).to_have_attribute("data-state", "skipped")
    expect(phase(page, "building")).to_contain_text("already built, reused")
    expect(phase(page, "building")).to_contain_text("(not needed)")
    expect(phase(page, "built")).to_have_attribute("data-state", "done")
    expect(page.locator("#build-log")).to_contain_text("Reusing environment")
    expect(page.locator("#build-log")).not_to_contain_text("Collecting")
    session.go()
    expect(page.locator(".jp-DirListing-item", has_text="second.ipynb")).to_be_visible()


def test_a_doi_link_launches_the_archived_record(page: Page, stack: Stack, zenodo: ZenodoStandin):
    """Through the DOI proxy and Zenodo stand-ins: the record's zip, unwrapped, is the
    session's content."""
    record = next(iter(zenodo.records.values()))
    open_link(page, f"{stack.url}{PREFIX}v2/doi/{zenodo.doi(record.id)}")
    land_in_lab(page)
    listing = page.locator(".jp-DirListing-content")
    expect(listing.locator(".jp-DirListing-item", has_text="archived.ipynb")).to_be_visible()
    expect(listing.locator(".jp-DirListing-item", has_text="requirements.txt")).to_be_visible()
    expect(listing.locator(".jp-DirListing-item", has_text="egi-demo-1.0")).to_have_count(0)


def streams_asked(page: Page, urls: list[str]) -> list[str]:
    """``urls`` (filled by a request listener) once every request the page made so far
    has been seen: Playwright delivers request events in order, so a probe request made
    now comes after all earlier ones."""
    with page.expect_request(lambda r: r.url.endswith("/badge.svg?probe")):
        page.evaluate(f"fetch('{PREFIX}badge.svg?probe')")
    return list(urls)


def test_a_link_from_another_site_asks_before_it_starts(
    page: Page, stack: Stack, git: GitServer, elsewhere: str
):
    link = link_of(stack, RepoSpec("git", git.git_url("demo"), "HEAD"), "?labpath=index.ipynb")
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if f"{PREFIX}build/" in r.url else None)
    page.goto(f"{elsewhere}?to={quote(link, safe='')}")
    page.click("#go")
    page.wait_for_url(link)
    confirm = page.locator("#confirm")
    expect(confirm).to_be_visible()
    label = page.locator("#confirm-text .launch-label").inner_text()
    expect(confirm).to_contain_text(
        f"{label} will run as you, with your storage mounts and your Check-in token. "
        "Launch it only if you trust it."
    )
    expect(page.locator("#confirm-launch")).to_be_focused()
    expect(page.locator("#confirm-cancel")).to_have_attribute("href", PREFIX)
    expect(page.locator("#progress")).to_be_hidden()
    assert streams_asked(page, streams) == []
    assert_accessible(page)
    save_screenshot(page, "binder-confirm")

    page.click("#confirm-launch")
    expect(confirm).to_be_hidden()
    expect(page.locator("#launch-title")).to_have_text("Starting a Binder session")
    land_in_lab(page)
    assert len(streams) == 1 and streams[0].startswith(f"{stack.url}{PREFIX}build/git/")


def test_a_bad_link_shows_its_reason_and_the_service_keeps_serving(
    page: Page, stack: Stack, git: GitServer
):
    bad = link_of(stack, RepoSpec("git", git.git_url("demo"), "no-such-branch"))
    open_link(page, bad)
    reason = page.locator("#failure-reason")
    expect(reason).to_contain_text("no-such-branch")
    expect(reason).not_to_contain_text("Traceback")
    expect(page.locator("#launch-title")).to_have_text("Launch failed")
    expect(page.locator("#try-again")).to_be_visible()
    # The next launch works.
    open_link(page, link_of(stack, RepoSpec("git", git.git_url("demo"), "HEAD")))
    land_in_lab(page)
