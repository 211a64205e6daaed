"""Pure pieces of the Check-in trust rules: next URLs, trust lists, admin, refresh timing."""

from __future__ import annotations

import asyncio
import gc
import time
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tornado import web

from egi_hub.authenticator.checkin import CheckinAuthenticator
from egi_hub.authenticator.errors import IdentityMismatchError
from egi_hub.authenticator.tokens import token_audiences
from egi_hub.authenticator.urls import local_next_url
from egi_hub.config import check_site, configurable_classes

EVIL_MANAGER = "urn:mace:evil.example:group:vo.notebooks.egi.eu:role=manager#evil.example"
EGI_MANAGER = "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=manager#aai.egi.eu"
EGI_MEMBER = "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu"


@pytest.mark.parametrize(
    "value",
    [
        "/%09/evil.example",
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r/evil.example",
        "//evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "/%5Cevil.example",
        "https://evil.example/",
        "javascript:alert(1)",
        "evil.example",
        "/hub/\u202e/x",
        "/x%00",
        " /hub/home",
        "",
    ],
)
def test_next_urls_a_browser_could_read_as_another_place_are_refused(value):
    assert local_next_url(value, "/") == ""


def test_next_urls_on_this_hub_are_kept():
    assert local_next_url("/hub/home", "/") == "/hub/home"
    assert local_next_url("/user/bob@egi.eu/lab?x=1#t", "/") == "/user/bob@egi.eu/lab?x=1#t"
    assert local_next_url("/jhub/hub/spawn", "/jhub/") == "/jhub/hub/spawn"


@pytest.mark.parametrize("value", ["/other/app", "/jhub/../other", "/jhub/%2e%2e/other", "/jhubx"])
def test_next_urls_outside_the_hub_base_url_are_refused(value):
    assert local_next_url(value, "/jhub/") == ""


@given(st.text(max_size=60))
def test_a_kept_next_url_is_always_a_plain_local_path(value):
    kept = local_next_url(value, "/")
    if kept:
        assert kept.startswith("/") and not kept.startswith("//")
        assert not urlsplit(kept).netloc and not urlsplit(kept).scheme
        assert not any(c.isspace() or ord(c) < 32 or c == "\\" for c in kept)


def test_minimal_config_ignores_entitlements_from_other_authorities():
    """The documented minimal config (allowed_vos, admin_vos) and nothing else."""
    auth = CheckinAuthenticator(
        allowed_vos=["vo.notebooks.egi.eu"], admin_vos=["vo.notebooks.egi.eu:role=manager"]
    )
    evil = auth.user_context("mallory", [EVIL_MANAGER])
    assert evil.vos == ()
    assert auth.admin_for("mallory", evil) is False
    assert not auth.vo_allowed(evil)
    good = auth.user_context("bob", [EGI_MANAGER])
    assert good.vos == ("vo.notebooks.egi.eu",) and auth.admin_for("bob", good) is True


def test_admin_follows_admin_vos_both_ways_except_admin_users():
    auth = CheckinAuthenticator(
        admin_vos=["vo.notebooks.egi.eu:role=manager"], admin_users={"carol@egi.eu"}
    )
    member = auth.user_context("bob", [EGI_MEMBER])
    assert auth.admin_for("bob", member) is False  # not None: JupyterHub would keep admin
    assert auth.admin_for("carol@egi.eu", member) is True
    assert CheckinAuthenticator().admin_for("bob", member) is None  # no admin_vos: untouched


def test_trust_lists_widen_explicitly():
    auth = CheckinAuthenticator(trusted_authorities=["*"], entitlement_namespaces=["*"])
    assert auth.user_context("m", [EVIL_MANAGER]).vos == ("vo.notebooks.egi.eu",)


@pytest.mark.parametrize(
    ("settings", "path", "words"),
    [
        ({"trusted_authorities": []}, "CheckinAuthenticator.trusted_authorities", "empty"),
        (
            {"entitlement_namespaces": ["*", "x"]},
            "CheckinAuthenticator.entitlement_namespaces",
            "*",
        ),
        (
            {"token_exchange_scopes": ["self"]},
            "CheckinAuthenticator.token_exchange_scopes[0]",
            "create",
        ),
        (
            {"token_exchange_scopes": ["servers!user", "admin:users"]},
            "CheckinAuthenticator.token_exchange_scopes[1]",
            "admin",
        ),
        (
            {"token_exchange_scopes": ["tokens!user"]},
            "CheckinAuthenticator.token_exchange_scopes[0]",
            "tokens",
        ),
        (
            {"token_exchange_clients": ["*"]},
            "CheckinAuthenticator.token_exchange_clients[0]",
            "wildcard",
        ),
        ({"allowed_vos": ["vo:admin"]}, "CheckinAuthenticator.allowed_vos[0]", "role="),
    ],
)
def test_unsafe_settings_stop_the_config_check_naming_the_key(settings, path, words):
    issues = check_site({"CheckinAuthenticator": settings}, configurable_classes())
    assert [i.path for i in issues] == [path]
    assert words in issues[0].message


def test_exchange_defaults_are_narrow_and_accept_only_the_hub():
    auth = CheckinAuthenticator(client_id="hub")
    assert not any(
        s.split("!")[0] in ("tokens", "inherit", "self") for s in auth.token_exchange_scopes
    )
    assert all(s.endswith("!user") for s in auth.token_exchange_scopes)
    assert auth.exchange_clients == {"hub"}
    assert CheckinAuthenticator(client_id="hub", token_exchange_clients=["p"]).exchange_clients == {
        "hub",
        "p",
    }


def test_vo_rules_are_parsed_once_into_values():
    auth = CheckinAuthenticator(allowed_vos=["vo.access.egi.eu/training", "vo.x:role=manager"])
    assert [str(r) for r in auth.allowed_vos] == ["vo.access.egi.eu/training", "vo.x:role=manager"]
    assert auth.allowed_vos[0].groups == ("vo.access.egi.eu", "training")


def test_token_audiences_read_aud_azp_and_client_id():
    assert token_audiences({"aud": "a"}) == {"a"}
    assert token_audiences({"aud": ["a", "b"], "azp": "c"}) == {"a", "b", "c"}
    assert token_audiences({"client_id": "d", "aud": None}) == {"d"}
    assert token_audiences({"aud": [1, None]}) == set()


def test_twenty_second_tokens_with_a_sixty_second_leeway_are_not_always_expiring():
    auth = CheckinAuthenticator(token_refresh_leeway=60)
    now = time.time()
    fresh = {"issued_at": now, "expires_at": now + 20}
    assert not auth.needs_refresh(fresh, now)
    assert not auth.needs_refresh(fresh, now + 9)
    assert auth.needs_refresh(fresh, now + 10)


class StoredUser:
    """A hub user as the authenticator sees it, with an expired token and no refresh."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.admin = False
        self.auth_state = {"access_token": "a", "expires_at": time.time() - 1, "sub": name}

    async def get_auth_state(self):
        await asyncio.sleep(0)
        return self.auth_state

    async def save_auth_state(self, state):
        self.auth_state = state


async def test_refresh_locks_do_not_pile_up():
    auth = CheckinAuthenticator()
    results = await asyncio.gather(*(auth.refresh_user(StoredUser(f"u{i}")) for i in range(200)))
    assert results == [False] * 200  # no refresh token: login needed
    gc.collect()
    assert len(auth._refresh_locks) == 0


@pytest.mark.parametrize(
    "value", ["/.//evil.example", "//a%EF%BC%8Fb", "/x//y", "/a/./b", "/a/%2E/b"]
)
def test_next_urls_with_empty_or_dot_segments_or_odd_hosts_are_refused(value):
    assert local_next_url(value, "/") == ""


def test_unfiltered_exchange_scopes_are_refused():
    issues = check_site(
        {"CheckinAuthenticator": {"token_exchange_scopes": ["servers"]}}, configurable_classes()
    )
    assert [i.path for i in issues] == ["CheckinAuthenticator.token_exchange_scopes[0]"]
    assert "servers!user" in issues[0].message
    assert "access:servers!user" not in CheckinAuthenticator().token_exchange_scopes


def test_refusals_hold_for_api_tokens_and_existing_users_are_not_allowed_by_name():
    """allowed_users beside allowed_vos: JupyterHub would add every user it creates to
    allowed_users (allow_existing_users), and the VO rules would never refuse anyone."""
    auth = CheckinAuthenticator(allowed_users={"carol"}, allowed_vos=["vo.notebooks.egi.eu"])
    assert auth.auth_refresh_strict is True
    assert auth.allow_existing_users is False

    class NewUser:
        name = "bob"

    auth.add_user(NewUser())
    assert "bob" not in auth.allowed_users
    with pytest.raises(web.HTTPError) as refused:
        auth.check_allowed("bob", {"auth_state": {"entitlements": []}})
    assert refused.value.status_code == 403
    assert auth.check_allowed("carol", {"auth_state": {}})


class Snapshot(StoredUser):
    """A user with no tokens (logged out, or from the token exchange) and the VOs
    Check-in confirmed ``age`` seconds ago."""

    def __init__(self, name: str, age: float) -> None:
        super().__init__(name)
        self.auth_state = {"entitlements": [EGI_MEMBER], "entitlements_at": time.time() - age}


API_REQUEST = SimpleNamespace(_token_authenticated=True)
BROWSER_REQUEST = SimpleNamespace(_token_authenticated=False)


async def test_without_tokens_the_last_confirmed_vos_count_for_api_tokens_a_limited_time():
    auth = CheckinAuthenticator(allowed_vos=["vo.notebooks.egi.eu"], entitlements_max_age=3600)
    assert await auth.refresh_user(Snapshot("recent", 60), API_REQUEST) is True
    assert await auth.refresh_user(Snapshot("stale", 7200), API_REQUEST) is False
    # A browser without Check-in tokens (another device, after a logout) logs in again.
    assert await auth.refresh_user(Snapshot("recent", 60), BROWSER_REQUEST) is False
    never = StoredUser("never")
    never.auth_state = None  # created by an admin, never logged in
    assert await auth.refresh_user(never, API_REQUEST) is False
    refused = StoredUser("refused")
    refused.auth_state = {"refused": "no longer a member", **Snapshot("x", 1).auth_state}
    assert await auth.refresh_user(refused, API_REQUEST) is False


async def test_a_live_access_token_without_refresh_token_keeps_the_browser_session():
    """Providers that give no refresh token: the session lasts as the access token."""
    auth = CheckinAuthenticator(allowed_vos=["vo.notebooks.egi.eu"])
    user = Snapshot("bob", 60)
    user.auth_state.update(access_token="t", expires_at=time.time() + 600)
    assert await auth.refresh_user(user, BROWSER_REQUEST) is True
    user.auth_state["expires_at"] = time.time() - 1
    assert await auth.refresh_user(user, BROWSER_REQUEST) is False


class BoundUser:
    def __init__(self, user_info, auth_state):
        self.user_info = user_info
        self.auth_state = auth_state

    async def get_auth_state(self):
        return self.auth_state


class Lookup:
    """The part of a hub handler that check_identity uses."""

    def __init__(self, users):
        self.users = users
        self.lookups = 0

    def find_user(self, name):
        self.lookups += 1
        return self.users.get(name)


async def test_identity_binding_from_user_info_or_an_older_auth_state():
    auth = CheckinAuthenticator()
    handler = Lookup(
        {
            "a": BoundUser({"iss": "I", "sub": "s-a"}, None),
            "old": BoundUser(None, {"sub": "s-old", "access_token": "t"}),  # before user_info
            "fresh": BoundUser(None, None),  # created by an admin
        }
    )
    await auth.check_identity(handler, "a", "I", "s-a")
    for name, issuer, sub in [("a", "I", "s-b"), ("a", "J", "s-a"), ("old", "I", "s-x")]:
        with pytest.raises(IdentityMismatchError):
            await auth.check_identity(handler, name, issuer, sub)
    await auth.check_identity(handler, "old", "I", "s-old")
    await auth.check_identity(handler, "fresh", "I", "anyone")
    # A confirmed binding is remembered: the same identity again asks no database.
    before = handler.lookups
    await auth.check_identity(handler, "a", "I", "s-a")
    assert handler.lookups == before
    # Until the account is deleted.
    auth.delete_user(type("U", (), {"name": "a"})())
    await auth.check_identity(Lookup({}), "a", "I", "s-new")


async def test_two_identities_racing_for_one_new_account_do_not_both_get_it():
    auth = CheckinAuthenticator()
    nobody = Lookup({})  # the account does not exist yet: both logins are first logins
    await auth.check_identity(nobody, "alice@egi.eu", "I", "s-first")
    with pytest.raises(IdentityMismatchError):
        await auth.check_identity(nobody, "alice@egi.eu", "I", "s-second")
    await auth.check_identity(nobody, "alice@egi.eu", "I", "s-first")  # the first goes on


@pytest.mark.parametrize(
    "value",
    ["///evil.example/phish", "////evil.example", "//", "//?x", "//#x", "/%2F%2Fevil", "/a//"],
)
def test_next_urls_starting_with_several_slashes_are_refused(value):
    assert local_next_url(value, "/") == ""
    assert local_next_url(value, "/jhub/") == ""


@pytest.mark.parametrize(
    "scope",
    [
        "shares!user",
        "users:shares!user",
        " tokens!user",
        "Tokens!user",
        "!user",
        "read:users!nonsense",
        "read:users!user=other",
        "servers!server",
        "custom:egi:access-token!user",
    ],
)
def test_exchange_scopes_come_from_an_allow_list_with_the_user_filter(scope):
    issues = check_site(
        {"CheckinAuthenticator": {"token_exchange_scopes": [scope]}}, configurable_classes()
    )
    assert [i.path for i in issues] == ["CheckinAuthenticator.token_exchange_scopes[0]"]


class StartingSpawner:
    """A server still starting when its user is refused (JupyterHub cannot stop a
    pending spawn): stopped once it is up."""

    def __init__(self) -> None:
        self._spawn_future = asyncio.get_running_loop().create_future()
        self.active = True


async def test_a_server_starting_at_a_refusal_is_stopped_once_up():
    auth = CheckinAuthenticator()
    spawner = StartingSpawner()
    stopped = []

    class Handler:
        async def stop_single_user(self, user, name):
            assert spawner._spawn_future.done(), "stopped while still pending"
            stopped.append(name)

    task = asyncio.ensure_future(
        auth._stop_server(Handler(), SimpleNamespace(name="bob"), "gpu", spawner, "why")
    )
    await asyncio.sleep(0)
    assert stopped == []
    spawner._spawn_future.set_result(None)
    await task
    assert stopped == ["gpu"]


def test_absurd_expiries_are_unknown_not_a_crash():
    from egi_hub.authenticator.tokens import access_token_expiry

    for value in (10**400, float("nan"), float("inf"), -5, True):
        assert access_token_expiry({"access_token": "opaque", "expires_in": value}, 0) is None
