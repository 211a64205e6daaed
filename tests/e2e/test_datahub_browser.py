"""DataHub and S3 in JupyterLab's file browser after a Check-in login (issue 9's e2e test).

A real local stack (``egi-hub up``: hub, proxy, local spawner) logs users in with
`CheckinAuthenticator` against a real OpenID Connect provider (npm ``oidc-provider``,
tests/oidcprovider.py). Its site has an S3 mount on a real S3 server (``rclone serve
s3``, which checks signatures) and a DataHub mount whose Onezone and Oneprovider are the
**Onedata stand-in** (tests/onedata_standin.py; Onedata cannot run here): a stand-in that
follows Onedata's documented REST API and, like Onezone's authority delegation, accepts
the provider's real access tokens as ``X-Auth-Token: egi:<token>`` after asking the
provider's userinfo endpoint. The hub exchanges the user's Check-in token there for a
Onedata token; the notebook server reaches the stand-in over HTTPS trusting its CA.

Alice (vo.access.egi.eu) logs in in Chromium, finds ``datahub/<her space>`` and ``s3/``
in the file browser, creates a notebook in her DataHub space, saves it twice with an
edit between, reopens it, and the stand-in's file holds the second save. Dave (only in
vo.notebooks.egi.eu, also allowed on the hub) sees neither folder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from playwright.sync_api import Page, expect

from egi_hub.names import path_component
from egi_hub.storage_mounts.templates import expand
from tests.e2e.test_checkin_browser import provider_login
from tests.e2e.test_storage_browser import (
    NOTEBOOK,
    SECOND,
    item,
    new_notebook_saved_twice_and_reopened,
    open_folder,
)
from tests.integration.test_storage_local import ENV, VO_ALICE, site
from tests.oidcprovider import ACCOUNTS, CLIENT_SECRET, Provider, checkin_site, start_provider
from tests.onedata_standin import OnedataStandin, start_onedata_standin
from tests.s3server import S3Server, start_s3_server
from tests.screens import save_screenshot
from tests.stackrunner import Stack, free_port, start_stack

pytestmark = pytest.mark.browser

SPACE = "alice-analyses"
BUCKET = expand("{vo}-scratch", username="alice", vo=VO_ALICE, style="bucket")
# A provider account in vo.notebooks.egi.eu only (an allowed VO of the hub, not the one
# the mounts are for); the provider's bob is also in a subgroup of vo.access.egi.eu.
DAVE = {
    "voperson_id": "dave@egi.eu",
    "name": "Dave",
    "eduperson_entitlement": ["urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu"],
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The provider, the Onedata stand-in trusting it, the S3 server and the stack."""
    tmp = tmp_path_factory.mktemp("datahub-browser")
    port = free_port()
    provider = start_provider(tmp / "oidc", f"http://127.0.0.1:{port}",
                              accounts=ACCOUNTS | {"dave": DAVE})  # fmt: skip
    onedata = s3 = stack = None
    try:
        onedata = start_onedata_standin(tmp / "onedata")
        onedata.trust_idp(f"{provider.issuer}/protocol/openid-connect/userinfo")
        space_id = onedata.add_space(SPACE, [onedata.idp_user_id("alice")])
        s3 = start_s3_server(tmp / "s3", keys=[(ENV["EGI_TEST_S3_KEY"], ENV["EGI_TEST_S3_SECRET"])])
        s3.make_bucket(BUCKET)
        stack = start_stack(
            tmp / "hub",
            datahub_site(provider, onedata, s3, tmp / "jupyter-config"),
            port=port,
            env={"EGI_CHECKIN_CLIENT_SECRET": CLIENT_SECRET, **ENV},
        )
        yield {"provider": provider, "onedata": onedata, "space_id": space_id, "s3": s3,
               "stack": stack}  # fmt: skip
    finally:
        for running in (stack, s3, onedata, provider):
            if running is not None:
                running.stop()
    assert onedata is None or onedata.state.errors == []


def datahub_site(
    provider: Provider, onedata: OnedataStandin, s3: S3Server, jupyter_config: Path
) -> dict[str, Any]:
    """Check-in login at ``provider``; S3 (real) and DataHub (stand-in) for alice's VO.

    The hub trusts the stand-in's CA through ``MountCredentials.datahub_ca_file``; the
    notebook servers through a Jupyter config dir of the site's own, first on
    ``JUPYTER_CONFIG_PATH`` (set with ``Spawner.environment``, as a site would)."""
    jupyter_config.mkdir(parents=True, exist_ok=True)
    (jupyter_config / "jupyter_server_config.json").write_text(
        json.dumps(
            {
                "MountsContentsManager": {
                    "filesystem_options": {"datahub": {"verify": onedata.ca_file}}
                }
            }
        )
    )
    storage = site(s3.endpoint_url, bucket="{vo}-scratch", prefix="notebooks/", nfs=False)
    for mount in storage["StorageMounts"]["mounts"]:
        if mount["kind"] == "datahub":
            mount["onezone_url"] = onedata.onezone_url
    return checkin_site(provider.issuer) | {
        "StorageMounts": storage["StorageMounts"],
        "MountCredentials": {"datahub_ca_file": onedata.ca_file},
        "EGILocalSpawner": {"environment": {"JUPYTER_CONFIG_PATH": str(jupyter_config)}},
    }


def open_lab(page: Page, stack: Stack, account: str, username: str) -> None:
    """Log in at the provider, start the server, open JupyterLab at the browser's root."""
    provider_login(page, stack.url, account)
    page.goto(f"{stack.url}/hub/spawn")
    page.wait_for_url(re.compile(r".*/user/[^/]+/lab.*"), timeout=120_000)
    # ?reset: a fresh workspace, so the browser starts at the root.
    page.goto(f"{stack.url}/user/{username}/lab?reset")
    expect(page.locator(".jp-DirListing-content")).to_be_visible(timeout=90_000)


def test_vo_member_saves_a_notebook_twice_in_her_datahub_space(page: Page, world):
    stack, onedata, space_id = world["stack"], world["onedata"], world["space_id"]
    user_id = onedata.idp_user_id("alice")
    open_lab(page, stack, "alice", "alice@egi.eu")
    expect(item(page, "datahub")).to_be_visible()
    expect(item(page, "s3")).to_be_visible()
    save_screenshot(page, "storage-checkin-mounts")

    open_folder(page, "datahub")
    expect(item(page, SPACE)).to_be_visible(timeout=60_000)
    expect(item(page, "README-error.txt")).to_have_count(0)
    open_folder(page, SPACE)
    expect(page.locator(".jp-DirListing-item")).to_have_count(0)  # an empty space

    new_notebook_saved_twice_and_reopened(
        page,
        lambda: (
            onedata.read_file(space_id, NOTEBOOK) if onedata.exists(space_id, NOTEBOOK) else None
        ),
        "in the DataHub space",
        "storage-datahub-space",
    )

    # The space holds the second save and nothing else (no checkpoint, no Untitled).
    nb = nbformat.reads(onedata.read_file(space_id, NOTEBOOK).decode(), as_version=4)
    assert [c.source for c in nb.cells] == [SECOND]
    with onedata.state.lock:
        assert sorted(onedata.state.nodes[space_id].children) == [NOTEBOOK]
    # The stand-in knew alice through the provider's userinfo, not a registered token.
    assert onedata.state.idp_tokens == {} and onedata.state.userinfo_calls >= 1
    # The Onedata tokens the hub got for her stay out of the hub's log.
    with onedata.state.lock:
        minted = [t for t, r in onedata.state.tokens.items() if r.user_id == user_id]
    assert minted and not any(token in stack.log() for token in minted)
    stack.stop_server("alice@egi.eu")


def test_user_outside_the_vo_sees_neither_mount(page: Page, world):
    stack = world["stack"]
    open_lab(page, stack, "dave", "dave@egi.eu")
    # A file of his own: once the browser lists it, the listing is complete.
    notes = stack.data_dir / "users" / path_component("dave@egi.eu") / "daves-notes.txt"
    notes.write_text("mine")
    page.locator('.jp-FileBrowser [data-command="filebrowser:refresh"]').click()
    expect(item(page, "daves-notes.txt")).to_be_visible()
    for name in ("datahub", "s3", SPACE):
        expect(item(page, name)).to_have_count(0)
    for path in ("datahub", f"datahub/{SPACE}", "s3", "s3/scratch"):
        r = page.request.get(f"{stack.url}/user/dave@egi.eu/api/contents/{path}")
        assert r.status == 404, (path, r.status, r.text())
    save_screenshot(page, "storage-checkin-outside-vo")
    stack.stop_server("dave@egi.eu")
