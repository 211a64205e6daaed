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
        "prefix": "data/",
        "credentials": {"per_vo": {VO_A: {"key": "SCRATCH_KEY", "secret": "SCRATCH_SECRET"}}},
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
        self.caveats: dict[str, list[dict]] = {}
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
            self.caveats[token] = body["caveats"]
            return httpx.Response(201, json={"token": token})
        spaces_of_user = {
            "s1": {"name": "space-a", "providers": {"p1": 1000}},
            "s2": {"name": "../evil", "providers": {"p1": 1000}},
            "s3": {"name": "offline", "providers": {}},
        }  # what Onezone's GET /user/spaces[/{id}] answers (a mount's spaces filter)
        if request.url.path == "/api/v3/onezone/user/spaces":
            return httpx.Response(200, json={"spaces": list(spaces_of_user)})
        if request.url.path.startswith("/api/v3/onezone/user/spaces/"):
            space_id = request.url.path.rsplit("/", 1)[1]
            return httpx.Response(200, json={"spaceId": space_id, **spaces_of_user[space_id]})
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
        f"StorageMounts.mounts[0].credentials.per_vo.{VO_A}.secret: the hub's environment "
        "variable SCRATCH_SECRET (mount 'scratch') is empty: set it to the S3 access secret (on "
        "Kubernetes, from a Secret)"
    ]
    issues = check_s3_environment(mounts, {})
    assert [i.path for i in issues] == [
        f"StorageMounts.mounts[0].credentials.per_vo.{VO_A}.key",
        f"StorageMounts.mounts[0].credentials.per_vo.{VO_A}.secret",
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
            "bucket": "vox2eax2eex78ample-scratch",
            "prefix": "data/",
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


async def test_datahub_entry_has_rest_token_and_refresh_at_and_no_filter(onezone):
    """Without ``spaces`` the entry names none: the notebook's datahub:// shows every
    plain-named space of Onezone's current answer (a space joined later too)."""
    credentials = configure()
    credentials.use_datahub_tokens(onezone.tokens)
    document = await credentials.document("alice", resolved("alice", ALICE_ENT, VO_A), checkin)
    [entry] = [m for m in document["mounts"] if m["name"] == "datahub"]
    [(token, until)] = onezone.issued.items()
    assert entry["datahub"] == {"onezone_url": ONEZONE, "token": token, "expires_at": int(until)}
    assert document["refresh_at"] == int(until) - credentials.refresh_margin
    again = await credentials.document("alice", resolved("alice", ALICE_ENT, VO_A), checkin)
    assert again == document and len(onezone.issued) == 1  # cached


async def test_datahub_entry_carries_the_mounts_spaces_filter(onezone):
    """The notebook's datahub:// enforces it (tests/integration/test_datahub_hostile.py)."""
    mounts = [{**MOUNTS[1], "spaces": ["space-a", "s3"]}]
    credentials = configure(mounts)
    credentials.use_datahub_tokens(onezone.tokens)
    document = await credentials.document("alice", resolved("alice", ALICE_ENT, VO_A), checkin)
    [entry] = document["mounts"]
    assert entry["datahub"]["spaces"] == ["space-a", "s3"]


async def test_two_datahub_mounts_with_different_spaces_get_different_narrowed_tokens(onezone):
    """Keyed by the mount's spaces: each mount's token reaches only its own spaces (the
    data.path caveat; tests/integration/test_datahub_tokens.py checks the provider
    enforces it), a mount without a filter gets an unnarrowed one."""
    mounts = [
        {**MOUNTS[1], "name": "only-a", "path": "/datahub/a", "spaces": ["space-a"]},
        {**MOUNTS[1], "name": "only-s2", "path": "/datahub/s2", "spaces": ["s2"]},
        {**MOUNTS[1], "name": "all", "path": "/datahub/all"},
    ]
    credentials = configure(mounts)
    credentials.use_datahub_tokens(onezone.tokens)
    document = await credentials.document("alice", resolved("alice", ALICE_ENT, VO_A), checkin)
    tokens = {m["name"]: m["datahub"]["token"] for m in document["mounts"]}
    assert len(set(tokens.values())) == 3
    caveats = {name: onezone.caveats[token] for name, token in tokens.items()}
    assert {"type": "data.path", "whitelist": ["L3Mx"]} in caveats["only-a"]  # b64("/s1")
    assert {"type": "data.path", "whitelist": ["L3My"]} in caveats["only-s2"]  # b64("/s2")
    assert {"type": "service", "whitelist": ["opw-p1"]} in caveats["only-a"]
    assert not [c for c in caveats["all"] if c["type"] in ("data.path", "service")]


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
    assert SECRET not in repr(credentials.s3_keys(StorageMounts.instance().mounts[0], VO_A))


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
    assert entry["error"] == (
        "S3: the hub has no keys for mount 'scratch' and VO 'vo.a.example' (ask the site's admins)"
    )


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
    assert mounts[0].settings == {"bucket": "vox2eax2eex78ample-scratch", "prefix": "data/"}
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


async def test_standing_follows_the_users_vos_after_admission(alice_spawner):
    """`mount_standing` (the mounts endpoint's and the sidecar renewal's check): the
    VOs of the auth state as refreshed now decide, not those of the admission."""
    from egi_hub.context import UserContext
    from egi_hub.storage_mounts.spawner import REFUSED, VO_CHANGED, mount_standing

    spawner = alice_spawner
    spawner.user_options = {"profile": "a"}
    await spawner.admit()  # the keeper may ask before start() has kept the charge
    assert spawner._egi_charge is None
    same = mount_standing(
        spawner, UserContext.from_entitlements("alice", ALICE_ENT).to_auth_state()
    )
    assert list(same.current) == ["scratch", "datahub", "shared"]
    assert [same.why_not(n) for n in same.names] == [None, None, None]
    # Left VO_A for VO_B: the VO-less datahub stays; shared is also VO_B's, but its
    # {vo} would switch to VO_B's export mid-session, so it is withdrawn too.
    moved = mount_standing(spawner, UserContext.from_entitlements("alice", BOB_ENT).to_auth_state())
    assert list(moved.current) == ["datahub"]
    assert moved.why_not("scratch") == moved.why_not("shared") == VO_CHANGED
    # In no VO at all; refused (whatever else the state says); no auth state.
    nothing = mount_standing(spawner, UserContext.from_entitlements("alice", []).to_auth_state())
    assert list(nothing.current) == ["datahub"]
    refused = mount_standing(spawner, {"refused": "x", **same.current["scratch"].settings})
    assert refused.current == {} and refused.why_not("datahub") == REFUSED
    assert list(mount_standing(spawner, None).current) == ["datahub"]


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
    # Each server its own files: named servers sharing a home never clash.
    assert env["EGI_MOUNTS_FILE"] == "~/.egi/servers/default/mounts.json"
    assert env["EGI_STORAGE_DIR"] == "~/.egi/servers/default/storage"


def test_each_server_has_its_own_mounts_file_and_storage_dir():
    from egi_hub.storage_mounts.spawner import server_storage_paths

    assert server_storage_paths("") == (
        "~/.egi/servers/default/mounts.json",
        "~/.egi/servers/default/storage",
    )
    # A server named "default" is not the default server; hostile names stay one folder.
    assert server_storage_paths("default")[0] == "~/.egi/servers/named-default/mounts.json"
    assert server_storage_paths("../x")[1] == "~/.egi/servers/named--2e.-2fx/storage"
    names = ["", "default", "a", "A", "a-b", "a/b", "../x"]
    assert len({server_storage_paths(n) for n in names}) == len(names)


FINGERPRINT = "ab" * 32


def test_the_server_token_id_is_kept_in_state_never_the_token(alice_spawner):
    spawner = alice_spawner
    spawner.api_token = "server-token-value-do-not-keep"
    # As looked up in the hub's database at start.
    spawner.egi_server_token_id, spawner.egi_server_token_fingerprint = 42, FINGERPRINT
    state = spawner.get_state()
    assert state["egi_server_token_id"] == 42
    assert state["egi_server_token_fingerprint"] == FINGERPRINT
    assert "server-token-value" not in json.dumps(state, default=str)
    spawner.clear_state()
    assert spawner.egi_server_token_id is None and "egi_server_token_id" not in spawner.get_state()
    assert spawner.egi_server_token_fingerprint is None
    spawner.load_state(state)
    assert (spawner.egi_server_token_id, spawner.egi_server_token_fingerprint) == (42, FINGERPRINT)
    spawner.load_state({"egi_server_token_id": "42"})  # not an id: ignored
    assert spawner.egi_server_token_id == 42
    # An id without a fingerprint (a state from before it was kept), or with a
    # malformed one, is not trusted.
    for bad in (
        {"egi_server_token_id": 43},
        {"egi_server_token_id": 43, "egi_server_token_fingerprint": "x"},
    ):
        spawner.clear_state()
        spawner.load_state(bad)
        assert spawner.egi_server_token_id is None


def row(token_id: int, hashed: str):
    """A stand-in for a JupyterHub ``orm.APIToken`` row (id and stored hash)."""
    from types import SimpleNamespace

    return SimpleNamespace(id=token_id, hashed=hashed)


def test_only_the_servers_own_token_matches():
    from types import SimpleNamespace

    from egi_hub.storage_mounts.api import is_server_token
    from egi_hub.storage_mounts.spawner import token_fingerprint

    server_row = row(7, "sha512:1:salt-1:hash-of-the-server-token")
    kept = token_fingerprint(server_row)
    live = SimpleNamespace(
        api_token="tok-server-1", egi_server_token_id=7, egi_server_token_fingerprint=kept
    )
    assert is_server_token(live, "tok-server-1", row(99, "x"))
    assert not is_server_token(live, "tok-server-2", server_row)  # the value decides while known
    assert not is_server_token(live, "tok-server-", server_row)
    restarted = SimpleNamespace(
        api_token="", egi_server_token_id=7, egi_server_token_fingerprint=kept
    )
    assert is_server_token(restarted, "anything", server_row)
    assert not is_server_token(restarted, "anything", row(8, server_row.hashed))
    assert not is_server_token(restarted, "anything", None)
    assert not is_server_token(SimpleNamespace(api_token=""), "x", server_row)
    # Id only, no fingerprint kept (an older state): refused.
    id_only = SimpleNamespace(
        api_token="", egi_server_token_id=7, egi_server_token_fingerprint=None
    )
    assert not is_server_token(id_only, "anything", server_row)


def test_a_reused_token_id_with_another_row_is_refused_after_a_restart():
    """SQLite hands a deleted highest id out again: the user deletes the server's token
    and mints one that gets id 7. Same id, another row (another salted hash, and
    another created time): refused."""
    from types import SimpleNamespace

    from egi_hub.storage_mounts.api import is_server_token
    from egi_hub.storage_mounts.spawner import token_fingerprint

    server_row = row(7, "sha512:1:salt-1:hash-of-the-server-token")
    restarted = SimpleNamespace(
        api_token="",
        egi_server_token_id=7,
        egi_server_token_fingerprint=token_fingerprint(server_row),
    )
    minted = row(7, "sha512:1:salt-2:hash-of-a-token-the-user-minted")
    assert not is_server_token(restarted, "the-minted-token", minted)
    assert token_fingerprint(row(7, "")) is None and token_fingerprint(None) is None


async def test_datahub_failures_are_held_per_user_and_mount(onezone):
    credentials = configure()
    credentials.use_datahub_tokens(onezone.tokens)
    calls = []
    real = onezone.tokens.credentials

    async def counting(*args, **kwargs):
        calls.append(args[0])
        return await real(*args, **kwargs)

    onezone.tokens.credentials = counting
    onezone.down = True
    mounts = resolved("alice", ALICE_ENT, VO_A)
    first = await credentials.document("alice", mounts, checkin, user_id=3)
    second = await credentials.document("alice", mounts, checkin, user_id=3)
    assert len(calls) == 1  # the second answer came from memory: Onezone not asked again
    error = next(m for m in first["mounts"] if m["name"] == "datahub")["error"]
    assert next(m for m in second["mounts"] if m["name"] == "datahub")["error"] == error
    # Another user (or the same name with another id) is not held by alice's failure.
    await credentials.document("alice", mounts, checkin, user_id=4)
    assert calls == ["alice#3", "alice#4"]
    # Once the hold ends (or is forgotten), the Onezone is asked again, and it answers.
    onezone.down = False
    credentials.forget("alice", 3)
    third = await credentials.document("alice", mounts, checkin, user_id=3)
    assert "datahub" in next(m for m in third["mounts"] if m["name"] == "datahub")
    assert len(calls) == 3


async def test_no_checkin_login_is_never_held():
    credentials = configure()
    mounts = resolved("alice", ALICE_ENT, VO_A)
    await credentials.document("alice", mounts, no_token, user_id=3)
    assert credentials._datahub_failures == {}


async def test_datahub_tokens_are_cached_by_name_and_user_id(onezone):
    credentials = configure()
    credentials.use_datahub_tokens(onezone.tokens)
    mounts = resolved("alice", ALICE_ENT, VO_A)
    first = await credentials.document("alice", mounts, checkin, user_id=3)
    again = await credentials.document("alice", mounts, checkin, user_id=3)
    recreated = await credentials.document("alice", mounts, checkin, user_id=9)

    def token(document):
        return next(m for m in document["mounts"] if m["name"] == "datahub")["datahub"]["token"]

    assert token(first) == token(again)
    assert token(recreated) != token(first)  # a new account never gets the old one's token


def test_local_spawner_with_secret_mounts_logs_one_warning(caplog):
    from traitlets.config import Config

    caplog.set_level(logging.WARNING, logger="JupyterHub")
    c = Config()
    c.StorageMounts.mounts = MOUNTS
    c.JupyterHub.spawner_class = "egi-local"
    mounts_hub_config(c, ENV)
    warnings = [r for r in caplog.records if "trusts each other" in r.getMessage()]
    assert len(warnings) == 1
    assert "'scratch', 'datahub'" in warnings[0].getMessage()
    assert "EGILocalSpawner" in warnings[0].getMessage()
    assert SECRET not in caplog.text and KEY not in caplog.text


@pytest.mark.parametrize(
    ("spawner_class", "mounts", "warned"),
    [
        ("egi-kube", MOUNTS, False),
        ("egi-local", [MOUNTS[2]], False),  # NFS only: nothing secret
        (None, MOUNTS, True),  # JupyterHub's default: LocalProcessSpawner
        ("jupyterhub.spawner.LocalProcessSpawner", MOUNTS, True),
    ],
)
def test_the_local_warning_only_for_local_spawners_and_secret_mounts(spawner_class, mounts, warned):
    from traitlets.config import Config

    from egi_hub.storage_mounts.hub import warn_if_local_secrets

    c = Config()
    if spawner_class is not None:
        c.JupyterHub.spawner_class = spawner_class
    parsed = StorageMounts(mounts=mounts).mounts
    assert warn_if_local_secrets(c, parsed) is warned
