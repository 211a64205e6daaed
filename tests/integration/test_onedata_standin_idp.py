"""The Onedata stand-in's Onezone accepts a real OIDC provider's access tokens.

Stand-in tests (Onedata cannot run here) with a real provider (npm ``oidc-provider``,
tests/oidcprovider.py): after `OnedataStandin.trust_idp`, ``X-Auth-Token: egi:<token>``
is resolved the way Onezone's authority delegation resolves an IdP token: the IdP's
userinfo endpoint is asked, its ``sub`` names a linked account whose Onedata user is
made on first sight (id ``md5(egi:<sub>)``), the answer is cached briefly, and a token the
provider refuses is Onezone's 401 ``badIdpAccessToken``. The browser test
tests/e2e/test_datahub_browser.py relies on this.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from egi_hub.storage_mounts.datahub_tokens import DatahubCredentialError, DatahubTokens
from tests.oidcprovider import (
    CLIENT_ID,
    CLIENT_SECRET,
    OTHER_CLIENT,
    Provider,
    code_flow_tokens,
    start_provider,
)
from tests.onedata_standin import OnedataStandin, start_onedata_standin

pytestmark = pytest.mark.integration

HUB = "http://127.0.0.1:9"  # only the registered redirect URI: nothing is sent there


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    started = start_provider(tmp_path_factory.mktemp("oidc"), HUB, access_token_ttl=600)
    yield started
    started.stop()


@pytest.fixture(scope="module")
def tokens(provider: Provider) -> dict[str, str]:
    """Real access tokens: alice's and bob's for the hub's client, alice's for another."""
    return {
        "alice": code_flow_tokens(provider, HUB, "alice")["access_token"],
        "bob": code_flow_tokens(provider, HUB, "bob")["access_token"],
        "alice-other-app": code_flow_tokens(provider, HUB, "alice", OTHER_CLIENT)["access_token"],
    }


@pytest.fixture
def standin(tmp_path: Path, provider: Provider) -> Iterator[OnedataStandin]:
    onedata = start_onedata_standin(tmp_path)
    onedata.trust_idp(f"{provider.issuer}/protocol/openid-connect/userinfo")
    yield onedata
    onedata.stop()
    assert onedata.state.errors == []


def onezone(standin: OnedataStandin, token: str, path: str = "/user") -> httpx.Response:
    return httpx.get(
        f"{standin.onezone_url}/api/v3/onezone{path}",
        headers={"X-Auth-Token": token},
        verify=standin.client_tls(),
        timeout=30,
    )


def auth_error(r: httpx.Response) -> Any:
    assert r.status_code == 401, r.text
    return r.json()["error"]["details"]["authError"]["id"]


def test_a_real_token_is_a_user_made_on_first_sight_and_cached(standin, tokens):
    r = onezone(standin, f"egi:{tokens['alice']}")
    assert r.status_code == 200, r.text
    assert r.json()["userId"] == standin.idp_user_id("alice")
    assert r.json()["fullName"] == "Alice"  # the userinfo "name"
    for _ in range(3):  # the cached answer: the provider is asked once
        assert onezone(standin, f"egi:{tokens['alice']}").json()["userId"] == r.json()["userId"]
    assert standin.state.userinfo_calls == 1
    bob = onezone(standin, f"egi:{tokens['bob']}")
    assert bob.json()["userId"] == standin.idp_user_id("bob") != r.json()["userId"]


async def test_the_hubs_exchange_with_a_real_token_gives_only_her_spaces(standin, tokens):
    mine = standin.add_space("alice-space", [standin.idp_user_id("alice")])
    standin.add_space("bobs-space", [standin.idp_user_id("bob")])
    made = DatahubTokens(standin.onezone_url, ca_file=standin.ca_file)
    try:
        creds = await made.credentials("alice", tokens["alice"], "rest", False)
    finally:
        await made.aclose()
    assert [(s.name, s.space_id) for s in creds.scope.spaces] == [("alice-space", mine)]
    assert standin.state.tokens[creds.token.token].user_id == standin.idp_user_id("alice")


@pytest.mark.parametrize(
    "header",
    [
        "egi:forged-0123456789abcdef",  # never issued
        "egi:",  # empty
        "egi:\x7fcontrol",  # not even a valid header value for the provider
    ],
)
def test_a_token_the_provider_does_not_know_is_bad_idp_access_token(standin, header):
    r = httpx.get(
        f"{standin.onezone_url}/api/v3/onezone/user",
        headers={"X-Auth-Token": header.encode("latin-1")},
        verify=standin.client_tls(),
        timeout=30,
    )
    assert auth_error(r) == "badIdpAccessToken"
    assert r.json()["error"]["description"] == "Provided access token issued by 'egi' is not valid."
    assert standin.state.users == {}  # nobody was made


def test_a_real_token_under_another_prefix_is_refused(standin, tokens):
    assert auth_error(onezone(standin, f"github:{tokens['alice']}")) == "badIdpAccessToken"
    assert auth_error(onezone(standin, tokens["alice"])) == "badToken"  # no prefix
    assert standin.state.userinfo_calls == 0


def test_another_applications_token_is_the_same_user(standin, tokens):
    """Onezone validates an IdP token at the userinfo endpoint, which answers a token of
    any client of the provider: no audience check. So a token the user gave another
    application also reaches her DataHub; egi-hub only ever sends a user's own token."""
    r = onezone(standin, f"egi:{tokens['alice-other-app']}")
    assert r.status_code == 200, r.text
    assert r.json()["userId"] == standin.idp_user_id("alice")


def test_a_token_revoked_at_the_provider_is_refused_once_the_cache_ends(
    standin, provider, tmp_path
):
    token = code_flow_tokens(provider, HUB, "carol")["access_token"]
    now = [1_000_000.0]
    standin.state.clock = lambda: now[0]
    assert onezone(standin, f"egi:{token}").status_code == 200
    revoked = httpx.post(
        f"{provider.issuer}/protocol/openid-connect/revoke",
        data={"token": token, "token_type_hint": "access_token"},
        auth=(CLIENT_ID, CLIENT_SECRET),
        timeout=30,
    )
    assert revoked.status_code == 200, revoked.text
    assert onezone(standin, f"egi:{token}").status_code == 200  # cached answer
    now[0] += 31  # past the 30 s the stand-in keeps an answer
    assert auth_error(onezone(standin, f"egi:{token}")) == "badIdpAccessToken"
    assert standin.state.userinfo_calls == 2


def test_static_tokens_and_forgetting_still_work_beside_the_provider(standin, tokens):
    standin.add_user("static-checkin-token", "uid-static", "Static")
    assert onezone(standin, "egi:static-checkin-token").json()["userId"] == "uid-static"
    assert onezone(standin, f"egi:{tokens['bob']}").status_code == 200
    standin.forget_idp_token(tokens["bob"])  # refused although the provider would answer
    assert auth_error(onezone(standin, f"egi:{tokens['bob']}")) == "badIdpAccessToken"
    standin.forget_idp_token("static-checkin-token")
    assert auth_error(onezone(standin, "egi:static-checkin-token")) == "badIdpAccessToken"


async def test_the_hubs_exchange_names_a_refused_token(standin):
    made = DatahubTokens(standin.onezone_url, ca_file=standin.ca_file)
    try:
        with pytest.raises(DatahubCredentialError) as info:
            await made.token("alice", "not-a-token-of-the-provider", "rest", False)
    finally:
        await made.aclose()
    assert info.value.kind == "token_refused"
    assert "badIdpAccessToken" in info.value.reason
    assert "not-a-token-of-the-provider" not in info.value.message
