"""The Onedata stand-in proved with Onedata's own REST file client, and its Onezone API.

`onedatafilerestclient` (PyPI, by the Onedata team) discovers spaces and providers through
``infer_access_token_scope``, addresses spaces as ``<name>@<id>`` and talks to the
provider over ``https://<host:port>`` with `requests`. It sends prepared requests with
``Session.send``, which ignores ``REQUESTS_CA_BUNDLE``/``SSL_CERT_FILE``; its
``verify_ssl`` goes to ``Session.verify`` as is, so the stand-in's CA file is passed
there (a path is what `requests` takes for a private CA). If these pass, the
stand-in behaves as Onedata for Onedata's client, not merely as egi-hub's code expects.
"""

from __future__ import annotations

import time

import httpx
import pytest
from onedatafilerestclient import OnedataFileRESTClient, OnedataRESTError

from tests.onedata_standin import OnedataStandin, start_onedata_standin


@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    running = start_onedata_standin(tmp_path_factory.mktemp("onedata"))
    running.add_user("checkin-alice", "alice-id", "Alice")
    running.add_user("checkin-bob", "bob-id", "Bob")
    yield running
    assert running.state.errors == []
    running.stop()


@pytest.fixture
def trusted(standin):
    return standin


def client_for(standin: OnedataStandin, token: str) -> OnedataFileRESTClient:
    return OnedataFileRESTClient(standin.onezone_host, token, verify_ssl=standin.ca_file)


def test_onedata_client_lists_reads_writes_overwrites_on_standin(trusted):
    """Onedata's client against the stand-in: list a space, read, write, overwrite."""
    space = trusted.add_space("physics", ["alice-id"])
    trusted.write_file(space, "runs/run1.txt", b"first run")
    client = client_for(trusted, trusted.mint_token("alice-id"))

    assert "physics" in client.list_spaces()
    listing = client.list_children("physics", attributes=["name", "type", "size"])
    assert listing["isLast"] is True
    assert listing["children"] == [{"name": "runs", "type": "DIR", "size": None}]
    assert client.get_file_content("physics", file_path="runs/run1.txt") == b"first run"
    assert client.get_file_content("physics", file_path="runs/run1.txt", offset=6, size=3) == b"run"

    client.create_file("physics", "notes/a.txt", create_parents=True)
    client.put_file_content("physics", b"a longer first version", file_path="notes/a.txt")
    client.put_file_content("physics", b"short", file_path="notes/a.txt")  # no offset: truncates
    assert client.get_file_content("physics", file_path="notes/a.txt") == b"short"
    client.put_file_content("physics", b"S", file_path="notes/a.txt", offset=0)  # in place
    assert trusted.read_file(space, "notes/a.txt") == b"Short"

    attrs = client.get_attributes("physics", file_path="notes/a.txt", attributes=["size", "type"])
    assert attrs == {"size": 5, "type": "REG"}

    client.move("physics", "notes/a.txt", "physics", "notes/b.txt")
    assert not trusted.exists(space, "notes/a.txt")
    assert trusted.read_file(space, "notes/b.txt") == b"Short"

    client.remove("physics", file_path="notes")
    assert not trusted.exists(space, "notes/b.txt")


def test_onedata_client_existing_file_and_missing_file_errors_on_standin(trusted):
    """Stand-in POSIX errors as Onedata's client sees them: eexist, enoent."""
    trusted.add_space("chem", ["alice-id"])
    client = client_for(trusted, trusted.mint_token("alice-id"))
    client.create_file("chem", "x.txt")
    with pytest.raises(OnedataRESTError) as e:
        client.create_file("chem", "x.txt")
    assert (e.value.http_code, e.value.category) == (400, "posix")
    assert e.value.details == {"errno": "eexist"}
    with pytest.raises(OnedataRESTError) as e:
        client.get_file_content("chem", file_path="nope.txt")
    assert e.value.details == {"errno": "enoent"}


def test_onedata_client_pages_children_on_standin(trusted):
    """Paging: limit 1000 at most, ``nextPageToken`` until ``isLast``."""
    space = trusted.add_space("many", ["alice-id"])
    for i in range(1203):
        trusted.write_file(space, f"f{i:05d}", b"")
    client = client_for(trusted, trusted.mint_token("alice-id"))
    first = client.list_children("many", limit=1000)
    assert len(first["children"]) == 1000 and first["isLast"] is False
    second = client.list_children("many", limit=1000, continuation_token=first["nextPageToken"])
    assert len(second["children"]) == 203 and second["isLast"] is True
    names = [c["name"] for c in first["children"] + second["children"]]
    assert names == [f"f{i:05d}" for i in range(1203)]
    with pytest.raises(OnedataRESTError) as e:
        client.list_children("many", limit=1001)
    assert e.value.category == "badValueNotInRange"


def test_onedata_client_refuses_writes_with_readonly_token_on_standin(trusted):
    """A ``data.readonly`` token: Onedata's client refuses writes itself (scope says
    readonly) and the provider refuses them too."""
    space = trusted.add_space("ro", ["alice-id"])
    trusted.write_file(space, "a", b"data")
    token = trusted.mint_token(
        "alice-id", [{"type": "interface", "interface": "rest"}, {"type": "data.readonly"}]
    )
    client = client_for(trusted, token)
    assert client.get_token_scope()["dataAccessScope"]["readonly"] is True
    assert client.get_file_content("ro", file_path="a") == b"data"
    with pytest.raises(Exception, match="read-only"):
        client.put_file_content("ro", b"x", file_path="a")
    r = httpx.put(
        f"{trusted.provider_url}/api/v3/oneprovider/data/{space}/path/b",
        headers={"X-Auth-Token": token},
        verify=trusted.client_tls(),
    )
    assert r.status_code == 400 and r.json()["error"]["details"] == {"errno": "eacces"}


# --- Onezone: the API the hub's DataHub token client uses ---------------------------------


def oz(standin, method, path, token=None, **kw):
    headers = {"X-Auth-Token": token} if token else {}
    return httpx.request(
        method,
        f"{standin.onezone_url}/api/v3/onezone{path}",
        headers=headers,
        verify=standin.client_tls(),
        **kw,
    )


def test_onezone_standin_delegation_and_named_tokens(standin):
    """Stand-in Onezone: ``egi:<idp token>`` delegation, named tokens get/create/duplicate."""
    assert oz(standin, "GET", "/user", "egi:checkin-alice").json()["userId"] == "alice-id"
    r = oz(standin, "GET", "/user", "egi:not-a-token")
    assert r.status_code == 401
    assert r.json()["error"]["details"]["authError"]["id"] == "badIdpAccessToken"
    assert oz(standin, "GET", "/user", "other:checkin-alice").status_code == 401
    assert oz(standin, "GET", "/user").status_code == 401

    assert (
        oz(standin, "GET", "/user/tokens/named/name/hub-rest", "egi:checkin-alice").status_code
        == 404
    )
    body = {
        "name": "hub-rest",
        "type": {"accessToken": {}},
        "caveats": [{"type": "interface", "interface": "rest"}],
    }
    r = oz(standin, "POST", "/user/tokens/named", "egi:checkin-alice", json=body)
    assert r.status_code == 201 and set(r.json()) == {"tokenId", "token"}
    created = r.json()
    got = oz(standin, "GET", "/user/tokens/named/name/hub-rest", "egi:checkin-alice").json()
    assert got["tokenId"] == created["tokenId"] and got["token"] == created["token"]
    assert got["caveats"] == body["caveats"]
    # Bob has no token of that name: names are per user.
    assert (
        oz(standin, "GET", "/user/tokens/named/name/hub-rest", "egi:checkin-bob").status_code == 404
    )

    r = oz(standin, "POST", "/user/tokens/named", "egi:checkin-alice", json=body)
    assert r.status_code == 400 and r.json()["error"]["id"] == "badValueIdentifierOccupied"
    for bad in ("x", "n" * 51, "", "bad/name"):
        r = oz(
            standin, "POST", "/user/tokens/named", "egi:checkin-alice", json={**body, "name": bad}
        )
        assert r.status_code == 400 and r.json()["error"]["id"] == "badValueName", bad
    r = oz(standin, "POST", "/user/tokens/named", "egi:checkin-alice",
           json={**body, "name": "ok", "caveats": [{"type": "nonsense"}]})  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["id"] == "badValueCaveats"

    r = oz(standin, "DELETE", f"/user/tokens/named/{created['tokenId']}", "egi:checkin-alice")
    assert r.status_code == 204
    assert (
        oz(standin, "GET", "/user/tokens/named/name/hub-rest", "egi:checkin-alice").status_code
        == 404
    )


def test_onezone_standin_temporary_tokens_and_caveats(standin):
    """Stand-in Onezone: temporary tokens need a time caveat; expired tokens are 401s;
    ``oneclient``/``data.*`` tokens are refused by Onezone calls but scope discovery."""
    r = oz(standin, "POST", "/user/tokens/temporary", "egi:checkin-alice",
           json={"type": {"accessToken": {}}, "caveats": []})  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["id"] == "tokenTimeCaveatRequired"
    soon = [{"type": "time", "validUntil": int(time.time()) + 600}]
    r = oz(standin, "POST", "/user/tokens/temporary", "egi:checkin-alice",
           json={"type": {"accessToken": {}}, "caveats": soon})  # fmt: skip
    assert r.status_code == 201
    temporary = r.json()["token"]
    assert oz(standin, "GET", "/user", temporary).json()["userId"] == "alice-id"

    expired = standin.mint_token("alice-id", [{"type": "time", "validUntil": int(time.time()) - 1}])
    r = oz(standin, "GET", "/user", expired)
    assert r.status_code == 401
    assert r.json()["error"]["details"]["authError"]["id"] == "tokenCaveatUnverified"
    r = oz(standin, "POST", "/tokens/infer_access_token_scope", json={"token": expired})
    assert r.status_code == 401

    oneclient = standin.mint_token("alice-id", [{"type": "interface", "interface": "oneclient"}])
    readonly = standin.mint_token("alice-id", [{"type": "data.readonly"}])
    for token in (oneclient, readonly):
        assert oz(standin, "GET", "/user", token).status_code == 401
        scope = oz(standin, "POST", "/tokens/infer_access_token_scope", json={"token": token})
        assert scope.status_code == 200
    # A oneclient token cannot call the REST file API (FUSE and REST need separate tokens).
    r = httpx.get(f"{standin.provider_url}/api/v3/oneprovider/spaces",
                  headers={"X-Auth-Token": oneclient}, verify=standin.client_tls())  # fmt: skip
    assert r.status_code == 401


def test_onezone_standin_scope_discovery(standin):
    """Stand-in scope: the user's spaces only, supports with readonly flags, providers
    with domain/version/online; no auth header needed; revoked tokens refused."""
    offline = standin.add_provider("Down provider", online=False)
    space = standin.add_space("scoped", ["bob-id"], other_supports={offline: True})
    token = standin.mint_token("bob-id", ttl=300)
    r = oz(standin, "POST", "/tokens/infer_access_token_scope", json={"token": token})
    assert r.status_code == 200
    answer = r.json()
    assert answer["validUntil"] > time.time()
    scope = answer["dataAccessScope"]
    assert scope["readonly"] is False
    assert set(scope["spaces"]) == {space}
    assert scope["spaces"][space]["supports"] == {
        standin.provider_id: {"readonly": False},
        offline: {"readonly": True},
    }
    assert scope["providers"][standin.provider_id]["domain"] == standin.provider_host
    assert scope["providers"][offline]["online"] is False
    standin.revoke(token)
    assert (
        oz(standin, "POST", "/tokens/infer_access_token_scope", json={"token": token}).status_code
        == 401
    )
