"""DataHub credentials against the Onedata stand-in (tests/onedata_standin.py) over HTTPS.

Stand-in tests: Onedata cannot run here, so `DatahubTokens` exchanges Check-in tokens at
a stand-in Onezone that follows Onedata's documented REST behaviour, and the tokens it
gets are then used at the stand-in Oneprovider, which enforces their caveats: a
``oneclient`` token cannot call the REST file API, a ``data.readonly`` token cannot
write, an expired token is refused. Scope discovery must list exactly the user's spaces.
A token for a mount with ``spaces`` carries ``data.path`` and ``service`` caveats, which
the stand-in enforces as Onedata documents (another space is invisible, another provider
refuses the token). A tiny hostile HTTPS server checks the 1 MiB cap and the deadline.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
from pathlib import Path

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


# --- tokens narrowed to a mount's spaces (stand-in) --------------------------------------


def path_entry(space_id: str) -> str:
    """Onedata's ``data.path`` whitelist entry for a whole space: base64("/<id>")."""
    return base64.b64encode(f"/{space_id}".encode()).decode()


async def test_standin_narrowed_token_cannot_reach_another_space(standin, tokens, provider):
    """A token minted for ``spaces: [space-a]`` reads and writes space-a, and space-b is
    invisible and untouchable at the provider, asked directly by id and by name."""
    a = standin.add_space("space-a", ["uid-alice"])
    b = standin.add_space("space-b", ["uid-alice"])
    standin.write_file(a, "in-a.txt", b"a")
    standin.write_file(b, "in-b.txt", b"secret of b")
    creds = await tokens.credentials("alice", ALICE_CHECKIN, "rest", False, spaces=["space-a"])
    caveats = standin.state.tokens[creds.token.token].caveats
    assert {"type": "data.path", "whitelist": [path_entry(a)]} in caveats
    assert {"type": "service", "whitelist": [f"opw-{standin.provider_id}"]} in caveats
    assert [s.space_id for s in creds.scope.spaces] == [a]  # Onezone: b is invisible
    sent = [h for _, p, h in standin.requests() if p.startswith("/api/v3/onezone/user/spaces")]
    assert sent and all(h["x-auth-token"] == f"egi:{ALICE_CHECKIN}" for h in sent)

    headers = {"X-Auth-Token": creds.token.token}
    ok = await provider.get(f"/data/{a}/children", headers=headers)
    assert [c["name"] for c in ok.json()["children"]] == ["in-a.txt"]
    put = await provider.put(
        f"/data/{a}/path/new.txt", params={"type": "REG"}, content=b"x", headers=headers
    )
    assert put.status_code == 201

    file_b = standin.state.nodes[b].children["in-b.txt"]
    for method, url, kw in [
        ("GET", f"/data/{b}/children", {}),
        ("GET", f"/data/{file_b}", {}),
        ("GET", f"/data/{file_b}/content", {}),
        ("PUT", f"/data/{file_b}/content", {"content": b"overwritten"}),
        ("PUT", f"/data/{b}/path/planted.txt", {"params": {"type": "REG"}, "content": b"x"}),
        ("DELETE", f"/data/{file_b}", {}),
        ("POST", "/lookup-file-id/space-b/in-b.txt", {}),
        ("POST", f"/lookup-file-id/space-b@{b}", {}),
    ]:
        answer = await provider.request(method, url, headers=headers, **kw)
        assert answer.status_code == 400, (method, url)
        assert answer.json()["error"]["details"]["errno"] == "enoent", (method, url)
    listing = await provider.get("/spaces", headers=headers)
    assert [s["spaceId"] for s in listing.json()] == [a]
    assert standin.read_file(b, "in-b.txt") == b"secret of b"
    assert not standin.exists(b, "planted.txt")


async def test_standin_narrowed_token_is_refused_by_a_provider_not_whitelisted(standin, tokens):
    """The service caveat lists the providers of the mount's spaces: another provider,
    even one supporting another of the user's spaces, refuses the token outright."""
    other_id, other_url = standin.start_provider("Other Oneprovider")
    a = standin.add_space("space-a", ["uid-alice"])
    c = standin.add_space("space-c", ["uid-alice"], other_supports={other_id: False})
    standin.write_file(c, "in-c.txt", b"c")
    narrowed = await tokens.token("alice", ALICE_CHECKIN, "rest", False, spaces=["space-a"])
    both = await tokens.token("alice", ALICE_CHECKIN, "rest", False, spaces=["space-c"])
    tls = ssl.create_default_context(cafile=standin.ca_file)
    async with httpx.AsyncClient(
        base_url=f"{other_url}/api/v3/oneprovider", verify=tls, timeout=10
    ) as other:
        for path in ("/spaces", f"/data/{c}/children", f"/data/{a}/children"):
            refused = await other.get(path, headers={"X-Auth-Token": narrowed.token})
            assert refused.status_code == 401, path
            auth_error = refused.json()["error"]["details"]["authError"]
            assert auth_error["id"] == "tokenCaveatUnverified"
            assert auth_error["details"]["caveat"]["type"] == "service"
        # space-c is supported by both providers: its token lists both and works at both
        caveats = standin.state.tokens[both.token].caveats
        service = next(x for x in caveats if x["type"] == "service")
        assert sorted(service["whitelist"]) == sorted(
            [f"opw-{standin.provider_id}", f"opw-{other_id}"]
        )
        ok = await other.get(f"/data/{c}/children", headers={"X-Auth-Token": both.token})
        assert [x["name"] for x in ok.json()["children"]] == ["in-c.txt"]


async def test_standin_token_without_filter_reaches_every_space(standin, tokens, provider):
    a = standin.add_space("space-a", ["uid-alice"])
    b = standin.add_space("space-b", ["uid-alice"])
    creds = await tokens.credentials("alice", ALICE_CHECKIN, "rest", False)
    types = {c["type"] for c in standin.state.tokens[creds.token.token].caveats}
    assert types == {"interface", "time"}
    assert {s.space_id for s in creds.scope.spaces} == {a, b}
    for space in (a, b):
        listing = await provider.get(
            f"/data/{space}/children", headers={"X-Auth-Token": creds.token.token}
        )
        assert listing.status_code == 200
    assert not [p for _, p, _ in standin.requests() if "/user/spaces" in p]  # nothing asked


async def test_standin_cache_is_keyed_by_the_spaces_filter(standin, tokens):
    """Two mounts with different spaces never share a token; the same filter, in another
    order or with repeats, is the same key. The oneclient token is narrowed alike."""
    a = standin.add_space("space-a", ["uid-alice"])
    b = standin.add_space("space-b", ["uid-alice"])
    only_a = await tokens.token("alice", ALICE_CHECKIN, "rest", False, spaces=["space-a"])
    only_b = await tokens.token("alice", ALICE_CHECKIN, "rest", False, spaces=[b])
    a_and_b = await tokens.token("alice", ALICE_CHECKIN, "rest", False, spaces=["space-a", b])
    again = await tokens.token("alice", ALICE_CHECKIN, "rest", False, spaces=[b, "space-a", b])
    unfiltered = await tokens.token("alice", ALICE_CHECKIN, "rest", False)
    assert len({only_a.token, only_b.token, a_and_b.token, unfiltered.token}) == 4
    assert again is a_and_b

    def paths(token) -> list[str]:
        caveats = standin.state.tokens[token.token].caveats
        return next(c["whitelist"] for c in caveats if c["type"] == "data.path")

    assert paths(only_a) == [path_entry(a)] and paths(only_b) == [path_entry(b)]
    assert sorted(paths(a_and_b)) == sorted([path_entry(a), path_entry(b)])
    sidecar = await tokens.token("alice", ALICE_CHECKIN, "oneclient", True, spaces=["space-b"])
    caveats = standin.state.tokens[sidecar.token].caveats
    assert {"type": "data.path", "whitelist": [path_entry(b)]} in caveats
    assert {"type": "data.readonly"} in caveats
    assert {"type": "service", "whitelist": [f"opw-{standin.provider_id}"]} in caveats


async def test_standin_filter_naming_none_of_the_users_spaces_is_a_clear_error(standin, tokens):
    standin.add_space("space-a", ["uid-alice"])
    standin.add_space("bobs-space", ["uid-bob"])  # a space of someone else, by name
    with pytest.raises(DatahubCredentialError) as info:
        await tokens.token("alice", ALICE_CHECKIN, "rest", False, spaces=["bobs-space"])
    assert info.value.kind == "refused"
    assert "none of this mount's spaces (bobs-space) is one of yours" in info.value.reason
    assert not [p for _, p, _ in standin.requests() if p.endswith("/tokens/temporary")]


# --- bounded answers: a tiny hostile HTTPS "Onezone" -------------------------------------


class HostileOnezone:
    """An HTTPS server on 127.0.0.1 (the stand-in's CA) that answers every request with
    200 and either ``size`` bytes at once or one byte every ``drip`` seconds (for ever,
    until the test stops it)."""

    def __init__(self, standin, *, size: int = 0, drip: float = 0.0) -> None:
        self.size, self.drip = size, drip
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls_dir = Path(standin.ca_file).parent
        self.context.load_cert_chain(tls_dir / "server.pem", tls_dir / "server.key")
        self.sent = 0
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> str:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0, ssl=self.context)
        return f"https://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def __aexit__(self, *exc) -> None:
        assert self.server is not None
        self.server.close()
        for writer in self.writers:  # stops the drip: the handler's next write fails
            writer.transport.abort()
        await self.server.wait_closed()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            await reader.readuntil(b"\r\n\r\n")
            length = self.size or 10**9
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {length}\r\n\r\n".encode()
            )
            if self.drip:
                while True:
                    writer.write(b" ")
                    await writer.drain()
                    self.sent += 1
                    await asyncio.sleep(self.drip)
            writer.write(b"[" + b" " * (self.size - 2) + b"]")
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()


async def test_oversized_onezone_answer_is_refused_not_read(standin):
    async with HostileOnezone(standin, size=8 * 1024 * 1024) as url:
        made = DatahubTokens(url, ca_file=standin.ca_file, timeout=10)
        try:
            with pytest.raises(DatahubCredentialError) as info:
                await made.token("alice", ALICE_CHECKIN, "rest", False)
        finally:
            await made.aclose()
    assert info.value.kind == "bad_answer"
    assert info.value.reason == (
        f"Onezone at {url} answered the token exchange with more than 1 MiB (refused, not read on)"
    )


async def test_overall_deadline_holds_against_a_drip_feeding_onezone(standin):
    """One byte every 0.5 s never trips httpx's per-read timeout (2 s here): the
    exchange's overall deadline (1.5 s) ends it."""
    hostile = HostileOnezone(standin, drip=0.5)
    async with hostile as url:
        made = DatahubTokens(url, ca_file=standin.ca_file, timeout=2, deadline=1.5)
        start = time.monotonic()
        try:
            with pytest.raises(DatahubCredentialError) as info:
                await made.token("alice", ALICE_CHECKIN, "rest", False, spaces=["space-a"])
        finally:
            await made.aclose()
        elapsed = time.monotonic() - start
    assert info.value.kind == "unreachable"
    assert info.value.reason == f"Onezone at {url} did not answer in time (space list)"
    assert 1.4 <= elapsed < 4, elapsed
    assert hostile.sent >= 2  # it was dripping, not silent
