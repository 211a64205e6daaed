"""Storage mounts in JupyterLab's file browser, end to end (issue 9's "Done when").

A real local stack (``egi-hub up``: hub, proxy, local spawner) with `StorageMounts` in the
site file, the S3 keys in the hub's environment and a real S3 server (``rclone serve
s3``, which checks signatures). Alice (in vo.access.egi.eu) logs in with the dev login,
finds her VO's S3 mount in the file browser, creates a notebook there, saves it twice
with an edit between, reopens it, and the object in the bucket holds the second save. Her
DataHub mount cannot work with a dev login (no Check-in token to exchange at Onezone),
so it shows as a folder whose ``README-error.txt`` says why. Bob (another VO) sees no
S3 or DataHub folder and cannot reach alice's notebook (saved by the first test; run
alone, his test still proves that the folders are not there for him).

Nothing here is a stand-in: DataHub itself is not contacted (the error comes before any
Onezone call). A working DataHub mount after a Check-in login (real OIDC provider, the
Onedata stand-in) is tests/e2e/test_datahub_browser.py; the DataHub data path alone is
tested against the stand-in in tests/integration/test_singleuser_storage.py.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import nbformat
import pytest
from playwright.sync_api import Locator, Page, expect

from egi_hub.storage_mounts.templates import expand
from tests.e2e.test_browser import login
from tests.integration.test_storage_local import KEY, SECRET, VO_ALICE, running_stack, site
from tests.s3server import S3Server, start_s3_server
from tests.screens import save_screenshot
from tests.stackrunner import Stack, wait_for

pytestmark = pytest.mark.browser

# The bucket the site's "{vo}-scratch" gives alice's VO (escaped: no dots in bucket names).
BUCKET = expand("{vo}-scratch", username="alice", vo=VO_ALICE, style="bucket")
NOTEBOOK = "analysis.ipynb"
FIRST, SECOND = "first = 'saved once'", "second = 'saved twice'"


def storage_site(endpoint: str) -> dict[str, Any]:
    """The local-stack storage site (alice and bob in different VOs; S3 and DataHub for
    alice's VO), with the bucket "{vo}-scratch" gives her VO and no NFS mount."""
    return site(endpoint, bucket="{vo}-scratch", prefix="notebooks/", nfs=False)


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = start_s3_server(tmp_path_factory.mktemp("s3"), keys=[(KEY, SECRET)])
    try:
        server.make_bucket(BUCKET)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def storage_stack(tmp_path_factory: pytest.TempPathFactory, s3: S3Server) -> Iterator[Stack]:
    """The stack with alice's and bob's servers running (each started after a login)."""
    yield from running_stack(tmp_path_factory.mktemp("stack"), storage_site(s3.endpoint_url))


def open_lab(page: Page, stack: Stack, username: str) -> Locator:
    """Log in, open JupyterLab at the browser's root; the file browser's listing."""
    login(page, stack, username)
    # ?reset: a fresh workspace, so the browser starts at the root, not where a test left it.
    page.goto(f"{stack.url}/user/{username}/lab?reset")
    listing = page.locator(".jp-DirListing-content")
    expect(listing).to_be_visible(timeout=90_000)
    return listing


def item(page: Page, name: str) -> Locator:
    """The file browser's row for ``name`` in the folder it shows."""
    text = page.locator(".jp-DirListing-itemText", has_text=re.compile(f"^{re.escape(name)}$"))
    return page.locator(".jp-DirListing-item", has=text)


def open_folder(page: Page, name: str) -> None:
    """Double-click a folder of the file browser and wait until the browser shows it."""
    row = item(page, name)
    expect(row).to_be_visible()
    row.dblclick()
    crumbs = page.locator(".jp-FileBrowser .jp-BreadCrumbs")
    expect(crumbs).to_contain_text(name)


def notebook_editor(page: Page) -> Locator:
    """The first cell's editor of the notebook in the main area."""
    return page.locator(".jp-MainAreaWidget:not(.lm-mod-hidden) .jp-Notebook .jp-Cell").first


def replace_cell_text(page: Page, text: str) -> None:
    cell = notebook_editor(page).locator(".cm-content")
    cell.click()
    expect(page.locator(".jp-Notebook.jp-mod-editMode")).to_have_count(1)
    page.keyboard.press("Control+a")
    page.keyboard.press("Delete")
    cell.press_sequentially(text)
    expect(cell).to_have_text(text)


def stored_cells(read: Callable[[], str | bytes | None]) -> list[str] | None:
    """The cells' sources of the notebook ``read()`` returns (None: not there yet, or
    caught mid-write)."""
    try:
        text = read()
        if text is None:
            return None
        return [c.source for c in nbformat.reads(text, as_version=4).cells]
    except (OSError, ValueError, json.JSONDecodeError):
        return None


def save(page: Page, read: Callable[[], str | bytes | None], expected: str, where: str, *,
         first: bool = False) -> None:  # fmt: skip
    """Save with Ctrl+S and wait until the stored notebook (``read()``) holds ``expected``.

    Lab's first save of an untitled notebook asks for a name: it gets `NOTEBOOK` (a
    rename on the mount, then the save)."""
    page.keyboard.press("Control+s")
    if first:
        dialog = page.locator(".jp-Dialog", has_text="Rename file")
        dialog.locator("input[type=text]").fill(NOTEBOOK)
        dialog.get_by_role("button", name="Rename and Save").click()
    wait_for(
        lambda: stored_cells(read) == [expected], 60, f"the notebook with {expected!r} {where}"
    )
    # The tab's "unsaved" dot goes once Lab has the server's answer.
    expect(page.locator(".lm-TabBar-tab.lm-mod-current.jp-mod-dirty")).to_have_count(0)


def new_notebook_saved_twice_and_reopened(
    page: Page, read: Callable[[], str | bytes | None], where: str, screenshot: str
) -> None:
    """The user's round trip, in the folder the file browser shows: a new notebook from
    the launcher, an edit saved (named `NOTEBOOK`), another edit saved over it, the tab
    closed and the notebook opened again from the file browser, showing the second save.
    ``read()`` returns the stored notebook; ``where`` says where it is, for time-outs."""
    page.locator('.jp-FileBrowser [data-command="launcher:create"]').click()
    card = page.locator(
        '.jp-MainAreaWidget:not(.lm-mod-hidden) .jp-LauncherCard[data-category="Notebook"]'
    )
    card.first.click()
    expect(item(page, "Untitled.ipynb")).to_be_visible()
    expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=90_000)

    replace_cell_text(page, FIRST)
    save(page, read, FIRST, where, first=True)
    expect(item(page, NOTEBOOK)).to_be_visible()
    expect(item(page, "Untitled.ipynb")).to_have_count(0)
    replace_cell_text(page, SECOND)
    save(page, read, SECOND, where)
    save_screenshot(page, screenshot)

    # Close it (saved: no dialog) and open it again from the file browser.
    page.locator(".lm-TabBar-tab.lm-mod-current .lm-TabBar-tabCloseIcon").click()
    expect(page.locator(".jp-Notebook")).to_have_count(0)
    item(page, NOTEBOOK).dblclick()
    expect(notebook_editor(page).locator(".cm-content")).to_have_text(SECOND)
    expect(page.get_by_text("Python 3 (ipykernel) | Idle")).to_be_visible(timeout=60_000)


def test_alice_saves_a_notebook_twice_on_s3_from_the_file_browser(
    page: Page, storage_stack: Stack, s3: S3Server
):
    open_lab(page, storage_stack, "alice")
    open_folder(page, "s3")
    open_folder(page, "scratch")
    expect(page.locator(".jp-DirListing-item")).to_have_count(0)  # an empty bucket

    # A new notebook from the launcher opens in the folder the browser shows.
    key = f"notebooks/{NOTEBOOK}"
    path = s3.path_of(BUCKET, key)
    new_notebook_saved_twice_and_reopened(
        page, lambda: path.read_text() if path.is_file() else None, "in the S3 bucket",
        "storage-file-browser",
    )  # fmt: skip

    # The object holds the second save and nothing else of hers is in the bucket.
    nb = nbformat.reads(s3.path_of(BUCKET, key).read_text(), as_version=4)
    assert [c.source for c in nb.cells] == [SECOND]
    assert sorted(p.name for p in s3.path_of(BUCKET, "notebooks").iterdir()) == [NOTEBOOK]


def test_alice_sees_why_her_datahub_mount_does_not_work(page: Page, storage_stack: Stack):
    open_lab(page, storage_stack, "alice")
    open_folder(page, "datahub")
    expect(page.locator(".jp-DirListing-item")).to_have_count(1)
    item(page, "README-error.txt").dblclick()
    text = page.locator(".jp-MainAreaWidget:not(.lm-mod-hidden) .jp-FileEditor .cm-content")
    expect(text).to_contain_text("DataHub needs a Check-in login")
    save_screenshot(page, "storage-error-mount")


def test_bob_of_another_vo_sees_no_trace_of_the_mounts_or_alices_notebook(
    page: Page, storage_stack: Stack, s3: S3Server
):
    # A file of his own: once the browser lists it, the listing is complete.
    (storage_stack.data_dir / "users" / "bob" / "bobs-notes.txt").write_text("mine")
    open_lab(page, storage_stack, "bob")
    expect(item(page, "bobs-notes.txt")).to_be_visible()
    for name in ("s3", "scratch", "datahub", NOTEBOOK):
        expect(item(page, name)).to_have_count(0)
    # Typed in as a URL, alice's folder is not there for him either.
    for path in ("s3", "s3/scratch", f"s3/scratch/{NOTEBOOK}", "datahub"):
        r = page.request.get(f"{storage_stack.url}/user/bob/api/contents/{path}")
        assert r.status == 404, (path, r.status, r.text())
        assert SECRET not in r.text() and KEY not in r.text()
