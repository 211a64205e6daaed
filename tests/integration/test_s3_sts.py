"""S3 mounts with per-user STS credentials: a real OpenID provider, a real S3 server
(``rclone serve s3``, which checks signatures), and a **stand-in** for the S3 service's
STS endpoint (`tests/sts_standin.py`, AWS's documented ``AssumeRoleWithWebIdentity``,
verifying each Check-in token at the real provider).

The first part drives the hub's `MountCredentials` directly (tokens from real code
flows, including another application's and forged ones); the second runs the real stack
(Check-in login, local spawner, the server's credential keeper) and checks the files a
notebook reads, renewal before ``Expiration``, and that no credential reaches the hub's
log or API answers.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from traitlets.config import Config

from egi_hub.context import UserContext
from egi_hub.names import path_component
from egi_hub.singleuser.mounts import filesystem, parse_document, store_document
from egi_hub.singleuser.s3 import S3Mount
from egi_hub.storage_mounts.credentials import NO_CHECKIN_LOGIN_S3, MountCredentials
from egi_hub.storage_mounts.mounts import StorageMounts
from tests.oidcprovider import (
    ACCESS_MEMBER,
    CLIENT_ID,
    CLIENT_SECRET,
    OTHER_CLIENT,
    checkin_site,
    code_flow_tokens,
    login,
    start_provider,
)
from tests.s3server import S3Server, start_s3_server
from tests.stackrunner import free_port, start_stack, wait_for
from tests.sts_standin import StsStandin, start_sts_standin

BUCKET = "homes"
ROLE = "arn:aws:iam::000000000000:role/egi-notebooks"
ADMIN_KEY = ("adminkey00001", "admin-secret-never-logged-0001")
# Enough pairs that none is handed out twice in a run: who got which stays unambiguous.
POOL = [(f"stskey{i:08d}", f"sts-secret-{i:04d}-never-logged") for i in range(32)]


def sts_mount(endpoint: str, sts_endpoint: str, **sts: Any) -> dict[str, Any]:
    return {
        "name": "home",
        "kind": "s3",
        "endpoint_url": endpoint,
        "bucket": BUCKET,
        "prefix": "{username}/",
        "credentials": {"sts": {"endpoint_url": sts_endpoint, "role_arn": ROLE, **sts}},
        "path": "/s3/home",
    }


@pytest.fixture(scope="module")
def hub_port() -> int:
    return free_port()


@pytest.fixture(scope="module")
def provider(tmp_path_factory, hub_port):
    hub_url = f"http://127.0.0.1:{hub_port}"
    running = start_provider(tmp_path_factory.mktemp("oidc"), hub_url)
    running.hub_url = hub_url  # the registered redirect URI's hub, for code flows
    yield running
    running.stop()


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator[S3Server]:
    server = start_s3_server(tmp_path_factory.mktemp("s3"), keys=[ADMIN_KEY, *POOL])
    server.make_bucket(BUCKET)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sts(provider) -> Iterator[StsStandin]:
    standin = start_sts_standin(provider.issuer, CLIENT_ID, CLIENT_SECRET, POOL, role_arn=ROLE)
    yield standin
    standin.stop()


def credentials_for(mount: dict[str, Any], **traits: Any) -> MountCredentials:
    StorageMounts.clear_instance()
    MountCredentials.clear_instance()
    c = Config()
    c.StorageMounts.mounts = [mount]
    for name, value in traits.items():
        setattr(c.MountCredentials, name, value)
    StorageMounts.instance(config=c)
    return MountCredentials.instance(config=c)


def resolved(username: str) -> list:
    context = UserContext.from_entitlements(username, [ACCESS_MEMBER])
    return StorageMounts.instance().for_user(context, "vo.access.egi.eu")


def tokens(provider, account: str, client=(CLIENT_ID, CLIENT_SECRET)) -> str:
    return code_flow_tokens(provider, provider.hub_url, account, client)["access_token"]


async def document(creds: MountCredentials, username: str, token: str | None, user_id: int = 1):
    async def getter() -> str | None:
        return token

    try:
        return await creds.document(username, resolved(username), getter, user_id=user_id)
    finally:
        await creds.aclose()


# -- the hub's exchange against the stand-in -----------------------------------------------


async def test_a_users_notebook_filesystem_reads_and_writes_with_sts_credentials(
    provider, s3, sts, tmp_path, monkeypatch
):
    creds = credentials_for(sts_mount(s3.endpoint_url, sts.endpoint_url))
    token = await asyncio.to_thread(tokens, provider, "alice")
    doc = await document(creds, "alice@egi.eu", token)
    (entry,) = doc["mounts"]
    body = entry["s3"]
    assert set(body) == {
        *("endpoint_url", "bucket", "prefix", "region", "key", "secret"),
        *("session_token", "expires_at"),
    }
    issued = sts.issued[-1]
    assert (body["key"], body["secret"], body["session_token"]) == (
        issued.key,
        issued.secret,
        issued.session_token,
    )
    assert issued.subject == "alice" and issued.session_name == "alice@egi.eu"
    assert body["prefix"] == "alice@egi.eu/"  # as the S3 service's policy names it
    assert doc["refresh_at"] == int(issued.expiration) - 600
    assert token not in json.dumps(doc)

    # The notebook side: the keeper's files, then the mount's filesystem (rclone checks
    # every signature, made with the temporary key and the session token).
    stored = store_document(parse_document(doc), tmp_path / "mounts.json", tmp_path / "storage")
    assert stored.mounts[0].error is None
    on_disk = json.loads((tmp_path / "storage" / "home.json").read_text())
    assert on_disk["session_token"] == issued.session_token
    monkeypatch.setenv("EGI_STORAGE_DIR", str(tmp_path / "storage"))
    fs = filesystem("home", list(stored.mounts))
    fs.pipe_file("notes/hello.txt", b"hi from sts")
    assert fs.cat_file("notes/hello.txt") == b"hi from sts"
    assert fs.ls("notes", detail=False) == ["notes/hello.txt"]
    prefix = body["prefix"].rstrip("/")
    assert s3.path_of(BUCKET, f"{prefix}/notes/hello.txt").read_bytes() == b"hi from sts"


async def test_two_users_get_different_credentials_and_their_own_prefix(provider, s3, sts):
    creds = credentials_for(sts_mount(s3.endpoint_url, sts.endpoint_url))
    alice_token = await asyncio.to_thread(tokens, provider, "alice")
    bob_token = await asyncio.to_thread(tokens, provider, "bob")
    alice = (await document(creds, "alice@egi.eu", alice_token, 1))["mounts"][0]["s3"]
    bob = (await document(creds, "bob@egi.eu", bob_token, 2))["mounts"][0]["s3"]
    assert alice["key"] != bob["key"] and alice["secret"] != bob["secret"]
    assert alice["session_token"] != bob["session_token"]
    assert alice["prefix"] != bob["prefix"]
    assert [i.subject for i in sts.issued[-2:]] == ["alice", "bob"]


async def test_one_exchange_for_concurrent_requests_then_the_cache(provider, s3, sts):
    creds = credentials_for(sts_mount(s3.endpoint_url, sts.endpoint_url))
    token = await asyncio.to_thread(tokens, provider, "carol")
    calls = 0

    async def getter() -> str:
        nonlocal calls
        calls += 1
        return token

    before = sts.requests
    try:
        docs = await asyncio.gather(
            *(creds.document("carol@egi.eu", resolved("carol@egi.eu"), getter) for _ in range(5))
        )
        again = await creds.document("carol@egi.eu", resolved("carol@egi.eu"), getter)
    finally:
        await creds.aclose()
    assert sts.requests - before == 1 and calls == 1
    keys = {d["mounts"][0]["s3"]["key"] for d in [*docs, again]}
    assert len(keys) == 1


@pytest.mark.parametrize(
    ("make_token", "words"),
    [
        (lambda p: "forged-" + "x" * 40, "refused your EGI Check-in token as invalid"),
        (lambda p: tokens(p, "alice", OTHER_CLIENT), "Incorrect token audience"),
    ],
    ids=["forged", "other-client"],
)
async def test_a_forged_or_foreign_token_is_an_error_entry_without_the_token(
    provider, s3, sts, caplog, make_token, words
):
    caplog.set_level(logging.DEBUG)
    creds = credentials_for(sts_mount(s3.endpoint_url, sts.endpoint_url))
    token = await asyncio.to_thread(make_token, provider)
    issued = len(sts.issued)
    doc = await document(creds, "alice@egi.eu", token)
    (entry,) = doc["mounts"]
    assert "s3" not in entry and "refresh_at" not in doc
    assert entry["error"].startswith(f"S3: the STS endpoint {sts.endpoint_url} ")
    assert "InvalidIdentityToken" in entry["error"] and words in entry["error"]
    assert token not in json.dumps(doc) and token not in caplog.text
    assert len(sts.issued) == issued


async def test_a_revoked_token_is_refused_and_the_failure_is_held(provider, s3, sts, caplog):
    caplog.set_level(logging.DEBUG)
    creds = credentials_for(sts_mount(s3.endpoint_url, sts.endpoint_url))
    token = await asyncio.to_thread(tokens, provider, "alice")
    r = await asyncio.to_thread(
        httpx.post,
        f"{provider.issuer}/protocol/openid-connect/revoke",
        data={"token": token},
        auth=(CLIENT_ID, CLIENT_SECRET),
    )
    assert r.status_code == 200
    before = sts.requests

    async def getter() -> str:
        return token

    try:
        first = await creds.document("alice@egi.eu", resolved("alice@egi.eu"), getter)
        second = await creds.document("alice@egi.eu", resolved("alice@egi.eu"), getter)
    finally:
        await creds.aclose()
    assert "it is not active" in first["mounts"][0]["error"]
    assert second == first and sts.requests - before == 1  # held: asked once
    assert token not in caplog.text + json.dumps(first)


async def test_wrong_role_and_endpoint_down_and_no_checkin_login(provider, s3, sts):
    token = await asyncio.to_thread(tokens, provider, "alice")
    wrong = sts_mount(s3.endpoint_url, sts.endpoint_url, role_arn=ROLE + "-other")
    (entry,) = (await document(credentials_for(wrong), "alice@egi.eu", token))["mounts"]
    assert "AccessDenied" in entry["error"] and "ask the site's admins" in entry["error"]

    down = sts_mount(s3.endpoint_url, f"http://127.0.0.1:{free_port()}")
    (entry,) = (await document(credentials_for(down), "alice@egi.eu", token))["mounts"]
    assert entry["error"].startswith("S3: the STS endpoint http://127.0.0.1:")
    assert "cannot be reached (ConnectError)" in entry["error"]

    (entry,) = (await document(credentials_for(wrong), "alice@egi.eu", None))["mounts"]
    assert entry["error"] == NO_CHECKIN_LOGIN_S3


async def test_credentials_are_renewed_before_their_expiration(provider, s3):
    """The stand-in's credentials last 4 s here (a test knob): the hub renews them once
    fewer than half their lifetime is left, and serves the cached ones before that."""
    standin = start_sts_standin(
        provider.issuer, CLIENT_ID, CLIENT_SECRET, POOL, role_arn=ROLE, lifetime=4
    )
    creds = credentials_for(sts_mount(s3.endpoint_url, standin.endpoint_url))
    token = await asyncio.to_thread(tokens, provider, "alice")

    async def getter() -> str:
        return token

    async def key() -> tuple[str, int]:
        doc = await creds.document("alice@egi.eu", resolved("alice@egi.eu"), getter)
        return doc["mounts"][0]["s3"]["key"], doc["mounts"][0]["s3"]["expires_at"]

    try:
        first, expires = await key()
        assert (await key())[0] == first  # cached
        deadline = asyncio.get_running_loop().time() + 30
        while (current := await key())[0] == first:
            assert asyncio.get_running_loop().time() < deadline, "never renewed"
            await asyncio.sleep(0.2)
        assert current[1] >= expires
        assert len(standin.issued) == 2
        assert standin.issued[0].expiration > standin.issued[1].expiration - 4
    finally:
        await creds.aclose()
        standin.stop()


# -- the real stack: Check-in login, spawn, keeper ------------------------------------------


def home(stack, user: str) -> Path:
    return stack.data_dir / "users" / path_component(user)


@pytest.fixture(scope="module")
def renewing_sts(provider) -> Iterator[StsStandin]:
    """Credentials for 30 s: the server's keeper and the hub renew them within the test."""
    standin = start_sts_standin(
        provider.issuer, CLIENT_ID, CLIENT_SECRET, POOL, role_arn=ROLE, lifetime=30
    )
    yield standin
    standin.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, hub_port, provider, s3, renewing_sts):
    site = checkin_site(provider.issuer)
    site["StorageMounts"] = {"mounts": [sts_mount(s3.endpoint_url, renewing_sts.endpoint_url)]}
    site["MountCredentials"] = {"refresh_margin": 5, "s3_sts_renew_before": 10}
    running = start_stack(
        tmp_path_factory.mktemp("hub"),
        site,
        port=hub_port,
        env={"EGI_CHECKIN_CLIENT_SECRET": CLIENT_SECRET},
    )
    try:
        for account in ("alice", "bob"):
            with httpx.Client(timeout=30) as client:
                assert login(running.url, account, client).status_code == 302
            running.start_server(f"{account}@egi.eu")
        yield running
    finally:
        running.stop()


def stored(stack, user: str) -> dict[str, Any] | None:
    path = home(stack, user) / ".egi" / "servers" / "default" / "storage" / "home.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def test_the_servers_keeper_writes_sts_credentials_a_notebook_uses(stack, s3, renewing_sts):
    alice = wait_for(lambda: stored(stack, "alice@egi.eu"), 60, "alice's S3 credentials")
    bob = wait_for(lambda: stored(stack, "bob@egi.eu"), 60, "bob's S3 credentials")
    assert alice["key"] != bob["key"] and alice["session_token"] != bob["session_token"]
    subjects = {i.key: i.subject for i in renewing_sts.issued}
    assert subjects[alice["key"]] == "alice" and subjects[bob["key"]] == "bob"
    path = home(stack, "alice@egi.eu") / ".egi" / "servers" / "default" / "storage"
    fs = S3Mount.from_file(path / "home.json")
    prefix = "alice@egi.eu"
    fs.pipe_file(f"{prefix}/from-the-notebook.txt", b"saved")
    assert fs.cat_file(f"{prefix}/from-the-notebook.txt") == b"saved"
    assert s3.path_of(BUCKET, f"{prefix}/from-the-notebook.txt").read_bytes() == b"saved"


def test_the_keeper_gets_renewed_credentials_before_they_expire(stack, renewing_sts):
    first = wait_for(lambda: stored(stack, "alice@egi.eu"), 60, "alice's S3 credentials")
    renewed = wait_for(
        lambda: (doc := stored(stack, "alice@egi.eu")) and doc["key"] != first["key"] and doc,
        90,
        "renewed S3 credentials in alice's server",
    )
    assert renewed["expires_at"] > first["expires_at"]
    # Renewed before the old ones ended: the file changed while they were still valid.
    issued = {i.key: i for i in renewing_sts.issued}
    assert issued[renewed["key"]].expiration - 30 < first["expires_at"]


def test_no_sts_credential_or_checkin_token_in_the_hubs_log_or_api(stack, renewing_sts):
    wait_for(lambda: stored(stack, "bob@egi.eu"), 60, "bob's S3 credentials")
    answers = [
        stack.api.get("/users").text,
        stack.api.get("/users/alice@egi.eu").text,
        stack.api.get("/users/alice@egi.eu/tokens").text,
    ]
    secrets = [s for i in renewing_sts.issued for s in (i.secret, i.session_token)]
    assert secrets
    log = stack.log()
    assert "GET /hub/api/egi/mounts" in log  # the keepers did ask
    for text in [*answers, log]:
        for secret in secrets:
            assert secret not in text
    for key in {i.key for i in renewing_sts.issued}:
        assert key not in log


# -- the stand-in speaks AWS's protocol, as AWS's own SDK understands it -------------------


def test_botocores_sts_client_gets_credentials_and_documented_errors_from_the_stand_in(
    provider, sts
):
    """AWS's SDK (botocore, unsigned, as for AssumeRoleWithWebIdentity) against the
    stand-in: its answers parse as AWS's, its refusals carry AWS's error codes."""
    import botocore.session
    from botocore import UNSIGNED
    from botocore.config import Config as BotoConfig
    from botocore.exceptions import ClientError

    client = botocore.session.get_session().create_client(
        "sts",
        endpoint_url=sts.endpoint_url,
        region_name="us-east-1",
        config=BotoConfig(signature_version=UNSIGNED),
    )
    token = tokens(provider, "bob")
    try:
        answer = client.assume_role_with_web_identity(
            RoleArn=ROLE, RoleSessionName="bob@egi.eu", WebIdentityToken=token
        )
        creds = answer["Credentials"]
        assert (creds["AccessKeyId"], creds["SessionToken"]) == (
            sts.issued[-1].key,
            sts.issued[-1].session_token,
        )
        assert answer["SubjectFromWebIdentityToken"] == "bob"
        assert answer["Audience"] == CLIENT_ID
        refusals = {
            "InvalidIdentityToken": {"WebIdentityToken": "forged-" + "y" * 30},
            "AccessDenied": {"RoleArn": ROLE + "-x"},
            "ValidationError": {"DurationSeconds": 43201},
        }
        for code, change in refusals.items():
            params = {
                "RoleArn": ROLE,
                "RoleSessionName": "bob@egi.eu",
                "WebIdentityToken": token,
                **change,
            }
            with pytest.raises(ClientError) as e:
                client.assume_role_with_web_identity(**params)
            assert e.value.response["Error"]["Code"] == code
    finally:
        client.close()
