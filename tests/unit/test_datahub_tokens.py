"""DataHub credentials (egi_hub.storage_mounts.datahub_tokens) against an Onezone stand-in.

The stand-in here is an `httpx.MockTransport` handler that answers as Onezone documents
(``specs/remote-apis.md``): temporary tokens from ``POST /user/tokens/temporary`` with
``X-Auth-Token: egi:<Check-in token>`` (201 ``{"token"}``, a time caveat required, 401
``unauthorized`` for an unknown Check-in token), and ``infer_access_token_scope`` without
an auth header. No sockets: the unit lane's guard would refuse them.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import ssl
from typing import Any

import httpx
import pytest

from egi_hub.storage_mounts.datahub_tokens import (
    DatahubCredentialError,
    DatahubTokens,
    DatahubUse,
    parse_scope,
)

ONEZONE = "https://onezone.example.org"
NOW = 1_800_000_000.0


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class OnezoneStandin:
    """A stand-in Onezone, as an httpx handler: what it issues and what it was asked."""

    def __init__(self) -> None:
        self.users = {"checkin-alice-0123456789": "uid-alice", "checkin-bob-9876543210": "uid-bob"}
        self.issued: dict[str, dict[str, Any]] = {}  # Onedata token -> user, caveats
        self.requests: list[httpx.Request] = []
        self.down: Exception | None = None
        self.status: int | None = None  # a forced status for the exchange
        self.gate: asyncio.Event | None = None  # holds exchanges until set
        self.scope_fails = False
        self.space_list: Any = None  # a forced answer to GET /user/spaces[/{id}]
        self.serial = itertools.count(1)
        self.arrived = asyncio.Condition()  # notified as each request comes in
        self.spaces = {
            "uid-alice": {
                "sp-1": {"name": "alpha", "supports": {"pr-1": {"readonly": False}}},
                "sp-2": {
                    "name": "beta",
                    "supports": {"pr-1": {"readonly": True}, "pr-off": {"readonly": False}},
                },
                "sp-3": {"name": "gamma", "supports": {"pr-off": {"readonly": False}}},
                "sp-4": {"name": "delta", "supports": {"pr-old": {"readonly": False}}},
            },
            "uid-bob": {"sp-9": {"name": "bobs", "supports": {"pr-1": {"readonly": False}}}},
        }
        self.providers = {
            "pr-1": {"name": "Provider 1", "domain": "p1.example.org", "version": "21.02.5"},
            "pr-off": {"name": "Offline", "domain": "off.example.org", "version": "21.02.5"},
            "pr-old": {"name": "Old", "domain": "old.example.org", "version": "20.02.19"},
        }
        self.online = {"pr-1": True, "pr-off": False, "pr-old": True}

    def exchanges(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith("/tokens/temporary")]

    async def wait_for_exchanges(self, count: int) -> None:
        async with asyncio.timeout(5), self.arrived:
            await self.arrived.wait_for(lambda: len(self.exchanges()) >= count)

    def error(self, status: int, eid: str, description: str, **details: Any) -> httpx.Response:
        body = {"error": {"id": eid, "description": description}}
        if details:
            body["error"]["details"] = details
        return httpx.Response(status, json=body)

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        async with self.arrived:
            self.arrived.notify_all()
        if self.down is not None:
            raise self.down
        path = request.url.path
        if path == "/api/v3/onezone/user/tokens/temporary" and request.method == "POST":
            if self.gate is not None:
                await self.gate.wait()
            return self.temporary(request)
        if path == "/api/v3/onezone/tokens/infer_access_token_scope" and request.method == "POST":
            return self.infer(request)
        if path.startswith("/api/v3/onezone/user/spaces") and request.method == "GET":
            return self.user_spaces(request)
        return self.error(404, "notFound", "The resource could not be found.")

    def user_spaces(self, request: httpx.Request) -> httpx.Response:
        """``GET /user/spaces`` (ids) and ``GET /user/spaces/{id}`` (name, providers)."""
        prefix, _, idp_token = request.headers.get("x-auth-token", "").partition(":")
        if prefix != "egi" or idp_token not in self.users:
            return self.error(401, "unauthorized", "You must authenticate yourself.")
        mine = self.spaces[self.users[idp_token]]
        if self.space_list is not None:
            return httpx.Response(200, json=self.space_list)
        rest = request.url.path.removeprefix("/api/v3/onezone/user/spaces")
        if not rest:
            return httpx.Response(200, json={"spaces": list(mine)})
        space_id = rest.removeprefix("/")
        if space_id not in mine:
            return self.error(404, "notFound", "The resource could not be found.")
        supports = {p: 1000 for p in mine[space_id]["supports"]}
        return httpx.Response(
            200, json={"spaceId": space_id, "name": mine[space_id]["name"], "providers": supports}
        )

    def temporary(self, request: httpx.Request) -> httpx.Response:
        if self.status is not None:
            return self.error(self.status, "forbidden", "You are not authorized.")
        header = request.headers.get("x-auth-token", "")
        prefix, _, idp_token = header.partition(":")
        if prefix != "egi" or idp_token not in self.users:
            return self.error(
                401,
                "unauthorized",
                "You must authenticate yourself to perform this operation.",
                authError={"id": "badIdpAccessToken", "details": {"idp": prefix}},
            )
        body = json.loads(request.content)
        caveats = body.get("caveats", [])
        if body.get("type") != {"accessToken": {}}:
            return self.error(400, "badValueTokenType", "Bad value: token type")
        if not any(c.get("type") == "time" for c in caveats):
            return self.error(400, "badValueCaveats", "Temporary tokens need a time caveat")
        token = f"MDAx-onedata-{next(self.serial)}-{self.users[idp_token]}"
        self.issued[token] = {"user": self.users[idp_token], "caveats": caveats}
        return httpx.Response(201, json={"token": token})

    def infer(self, request: httpx.Request) -> httpx.Response:
        assert "x-auth-token" not in request.headers and "authorization" not in request.headers
        if self.scope_fails:
            return httpx.Response(503, text="<html>maintenance</html>")
        token = json.loads(request.content).get("token")
        issued = self.issued.get(token)
        if issued is None:
            return self.error(400, "badValueToken", "Bad value: provided token is not valid")
        readonly = any(c["type"] == "data.readonly" for c in issued["caveats"])
        valid_until = next(c["validUntil"] for c in issued["caveats"] if c["type"] == "time")
        spaces = self.spaces[issued["user"]]
        used = {p for s in spaces.values() for p in s["supports"]}
        providers = {
            p: {**self.providers[p], "online": self.online[p]} for p in used if p in self.providers
        }
        return httpx.Response(
            200,
            json={
                "validUntil": valid_until,
                "dataAccessScope": {"readonly": readonly, "spaces": spaces, "providers": providers},
            },
        )


@pytest.fixture
def onezone() -> OnezoneStandin:
    return OnezoneStandin()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def tokens(onezone: OnezoneStandin, clock: Clock):
    client = httpx.AsyncClient(transport=httpx.MockTransport(onezone))
    made = DatahubTokens(
        ONEZONE, token_lifetime=3600, renew_before=600, http_client=client, clock=clock
    )
    yield made
    await made.aclose()
    await client.aclose()


ALICE = "checkin-alice-0123456789"
BOB = "checkin-bob-9876543210"


@pytest.mark.parametrize(
    ("use", "read_only", "expected"),
    [
        ("rest", False, [{"type": "interface", "interface": "rest"}]),
        ("oneclient", False, [{"type": "interface", "interface": "oneclient"}]),
        (
            DatahubUse.ONECLIENT,
            True,
            [{"type": "interface", "interface": "oneclient"}, {"type": "data.readonly"}],
        ),
    ],
)
async def test_exchange_sends_prefixed_checkin_token_and_caveats_to_standin(
    tokens, onezone, use, read_only, expected
):
    token = await tokens.token("alice", ALICE, use, read_only)
    [request] = onezone.exchanges()
    assert request.url == f"{ONEZONE}/api/v3/onezone/user/tokens/temporary"
    assert request.headers["x-auth-token"] == f"egi:{ALICE}"
    body = json.loads(request.content)
    assert body["type"] == {"accessToken": {}}
    assert body["caveats"] == [*expected, {"type": "time", "validUntil": int(NOW + 3600)}]
    assert onezone.issued[token.token]["user"] == "uid-alice"
    assert token.use == DatahubUse(use) and token.read_only is read_only
    assert token.valid_until == NOW + 3600


async def test_idp_prefix_is_configurable_for_standin(onezone, clock):
    onezone.users = {"tok-of-another-idp": "uid-alice"}
    async with httpx.AsyncClient(transport=httpx.MockTransport(onezone)) as client:
        made = DatahubTokens(ONEZONE, idp_prefix="eosc", http_client=client, clock=clock)
        with pytest.raises(DatahubCredentialError):  # the stand-in knows only "egi"
            await made.token("alice", "tok-of-another-idp", "rest", False)
    assert onezone.exchanges()[0].headers["x-auth-token"] == "eosc:tok-of-another-idp"


async def test_cache_hit_makes_no_request_and_keys_are_separate(tokens, onezone):
    first = await tokens.token("alice", ALICE, "rest", False)
    again = await tokens.token("alice", ALICE, "rest", False)
    assert again is first
    assert len(onezone.exchanges()) == 1
    others = [
        await tokens.token("alice", ALICE, "oneclient", False),
        await tokens.token("alice", ALICE, "rest", True),
        await tokens.token("bob", BOB, "rest", False),
    ]
    assert len(onezone.exchanges()) == 4
    assert len({t.token for t in [first, *others]}) == 4


async def test_checkin_token_getter_called_only_when_an_exchange_is_needed(tokens, onezone):
    calls = []

    async def fresh() -> str:
        calls.append(1)
        return ALICE

    await tokens.token("alice", fresh, "rest", False)
    await tokens.token("alice", fresh, "rest", False)
    assert calls == [1]


async def test_each_user_gets_only_their_own_token_from_standin(tokens, onezone):
    alice, bob = await asyncio.gather(
        tokens.token("alice", ALICE, "rest", False), tokens.token("bob", BOB, "rest", False)
    )
    assert onezone.issued[alice.token]["user"] == "uid-alice"
    assert onezone.issued[bob.token]["user"] == "uid-bob"
    assert (await tokens.token("bob", BOB, "rest", False)) is bob


async def test_renewed_before_expiry(tokens, onezone, clock):
    first = await tokens.token("alice", ALICE, "rest", False)
    clock.now = first.valid_until - 600 - 1  # just outside the renewal window
    assert (await tokens.token("alice", ALICE, "rest", False)) is first
    clock.now = first.valid_until - 600  # renew_before seconds left
    second = await tokens.token("alice", ALICE, "rest", False)
    assert second.token != first.token
    assert second.valid_until == clock.now + 3600
    assert len(onezone.exchanges()) == 2


async def test_failed_renewal_keeps_the_still_valid_token(tokens, onezone, clock):
    first = await tokens.token("alice", ALICE, "rest", False)
    onezone.down = httpx.ConnectError("connection refused")
    clock.now = first.valid_until - 10
    assert (await tokens.token("alice", ALICE, "rest", False)) is first
    clock.now = first.valid_until
    with pytest.raises(DatahubCredentialError) as info:
        await tokens.token("alice", ALICE, "rest", False)
    assert info.value.kind == "unreachable"


async def test_concurrent_callers_share_one_exchange(tokens, onezone):
    onezone.gate = asyncio.Event()
    callers = [
        asyncio.create_task(tokens.credentials("alice", ALICE, "rest", False)) for _ in range(10)
    ]
    await onezone.wait_for_exchanges(1)
    onezone.gate.set()
    results = await asyncio.wait_for(asyncio.gather(*callers), 5)
    assert len(onezone.exchanges()) == 1
    assert len({r.token.token for r in results}) == 1
    infers = [r for r in onezone.requests if r.url.path.endswith("infer_access_token_scope")]
    assert len(infers) == 1


async def test_concurrent_callers_share_one_failure(tokens, onezone):
    onezone.gate = asyncio.Event()
    onezone.users = {}
    callers = [asyncio.create_task(tokens.token("alice", ALICE, "rest", False)) for _ in range(5)]
    await onezone.wait_for_exchanges(1)
    onezone.gate.set()
    results = await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), 5)
    assert all(isinstance(r, DatahubCredentialError) for r in results)
    assert len(onezone.exchanges()) == 1


async def test_a_caller_giving_up_does_not_cancel_the_exchange(tokens, onezone):
    onezone.gate = asyncio.Event()
    quitter = asyncio.create_task(tokens.token("alice", ALICE, "rest", False))
    await onezone.wait_for_exchanges(1)
    stayer = asyncio.create_task(tokens.token("alice", ALICE, "rest", False))
    await asyncio.sleep(0)
    quitter.cancel()
    onezone.gate.set()
    token = await asyncio.wait_for(stayer, 5)
    assert onezone.issued[token.token]["user"] == "uid-alice"
    assert len(onezone.exchanges()) == 1


async def test_401_is_a_clear_token_refused_error(tokens, onezone):
    with pytest.raises(DatahubCredentialError) as info:
        await tokens.token("alice", "checkin-unknown-token", "rest", False)
    error = info.value
    assert error.kind == "token_refused"
    assert error.message.startswith("DataHub: Onezone at https://onezone.example.org refused")
    assert "EGI Check-in token" in error.reason and "badIdpAccessToken" in error.reason
    assert "checkin-unknown-token" not in error.message


async def test_other_refusals_are_exchange_refused(tokens, onezone):
    onezone.status = 403
    with pytest.raises(DatahubCredentialError) as info:
        await tokens.token("alice", ALICE, "rest", False)
    assert info.value.kind == "refused"
    assert "refused to issue a DataHub token (forbidden: You are not authorized.)" in str(
        info.value
    )


@pytest.mark.parametrize(
    ("failure", "words"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), "cannot be reached"),
        (httpx.ConnectTimeout("timed out"), "did not answer in time"),
        (httpx.ReadTimeout("timed out"), "did not answer in time"),
    ],
)
async def test_onezone_down_is_a_clear_error(tokens, onezone, failure, words):
    onezone.down = failure
    with pytest.raises(DatahubCredentialError) as info:
        await tokens.token("alice", ALICE, "rest", False)
    assert info.value.kind == "unreachable"
    assert info.value.message.startswith(f"DataHub: Onezone at {ONEZONE} {words}")


async def test_untrusted_certificate_says_so(tokens, onezone):
    try:
        raise ssl.SSLCertVerificationError(1, "certificate verify failed")
    except ssl.SSLError as cause:
        try:
            raise httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED]") from cause
        except httpx.ConnectError as error:
            onezone.down = error
    with pytest.raises(DatahubCredentialError) as info:
        await tokens.token("alice", ALICE, "rest", False)
    assert info.value.kind == "unreachable"
    assert "its TLS certificate is not trusted (token exchange)" in info.value.reason


async def test_onezone_server_error_is_unreachable(clock):
    async def handler(request):
        return httpx.Response(502, text="<html>Bad gateway</html>")

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        made = DatahubTokens(ONEZONE, http_client=client, clock=clock)
        with pytest.raises(DatahubCredentialError) as info:
            await made.token("alice", ALICE, "rest", False)
    assert info.value.kind == "unreachable"
    assert "unavailable (token exchange: HTTP 502)" in info.value.reason


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(201, json={}),
        httpx.Response(201, json={"token": "with space"}),
        httpx.Response(200, text="<html>login</html>"),
        httpx.Response(201, json=["token"]),
    ],
)
async def test_answer_without_a_token_is_bad_answer(clock, response):
    async def handler(request):
        return response

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        made = DatahubTokens(ONEZONE, http_client=client, clock=clock)
        with pytest.raises(DatahubCredentialError) as info:
            await made.token("alice", ALICE, "rest", False)
    assert info.value.kind == "bad_answer"


async def test_echoed_and_hostile_error_text_is_cleaned(clock):
    async def handler(request):
        description = f"bad token {ALICE}\n\x1b[31mINJECTED" + "x" * 500
        return httpx.Response(400, json={"error": {"id": "badValue", "description": description}})

    async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
        made = DatahubTokens(ONEZONE, http_client=client, clock=clock)
        with pytest.raises(DatahubCredentialError) as info:
            await made.token("alice", ALICE, "rest", False)
    reason = info.value.reason
    assert ALICE not in reason and "[token]" in reason
    assert "\n" not in reason and "\x1b" not in reason
    assert len(reason) < 400


@pytest.mark.parametrize("bad", ["", "has space", "line\nbreak", None])
async def test_unusable_checkin_token_is_refused_before_any_request(tokens, onezone, bad):
    with pytest.raises(DatahubCredentialError) as info:
        await tokens.token("alice", bad, "rest", False)
    assert info.value.kind == "no_checkin_token"
    assert onezone.requests == []


async def test_failing_checkin_getter_is_a_credential_error(tokens, onezone):
    async def fresh() -> str:
        raise RuntimeError("The Check-in session has ended: log in again")

    with pytest.raises(DatahubCredentialError) as info:
        await tokens.token("alice", fresh, "rest", False)
    assert info.value.kind == "no_checkin_token"
    assert "session has ended" in info.value.message
    assert onezone.requests == []


async def test_scope_discovery_lists_spaces_of_online_providers(tokens, onezone):
    creds = await tokens.credentials("alice", ALICE, "rest", False)
    infer = [r for r in onezone.requests if r.url.path.endswith("infer_access_token_scope")]
    assert json.loads(infer[0].content) == {"token": creds.token.token}
    scope = creds.scope
    assert scope.valid_until == NOW + 3600 and scope.read_only is False
    by_name = {s.name: s for s in scope.spaces}
    assert list(by_name) == ["alpha", "beta", "delta", "gamma"]
    alpha = by_name["alpha"]
    assert not alpha.read_only and [s.provider_id for s in alpha.writable_supports] == ["pr-1"]
    assert alpha.supports[0].domain == "p1.example.org"
    beta = by_name["beta"]  # its only online support is read-only; the offline one is skipped
    assert beta.read_only and [s.provider_id for s in beta.supports] == ["pr-1"]
    assert beta.writable_supports == ()
    assert not by_name["gamma"].available  # only an offline provider
    assert not by_name["delta"].available  # only a provider older than 21.02.1
    assert scope.space("sp-1") is alpha and scope.space("beta") is beta
    assert scope.space("nope") is None


async def test_read_only_token_makes_every_space_read_only(tokens):
    creds = await tokens.credentials("alice", ALICE, "rest", True)
    assert creds.scope.read_only
    assert all(s.read_only and s.writable_supports == () for s in creds.scope.spaces)


async def test_failed_discovery_keeps_the_token_and_retries_discovery(tokens, onezone):
    onezone.scope_fails = True
    with pytest.raises(DatahubCredentialError) as info:
        await tokens.credentials("alice", ALICE, "rest", False)
    assert info.value.kind == "unreachable" and "space discovery" in info.value.reason
    onezone.scope_fails = False
    creds = await tokens.credentials("alice", ALICE, "rest", False)
    assert len(onezone.exchanges()) == 1
    assert creds.scope.spaces[0].name == "alpha"


async def test_discovery_of_an_unknown_token_is_refused(tokens, onezone):
    token = await tokens.token("alice", ALICE, "rest", False)
    onezone.issued.clear()
    with pytest.raises(DatahubCredentialError) as info:
        await tokens.scope(token)
    assert info.value.kind == "refused" and "badValueToken" in info.value.reason
    assert token.token not in info.value.reason


@pytest.mark.parametrize(
    "body",
    [
        [],
        {"validUntil": 1},
        {"dataAccessScope": {"spaces": []}},
        {"dataAccessScope": {"spaces": {"s": "x"}}},
        {"dataAccessScope": {"spaces": {"s": {"supports": []}}}},
    ],
)
def test_parse_scope_refuses_other_shapes(body):
    with pytest.raises((TypeError, ValueError)):
        parse_scope(body)


async def test_forget_drops_cached_tokens_and_exchanges_under_way(tokens, onezone):
    await tokens.token("alice", ALICE, "rest", False)
    await tokens.token("bob", BOB, "rest", False)
    tokens.forget("alice")
    await tokens.token("alice", ALICE, "rest", False)
    await tokens.token("bob", BOB, "rest", False)
    assert len(onezone.exchanges()) == 3  # alice again, bob from the cache

    onezone.gate = asyncio.Event()
    tokens.forget("alice")
    pending = asyncio.create_task(tokens.token("alice", ALICE, "oneclient", False))
    await onezone.wait_for_exchanges(4)
    tokens.forget("alice")  # logged out while the exchange was under way
    onezone.gate.set()
    await asyncio.wait_for(pending, 5)
    await tokens.token("alice", ALICE, "oneclient", False)
    assert len(onezone.exchanges()) == 5


async def test_tokens_never_in_logs_reprs_or_errors(tokens, onezone, clock, caplog):
    caplog.set_level(logging.DEBUG)
    creds = await tokens.credentials("alice", ALICE, "rest", True)
    clock.now = creds.token.valid_until - 1
    onezone.down = httpx.ConnectError("refused")
    await tokens.token("alice", ALICE, "rest", True)  # failed renewal, logged
    onezone.down = None
    with pytest.raises(DatahubCredentialError) as info:
        await tokens.token("bob", "checkin-unknown-token", "rest", False)
    texts = [
        caplog.text,
        repr(creds),
        str(creds),
        repr(creds.token),
        repr(tokens),
        str(info.value),
        info.value.message,
    ]
    secrets = [ALICE, "checkin-unknown-token", creds.token.token, *onezone.issued]
    for text in texts:
        for secret in secrets:
            assert secret not in text
    assert "issued for alice" in caplog.text  # the log says what happened, without tokens


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"onezone_url": "http://onezone.example.org"}, "https://"),
        ({"onezone_url": "onezone.example.org"}, "https://"),
        ({"onezone_url": "https://user:pw@onezone.example.org"}, "credentials"),
        ({"onezone_url": "https://onezone.example.org/?x=1"}, "query"),
        ({"idp_prefix": "egi:x"}, "prefix"),
        ({"idp_prefix": ""}, "prefix"),
        ({"token_lifetime": 10}, "at least 300"),
        ({"token_lifetime": 3600, "renew_before": 3600}, "renew_before"),
        ({"renew_before": -1}, "renew_before"),
    ],
)
def test_bad_settings_are_refused_with_their_name(kwargs, words):
    args = {"onezone_url": ONEZONE, **kwargs}
    with pytest.raises(ValueError, match=words):
        DatahubTokens(args.pop("onezone_url"), **args)


async def test_bad_use_and_user_are_refused(tokens, onezone):
    with pytest.raises(ValueError):
        await tokens.token("alice", ALICE, "cdmi", False)
    with pytest.raises(ValueError):
        await tokens.token("", ALICE, "rest", False)
    assert onezone.requests == []


async def test_url_is_normalised_and_own_client_closed():
    made = DatahubTokens("https://onezone.example.org:8443/")
    assert made.onezone_url == "https://onezone.example.org:8443"
    await made.aclose()
    assert made._client.is_closed


# --- narrowing to a mount's spaces ---------------------------------------------------------


def b64(path: str) -> str:
    return base64.b64encode(path.encode()).decode()


@pytest.mark.parametrize(
    ("wanted", "paths", "services"),
    [
        (["alpha"], ["/sp-1"], ["opw-pr-1"]),
        (["sp-2"], ["/sp-2"], ["opw-pr-1", "opw-pr-off"]),  # offline supports too
        (["gamma@sp-3", "alpha"], ["/sp-1", "/sp-3"], ["opw-pr-1", "opw-pr-off"]),
        (["alpha", "no-such-space"], ["/sp-1"], ["opw-pr-1"]),
    ],
)
async def test_spaces_filter_adds_data_path_and_service_caveats(
    tokens, onezone, wanted, paths, services
):
    token = await tokens.token("alice", ALICE, "rest", False, spaces=wanted)
    caveats = onezone.issued[token.token]["caveats"]
    assert {"type": "data.path", "whitelist": [b64(p) for p in paths]} in caveats
    assert {"type": "service", "whitelist": services} in caveats
    assert caveats[0] == {"type": "interface", "interface": "rest"}
    assert caveats[-1]["type"] == "time"
    asked = [r for r in onezone.requests if "/user/spaces" in r.url.path]
    assert all(r.headers["x-auth-token"] == f"egi:{ALICE}" for r in asked)


async def test_a_filter_of_ids_only_asks_for_those_spaces(tokens, onezone):
    await tokens.token("alice", ALICE, "rest", False, spaces=["sp-1"])
    asked = [r.url.path for r in onezone.requests if "/user/spaces" in r.url.path]
    assert asked == ["/api/v3/onezone/user/spaces", "/api/v3/onezone/user/spaces/sp-1"]


async def test_without_a_filter_nothing_is_narrowed_nor_asked(tokens, onezone):
    token = await tokens.token("alice", ALICE, "rest", False)
    types = [c["type"] for c in onezone.issued[token.token]["caveats"]]
    assert types == ["interface", "time"]
    assert not [r for r in onezone.requests if "/user/spaces" in r.url.path]


async def test_cache_keys_differ_by_spaces_and_ignore_order(tokens, onezone):
    a = await tokens.token("alice", ALICE, "rest", False, spaces=["alpha"])
    b = await tokens.token("alice", ALICE, "rest", False, spaces=["beta"])
    ab = await tokens.token("alice", ALICE, "rest", False, spaces=["alpha", "beta"])
    ba = await tokens.token("alice", ALICE, "rest", False, spaces=["beta", "alpha", "beta"])
    assert len({a.token, b.token, ab.token}) == 3 and ba is ab
    tokens.forget("alice")
    assert (await tokens.token("alice", ALICE, "rest", False, spaces=["alpha"])) is not a


async def test_spaces_given_as_one_string_is_a_type_error(tokens):
    with pytest.raises(TypeError, match="list of space names"):
        await tokens.token("alice", ALICE, "rest", False, spaces="alpha")


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ({"spaces": "sp-1"}, "not a list of space ids"),
        ({"spaces": [1, 2]}, "not a list of space ids"),
        ([], "not a list of space ids"),
        ({"spaces": [f"sp-{i}" for i in range(1001)]}, "more than 1000 spaces"),
    ],
)
async def test_a_malformed_space_list_is_a_clear_error(tokens, onezone, answer, reason):
    onezone.space_list = answer
    with pytest.raises(DatahubCredentialError) as info:
        await tokens.token("alice", ALICE, "rest", False, spaces=["alpha"])
    assert info.value.kind == "bad_answer" and reason in info.value.reason
    assert onezone.exchanges() == []  # no token minted


async def test_hostile_ids_never_reach_a_caveat(tokens, onezone):
    """Ids with '/', '..' or spaces in them are skipped; a provider id that is not an id
    is left out of the service caveat (a space left with none is an error)."""
    onezone.spaces["uid-alice"] = {
        "../sp-1": {"name": "alpha", "supports": {"pr-1": {}}},
        "sp ok": {"name": "alpha", "supports": {"pr-1": {}}},
        "sp-5": {"name": "alpha", "supports": {"opw-*": {}, "pr/../x": {}}},
    }
    with pytest.raises(DatahubCredentialError) as info:
        await tokens.token("alice", ALICE, "rest", False, spaces=["alpha"])
    assert "no Oneprovider supports this mount's spaces (alpha)" in info.value.reason
    onezone.spaces["uid-alice"]["sp-5"]["supports"]["pr-1"] = {}
    token = await tokens.token("alice", ALICE, "rest", False, spaces=["alpha"])
    caveats = onezone.issued[token.token]["caveats"]
    assert {"type": "data.path", "whitelist": [b64("/sp-5")]} in caveats
    assert {"type": "service", "whitelist": ["opw-pr-1"]} in caveats


async def test_a_filter_naming_none_of_the_users_spaces_mints_nothing(tokens, onezone):
    with pytest.raises(DatahubCredentialError) as info:
        await tokens.token("bob", BOB, "rest", False, spaces=["alpha", "sp-1"])
    assert info.value.kind == "refused"
    assert info.value.reason == (
        f"none of this mount's spaces (alpha, sp-1) is one of yours at {ONEZONE}"
    )
    assert onezone.exchanges() == []


async def test_a_refused_checkin_token_at_the_space_list_is_token_refused(tokens, onezone):
    with pytest.raises(DatahubCredentialError) as info:
        await tokens.token("eve", "checkin-eve-unknown", "rest", False, spaces=["alpha"])
    assert info.value.kind == "token_refused"
    assert "checkin-eve-unknown" not in info.value.reason


async def test_an_oversized_answer_is_refused(onezone, clock):
    async def huge(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"[" + b" " * (2 * 1024 * 1024) + b"]")

    async with httpx.AsyncClient(transport=httpx.MockTransport(huge)) as client:
        made = DatahubTokens(ONEZONE, http_client=client, clock=clock)
        with pytest.raises(DatahubCredentialError) as info:
            await made.token("alice", ALICE, "rest", False, spaces=["alpha"])
    assert info.value.kind == "bad_answer"
    assert "answered the space list with more than 1 MiB" in info.value.reason


def test_deadline_must_be_positive():
    with pytest.raises(ValueError, match="deadline"):
        DatahubTokens(ONEZONE, deadline=0)


async def test_a_space_gone_between_list_and_details_is_skipped(tokens, onezone):
    """Onezone lists sp-gone but answers 404 for it (left meanwhile): the others still count."""
    onezone.spaces["uid-alice"]["sp-gone"] = {"name": "alpha", "supports": {"pr-1": {}}}
    real = onezone.user_spaces

    def gone(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/sp-gone"):
            return onezone.error(404, "notFound", "The resource could not be found.")
        return real(request)

    onezone.user_spaces = gone
    token = await tokens.token("alice", ALICE, "rest", False, spaces=["alpha"])
    caveats = onezone.issued[token.token]["caveats"]
    assert {"type": "data.path", "whitelist": [b64("/sp-1")]} in caveats
