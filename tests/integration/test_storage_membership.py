"""A running server's mounts follow its user's VO membership, against the real provider.

A real ``egi-hub up`` (hub, proxy, local spawner) that logs in with the real OIDC
provider (npm oidc-provider, 4-second access tokens so refreshes come quickly), which
rereads its accounts file: a VO is taken from a user while her server runs. The mounts
endpoint refreshes the session and resolves the mounts again on every request, so at
the next request a mount she no longer has is an error entry without credentials,
while another user of the VO keeps hers.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from egi_hub.names import path_component
from tests.integration.test_storage_local import server_env
from tests.oidcprovider import (
    ACCESS_MEMBER,
    ACCOUNTS,
    CLIENT_SECRET,
    checkin_site,
    login,
    start_provider,
)
from tests.stackrunner import free_port, start_stack, wait_for

KEY, SECRET = "membershipkey001", "membership-secret-never-given-01"
VO = "vo.access.egi.eu"
NOTEBOOKS_MEMBER = "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu"
MOUNTS = [
    {
        "name": "scratch",
        "kind": "s3",
        "endpoint_url": "https://s3.example.org",
        "bucket": "vo-access-scratch",
        "credentials": {"per_vo": {VO: {"key": "EGI_TEST_S3_KEY", "secret": "EGI_TEST_S3_SECRET"}}},
        "path": "/s3/scratch",
        "vos": [VO],
    },
    # For everyone, but its export names the server's VO.
    {
        "name": "shared",
        "kind": "nfs",
        "server": "nfs.example.org",
        "export": "/exports/{vo}",
        "path": "/nfs/shared",
    },
]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("membership")
    port = free_port()
    provider = start_provider(tmp / "oidc", f"http://127.0.0.1:{port}", access_token_ttl=4)
    try:
        site = checkin_site(provider.issuer)
        site["StorageMounts"] = {"mounts": MOUNTS}
        stack = start_stack(
            tmp / "hub",
            site,
            port=port,
            env={
                "EGI_CHECKIN_CLIENT_SECRET": CLIENT_SECRET,
                "EGI_TEST_S3_KEY": KEY,
                "EGI_TEST_S3_SECRET": SECRET,
            },
        )
        try:
            for account in ("alice", "carol"):
                with httpx.Client(timeout=30) as client:
                    assert login(stack.url, account, client).status_code == 302
                stack.start_server(f"{account}@egi.eu")
            yield stack, provider
        finally:
            stack.stop()
    finally:
        provider.stop()


def server_token(stack, user: str) -> str:
    return server_env(stack, path_component(user))["JUPYTERHUB_API_TOKEN"]


def mounts(stack, token: str) -> httpx.Response:
    return httpx.get(
        f"{stack.url}/hub/api/egi/mounts",
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )


def entries(r: httpx.Response) -> dict[str, dict[str, Any]]:
    assert r.status_code == 200, r.text
    return {entry["name"]: entry for entry in r.json()["mounts"]}


def test_leaving_the_vo_withdraws_the_mounts_at_the_next_request(hub):
    stack, provider = hub
    alice, carol = server_token(stack, "alice@egi.eu"), server_token(stack, "carol@egi.eu")
    for token in (alice, carol):
        got = entries(mounts(stack, token))
        assert got["scratch"]["s3"]["secret"] == SECRET
        assert got["shared"]["nfs"]["export"] == f"/exports/{VO}"

    # carol leaves vo.access.egi.eu but stays in vo.notebooks.egi.eu: still admitted
    # by the hub, no longer given the mounts of her server's VO.
    carol_account = dict(ACCOUNTS["carol"])
    provider.set_account("carol", {**carol_account, "eduperson_entitlement": [NOTEBOOKS_MEMBER]})

    def withdrawn() -> dict[str, dict[str, Any]] | None:
        # Until her next token refresh (4-second tokens) the hub still knows her VO.
        got = entries(mounts(stack, carol))
        return got if "error" in got["scratch"] else None

    got = wait_for(withdrawn, 60, "carol's mounts to be withdrawn after she left the VO")
    for _ in range(3):  # and from then on, never a credential again
        r = mounts(stack, carol)
        assert r.status_code == 200 and SECRET not in r.text and KEY not in r.text
    for name in ("scratch", "shared"):
        assert "VO membership changed" in got[name]["error"]
        assert set(got[name]) == {"name", "kind", "path", "read_only", "error"}
    assert stack.user("carol@egi.eu")["groups"] == ["vo.notebooks.egi.eu"]
    assert stack.user("carol@egi.eu")["servers"]  # her server runs on

    # alice, still in the VO, keeps hers (her 4-second tokens were refreshed meanwhile).
    for _ in range(3):
        got = entries(mounts(stack, alice))
        assert got["scratch"]["s3"]["key"] == KEY and "error" not in got["shared"]
    # Back in the VO: carol's server gets its mounts again at the next request.
    provider.set_account("carol", {**carol_account, "eduperson_entitlement": [ACCESS_MEMBER]})
    wait_for(
        lambda: "s3" in entries(mounts(stack, carol))["scratch"],
        60,
        "carol's mounts to come back once she is in the VO again",
    )


def test_a_refused_user_gets_no_credentials(hub):
    """Leaving every VO the hub allows: refused. Each answer is 200 without any
    credential or (once her server is stopped, or its token gone) a 403."""
    stack, provider = hub
    carol = server_token(stack, "carol@egi.eu")
    assert "s3" in entries(mounts(stack, carol))["scratch"]
    carol_account = dict(ACCOUNTS["carol"])
    provider.set_account("carol", {**carol_account, "eduperson_entitlement": []})
    seen: list[int] = []

    def refused() -> bool:
        r = mounts(stack, carol)
        assert SECRET not in r.text and KEY not in r.text
        seen.append(r.status_code)
        if r.status_code == 200:
            for entry in r.json()["mounts"]:
                assert set(entry) == {"name", "kind", "path", "read_only", "error"}
                assert "refused" in entry["error"]
            return False
        assert r.status_code == 403, r.text
        return True

    # Before the refresh carol still gets her mounts: skip those answers.
    wait_for(lambda: "s3" not in mounts(stack, carol).text, 60, "carol's refresh")
    wait_for(refused, 60, "carol's server token to be refused")
    assert (stack.user("carol@egi.eu")["auth_state"] or {}).get("refused")
