"""Storage mounts on the real local stack: ``GET /hub/api/egi/mounts`` with server tokens.

A real ``egi-hub up`` (hub, proxy, local spawner) with `StorageMounts` in the site file,
the S3 keys in the hub's environment, and a real S3 server (``rclone serve s3``, which
checks signatures) to prove the delivered keys work. No DataHub here: dev-login users have
no Check-in token, so their DataHub mount is an error entry (the DataHub path is tested
against an Onezone stand-in in tests/unit/test_storage_spawner.py).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.s3server import start_s3_server
from tests.stackrunner import TEST_SERVICE, server_process, start_stack, wait_for

KEY, SECRET = "scratchkey00001", "scratch-secret-never-logged-0001"
ENV = {"EGI_TEST_S3_KEY": KEY, "EGI_TEST_S3_SECRET": SECRET}
VO_ALICE = "vo.access.egi.eu"
VO_BOB = "vo.notebooks.egi.eu"
BUCKET = "vo-access-scratch"
# bob in another VO only (the stack runner's bob is also in a subgroup of alice's VO).
ALICE_ENTITLEMENTS = [f"urn:mace:egi.eu:group:{VO_ALICE}:role=member#aai.egi.eu"]
BOB_ENTITLEMENTS = [f"urn:mace:egi.eu:group:{VO_BOB}:role=member#aai.egi.eu"]


def site(endpoint: str, bucket: str = BUCKET, prefix: str = "data/", nfs: bool = True) -> dict:
    """Alice and bob in different VOs; S3 (alice's VO key), DataHub and NFS for her VO."""
    result = {
        "DevAuthenticator": {
            "users": {
                "alice": {"entitlements": ALICE_ENTITLEMENTS},
                "bob": {"entitlements": BOB_ENTITLEMENTS},
            }
        },
        "JupyterHub": {
            "services": [{"name": TEST_SERVICE, "api_token": "__API_TOKEN__"}],
            "load_roles": [{"name": "admin", "services": [TEST_SERVICE]}],
        },
        "StorageMounts": {
            "mounts": [
                {
                    "name": "scratch",
                    "kind": "s3",
                    "endpoint_url": endpoint,
                    "bucket": BUCKET,
                    "prefix": "data/",
                    "credentials": {
                        "per_vo": {
                            VO_ALICE: {"key": "EGI_TEST_S3_KEY", "secret": "EGI_TEST_S3_SECRET"}
                        }
                    },
                    "path": "/s3/scratch",
                    "vos": [VO_ALICE],
                },
                {
                    "name": "datahub",
                    "kind": "datahub",
                    "onezone_url": "https://onezone.invalid",
                    "path": "/datahub",
                    "vos": [VO_ALICE],
                },
                {
                    "name": "shared",
                    "kind": "nfs",
                    "server": "nfs.example.org",
                    "export": "/exports/{vo}",
                    "path": "/nfs/shared",
                },
            ]
        },
    }
    mounts = result["StorageMounts"]["mounts"]
    mounts[0] |= {"bucket": bucket, "prefix": prefix}
    if not nfs:
        mounts[:] = [m for m in mounts if m["kind"] != "nfs"]
    return result


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    server = start_s3_server(tmp_path_factory.mktemp("s3"), keys=[(KEY, SECRET)])
    server.make_bucket(BUCKET)
    yield server
    server.stop()


def running_stack(tmp: Path, site_data: dict):
    """The stack with alice's and bob's servers running (each started after a login);
    a generator for module fixtures: it stops the stack when the module is done."""
    stack = start_stack(tmp, site_data, env=ENV)
    try:
        for name in ("alice", "bob"):
            stack.dev_login(name).close()  # the login stores the user's VOs
            stack.start_server(name)
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, s3):
    yield from running_stack(tmp_path_factory.mktemp("stack"), site(s3.endpoint_url))


def server_env(stack, name: str) -> dict[str, str]:
    """The environment the hub gave ``name``'s server process (read from /proc)."""
    return server_process(stack.data_dir, name)["env"]


def mounts(stack, token: str, **params) -> httpx.Response:
    return httpx.get(
        f"{stack.url}/hub/api/egi/mounts",
        params=params,
        headers={"Authorization": f"token {token}"},
        timeout=30,
    )


def test_alice_server_token_gets_her_mounts_with_working_s3_keys(stack, s3):
    env = server_env(stack, "alice")
    assert env["EGI_MOUNTS_URL"].endswith("/hub/api/egi/mounts")
    assert env["EGI_MOUNTS_FILE"] == "~/.egi/servers/default/mounts.json"
    assert env["EGI_STORAGE_DIR"] == "~/.egi/servers/default/storage"
    r = httpx.get(
        env["EGI_MOUNTS_URL"].replace(env["EGI_MOUNTS_URL"].split("/hub/")[0], stack.url),
        headers={"Authorization": f"token {env['JUPYTERHUB_API_TOKEN']}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    by_name = {m["name"]: m for m in r.json()["mounts"]}
    assert by_name["scratch"]["s3"] == {
        "endpoint_url": s3.endpoint_url,
        "bucket": BUCKET,
        "prefix": "data/",
        "region": "",
        "key": KEY,
        "secret": SECRET,
    }
    assert by_name["datahub"]["error"].startswith("DataHub needs a Check-in login")
    assert by_name["shared"]["nfs"] == {
        "server": "nfs.example.org",
        "export": f"/exports/{VO_ALICE}",
    }

    # The delivered keys work against a server that checks signatures.
    import s3fs

    creds = by_name["scratch"]["s3"]
    fs = s3fs.S3FileSystem(
        key=creds["key"],
        secret=creds["secret"],
        client_kwargs={"endpoint_url": creds["endpoint_url"]},
    )
    fs.pipe(f"{BUCKET}/data/hello.txt", b"hi")
    assert s3.path_of(BUCKET, "data/hello.txt").read_bytes() == b"hi"


def test_bob_gets_none_of_alices_mounts_and_403_for_her_server(stack):
    env = server_env(stack, "bob")
    r = mounts(stack, env["JUPYTERHUB_API_TOKEN"])
    assert r.status_code == 200, r.text
    document = r.json()
    assert env["JUPYTERHUB_USER"] == "bob", env.get("JUPYTERHUB_USER")
    assert [m["name"] for m in document["mounts"]] == ["shared"]
    assert document["mounts"][0]["nfs"]["export"] == f"/exports/{VO_BOB}"
    assert SECRET not in r.text and KEY not in r.text
    assert mounts(stack, env["JUPYTERHUB_API_TOKEN"], user="alice").status_code == 403
    # The token names the server: ?server= naming any other is a 403.
    assert mounts(stack, env["JUPYTERHUB_API_TOKEN"], server="alice").status_code == 403
    assert mounts(stack, env["JUPYTERHUB_API_TOKEN"], server="").status_code == 200


def test_browser_session_and_service_token_get_403(stack):
    browser = stack.dev_login("alice")
    try:
        r = browser.get("/hub/api/egi/mounts")
        assert r.status_code == 403, r.text
        assert SECRET not in r.text
    finally:
        browser.close()
    assert mounts(stack, stack.api_token).status_code == 403


def test_token_without_the_scope_gets_403(stack):
    r = stack.api.post(
        "/users/alice/tokens", json={"scopes": ["read:users:name!user"], "note": "narrow"}
    )
    assert r.status_code == 201, r.text
    r = mounts(stack, r.json()["token"])
    assert r.status_code == 403 and "custom:egi:read-mounts" in r.text


@pytest.mark.parametrize(
    "body",
    [
        {"note": "default role: inherits every scope alice holds"},
        {"scopes": ["custom:egi:read-mounts!user"], "note": "with the mounts scope"},
        {"note": "Server at /user/alice/"},  # a note proves nothing
    ],
)
def test_a_token_alice_mints_herself_gets_403(stack, body):
    r = stack.api.post("/users/alice/tokens", json=body)
    assert r.status_code == 201, r.text
    r = mounts(stack, r.json()["token"])
    assert r.status_code == 403, r.text
    assert "server's own API token" in r.text
    assert SECRET not in r.text and KEY not in r.text


def test_a_user_alices_server_is_shared_with_gets_403(stack):
    r = stack.api.post("/shares/alice/", json={"user": "bob"})
    assert r.status_code in (200, 201), r.text
    try:
        minted = stack.api.post("/users/bob/tokens", json={"note": "bob, with the share"})
        assert minted.status_code == 201, minted.text
        token = minted.json()["token"]
        for params in ({}, {"user": "alice"}, {"server": ""}):
            r = mounts(stack, token, **params)
            assert r.status_code == 403, (params, r.text)
            assert SECRET not in r.text and KEY not in r.text
        # bob's own server token reads bob's mounts only, share or not.
        r = mounts(stack, server_env(stack, "bob")["JUPYTERHUB_API_TOKEN"], user="alice")
        assert r.status_code == 403
    finally:
        stack.api.delete("/shares/alice/")  # revokes every share of the server


def test_hub_answers_and_log_never_carry_the_s3_secret(stack):
    server_env(stack, "alice")
    mounts(stack, server_env(stack, "alice")["JUPYTERHUB_API_TOKEN"])
    answers = [
        stack.api.get("/users").text,
        stack.api.get("/users/alice").text,
        stack.api.get("/users/alice", params={"include_stopped_servers": "1"}).text,
        stack.api.get("/users/alice/tokens").text,
    ]
    for text in [*answers, stack.log()]:
        assert SECRET not in text
        assert KEY not in text
    # Names only in the server's state, as the admin sees it.
    model = stack.api.get("/users/alice").json()["servers"][""]
    assert model["state"].get("egi_mounts") == ["scratch", "datahub", "shared"]


def test_the_home_keeps_no_credential_and_none_after_the_server_stops(stack):
    """The real keeper in alice's real server: secrets only in the credential files
    (the document on the home volume has none), and those removed when JupyterHub
    stops the server; her own files in the folder and the document stay."""
    folder = stack.data_dir / "users" / "alice" / ".egi" / "servers" / "default"
    creds = folder / "storage" / "scratch.json"
    wait_for(creds.exists, 60, "alice's keeper to write her S3 credentials")
    assert SECRET in creds.read_text()
    document = (folder / "mounts.json").read_text()
    assert SECRET not in document and KEY not in document and '"scratch"' in document
    own = folder / "storage" / "notes.txt"
    own.write_text("mine")
    stack.stop_server("alice")
    try:
        assert not creds.exists()
        assert own.read_text() == "mine" and (folder / "mounts.json").exists()
    finally:
        own.unlink()
        stack.start_server("alice")  # as the other tests expect it


def test_missing_s3_variable_stops_egi_hub_up_naming_it(tmp_path):
    import yaml

    site_file = tmp_path / "site.yaml"
    site_file.write_text(yaml.safe_dump(site("http://127.0.0.1:9")))
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("EGI_TEST_S3")}
    env["EGI_TEST_S3_KEY"] = KEY
    result = subprocess.run(
        [
            *(sys.executable, "-m", "egi_hub", "up", "--config", str(site_file)),
            *("--data-dir", str(tmp_path / "data"), "--port", "9"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert (
        f"StorageMounts.mounts[0].credentials.per_vo.{VO_ALICE}.secret: the hub's environment "
        "variable EGI_TEST_S3_SECRET (mount 'scratch') is not set"
    ) in result.stderr
    assert KEY not in result.stderr + result.stdout


def test_a_token_minted_with_the_server_tokens_reused_id_gets_403_after_a_restart(tmp_path, s3):
    """After a hub restart the server's token is known by its database id and the
    fingerprint of its row. On SQLite a deleted highest id is handed out again: alice
    deletes her server's token and mints one that gets the same id. While the hub holds
    the server token's value that one is refused anyway; after a restart, same id and
    another row, still 403. Bob's server token works across the restart."""
    data = site(s3.endpoint_url)
    data["JupyterHub"]["cleanup_servers"] = False
    first = start_stack(tmp_path, data, env=ENV)
    stack = first
    try:
        for name in ("bob", "alice"):  # alice's server token is the newest row
            first.dev_login(name).close()
            first.start_server(name)
        bobs = server_env(first, "bob")["JUPYTERHUB_API_TOKEN"]
        listed = first.api.get("/users/alice/tokens").json()["api_tokens"]
        (server_token,) = [t for t in listed if t["note"].startswith("Server at")]
        r = first.api.delete(f"/users/alice/tokens/{server_token['id']}")
        assert r.status_code == 204, r.text
        r = first.api.post("/users/alice/tokens", json={"note": "same id, please"})
        assert r.status_code == 201, r.text
        minted = r.json()
        assert minted["id"] == server_token["id"]  # SQLite reused the id
        assert mounts(first, minted["token"]).status_code == 403  # the value decides
        assert first.interrupt() == 0  # the servers keep running (cleanup_servers: false)
        stack = start_stack(tmp_path, data, env=ENV)  # a new hub on the same database
        assert mounts(stack, bobs).status_code == 200  # known by id and fingerprint
        refused = mounts(stack, minted["token"])
        assert refused.status_code == 403
        assert "Only a server's own API token" in refused.json()["message"]
        assert SECRET not in refused.text
    finally:
        stack.stop()
        first.stop()
