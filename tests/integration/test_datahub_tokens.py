"""DataHub credentials against the Onedata stand-in (tests/onedata_standin.py) over HTTPS.

Stand-in tests: Onedata cannot run here, so `DatahubTokens` exchanges Check-in tokens at
a stand-in Onezone that follows Onedata's documented REST behaviour, and the tokens it
gets are then used at the stand-in Oneprovider, which enforces their caveats: a
``oneclient`` token cannot call the REST file API, a ``data.readonly`` token cannot
write, an expired token is refused. Scope discovery must list exactly the user's spaces.
"""

from __future__ import annotations

import ssl
import time

import httpx
import pytest

from egi_hub.storage_mounts.datahub_tokens import DatahubCredentialError, DatahubTokens
from tests.onedata_standin import start_onedata_standin

ALICE_CHECKIN = "checkin-at-alice-5f1c0b"
BOB_CHECKIN = "checkin-at-bob-77aa21"


@pytest.fixture
def standin(tmp_path):
    onedata = start_onedata_standin(tmp_path)
    onedata.add_user(ALICE_CHECKIN, "uid-alice", "Alice")
    onedata.add_user(BOB_CHECKIN, "uid-bob", "Bob")
    yield onedata
    onedata.stop()
    assert onedata.state.errors == []  # the stand-in itself never failed


@pytest.fixture
async def tokens(standin):
    made = DatahubTokens(
        standin.onezone_url, ca_file=standin.ca_file, token_lifetime=3600, renew_before=300
    )
    yield made
    await made.aclose()


@pytest.fixture
async def provider(standin):
    """A client for the stand-in Oneprovider's REST file API, trusting its CA."""
    tls = ssl.create_default_context(cafile=standin.ca_file)
    async with httpx.AsyncClient(
        base_url=f"{standin.provider_url}/api/v3/oneprovider", verify=tls, timeout=10
    ) as client:
        yield client


async def test_standin_exchange_gives_working_rest_token(standin, tokens, provider):
    space = standin.add_space("alpha", ["uid-alice"])
    standin.write_file(space, "hello.txt", b"hi there")
    token = await tokens.token("alice", ALICE_CHECKIN, "rest", False)
    sent = [h for m, p, h in standin.requests() if p == "/api/v3/onezone/user/tokens/temporary"]
    assert sent[0]["x-auth-token"] == f"egi:{ALICE_CHECKIN}"
    record = standin.state.tokens[token.token]
    assert record.user_id == "uid-alice" and record.name is None  # a temporary token
    assert record.valid_until() == int(token.valid_until)
    assert time.time() + 3500 < token.valid_until <= time.time() + 3600

    headers = {"X-Auth-Token": token.token}
    listing = await provider.get(f"/data/{space}/children", headers=headers)
    assert listing.status_code == 200
    assert [c["name"] for c in listing.json()["children"]] == ["hello.txt"]
    made = await provider.put(
        f"/data/{space}/path/new.txt", params={"type": "REG"}, content=b"x", headers=headers
    )
    assert made.status_code == 201
    assert standin.read_file(space, "new.txt") == b"x"


async def test_standin_refuses_oneclient_token_on_rest_file_api(standin, tokens, provider):
    space = standin.add_space("alpha", ["uid-alice"])
    token = await tokens.token("alice", ALICE_CHECKIN, "oneclient", False)
    assert {"type": "interface", "interface": "oneclient"} in standin.state.tokens[
        token.token
    ].caveats
    answer = await provider.get(f"/data/{space}/children", headers={"X-Auth-Token": token.token})
    assert answer.status_code == 401
    assert answer.json()["error"]["details"]["authError"]["id"] == "tokenCaveatUnverified"


async def test_standin_refuses_writes_with_read_only_token(standin, tokens, provider):
    space = standin.add_space("alpha", ["uid-alice"])
    standin.write_file(space, "data.csv", b"a,b\n")
    token = await tokens.token("alice", ALICE_CHECKIN, "rest", True)
    headers = {"X-Auth-Token": token.token}
    read = await provider.get(f"/data/{space}/children", headers=headers)
    assert read.status_code == 200
    write = await provider.put(
        f"/data/{space}/path/new.txt", params={"type": "REG"}, content=b"x", headers=headers
    )
    assert write.status_code == 400
    assert write.json()["error"]["details"]["errno"] == "eacces"
    assert not standin.exists(space, "new.txt")


async def test_standin_scope_discovery_lists_the_users_spaces(standin, tokens):
    offline = standin.add_provider("Offline provider", online=False)
    old = standin.add_provider("Old provider", online=True, version="20.02.19")
    alpha = standin.add_space("alpha", ["uid-alice"], other_supports={offline: False})
    beta = standin.add_space("beta", ["uid-alice", "uid-bob"], readonly_support=True)
    gamma = standin.add_space("gamma", ["uid-alice"], other_supports={old: False})
    standin.add_space("bobs-only", ["uid-bob"])

    creds = await tokens.credentials("alice", ALICE_CHECKIN, "rest", False)
    scope = creds.scope
    assert [(s.name, s.space_id) for s in scope.spaces] == [
        ("alpha", alpha),
        ("beta", beta),
        ("gamma", gamma),
    ]
    assert scope.valid_until == creds.token.valid_until and not scope.read_only
    by_name = {s.name: s for s in scope.spaces}
    assert [p.provider_id for p in by_name["alpha"].supports] == [standin.provider_id]
    assert by_name["alpha"].supports[0].domain == standin.provider_host
    assert by_name["alpha"].writable_supports  # the offline support is left out
    assert by_name["beta"].read_only and by_name["beta"].writable_supports == ()
    assert [p.provider_id for p in by_name["gamma"].supports] == [standin.provider_id]

    bob = await tokens.credentials("bob", BOB_CHECKIN, "oneclient", True)
    assert [s.name for s in bob.scope.spaces] == ["beta", "bobs-only"]
    assert bob.scope.read_only and all(s.read_only for s in bob.scope.spaces)
    assert standin.state.tokens[bob.token.token].user_id == "uid-bob"


async def test_standin_cache_and_renewal(standin):
    now = [time.time()]
    tokens = DatahubTokens(
        standin.onezone_url,
        ca_file=standin.ca_file,
        token_lifetime=3600,
        renew_before=300,
        clock=lambda: now[0],
    )
    try:
        first = await tokens.token("alice", ALICE_CHECKIN, "rest", False)
        assert (await tokens.token("alice", ALICE_CHECKIN, "rest", False)) is first
        now[0] = first.valid_until - 300  # the renewal window has begun
        second = await tokens.token("alice", ALICE_CHECKIN, "rest", False)
    finally:
        await tokens.aclose()
    assert second.token != first.token
    exchanges = [p for _, p, _ in standin.requests() if p.endswith("/user/tokens/temporary")]
    assert len(exchanges) == 2


async def test_standin_refused_checkin_token_is_a_clear_error(standin, tokens):
    standin.forget_idp_token(ALICE_CHECKIN)  # as when it expired at Check-in
    with pytest.raises(DatahubCredentialError) as info:
        await tokens.token("alice", ALICE_CHECKIN, "rest", False)
    assert info.value.kind == "token_refused"
    assert info.value.message.startswith(f"DataHub: Onezone at {standin.onezone_url} refused")
    assert "badIdpAccessToken" in info.value.reason
    assert ALICE_CHECKIN not in info.value.message


async def test_standin_untrusted_certificate_is_unreachable(standin):
    made = DatahubTokens(standin.onezone_url)  # the stand-in's CA is not trusted
    try:
        with pytest.raises(DatahubCredentialError) as info:
            await made.token("alice", ALICE_CHECKIN, "rest", False)
    finally:
        await made.aclose()
    assert info.value.kind == "unreachable"
    assert "its TLS certificate is not trusted" in info.value.reason


async def test_onezone_down_is_a_clear_error(tmp_path):
    """The stand-in is started, then stopped: nothing listens on its port any more."""
    onedata = start_onedata_standin(tmp_path)
    url, ca_file = onedata.onezone_url, onedata.ca_file
    onedata.stop()
    made = DatahubTokens(url, ca_file=ca_file, timeout=5)
    try:
        with pytest.raises(DatahubCredentialError) as info:
            await made.token("alice", ALICE_CHECKIN, "rest", False)
    finally:
        await made.aclose()
    assert info.value.kind == "unreachable"
    assert info.value.message == (
        f"DataHub: Onezone at {url} cannot be reached (token exchange: ConnectError)"
    )
