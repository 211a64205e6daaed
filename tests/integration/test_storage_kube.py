"""EGIKubeSpawner with storage mounts against kmock, a Kubernetes API emulator (a
stand-in: no cluster runs here; tests.kube adds what an API server and a kubelet
would): a spawn creates the storage Secret, then the pod with the NFS volume and the
oneclient sidecar; a stop deletes the Secret. Every manifest passes
kubernetes-validate --strict."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import shutil
import time

import httpx
import kubernetes_validate
import pytest
from kmock import ResourceInfo, action
from traitlets.config import Config

from egi_hub.context import UserContext
from egi_hub.spawner.quota import QuotaPolicy
from egi_hub.storage_mounts.credentials import MountCredentials
from egi_hub.storage_mounts.datahub_tokens import (
    DatahubCredentialError,
    DatahubCredentials,
    DatahubScope,
    DatahubSpace,
    DatahubSupport,
    DatahubToken,
    DatahubTokens,
    DatahubUse,
)
from egi_hub.storage_mounts.kube import ONECLIENT_SCRIPT, secret_name_for
from egi_hub.storage_mounts.mounts import StorageMounts
from tests.integration.test_kube_spawner import pods, spawner
from tests.kube import kubernetes
from tests.onedata_standin import start_onedata_standin

TOKEN = "oneclient-token-of-alice"
MOUNTS = [
    {
        "name": "shared",
        "kind": "nfs",
        "server": "nfs.example.org",
        "export": "/exports/{vo}",
        "path": "/nfs/shared",
        "read_only": True,
    },
    {
        "name": "datahub",
        "kind": "datahub",
        "onezone_url": "https://datahub.example.org",
        "path": "/datahub",
    },
]


class FixedTokens:
    """In place of the hub's DatahubTokens (tested against the Onedata stand-in in its
    own tests): hands out one oneclient token, and records what was asked."""

    def __init__(self, fail: bool = False) -> None:
        self.asked: list[tuple] = []
        self.fail = fail

    async def credentials(self, user, checkin_token, use, read_only, spaces=()):
        self.asked.append((user, await checkin_token(), use, read_only))
        if self.fail:
            raise DatahubCredentialError(
                "Onezone at https://datahub.example.org did not answer (connection refused)",
                "unreachable",
            )
        support = DatahubSupport("p1", "p1", "p1.example.org", "21.02.5", False)
        scope = DatahubScope(None, False, (DatahubSpace("sp1", "space-a", False, (support,)),))
        return DatahubCredentials(DatahubToken(TOKEN, use, read_only, time.time() + 3600), scope)


@pytest.fixture(autouse=True)
def site(monkeypatch):
    QuotaPolicy.clear_instance()
    StorageMounts.clear_instance()
    MountCredentials.clear_instance()
    StorageMounts.instance().mounts = MOUNTS
    tokens = FixedTokens()
    monkeypatch.setattr(MountCredentials, "datahub_tokens", lambda self, mount: tokens)
    yield tokens
    QuotaPolicy.clear_instance()
    StorageMounts.clear_instance()
    MountCredentials.clear_instance()


def secrets(api) -> list:
    return [o for (r, _, _), o in api.objects.items() if r.plural == "secrets" and not o.deleted]


def declare_secrets(api) -> None:
    api.resources["v1/secrets"] = ResourceInfo(
        namespaced=True,
        kind="Secret",
        verbs={"list", "watch", "get", "create", "delete", "patch", "update"},
    )


def user_with_checkin_token(s, token="checkin-access-token"):
    s.user._auth_state = {**s.user._auth_state, "access_token": token}


async def test_spawn_creates_the_secret_and_the_pod_stop_deletes_it_kmock_emulator(tmp_path, site):
    async with kubernetes(tmp_path) as api:
        declare_secrets(api)
        s = spawner("alice", {"profile": "small"})
        user_with_checkin_token(s)
        await s.start()
        assert site.asked == [("alice#1", "checkin-access-token", DatahubUse.ONECLIENT, False)]
        (pod,) = pods(api)
        (secret,) = secrets(api)
        spec = pod["spec"]
        assert secret["metadata"]["name"] == secret_name_for(s.pod_name)
        assert base64.b64decode(secret["data"]["datahub-datahub"]).decode() == TOKEN
        assert secret["metadata"]["ownerReferences"] == [
            {"apiVersion": "v1", "kind": "Pod", "name": s.pod_name, "uid": pod["metadata"]["uid"]}
        ]
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["mount-shared"]["nfs"] == {
            "server": "nfs.example.org",
            "path": "/exports/vo.notebooks.egi.eu",
            "readOnly": True,
        }
        assert volumes["oneclient-token-datahub"]["secret"]["secretName"] == secret_name_for(
            s.pod_name
        )
        notebook, sidecar = spec["containers"]
        assert sidecar["name"] == "oneclient-datahub"
        assert {
            m["mountPath"]: m.get("mountPropagation")
            for m in notebook["volumeMounts"]
            if m["name"].startswith("mount-")
        } == {"/nfs/shared": None, "/datahub": "HostToContainer"}
        assert "oneclient-token-datahub" not in json.dumps(notebook)
        assert TOKEN not in json.dumps(pod.raw) and "checkin-access-token" not in json.dumps(
            pod.raw
        )
        for manifest in (pod, secret):
            stored = json.loads(json.dumps(manifest.raw))
            clean = {k: v for k, v in stored.items() if k != "status"}
            for version in ("1.29.0", "1.33.0"):
                kubernetes_validate.validate(clean, version, strict=True)
        await s.stop()
        assert pods(api) == [] and secrets(api) == []


async def test_onezone_down_still_starts_without_sidecar_kmock_emulator(tmp_path, site):
    site.fail = True
    async with kubernetes(tmp_path) as api:
        declare_secrets(api)
        s = spawner("bob", {"profile": "small"})
        user_with_checkin_token(s)
        await s.start()
        (pod,) = pods(api)
        assert [c["name"] for c in pod["spec"]["containers"]] == ["notebook"]
        assert secrets(api) == []
        assert "mount-shared" in json.dumps(pod["spec"]["volumes"])
        await s.stop()
        assert pods(api) == []


async def test_no_checkin_token_no_sidecar_and_no_secret_kmock_emulator(tmp_path, site):
    async with kubernetes(tmp_path) as api:
        declare_secrets(api)
        s = spawner("carl", {"profile": "small"})  # dev login: no Check-in token
        await s.start()
        assert site.asked == []
        assert [c["name"] for c in pods(api)[0]["spec"]["containers"]] == ["notebook"]
        assert secrets(api) == []
        assert s._egi_renewal is None  # no sidecar: nothing to renew
        await s.stop()


# --- Renewal of the sidecars' tokens in running servers (storage_mounts/kube_renewal.py)
# Against two stand-ins: kmock for the Kubernetes API (no cluster runs here) and the
# Onedata stand-in (tests/onedata_standin.py) for Onezone, which mints real temporary
# tokens with the caveats asked for and says whose they are. DatahubTokens is the real
# one. Tokens live 300 s (DatahubTokens' floor); the cache's renewal window opens
# `renew_after` seconds after a token is issued, so renewals come within seconds.

ALICE_CHECKIN = "checkin-at-alice-3c9e"
BOB_CHECKIN = "checkin-at-bob-71d0"
NOTEBOOKS_VO = "vo.notebooks.egi.eu"
ACCESS = "urn:mace:egi.eu:group:vo.access.egi.eu:role=member#aai.egi.eu"


class FlakyTransport(httpx.AsyncHTTPTransport):
    """Real HTTPS to the stand-in, except while ``down``: then a refused connection, as
    when Onezone is unreachable."""

    down = False

    async def handle_async_request(self, request):
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        return await super().handle_async_request(request)


@pytest.fixture
def onedata(tmp_path):
    standin = start_onedata_standin(tmp_path)
    standin.add_user(ALICE_CHECKIN, "uid-alice", "Alice")
    standin.add_user(BOB_CHECKIN, "uid-bob", "Bob")
    standin.add_space("alice-data", ["uid-alice"])
    standin.add_space("bob-data", ["uid-bob"])
    yield standin
    standin.stop()
    assert standin.state.errors == []


@pytest.fixture
async def renewing(onedata, monkeypatch, request):
    """The site's DataHub mount on the Onedata stand-in, with real token exchange."""
    renew_after = getattr(request, "param", 1.0)
    transport = FlakyTransport(verify=onedata.client_tls())
    client = httpx.AsyncClient(transport=transport, timeout=10)
    tokens = DatahubTokens(
        onedata.onezone_url,
        token_lifetime=300,
        renew_before=300 - renew_after,
        http_client=client,
    )
    StorageMounts.instance().mounts = [
        {
            "name": "datahub",
            "kind": "datahub",
            "onezone_url": onedata.onezone_url,
            "vos": [NOTEBOOKS_VO],
            "path": "/datahub",
        }
    ]
    monkeypatch.setattr(MountCredentials, "datahub_tokens", lambda self, mount: tokens)
    yield transport
    await tokens.aclose()
    await client.aclose()


RETRIES = Config({"KubeMounts": {"token_retry_min": 0.1, "token_retry_max": 0.4}})


def token_of(secret) -> str:
    return base64.b64decode(secret["data"]["datahub-datahub"]).decode()


def secret_of(api, s):
    (found,) = [o for o in secrets(api) if o["metadata"]["name"] == secret_name_for(s.pod_name)]
    return found


async def wait_for(condition, within: float = 20.0):
    """Wait until ``condition()`` is truthy (checked every 20 ms); its value."""
    deadline = time.monotonic() + within
    while not (value := condition()):
        assert time.monotonic() < deadline, "timed out waiting for a condition"
        await asyncio.sleep(0.02)
    return value


def kube_spawner(name: str, checkin: str, **traits):
    s = spawner(name, {"profile": "small"}, config=RETRIES, **traits)
    user_with_checkin_token(s, checkin)
    return s


def secret_patches(api) -> list[str]:
    """The names of the Secrets patched so far."""
    return [
        r.name
        for r in list(api)
        if r.resource is not None and r.resource.plural == "secrets" and r.action == action.UPDATE
    ]


async def test_sidecar_token_renewed_before_expiry_then_stops_with_the_server(
    tmp_path, onedata, renewing
):
    """Stand-ins: kmock (Kubernetes API), Onedata stand-in (Onezone)."""
    async with kubernetes(tmp_path) as api:
        declare_secrets(api)
        s = kube_spawner("alice", ALICE_CHECKIN)
        await s.start()
        secret = secret_of(api, s)
        first = token_of(secret)
        first_expiry = json.loads(secret["metadata"]["annotations"]["egi.eu/token-expiry"])
        pod_uid = pods(api)[0]["metadata"]["uid"]
        second = await wait_for(lambda: (t := token_of(secret_of(api, s))) != first and t)
        assert time.time() < first_expiry["datahub-datahub"]  # before the old one ended
        record = onedata.state.tokens[second]
        assert record.user_id == "uid-alice" and record.name is None  # temporary
        assert {"type": "interface", "interface": "oneclient"} in record.caveats
        expiry = json.loads(secret_of(api, s)["metadata"]["annotations"]["egi.eu/token-expiry"])
        assert expiry["datahub-datahub"] == record.valid_until() > first_expiry["datahub-datahub"]
        assert list(secret_of(api, s)["data"]) == ["datahub-datahub"]
        # Renewed in the running server: the same pod, not a restart.
        assert [p["metadata"]["uid"] for p in pods(api)] == [pod_uid]
        await wait_for(lambda: token_of(secret_of(api, s)) not in (first, second))
        task = s._egi_renewal._task
        await s.stop()
        assert task.done() and s._egi_renewal is None
        assert secrets(api) == []
        patched = len(secret_patches(api))
        # The task has ended: nothing can patch any more; and a poll of the stopped
        # server does not start it again.
        assert await s.poll() is not None
        assert s._egi_renewal is None and len(secret_patches(api)) == patched


async def test_a_second_users_secret_never_gets_the_first_users_token(tmp_path, onedata, renewing):
    """Stand-ins: kmock (Kubernetes API), Onedata stand-in (Onezone). Two users' servers
    renew side by side; every version of each Secret holds only its own user's tokens,
    and each task patches only its own server's Secret."""
    async with kubernetes(tmp_path) as api:
        declare_secrets(api)
        alice = kube_spawner("alice", ALICE_CHECKIN)
        bob = kube_spawner("bob", BOB_CHECKIN)
        await alice.start()
        await bob.start()
        alice_secret, bob_secret = secret_name_for(alice.pod_name), secret_name_for(bob.pod_name)
        assert alice_secret != bob_secret
        await wait_for(
            lambda: (
                secret_patches(api).count(alice_secret) >= 3
                and secret_patches(api).count(bob_secret) >= 3
            )
        )
        await alice.stop()
        await bob.stop()
        owners = {"uid-alice": set(), "uid-bob": set()}
        for (resource, _, name), obj in api.objects.items():
            if resource.plural != "secrets":
                continue
            expected = "uid-alice" if name == alice_secret else "uid-bob"
            for version in obj.history:
                if version is None or "data" not in version:
                    continue
                token = base64.b64decode(version["data"]["datahub-datahub"]).decode()
                assert onedata.state.tokens[token].user_id == expected, name
                owners[expected].add(token)
        assert len(owners["uid-alice"]) >= 3 and len(owners["uid-bob"]) >= 3
        assert not owners["uid-alice"] & owners["uid-bob"]
        assert set(secret_patches(api)) == {alice_secret, bob_secret}


async def test_onezone_down_keeps_the_old_token_retries_and_logs_no_secret(
    tmp_path, onedata, renewing, caplog
):
    """Stand-ins: kmock (Kubernetes API), Onedata stand-in (Onezone), unreachable for a
    while: the Secret keeps its token, the renewal retries with backoff and one line per
    try, never a token; once Onezone answers again, the token is renewed."""
    caplog.set_level(logging.INFO)
    async with kubernetes(tmp_path) as api:
        declare_secrets(api)
        s = kube_spawner("alice", ALICE_CHECKIN)
        await s.start()
        first = token_of(secret_of(api, s))
        renewing.down = True

        def failures() -> list[str]:
            return [r.getMessage() for r in caplog.records if "not renewed" in r.getMessage()]

        await wait_for(lambda: len(failures()) >= 3)
        assert token_of(secret_of(api, s)) == first
        line = failures()[0]
        assert "DataHub mount 'datahub' of alice's server" in line
        assert "the current one stays" in line and "next try in" in line
        renewing.down = False
        second = await wait_for(lambda: (t := token_of(secret_of(api, s))) != first and t)
        await s.stop()
    log_text = caplog.text + "".join(r.getMessage() for r in caplog.records)
    for secret in (first, second, ALICE_CHECKIN):
        assert secret not in log_text


@pytest.mark.parametrize("renewing", [3.0], indirect=True)
async def test_user_removed_from_the_vo_gets_no_renewal(tmp_path, onedata, renewing, caplog):
    """Stand-ins: kmock (Kubernetes API), Onedata stand-in (Onezone). Alice leaves the
    mount's VO while her server runs: her sidecar's token is never renewed (no new
    token asked of Onezone for her), the task says so once and ends."""
    caplog.set_level(logging.INFO)
    async with kubernetes(tmp_path) as api:
        declare_secrets(api)
        s = kube_spawner("alice", ALICE_CHECKIN)
        await s.start()
        first = token_of(secret_of(api, s))
        exchanges = len(
            [p for _, p, _ in onedata.requests() if p.endswith("/user/tokens/temporary")]
        )
        # Check-in now says she is in another VO only (the hub stored what it said).
        s.user._auth_state = {
            **UserContext.from_entitlements("alice", [ACCESS]).to_auth_state(),
            "access_token": ALICE_CHECKIN,
        }
        task = s._egi_renewal._task
        await wait_for(task.done)
        (line,) = [
            r.getMessage() for r in caplog.records if "not renewed any more" in r.getMessage()
        ]
        assert "VO membership changed" in line
        assert token_of(secret_of(api, s)) == first
        assert (
            len([p for _, p, _ in onedata.requests() if p.endswith("/user/tokens/temporary")])
            == exchanges
        )
        await s.stop()


async def test_a_restarted_hub_renews_a_running_servers_token(tmp_path, onedata, renewing):
    """Stand-ins: kmock (Kubernetes API), Onedata stand-in (Onezone). A new spawner
    object loaded from the first one's state (as JupyterHub does after a restart: load_state,
    then poll) finds the server running and renews its Secret's token."""
    async with kubernetes(tmp_path) as api:
        declare_secrets(api)
        s = kube_spawner(
            "alice",
            ALICE_CHECKIN,
        )
        await s.start()
        state = s.get_state()
        await s._egi_renewal.stop()  # the old hub is gone
        first = token_of(secret_of(api, s))
        restarted = kube_spawner("alice", ALICE_CHECKIN)
        restarted.load_state(state)
        restarted.server.ip, restarted.server.port = "127.0.0.1", s.port  # from the database
        assert await restarted.poll() is None
        second = await wait_for(lambda: (t := token_of(secret_of(api, s))) != first and t)
        assert onedata.state.tokens[second].user_id == "uid-alice"
        await restarted.stop()
        assert secrets(api) == []


# --- The sidecar's script (ONECLIENT_SCRIPT) run by a real sh, with a stand-in for
# oneclient: Onedata's client is not installable here (not in Debian, PyPI or npm). The
# stand-in records how it was called and, like `oneclient -f`, stays in the foreground
# until `oneclient --unmount` (or TERM) ends it.

FAKE_ONECLIENT = """#!/bin/sh
dir="$FAKE_DIR"
if [ "$1" = "--unmount" ]; then
  echo "unmount $2" >> "$dir/calls"
  [ -f "$dir/pid" ] && kill "$(cat "$dir/pid")" 2>/dev/null
  exit 0
fi
echo "mount token=${ONECLIENT_ACCESS_TOKEN:-} args=$*" >> "$dir/calls"
echo $$ > "$dir/pid"
trap 'exit 0' TERM
while :; do "$REAL_SLEEP" 0.02; done
"""

# Counts the script's checks of the token file: each check cycle sleeps once.
FAKE_SLEEP = """#!/bin/sh
echo x >> "$FAKE_DIR/sleeps"
exec "$REAL_SLEEP" "$@"
"""


def swap_token(path, value: str) -> None:
    """Replace the token file at once, as the kubelet swaps a Secret volume's files."""
    tmp = path.with_name(".token.new")
    tmp.write_text(value)
    os.replace(tmp, path)


async def test_oneclient_script_remounts_on_a_renewed_token_with_a_oneclient_standin(tmp_path):
    """Stand-in for oneclient (see above); a real POSIX sh runs the sidecar's script."""
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    for name, text in (("oneclient", FAKE_ONECLIENT), ("sleep", FAKE_SLEEP)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    token_file = tmp_path / "token"
    token_file.write_text("token-one")
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_DIR": str(state),
        "REAL_SLEEP": shutil.which("sleep"),
    }
    calls, sleeps = state / "calls", state / "sleeps"

    def lines(path) -> list[str]:
        return path.read_text().splitlines() if path.exists() else []

    args = [str(token_file), str(tmp_path / "mnt"), "0.05", "-o", "allow_other"]
    process = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", ONECLIENT_SCRIPT, "oneclient-sidecar", *args, env=env,
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await wait_for(lambda: lines(calls))
        mnt = str(tmp_path / "mnt")
        assert lines(calls) == [f"mount token=token-one args=-f -o allow_other {mnt}"]
        # A renewed token: unmounted, then mounted again with the new one.
        swap_token(token_file, "token-two")
        await wait_for(lambda: len(lines(calls)) >= 3)
        assert lines(calls)[1:] == [
            f"unmount {mnt}",
            f"mount token=token-two args=-f -o allow_other {mnt}",
        ]
        # An empty or missing file (mid-swap) is not a token: the mount stays.
        token_file.write_text("")
        checked = len(lines(sleeps))
        await wait_for(lambda: len(lines(sleeps)) >= checked + 3)
        token_file.unlink()
        checked = len(lines(sleeps))
        await wait_for(lambda: len(lines(sleeps)) >= checked + 3)
        assert len(lines(calls)) == 3
        # TERM (the pod stops): unmounted, and the script ends cleanly.
        process.terminate()
        assert await asyncio.wait_for(process.wait(), 10) == 0
        assert lines(calls)[-1] == f"unmount {mnt}"
        # The token never went onto a command line.
        assert all("token-" not in line.split("args=")[-1] for line in lines(calls))
        output = (await process.stdout.read()).decode()
        assert "the token was renewed, mounting again" in output
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_renewal_never_patches_a_secret_made_again_by_someone_else_kmock_emulator(
    tmp_path, onedata, renewing, caplog
):
    """Stand-ins: kmock (Kubernetes API, with the API server's uid preconditions),
    Onedata stand-in (Onezone). While alice's server runs, her storage Secret is
    deleted and one of the same name and the same labels is made (by anyone with
    Secret rights in the namespace): the renewal's next patch carries the first uid and
    is refused; the task reads the Secret again, ends with one log line, and the
    newcomer keeps its own data."""
    async with kubernetes(tmp_path) as api:
        declare_secrets(api)
        s = kube_spawner("alice", ALICE_CHECKIN)
        await s.start()
        first = secret_of(api, s)
        # The owner reference, then a renewal: the task has loaded its own Secret.
        await wait_for(lambda: len(secret_patches(api)) >= 2)
        name, labels = first["metadata"]["name"], dict(first["metadata"]["labels"])
        first_uid = str(first["metadata"]["uid"])  # kmock's view follows the name
        intruder = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": name,
                "namespace": s.namespace,
                "labels": labels,
                "uid": "uid-of-the-newcomer",
            },
            "data": {"datahub-datahub": base64.b64encode(b"mallorys").decode()},
        }
        # Deleted and made again in one step of the emulator (no await between): the
        # task never sees the name missing (that would end it as "gone", also safe).
        (key,) = [k for k, o in api.objects.items() if o is first]
        api.objects[key].delete()
        api.objects[key].create(intruder)
        assert secret_of(api, s)["metadata"]["uid"] != first_uid
        await wait_for(lambda: not s._egi_renewal.running)
        assert token_of(secret_of(api, s)) == "mallorys"
        assert "egi.eu/token-expiry" not in (secret_of(api, s)["metadata"].get("annotations") or {})
        lines = [
            r.getMessage() for r in caplog.records if "no longer this server's" in r.getMessage()
        ]
        assert len(lines) == 1 and name in lines[0]
        await s.stop()  # (the newcomer carries this server's labels: the stop takes it)
