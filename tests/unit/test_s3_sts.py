"""S3 STS credentials on the hub side: the ``credentials.sts`` config, the
``AssumeRoleWithWebIdentity`` answer parser, and the per-user cache.

The STS endpoint here is an `httpx.MockTransport` answering with AWS's documented XML;
no sockets (the unit lane forbids them). The real exchange, against a stand-in that
verifies tokens at a real OpenID provider, is in tests/integration/test_s3_sts.py.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import time
from urllib.parse import parse_qs

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from traitlets.config import Config

from egi_hub.config import check_site, configurable_classes
from egi_hub.context import UserContext
from egi_hub.storage_mounts.credentials import MountCredentials, check_s3_environment
from egi_hub.storage_mounts.mounts import StorageMounts
from egi_hub.storage_mounts.s3 import key_component
from egi_hub.storage_mounts.sts import (
    MAX_ANSWER,
    StsCredentialCache,
    StsError,
    StsSettings,
    parse_answer,
    role_session_name,
)

ACCESS = "urn:mace:egi.eu:group:vo.access.egi.eu:role=member#aai.egi.eu"
ROLE = "arn:aws:iam::123456789012:role/notebooks"
CHECKIN = "checkin-token-do-not-leak-0042"
NS = "https://sts.amazonaws.com/doc/2011-06-15/"
STS_MOUNT = {
    "name": "home",
    "kind": "s3",
    "endpoint_url": "https://s3.example.org",
    "bucket": "homes",
    "prefix": "{username}/",
    "credentials": {"sts": {"role_arn": ROLE}},
    "path": "/s3/home",
}
ENDPOINT = "https://sts.example.org"


def problems(mounts) -> list[str]:
    return [
        str(i) for i in check_site({"StorageMounts": {"mounts": mounts}}, configurable_classes())
    ]


def iso(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ok_xml(
    key: str, expiration: float, secret: str = "sec/ret+1", token: str = "sess=tok"
) -> bytes:
    return (
        f'<AssumeRoleWithWebIdentityResponse xmlns="{NS}"><AssumeRoleWithWebIdentityResult>'
        f"<Credentials><SessionToken>{token}</SessionToken><SecretAccessKey>{secret}"
        f"</SecretAccessKey><Expiration>{iso(expiration)}</Expiration>"
        f"<AccessKeyId>{key}</AccessKeyId></Credentials>"
        "</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>"
    ).encode()


def error_xml(code: str, message: str) -> bytes:
    return (
        f'<ErrorResponse xmlns="{NS}"><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{message}</Message></Error><RequestId>r</RequestId></ErrorResponse>"
    ).encode()


# -- config ----------------------------------------------------------------------------


def test_the_sts_form_is_valid_and_allows_username_and_vo_templates():
    assert problems([STS_MOUNT]) == []
    assert problems([{**STS_MOUNT, "bucket": "{vo}-homes", "prefix": "{username}/"}]) == []
    mounts = StorageMounts(mounts=[STS_MOUNT])
    (mount,) = mounts.mounts
    assert mount.uses_sts and mount.sts_endpoint_url == "https://s3.example.org"
    assert (mount.sts_role_arn, mount.sts_duration_seconds) == (ROLE, 3600)
    assert mount.key_variables() == []
    assert check_s3_environment(mounts.mounts, {}) == []  # no site secret to set
    (entry,) = mounts.for_user(UserContext.from_entitlements("alice@egi.eu", [ACCESS]), None)
    assert entry.settings == {"bucket": "homes", "prefix": "alice@egi.eu/"}
    (entry,) = mounts.for_user(UserContext.from_entitlements("a/../b", [ACCESS]), None)
    assert entry.settings["prefix"] == "a-2f..-2fb/"  # escaped: one component
    # Static-key mounts keep the file-path escaping (there {username} is refused anyway).
    nfs = {"name": "n", "kind": "nfs", "server": "nfs.example.org", "path": "/n"}
    nfs["export"] = "/exports/{username}"
    (entry,) = StorageMounts(mounts=[nfs]).for_user(
        UserContext.from_entitlements("alice@egi.eu", [ACCESS]), None
    )
    assert entry.settings["export"] == "/exports/alice-40egi.eu"


@pytest.mark.parametrize(
    ("name", "component"),
    [
        ("alice@egi.eu", "alice@egi.eu"),
        ("0123abcdef@egi.eu", "0123abcdef@egi.eu"),
        ("Alice+x=1,y", "Alice+x=1,y"),
        ("..", "-2e."),
        (".hidden", "-2ehidden"),
        ("a-b", "a-2db"),  # '-' is the escape character: never kept
        ("Zoë", "-5ao-c3-ab"),
        ("-5ao-c3-ab", "-2d5ao-2dc3-2dab"),  # cannot meet Zoë's
        ("a b", "a-20b"),
    ],
)
def test_key_components_keep_plain_names_and_escape_the_rest(name, component):
    assert key_component(name) == component
    assert "/" not in component and component not in (".", "..")


@given(st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=30))
def test_key_components_are_injective(a, b):
    if a != b:
        assert key_component(a) != key_component(b)


def test_minio_needs_no_role_and_a_loopback_endpoint_may_be_http():
    minio = {**STS_MOUNT, "endpoint_url": "http://s3.site.lan:9000"}
    minio["credentials"] = {"sts": {"endpoint_url": "http://127.0.0.1:9000"}}
    assert problems([minio]) == []


@pytest.mark.parametrize(
    ("sts", "where", "words"),
    [
        ({}, "endpoint_url", "use https"),  # the mount's own http endpoint off the loopback
        ({"endpoint_url": "http://sts.site.lan"}, "endpoint_url", "Check-in tokens are sent"),
        ({"endpoint_url": "https://u:p@sts.example.org"}, "endpoint_url", "no credentials"),
        ({"role_arn": "notebooks"}, "role_arn", "not a role ARN"),
        ({"role_arn": 7}, "role_arn", "not a role ARN"),
        ({"duration_seconds": 899}, "duration_seconds", "900 to 43200"),
        ({"duration_seconds": 43201}, "duration_seconds", "900 to 43200"),
        ({"duration_seconds": True}, "duration_seconds", "900 to 43200"),
        ({"duration_seconds": "3600"}, "duration_seconds", "900 to 43200"),
        ({"web_identity": "id_token"}, "web_identity", "access_token"),
        ({"policy": "{}"}, "policy", "unknown key"),
    ],
)
def test_a_bad_sts_setting_is_named_by_its_key(sts, where, words):
    mount = {**STS_MOUNT, "endpoint_url": "http://s3.site.lan", "credentials": {"sts": sts}}
    if "endpoint_url" not in sts and where != "endpoint_url":
        mount["credentials"]["sts"] = {"endpoint_url": ENDPOINT, **sts}
    (issue,) = problems([mount])
    assert issue.startswith(f"StorageMounts.mounts[0].credentials.sts.{where}: "), issue
    assert words in issue


def test_sts_cannot_be_combined_with_static_keys():
    both = {"sts": {}, "from_env": {"key": "K", "secret": "S"}}
    (issue,) = problems([{**STS_MOUNT, "credentials": both}])
    assert "StorageMounts.mounts[0].credentials: expected exactly one key" in issue
    assert "sts (per-user credentials" in issue


def test_role_session_names_follow_aws_characters():
    assert role_session_name("alice@egi.eu") == "alice@egi.eu"
    assert role_session_name("Zoë Ünicode/Research") == "Zo___nicode_Research"
    assert role_session_name("x") == "x_"
    assert len(role_session_name("a" * 100)) == 64


# -- the answer -------------------------------------------------------------------------


def test_a_successful_answer_gives_the_four_credentials():
    creds = parse_answer(200, ok_xml("ASIAKEY1", 2_000_000_000), endpoint=ENDPOINT, now=1e9)
    assert (creds.key, creds.secret, creds.session_token) == ("ASIAKEY1", "sec/ret+1", "sess=tok")
    assert creds.expiration == 2_000_000_000 and creds.lifetime == 1e9
    assert "sec/ret" not in repr(creds) and "sess=tok" not in repr(creds)
    fractions = ok_xml("K", 0).replace(b"1970-01-01T00:00:00Z", b"2033-05-18T03:33:20.123Z")
    assert parse_answer(200, fractions, endpoint=ENDPOINT, now=0).expiration == 2e9 + 0.123


@pytest.mark.parametrize(
    ("status", "code", "kind", "words"),
    [
        (
            400,
            "InvalidIdentityToken",
            "token_refused",
            "refused your EGI Check-in token as invalid",
        ),
        (400, "ExpiredTokenException", "token_refused", "as expired; log in again"),
        (403, "IDPRejectedClaim", "token_refused", "revoked or expired"),
        (400, "IDPCommunicationError", "unreachable", "could not reach EGI Check-in"),
        (403, "AccessDenied", "refused", "ask the site's admins"),
        (400, "ValidationError", "refused", "refused to give S3 credentials (ValidationError"),
        (503, "ServiceUnavailable", "unreachable", "is unavailable (ServiceUnavailable"),
    ],
)
def test_documented_error_codes_become_reasons_without_the_token(status, code, kind, words):
    body = error_xml(code, f"token {CHECKIN} is bad\n\tsee &lt;log&gt;")
    with pytest.raises(StsError) as e:
        parse_answer(status, body, endpoint=ENDPOINT, token=CHECKIN)
    assert (e.value.kind, e.value.code) == (kind, code)
    assert e.value.reason.startswith(f"the STS endpoint {ENDPOINT} ")
    assert words in e.value.reason and code in e.value.reason
    assert CHECKIN not in e.value.reason and "[token]" in e.value.reason
    assert "\n" not in e.value.reason and "bad see <log>" in e.value.reason


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaa"><!ENTITY b "&a;&a;&a;">]>'
            b"<r>&b;</r>",
            "declares a document type",
        ),
        (b'<!doctype x SYSTEM "file:///etc/passwd"><x/>', "declares a document type"),
        (  # the same entity trick in UTF-16, which a byte search for DOCTYPE missed
            '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY a "AKIA">]>'
            "<r>&a;</r>".encode("utf-16"),
            "not UTF-8 XML",
        ),
        (  # UTF-16 without a BOM, declared
            '<?xml version="1.0" encoding="UTF-16"?><r/>'.encode("utf-16-le"),
            "not UTF-8 XML",
        ),
        (b'<?xml version="1.0" encoding="ISO-8859-1"?><r/>', "not UTF-8 XML"),
        (b"\xef\xbb\xbf<!DOCTYPE r><r/>", "declares a document type"),
        (b"not xml at all", "is not XML"),
        (b"<AssumeRoleWithWebIdentityResponse/>", "without a usable AccessKeyId"),
        (ok_xml("K", 2e9).replace(b"sess=tok", b""), "without a usable SessionToken"),
        (ok_xml("K", 2e9).replace(b"sess=tok", b"a b"), "without a usable SessionToken"),
        (ok_xml("K", 1e9), "already expired"),
        (ok_xml("K", 2e9).replace(b"2033-05-18T03:33:20Z", b"tomorrow"), "not a date"),
    ],
)
def test_odd_answers_are_refused(body, words):
    with pytest.raises(StsError) as e:
        parse_answer(200, body, endpoint=ENDPOINT, now=1.5e9)
    assert e.value.kind == "bad_answer" and words in e.value.reason


def test_a_utf8_answer_with_a_bom_or_declaration_is_read():
    body = b'\xef\xbb\xbf<?xml version="1.0" encoding="UTF-8"?>' + ok_xml("K", 2e9)
    assert parse_answer(200, body, endpoint=ENDPOINT, now=1.5e9).key == "K"


def test_a_5xx_page_that_is_not_xml_is_the_endpoint_being_down():
    with pytest.raises(StsError) as e:
        parse_answer(502, b"<html>Bad gateway", endpoint=ENDPOINT)
    assert e.value.kind == "unreachable" and "HTTP 502" in e.value.reason


# -- the cache --------------------------------------------------------------------------


class Sts:
    """The endpoint: a new key per exchange, valid ``lifetime`` seconds from ``now``."""

    def __init__(self, clock) -> None:
        self.clock = clock
        self.forms: list[dict[str, str]] = []
        self.headers: list[httpx.Headers] = []
        self.answer: tuple[int, bytes] | None = None
        self.down = False
        self.lifetime = 3600

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("refused", request=request)
        form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
        self.forms.append(form)
        self.headers.append(request.headers)
        if self.answer:
            return httpx.Response(self.answer[0], content=self.answer[1])
        key = f"ASIA{len(self.forms):04d}"
        return httpx.Response(200, content=ok_xml(key, self.clock() + self.lifetime))


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def cache(clock: Clock, sts: Sts, renew_before: float = 900) -> StsCredentialCache:
    client = httpx.AsyncClient(transport=httpx.MockTransport(sts))
    return StsCredentialCache(renew_before=renew_before, http_client=client, clock=clock)


async def token() -> str:
    return CHECKIN


SETTINGS = StsSettings(ENDPOINT, ROLE, 3600)


async def test_the_request_is_awss_unsigned_form():
    clock = Clock()
    sts = Sts(clock)
    creds = await cache(clock, sts).credentials("alice#1", "alice@egi.eu", SETTINGS, token)
    assert creds.key == "ASIA0001" and creds.expiration == clock.now + 3600
    (form,) = sts.forms
    assert form == {
        "Action": "AssumeRoleWithWebIdentity",
        "Version": "2011-06-15",
        "WebIdentityToken": CHECKIN,
        "RoleSessionName": "alice@egi.eu",
        "DurationSeconds": "3600",
        "RoleArn": ROLE,
    }
    headers = sts.headers[0]
    assert "authorization" not in headers
    assert headers["content-type"] == "application/x-www-form-urlencoded"
    no_role = StsSettings(ENDPOINT, "", 900)
    await cache(clock, sts).credentials("alice#1", "alice@egi.eu", no_role, token)
    assert "RoleArn" not in sts.forms[-1] and sts.forms[-1]["DurationSeconds"] == "900"


async def test_cached_until_renew_before_then_renewed_and_a_failed_renewal_keeps_serving():
    clock = Clock()
    sts = Sts(clock)
    c = cache(clock, sts, renew_before=900)
    first = await c.credentials("alice#1", "alice", SETTINGS, token)
    clock.now += 3600 - 901
    assert await c.credentials("alice#1", "alice", SETTINGS, token) == first
    clock.now += 2  # fewer than 900 s left: renewed
    sts.down = True
    assert await c.credentials("alice#1", "alice", SETTINGS, token) == first  # still valid
    sts.down = False
    second = await c.credentials("alice#1", "alice", SETTINGS, token)
    assert second.key != first.key and len(sts.forms) == 2
    clock.now = second.expiration + 1
    sts.down = True
    with pytest.raises(StsError, match="cannot be reached"):
        await c.credentials("alice#1", "alice", SETTINGS, token)


async def test_short_lived_credentials_are_renewed_at_half_their_life():
    clock = Clock()
    sts = Sts(clock)
    sts.lifetime = 100
    c = cache(clock, sts, renew_before=900)
    first = await c.credentials("alice#1", "alice", SETTINGS, token)
    clock.now += 49
    assert await c.credentials("alice#1", "alice", SETTINGS, token) == first
    clock.now += 2
    assert (await c.credentials("alice#1", "alice", SETTINGS, token)).key != first.key


async def test_users_and_forget_keep_credentials_apart():
    clock = Clock()
    sts = Sts(clock)
    c = cache(clock, sts)
    alice = await c.credentials("alice#1", "alice", SETTINGS, token)
    again = await c.credentials("alice#2", "alice", SETTINGS, token)  # re-created user
    assert again.key != alice.key
    c.forget("alice#1")
    assert (await c.credentials("alice#1", "alice", SETTINGS, token)).key not in (
        alice.key,
        again.key,
    )
    assert "ASIA" not in repr(c)


async def test_concurrent_requests_share_one_exchange():
    clock = Clock()
    sts = Sts(clock)
    c = cache(clock, sts)
    results = await asyncio.gather(
        *(c.credentials("alice#1", "alice", SETTINGS, token) for _ in range(10))
    )
    assert len(sts.forms) == 1 and len({r.key for r in results}) == 1


class _Drip(httpx.AsyncByteStream):
    """An answer that sends one byte every 0.2 s, for ever."""

    async def __aiter__(self):
        while True:
            yield b" "
            await asyncio.sleep(0.2)


async def test_an_endpoint_that_drips_is_cut_off_by_the_overall_deadline():
    """httpx's timeout restarts with every byte: only the deadline ends such an answer."""
    transport = httpx.MockTransport(lambda request: httpx.Response(200, stream=_Drip()))
    client = httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(1))
    sts = StsCredentialCache(http_client=client, deadline=0.6)
    started = time.monotonic()
    with pytest.raises(StsError) as e:
        await sts.credentials("alice#1", "alice", SETTINGS, token)
    assert e.value.kind == "unreachable" and "did not answer in time" in e.value.reason
    assert time.monotonic() - started < 3


async def test_an_oversized_answer_is_cut_off():
    clock = Clock()
    sts = Sts(clock)
    sts.answer = (200, b"<a>" + b"x" * (MAX_ANSWER + 10) + b"</a>")
    with pytest.raises(StsError, match="more than 64 KiB"):
        await cache(clock, sts).credentials("alice#1", "alice", SETTINGS, token)


# -- the mounts document ----------------------------------------------------------------


@pytest.fixture
def credentials():
    for cls in (StorageMounts, MountCredentials):
        cls.clear_instance()
    c = Config()
    c.StorageMounts.mounts = [{**STS_MOUNT, "credentials": {"sts": {"endpoint_url": ENDPOINT}}}]
    StorageMounts.instance(config=c)
    yield MountCredentials.instance(config=c)
    for cls in (StorageMounts, MountCredentials):
        cls.clear_instance()


async def test_the_document_carries_the_session_token_and_refresh_at(credentials, caplog):
    caplog.set_level(logging.DEBUG)
    clock = Clock()
    sts = Sts(clock)
    credentials.use_sts_cache(cache(clock, sts))
    context = UserContext.from_entitlements("alice", [ACCESS])
    resolved = StorageMounts.instance().for_user(context, None)
    doc = await credentials.document("alice", resolved, token, user_id=7, now=clock.now)
    (entry,) = doc["mounts"]
    assert entry["s3"]["key"] == "ASIA0001" and entry["s3"]["session_token"] == "sess=tok"
    assert entry["s3"]["expires_at"] == int(clock.now + 3600)
    assert entry["s3"]["prefix"] == "alice/"  # a plain name, as the S3 policy sees it
    assert doc["refresh_at"] == int(clock.now + 3600) - 600
    assert CHECKIN not in json.dumps(doc) + caplog.text
    assert "sec/ret" not in caplog.text and "sess=tok" not in caplog.text + repr(credentials)


async def test_short_credentials_are_asked_for_when_the_hub_renews_them(credentials):
    """900 s credentials are renewed at 450 s left (half their life), later than the
    600 s refresh_margin: the server is told to ask at 450 s left, not at 600 s, where it
    would get the same credentials back and ask again every few seconds."""
    clock = Clock()
    sts = Sts(clock)
    sts.lifetime = 900
    credentials.use_sts_cache(cache(clock, sts))
    context = UserContext.from_entitlements("alice", [ACCESS])
    resolved = StorageMounts.instance().for_user(context, None)
    doc = await credentials.document("alice", resolved, token, user_id=7, now=clock.now)
    assert doc["refresh_at"] == int(clock.now + 900) - 450
    clock.now = doc["refresh_at"]  # the server asks when told: it gets new credentials
    again = await credentials.document("alice", resolved, token, user_id=7, now=clock.now)
    assert again["mounts"][0]["s3"]["key"] != doc["mounts"][0]["s3"]["key"]
    assert again["refresh_at"] == int(clock.now + 900) - 450


async def test_a_failure_is_held_per_user_and_a_missing_login_is_not(credentials):
    clock = Clock()
    sts = Sts(clock)
    sts.answer = (400, error_xml("InvalidIdentityToken", "nope"))
    credentials.use_sts_cache(cache(clock, sts))
    resolved = StorageMounts.instance().for_user(
        UserContext.from_entitlements("alice", [ACCESS]), None
    )
    first = await credentials.document("alice", resolved, token, user_id=1)
    second = await credentials.document("alice", resolved, token, user_id=1)
    assert first == second and len(sts.forms) == 1
    assert first["mounts"][0]["error"].startswith("S3: the STS endpoint https://sts.example.org")

    async def none() -> None:
        return None

    for _ in range(2):
        doc = await credentials.document("bob", resolved_for("bob"), none, user_id=2)
        assert "no Check-in access token" in doc["mounts"][0]["error"]
    assert len(sts.forms) == 1


def resolved_for(name: str) -> list:
    return StorageMounts.instance().for_user(UserContext.from_entitlements(name, [ACCESS]), None)


@pytest.mark.parametrize("bad", ["tok en", "tok\nX-Injected: 1", "", "tøken"])
async def test_a_malformed_checkin_token_is_never_sent(credentials, bad):
    clock = Clock()
    sts = Sts(clock)
    credentials.use_sts_cache(cache(clock, sts))

    async def malformed() -> str:
        return bad

    doc = await credentials.document("alice", resolved_for("alice"), malformed, user_id=1)
    error = doc["mounts"][0]["error"]
    assert "Check-in" in error and sts.forms == []
    if bad:
        assert bad not in error
