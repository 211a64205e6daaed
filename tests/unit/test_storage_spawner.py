"""Storage mounts on the hub side: which mounts a server gets, its credentials document,
the wiring, and that secrets stay out of reprs, logs and spawner state.

The Onezone here is an `httpx.MockTransport` stand-in answering as Onezone documents
(temporary tokens for ``X-Auth-Token: egi:<Check-in token>``, ``infer_access_token_scope``
without an auth header); no sockets (the unit lane forbids them).
"""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest

from egi_hub.config import SiteConfigError
from egi_hub.singleuser_config import MOUNTS_SCOPE
from egi_hub.storage_mounts.credentials import (
    NO_CHECKIN_LOGIN,
    MountCredentials,
    S3Keys,
    check_s3_environment,
)
from egi_hub.storage_mounts.datahub_tokens import DatahubTokens
from egi_hub.storage_mounts.hub import mounts_hub_config
from egi_hub.storage_mounts.mounts import StorageMounts
from egi_hub.storage_mounts.spawner import MOUNTS_URL_ENV
from tests.spawners import local_vo_spawner

VO_A = "vo.a.example"
VO_B = "vo.b.example"
ALICE_ENT = [f"urn:mace:egi.eu:group:{VO_A}:role=member#aai.egi.eu"]
BOB_ENT = [f"urn:mace:egi.eu:group:{VO_B}:role=member#aai.egi.eu"]
ONEZONE = "https://onezone.example.org"
KEY, SECRET = "AKIDALICE0001", "s3-secret-do-not-leak-0001"
CHECKIN = "checkin-token-do-not-leak-42"
ENV = {"SCRATCH_KEY": KEY, "SCRATCH_SECRET": SECRET}

MOUNTS = [
    {
        "name": "scratch",
        "kind": "s3",
        "endpoint_url": "http://127.0.0.1:9",
        "bucket": "{vo}-scratch",
        "prefix": "{username}/",
        "credentials": {"from_env": {"key": "SCRATCH_KEY", "secret": "SCRATCH_SECRET"}},
        "path": "/s3/scratch",
        "vos": [VO_A],
    },
    {"name": "datahub", "kind": "datahub", "onezone_url": ONEZONE, "path": "/datahub"},
    {
        "name": "shared",
        "kind": "nfs",
        "server": "nfs.example.org",
        "export": "/exports/{vo}",
        "path": "/nfs/shared",
        "vos": [VO_A, VO_B],
    },
]
PROFILES = [
    {"display_name": "A", "slug": "a", "allowed_vos": [VO_A]},
    {"display_name": "B", "slug": "b", "allowed_vos": [VO_B]},
]


@pytest.fixture(autouse=True)
def fresh_singletons():
    for cls in (StorageMounts, MountCredentials):
        cls.clear_instance()
    yield
    for cls in (StorageMounts, MountCredentials):
        cls.clear_instance()


def configure(mounts: list[dict[str, Any]] = MOUNTS, env: dict[str, str] = ENV) -> MountCredentials:
    from traitlets.config import Config

    c = Config()
    c.StorageMounts.mounts = mounts
    StorageMounts.instance(config=c)
    credentials = MountCredentials.instance(config=c)
    issues = credentials.load_s3_keys(env)
    assert issues == [] or env is not ENV
    return credentials


class Onezone:
    """Onezone stand-in: Check-in tokens it knows -> users; temporary tokens; scope."""

    def __init__(self) -> None:
        self.users = {CHECKIN: "uid-alice"}
        self.issued: dict[str, float] = {}
        self.down = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        body = json.loads(request.content or b"{}")
        if request.url.path == "/api/v3/onezone/user/tokens/temporary":
            prefix, _, idp = request.headers.get("x-auth-token", "").partition(":")
            if prefix != "egi" or idp not in self.users:
                return httpx.Response(
                    401, json={"error": {"id": "unauthorized", "details": {"authError": {}}}}
                )
            until = next(c["validUntil"] for c in body["caveats"] if c["type"] == "time")
            token = f"onedata-{len(self.issued)}-do-not-leak"
            self.issued[token] = until
            return httpx.Response(201, json={"token": token})
        if request.url.path == "/api/v3/onezone/tokens/infer_access_token_scope":
            provider = {"name": "p", "domain": "p.example", "version": "25.2.0", "online": True}
            spaces = {
                "s1": {"name": "space-a", "supports": {"p1": {"readonly": False}}},
                "s2": {"name": "../evil", "supports": {"p1": {"readonly": False}}},
                "s3": {"name": "offline", "supports": {}},
            }
            scope = {"readonly": False, "spaces": spaces, "providers": {"p1": provider}}
            return httpx.Response(
                200,
                json={"validUntil": self.issued[body["token"]], "dataAccessScope": scope},
            )
        return httpx.Response(404, json={"error": {"id": "notFound"}})


@pytest.fixture
async def onezone():
    zone = Onezone()
    client = httpx.AsyncClient(transport=httpx.MockTransport(zone))
    zone.tokens = DatahubTokens(ONEZONE, token_lifetime=3600, renew_before=600, http_client=client)
    yield zone
    await zone.tokens.aclose()
    await client.aclose()


def resolved(username: str, entitlements: list[str], vo: str | None):
    from egi_hub.context import UserContext

    context = UserContext.from_entitlements(username, entitlements)
    return StorageMounts.instance().for_user(context, vo)


async def no_token() -> str | None:
    return None


async def checkin() -> str:
    return CHECKIN


# --- the S3 environment, checked at hub start -------------------------------------


def test_missing_s3_variable_is_named_with_its_key_never_a_value():
    mounts = StorageMounts(mounts=MOUNTS).mounts
    issues = check_s3_environment(mounts, {"SCRATCH_KEY": KEY, "SCRATCH_SECRET": ""})
    assert [str(i) for i in issues] == [
        "StorageMounts.mounts[0].credentials.from_env.secret: the hub's environment variable "
        "SCRATCH_SECRET (mount 'scratch') is empty: set it to the S3 access secret (on "
        "Kubernetes, from a Secret)"
    ]
    issues = check_s3_environment(mounts, {})
    assert [i.path for i in issues] == [
        "StorageMounts.mounts[0].credentials.from_env.key",
        "StorageMounts.mounts[0].credentials.from_env.secret",
    ]
    assert all("is not set" in i.message for i in issues)
    assert check_s3_environment(mounts, ENV) == []


def test_wiring_stops_the_hub_naming_a_missing_variable():
    from traitlets.config import Config

    c = Config()
    c.StorageMounts.mounts = MOUNTS
    with pytest.raises(SiteConfigError) as info:
        mounts_hub_config(c, {"SCRATCH_KEY": KEY})
    assert "SCRATCH_SECRET" in str(info.value)
    assert KEY not in str(info.value)


def test_wiring_adds_endpoint_scope_user_role_and_server_token_scope():
    from traitlets.config import Config

    from egi_hub.storage_mounts.api import MountsHandler

    c = Config()
    c.StorageMounts.mounts = MOUNTS
    c.JupyterHub.load_roles = [{"name": "user", "scopes": ["self", "read:groups"]}]
    c.Spawner.server_token_scopes = ["users:activity!user", "custom:egi:access-token!user"]
    mounts_hub_config(c, ENV)
    assert ("/api/egi/mounts", MountsHandler) in c.JupyterHub.extra_handlers
    assert MOUNTS_SCOPE in c.JupyterHub.custom_scopes
    [user_role] = c.JupyterHub.load_roles
    assert user_role["scopes"] == ["self", "read:groups", f"{MOUNTS_SCOPE}!user"]
    assert c.Spawner.server_token_scopes == [
        "users:activity!user",
        "custom:egi:access-token!user",
        f"{MOUNTS_SCOPE}!user",
    ]


def test_wiring_without_mounts_or_site_roles_uses_jupyterhub_defaults():
    from traitlets.config import Config

    c = Config()
    mounts_hub_config(c, {})
    assert c.JupyterHub.load_roles == [{"name": "user", "scopes": ["self", f"{MOUNTS_SCOPE}!user"]}]
    assert c.Spawner.server_token_scopes == [
        "users:activity!user",
        "access:servers!server",
        f"{MOUNTS_SCOPE}!user",
    ]


# --- the mounts document ---------------------------------------------------------


async def test_document_has_s3_keys_nfs_export_and_datahub_error_without_checkin():
    credentials = configure()
    mounts = resolved("alice", ALICE_ENT, VO_A)
    document = await credentials.document("alice", mounts, no_token)
    by_name = {m["name"]: m for m in document["mounts"]}
    assert by_name["scratch"] == {
        "name": "scratch",
        "kind": "s3",
        "path": "/s3/scratch",
        "read_only": False,
        "s3": {
            "endpoint_url": "http://127.0.0.1:9",
            "bucket": "vo.a.example-scratch",
            "prefix": "alice/",
            "region": "",
            "key": KEY,
            "secret": SECRET,
        },
    }
    assert by_name["shared"]["nfs"] == {
        "server": "nfs.example.org",
        "export": "/exports/vo.a.example",
    }
    assert by_name["datahub"]["error"] == NO_CHECKIN_LOGIN
    assert "datahub" not in by_name["datahub"]
    assert "refresh_at" not in document


async def test_another_vos_user_gets_none_of_its_mounts():
    credentials = configure()
    document = await credentials.document("bob", resolved("bob", BOB_ENT, VO_B), no_token)
    assert [m["name"] for m in document["mounts"]] == ["datahub", "shared"]
    assert document["mounts"][1]["nfs"]["export"] == "/exports/vo.b.example"
    assert SECRET not in json.dumps(document) and KEY not in json.dumps(document)


async def test_a_mount_resolved_for_another_user_is_refused():
    credentials = configure()
    with pytest.raises(ValueError, match="another user"):
        await credentials.document("bob", resolved("alice", ALICE_ENT, VO_A), no_token)


async def test_datahub_entry_has_rest_token_plain_available_spaces_and_refresh_at(onezone):
    credentials = configure()
    credentials.use_datahub_tokens(onezone.tokens)
    document = await credentials.document("alice", resolved("alice", ALICE_ENT, VO_A), checkin)
    [entry] = [m for m in document["mounts"] if m["name"] == "datahub"]
    [(token, until)] = onezone.issued.items()
    assert entry["datahub"] == {
        "onezone_url": ONEZONE,
        "token": token,
        "expires_at": int(until),
        "spaces": ["space-a"],  # '../evil' and the offline space left out
    }
    assert document["refresh_at"] == int(until) - credentials.refresh_margin
    again = await credentials.document("alice", resolved("alice", ALICE_ENT, VO_A), checkin)
    assert again == document and len(onezone.issued) == 1  # cached


async def test_onezone_down_is_an_error_entry_and_the_other_mounts_still_come(onezone, caplog):
    credentials = configure()
    credentials.use_datahub_tokens(onezone.tokens)
    onezone.down = True
    caplog.set_level(logging.DEBUG)
    document = await credentials.document("alice", resolved("alice", ALICE_ENT, VO_A), checkin)
    by_name = {m["name"]: m for m in document["mounts"]}
    assert by_name["datahub"]["error"].startswith("DataHub: ")
    assert "s3" in by_name["scratch"] and "nfs" in by_name["shared"]
    assert CHECKIN not in caplog.text and SECRET not in caplog.text


async def test_unknown_checkin_token_is_an_error_entry_without_the_token(onezone, caplog):
    credentials = configure()
    credentials.use_datahub_tokens(onezone.tokens)
    onezone.users = {}
    caplog.set_level(logging.DEBUG)
    document = await credentials.document("alice", resolved("alice", ALICE_ENT, VO_A), checkin)
    [entry] = [m for m in document["mounts"] if m["name"] == "datahub"]
    assert entry["error"].startswith("DataHub: ") and CHECKIN not in entry["error"]
    assert CHECKIN not in caplog.text


async def test_an_internal_failure_is_an_error_entry_and_logs_no_secret(caplog):
    credentials = configure()

    async def broken() -> str:
        raise RuntimeError(f"boom {SECRET}")

    credentials.datahub_tokens = None  # type: ignore[assignment]  # calling it fails
    caplog.set_level(logging.DEBUG)
    document = await credentials.document("alice", resolved("alice", ALICE_ENT, VO_A), broken)
    [entry] = [m for m in document["mounts"] if m["name"] == "datahub"]
    assert "internal error" in entry["error"]
    assert SECRET not in caplog.text and SECRET not in entry["error"]


def test_secrets_never_in_reprs():
    credentials = configure()
    assert SECRET not in repr(S3Keys(KEY, SECRET))
    assert SECRET not in repr(credentials) and KEY not in repr(credentials)
    assert SECRET not in repr(credentials.s3_keys(StorageMounts.instance().mounts[0]))


def test_s3_mount_without_keys_is_an_error_entry_not_a_crash():
    from traitlets.config import Config

    c = Config()
    c.StorageMounts.mounts = MOUNTS
    StorageMounts.instance(config=c)
    credentials = MountCredentials.instance(config=c)
    assert credentials.load_s3_keys({})  # issues: the hub would not have started


async def test_s3_without_keys_gives_an_error_entry():
    credentials = configure(env={})
    document = await credentials.document("alice", resolved("alice", ALICE_ENT, VO_A), no_token)
    [entry] = [m for m in document["mounts"] if m["name"] == "scratch"]
    assert entry["error"] == "S3: the hub has no keys for mount 'scratch' (ask the site's admins)"


# --- the spawner mixin -----------------------------------------------------------


@pytest.fixture
def alice_spawner(tmp_path):
    configure()
    with local_vo_spawner(tmp_path, "alice", ALICE_ENT, PROFILES) as spawner:
        yield spawner


async def test_admission_resolves_the_servers_mounts_and_keeps_names_only(alice_spawner):
    spawner = alice_spawner
    spawner.user_options = {"profile": "a"}
    charge = await spawner.admit()
    assert charge.vo == VO_A
    mounts = await spawner.egi_mounts()
    assert [m.name for m in mounts] == ["scratch", "datahub", "shared"]
    assert mounts[0].settings == {"bucket": "vo.a.example-scratch", "prefix": "alice/"}
    assert any("Storage: scratch (/s3/scratch)" in e["message"] for e in spawner.progress_events)
    state = spawner.get_state()
    assert state["egi_mounts"] == ["scratch", "datahub", "shared"]
    text = json.dumps(state, default=str)
    assert SECRET not in text and KEY not in text and "SCRATCH_SECRET" not in text


async def test_mounts_are_resolved_again_from_state_after_a_hub_restart(alice_spawner, tmp_path):
    spawner = alice_spawner
    spawner.user_options = {"profile": "a"}
    spawner._egi_charge = await spawner.admit()  # as start() keeps it
    state = spawner.get_state()
    state["egi_mounts"] = ["scratch"]  # as if the site added the others since
    spawner.quota.release("alice", "")
    with local_vo_spawner(tmp_path, "alice", ALICE_ENT, PROFILES) as restarted:
        restarted.load_state(state)
        assert [m.name for m in await restarted.egi_mounts()] == ["scratch"]
        restarted.clear_state()
        assert await restarted.egi_mounts() == ()
        assert "egi_mounts" not in restarted.get_state()


async def test_profile_and_vo_rules_decide_for_another_vo(tmp_path):
    configure()
    with local_vo_spawner(tmp_path, "bob", BOB_ENT, PROFILES) as spawner:
        spawner.user_options = {"profile": "b"}
        await spawner.admit()
        assert [m.name for m in await spawner.egi_mounts()] == ["datahub", "shared"]


async def test_server_env_names_the_mounts_url_only_with_mounts(alice_spawner):
    from types import SimpleNamespace

    spawner = alice_spawner
    spawner.hub = SimpleNamespace(
        api_url="http://127.0.0.1:8081/hub/api",
        base_url="/hub/",
        public_host="",
        url="http://127.0.0.1:8081/hub/",
    )
    assert MOUNTS_URL_ENV not in spawner.get_env()
    spawner.user_options = {"profile": "a"}
    await spawner.admit()
    env = spawner.get_env()
    assert env[MOUNTS_URL_ENV].endswith("/hub/api/egi/mounts")
    assert SECRET not in json.dumps(env) and KEY not in json.dumps(env)
