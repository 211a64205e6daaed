"""The renewal of DataHub sidecar tokens (storage_mounts/kube_renewal.py), in the unit
lane: the Kubernetes API, the token cache, the hub user and its authenticator are
stand-ins here (no sockets); tests/integration/test_storage_kube.py runs the same task
against kmock and the Onedata stand-in.

What is pinned here: a refresh refused by Check-in (revoked refresh token) keeps the old
token and retries until the user logs in again; a refused user or one who left the VO
gets no renewal ever; the task only ever patches its own Secret's key, with the uid it
read in the patch; a Secret that is gone, not this server's (labels) or made again by
someone else (another uid) ends it, unpatched; a bug never escapes into the hub and never logs a
message (which could hold a secret); retries are bounded.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import time
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes_asyncio.client.rest import ApiException
from traitlets.config import Config

from egi_hub.context import UserContext
from egi_hub.spawner.quota import Charge
from egi_hub.storage_mounts.credentials import MountCredentials
from egi_hub.storage_mounts.datahub_tokens import (
    DatahubCredentialError,
    DatahubCredentials,
    DatahubScope,
    DatahubToken,
    DatahubUse,
)
from egi_hub.storage_mounts.kube import (
    STORAGE_COMPONENT,
    TOKEN_EXPIRY_ANNOTATION,
    secret_name_for,
)
from egi_hub.storage_mounts.kube_renewal import SidecarTokenRenewal, read_expiry
from egi_hub.storage_mounts.mounts import StorageMounts

VO = "vo.notebooks.egi.eu"
NOTEBOOKS = f"urn:mace:egi.eu:group:{VO}:role=member#aai.egi.eu"
OTHER = "urn:mace:egi.eu:group:vo.access.egi.eu:role=member#aai.egi.eu"
CHECKIN = "checkin-token-never-logged-7f"
SECRET_NAME = secret_name_for("jupyter-alice")
BOB_SECRET = secret_name_for("jupyter-bob")
OWNER = {"hub.jupyter.org/username": "alice", "hub.jupyter.org/servername": ""}
CONFIG = Config({"KubeMounts": {"token_retry_min": 0.02, "token_retry_max": 0.08}})
MOUNTS = [
    {
        "name": "datahub",
        "kind": "datahub",
        "onezone_url": "https://onezone.example.org",
        "vos": [VO],
        "path": "/datahub",
    }
]


_uids = (f"uid-{n}" for n in itertools.count(1))


class Secrets:
    """Stand-in for the CoreV1Api's Secret calls (merge patch as the API server does:
    each Secret has a uid, and a patch naming another uid is refused with 409)."""

    def __init__(self, **secrets: dict[str, Any]) -> None:
        for secret in secrets.values():
            secret["metadata"].setdefault("uid", next(_uids))
        self.secrets = secrets
        self.patches: list[tuple[str, dict[str, Any]]] = []
        self.refused: list[tuple[str, dict[str, Any]]] = []
        self.fail_patches = 0

    def replace(self, name: str, secret: dict[str, Any]) -> None:
        """Someone deletes the Secret and makes one of the same name (a new uid)."""
        secret["metadata"]["uid"] = next(_uids)
        self.secrets[name] = secret

    async def read_namespaced_secret(self, name: str, namespace: str) -> Any:
        secret = self.secrets.get(name)
        if secret is None:
            raise ApiException(status=404, reason="Not Found")
        meta = secret["metadata"]
        return SimpleNamespace(
            metadata=SimpleNamespace(
                labels=meta.get("labels"), annotations=meta.get("annotations"), uid=meta["uid"]
            ),
            data=dict(secret.get("data") or {}),
        )

    async def patch_namespaced_secret(self, name, namespace, body, _content_type=None) -> None:
        assert _content_type == "application/merge-patch+json"
        if name not in self.secrets:
            raise ApiException(status=404, reason="Not Found")
        if self.fail_patches:
            self.fail_patches -= 1
            raise ApiException(status=500, reason="Internal Server Error")
        secret = self.secrets[name]
        uid = body.get("metadata", {}).get("uid")
        if uid is not None and uid != secret["metadata"]["uid"]:
            self.refused.append((name, body))
            raise ApiException(status=409, reason="Conflict")
        self.patches.append((name, body))
        secret["data"].update(body.get("data", {}))
        secret["metadata"].setdefault("annotations", {}).update(
            body.get("metadata", {}).get("annotations", {})
        )

    def token(self, name: str = SECRET_NAME) -> str:
        return base64.b64decode(self.secrets[name]["data"]["datahub-datahub"]).decode()


class Tokens:
    """Stand-in for the hub's token cache: each call issues a new token (``lifetime``
    seconds), or fails as told: ``fail`` raises, ``stale`` hands back the last token
    (what the cache does while its token is valid and Onezone is down)."""

    def __init__(self, lifetime: float = 0.3, renew_before: float = 0.25) -> None:
        self.lifetime, self.renew_before = lifetime, renew_before
        self.issued: list[tuple[str, str, DatahubToken]] = []
        self.fail: DatahubCredentialError | Exception | None = None
        self.stale = False
        self.calls = 0

    def first(self, user: str = "alice#7") -> DatahubToken:
        token = DatahubToken("token-0", DatahubUse.ONECLIENT, False, time.time() + self.lifetime)
        self.issued.append((user, "", token))
        return token

    async def credentials(self, user, checkin, use, read_only, *, spaces) -> DatahubCredentials:
        self.calls += 1
        self.spaces = tuple(spaces)  # the mount's filter: the token is narrowed to it
        assert use == DatahubUse.ONECLIENT
        if self.fail is not None:
            raise self.fail
        if self.stale and self.issued:
            token = self.issued[-1][2]
        else:
            value = f"token-{len(self.issued)}-of-{user}"
            token = DatahubToken(value, use, read_only, time.time() + self.lifetime)
            self.issued.append((user, checkin, token))
        return DatahubCredentials(token, DatahubScope(None, False, ()))


class Authenticator:
    """Stand-in: ``refresh_user`` answers ``answer`` (False: the refresh token was revoked)."""

    def __init__(self) -> None:
        self.answer: Any = True
        self.calls = 0

    async def refresh_user(self, user, handler=None) -> Any:
        assert handler is None
        self.calls += 1
        return self.answer


class User:
    def __init__(self, entitlements=(NOTEBOOKS,), token: str | None = CHECKIN) -> None:
        self.name, self.id = "alice", 7
        self.authenticator = Authenticator()
        self.state = UserContext.from_entitlements("alice", list(entitlements)).to_auth_state()
        if token:
            self.state["access_token"] = token

    async def get_auth_state(self) -> dict[str, Any]:
        return dict(self.state)


def storage_secret(token: DatahubToken | None, labels: dict | None = None) -> dict:
    annotations = {}
    if token is not None:
        annotations[TOKEN_EXPIRY_ANNOTATION] = json.dumps({"datahub-datahub": token.valid_until})
    value = token.token if token is not None else "token-0"
    return {
        "metadata": {
            "labels": {"app.kubernetes.io/component": STORAGE_COMPONENT, **OWNER}
            if labels is None
            else labels,
            "annotations": annotations,
        },
        "data": {"datahub-datahub": base64.b64encode(value.encode()).decode()},
    }


@pytest.fixture
def tokens(monkeypatch):
    StorageMounts.clear_instance()
    MountCredentials.clear_instance()
    StorageMounts.instance().mounts = MOUNTS
    made = Tokens()
    monkeypatch.setattr(MountCredentials, "datahub_tokens", lambda self, mount: made)
    yield made
    StorageMounts.clear_instance()
    MountCredentials.clear_instance()


def server(api: Secrets, user: User | None = None) -> SimpleNamespace:
    return SimpleNamespace(
        api=api,
        namespace="default",
        pod_name="jupyter-alice",
        name="",
        user=user or User(),
        config=CONFIG,
        k8s_api_request_timeout=5,
        _egi_mount_names=("datahub",),
        _egi_charge=Charge(user="alice", server="", vo=VO, profile="small"),
        _egi_owner_labels=lambda: dict(OWNER),
    )


async def until(condition, within: float = 10.0) -> Any:
    deadline = time.monotonic() + within
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out waiting for a condition"
        await asyncio.sleep(0.005)
    return value


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records]


async def test_renews_only_its_own_key_of_its_own_secret(tokens):
    first = tokens.first()
    other = storage_secret(DatahubToken("bobs-token", DatahubUse.ONECLIENT, False, 9e9))
    api = Secrets(**{SECRET_NAME: storage_secret(first), BOB_SECRET: other})
    spawner = server(api)
    renewal = SidecarTokenRenewal(spawner)
    renewal.start()
    await until(lambda: len(api.patches) >= 2)
    await renewal.stop()
    assert {name for name, _ in api.patches} == {SECRET_NAME}
    for _, body in api.patches:
        assert set(body["data"]) == {"datahub-datahub"}
        assert set(body["metadata"]["annotations"]) == {TOKEN_EXPIRY_ANNOTATION}
        assert set(body["metadata"]) == {"annotations", "uid"}
    assert api.token(BOB_SECRET) == "bobs-token"
    uid = api.secrets[SECRET_NAME]["metadata"]["uid"]
    assert all(body["metadata"]["uid"] == uid for _, body in api.patches)
    assert api.token() != "token-0"
    # Asked for alice (name and id) with her own fresh Check-in token, after a refresh.
    assert {(u, c) for u, c, _ in tokens.issued[1:]} == {("alice#7", CHECKIN)}
    assert spawner.user.authenticator.calls >= 2
    expiry = read_expiry(api.secrets[SECRET_NAME]["metadata"]["annotations"])
    assert expiry == {"datahub-datahub": int(tokens.issued[-1][2].valid_until)}
    assert not renewal.running


async def test_revoked_refresh_token_keeps_the_old_token_and_retries_bounded(tokens, caplog):
    caplog.set_level(logging.INFO)
    api = Secrets(**{SECRET_NAME: storage_secret(tokens.first())})
    spawner = server(api)
    spawner.user.authenticator.answer = False  # Check-in refused the refresh
    renewal = SidecarTokenRenewal(spawner)
    renewal.start()
    await until(lambda: len([m for m in messages(caplog) if "not renewed (" in m]) >= 4)
    assert api.patches == [] and tokens.calls == 0
    line = next(m for m in messages(caplog) if "not renewed (" in m)
    assert "the Check-in session has ended: the user must log in again" in line
    assert "the current one stays" in line and "next try in" in line
    # The user logs in again: the next retry renews.
    spawner.user.authenticator.answer = True
    await until(lambda: api.patches)
    await renewal.stop()
    assert CHECKIN not in caplog.text and "token-0" not in caplog.text
    assert not any(value.token in caplog.text for _, _, value in tokens.issued)


async def test_onezone_down_is_retried_and_the_still_valid_token_stays(tokens, caplog):
    tokens.lifetime, tokens.renew_before = 30, 29.9  # the window opens at once
    api = Secrets(**{SECRET_NAME: storage_secret(tokens.first())})
    tokens.stale = True  # the cache hands back its still-valid token: no new one
    renewal = SidecarTokenRenewal(server(api))
    renewal.start()
    await until(lambda: len([m for m in messages(caplog) if "not renewed (" in m]) >= 3)
    assert api.patches == [] and api.token() == "token-0"
    assert "Onezone issued no new token" in messages(caplog)[0]
    tokens.stale = False
    await until(lambda: api.patches)
    await renewal.stop()


async def test_refused_user_or_user_who_left_the_vo_is_never_renewed(tokens, caplog):
    for user, why in (
        (User(entitlements=(OTHER,)), "VO membership changed"),
        (User(), "the hub refused this user"),
    ):
        if why.startswith("the hub refused"):
            user.state = {"refused": "no longer a member of an allowed VO"}
        caplog.clear()
        api = Secrets(**{SECRET_NAME: storage_secret(tokens.first())})
        renewal = SidecarTokenRenewal(server(api, user))
        renewal.start()
        await until(lambda r=renewal: not r.running)
        assert api.patches == [] and tokens.calls == 0
        (line,) = [m for m in messages(caplog) if "not renewed any more" in m]
        assert why in line


async def test_a_gone_or_foreign_secret_ends_the_task(tokens, caplog):
    caplog.set_level(logging.INFO)
    renewal = SidecarTokenRenewal(server(Secrets()))
    renewal.start()
    await until(lambda: not renewal.running)
    assert any("its storage Secret is gone" in m for m in messages(caplog))
    foreign = storage_secret(tokens.first(), labels={"app": "something-else"})
    api = Secrets(**{SECRET_NAME: foreign})
    renewal = SidecarTokenRenewal(server(api))
    renewal.start()
    await until(lambda: not renewal.running)
    assert api.patches == [] and tokens.calls == 0


@pytest.mark.parametrize(
    "labels",
    [
        {"app.kubernetes.io/component": STORAGE_COMPONENT},  # a storage Secret, whose?
        {  # another user's storage Secret under this server's name
            "app.kubernetes.io/component": STORAGE_COMPONENT,
            "hub.jupyter.org/username": "mallory",
            "hub.jupyter.org/servername": "",
        },
        {**OWNER},  # the owner labels without the component label
    ],
)
async def test_a_secret_not_labelled_as_this_servers_is_never_renewed(tokens, caplog, labels):
    api = Secrets(**{SECRET_NAME: storage_secret(tokens.first(), labels=labels)})
    renewal = SidecarTokenRenewal(server(api))
    renewal.start()
    await until(lambda: not renewal.running)
    assert api.patches == [] and api.refused == [] and tokens.calls == 0
    (line,) = [m for m in messages(caplog) if "no longer this server's" in m]
    assert SECRET_NAME in line


@pytest.mark.parametrize("same_labels", [True, False])
async def test_a_secret_made_again_by_someone_else_is_never_patched(tokens, caplog, same_labels):
    """The Secret is deleted and made again under the same name while the task waits
    (same labels, so only the uid tells them apart; or other labels): the patch that
    carries the first uid is refused, the task reads the Secret again and ends, with
    one log line and the newcomer's data untouched."""
    api = Secrets(**{SECRET_NAME: storage_secret(tokens.first())})
    renewal = SidecarTokenRenewal(server(api))
    renewal.start()
    await until(lambda: api.patches)  # running, and it renewed its own once
    labels = None if same_labels else {"app.kubernetes.io/component": STORAGE_COMPONENT}
    intruder = storage_secret(DatahubToken("mallorys", DatahubUse.ONECLIENT, False, 1), labels)
    api.replace(SECRET_NAME, intruder)
    await until(lambda: not renewal.running)
    assert api.token() == "mallorys" and len(api.patches) == 1
    assert len(api.refused) == 1  # the one attempt the uid stopped
    (line,) = [m for m in messages(caplog) if "no longer this server's" in m]
    assert "made again by someone else" in line
    assert not any(value.token in caplog.text for _, _, value in tokens.issued)


async def test_a_refused_patch_of_its_own_secret_is_an_ordinary_failure(tokens, caplog):
    """A 409 on the Secret that is still the task's own (same uid and labels) is not a
    replacement: retried, and the task goes on."""
    api = Secrets(**{SECRET_NAME: storage_secret(tokens.first())})
    real_patch = api.patch_namespaced_secret
    conflicts = [1]

    async def conflicting(name, namespace, body, _content_type=None):
        if conflicts:
            conflicts.pop()
            raise ApiException(status=409, reason="Conflict")
        return await real_patch(name, namespace, body, _content_type=_content_type)

    api.patch_namespaced_secret = conflicting
    renewal = SidecarTokenRenewal(server(api))
    renewal.start()
    await until(lambda: api.patches)
    await renewal.stop()
    assert any("Kubernetes API: HTTP 409" in m for m in messages(caplog))
    assert not any("no longer this server's" in m for m in messages(caplog))


async def test_secret_deleted_while_running_ends_the_task(tokens):
    api = Secrets(**{SECRET_NAME: storage_secret(tokens.first())})
    renewal = SidecarTokenRenewal(server(api))
    renewal.start()
    await until(lambda: api.patches)
    del api.secrets[SECRET_NAME]  # the server stopped under it
    await until(lambda: not renewal.running)
    assert renewal._task.exception() is None


async def test_a_failed_patch_is_retried_with_the_token_already_issued(tokens, caplog):
    api = Secrets(**{SECRET_NAME: storage_secret(tokens.first())})
    api.fail_patches = 2
    renewal = SidecarTokenRenewal(server(api))
    renewal.start()
    await until(lambda: api.patches)
    await renewal.stop()
    lines = [m for m in messages(caplog) if "not renewed (" in m]
    assert len(lines) == 2 and "Kubernetes API: HTTP 500" in lines[0]


async def test_a_bug_never_escapes_and_never_logs_its_message(tokens, caplog):
    tokens.fail = RuntimeError(f"boom {CHECKIN}")
    api = Secrets(**{SECRET_NAME: storage_secret(tokens.first())})
    renewal = SidecarTokenRenewal(server(api))
    renewal.start()
    await until(lambda: tokens.calls >= 2)
    await renewal.stop()
    assert "RuntimeError" in caplog.text and CHECKIN not in caplog.text
    assert not renewal.running


async def test_unknown_expiry_renews_at_once_and_stop_is_clean(tokens):
    tokens.renew_before = 0  # a known token would wait its whole lifetime
    api = Secrets(**{SECRET_NAME: storage_secret(None)})  # no annotation (older hub)
    renewal = SidecarTokenRenewal(server(api))
    renewal.start()
    renewal.start()  # once only
    await until(lambda: api.patches)
    task = renewal._task
    await renewal.stop()
    await renewal.stop()
    assert task.cancelled() and len(api.patches) == 1


def test_backoff_doubles_within_bounds():
    renewal = SidecarTokenRenewal(server(Secrets()))
    delays = [renewal._backoff(n) for n in range(1, 8)]
    assert 0.016 <= delays[0] <= 0.02
    assert all(d <= 0.08 for d in delays) and delays[-1] >= 0.064


@pytest.mark.parametrize(
    "raw",
    [None, "", "not json", "[1, 2]", '{"datahub-x": "soon"}', '{"datahub-x": true}'],
)
def test_hostile_expiry_annotations_are_ignored(raw):
    annotations = {} if raw is None else {TOKEN_EXPIRY_ANNOTATION: raw}
    assert read_expiry(annotations) == {}
    assert read_expiry({TOKEN_EXPIRY_ANNOTATION: '{"datahub-x": 12.5}'}) == {"datahub-x": 12.5}


async def test_stop_ends_the_task_even_if_a_cancellation_is_swallowed(tokens):
    """Code the task awaits may turn a cancellation into an error of its own (a stop
    once hung in the kmock integration test with the task still renewing, its
    cancellation lost in the Onezone exchange): the task would retry; stop cancels
    again until it has ended."""
    entered = asyncio.Event()

    async def swallowing(user, checkin, use, read_only, spaces=None):
        tokens.calls += 1
        entered.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            raise DatahubCredentialError("Onezone at x cannot be reached", "unreachable") from None

    tokens.credentials = swallowing
    api = Secrets(**{SECRET_NAME: storage_secret(tokens.first())})
    renewal = SidecarTokenRenewal(server(api))
    renewal.start()
    task = renewal._task
    await asyncio.wait_for(entered.wait(), 10)
    await asyncio.wait_for(renewal.stop(), 10)
    assert task.done() and api.patches == []
