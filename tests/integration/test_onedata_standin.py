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

import socket
import ssl
import statistics
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


# --- Transport: HTTP/1.1 keep-alive over TLS ---------------------------------------------


def test_standin_keeps_one_connection_alive_through_mixed_requests(standin):
    """Stand-in transport: 25 rounds of every kind of answer (JSON, bytes, 201, 204
    without a length, 206, 416, HEAD, 400/401/404 errors; request bodies by length,
    chunked, none, and a JSON body on GET) over one kept-alive httpx connection per
    server. Every answer must be complete within the 5 s timeout, and fast: a body held
    back by Nagle until the client's delayed ACK costs ~40 ms per request, which is the
    keep-alive "stall" this guards against (median bound 25 ms, loopback)."""
    space = standin.add_space("keepalive", ["alice-id"])
    token = standin.mint_token("alice-id")
    before = standin.connections()
    api = f"{standin.provider_url}/api/v3/oneprovider"
    big = bytes(range(256)) * 4096  # 1 MiB
    elapsed: list[float] = []
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    with httpx.Client(
        verify=standin.client_tls(), timeout=5, limits=limits, headers={"X-Auth-Token": token}
    ) as http:

        def call(method, url, status, **kw):
            start = time.perf_counter()
            r = http.request(method, url, **kw)
            elapsed.append(time.perf_counter() - start)
            assert r.status_code == status, (method, url, r.status_code, r.content[:200])
            assert r.http_version == "HTTP/1.1" and "connection" not in r.headers
            return r

        for i in range(25):
            name = f"f{i}.bin"
            created = call("PUT", f"{api}/data/{space}/path/{name}", 201, params={"type": "REG"})
            file_id = created.json()["fileId"]
            assert {"spaceId": space, "name": "keepalive"} in call(
                "GET", f"{api}/spaces", 200
            ).json()
            found = call("POST", f"{api}/lookup-file-id/keepalive/{name}", 200)
            assert found.json() == {"fileId": file_id}
            content = f"{api}/data/{file_id}/content"
            r = call("PUT", content, 204, content=big)
            assert r.content == b"" and "content-length" not in r.headers
            attrs = call("GET", f"{api}/data/{file_id}", 200, json={"attributes": ["size"]})
            assert attrs.json() == {"size": len(big)}
            assert call("GET", content, 200).content == big
            r = call("GET", content, 206, headers={"Range": "bytes=10-19"})
            assert (
                r.content == big[10:20] and r.headers["content-range"] == f"bytes 10-19/{len(big)}"
            )
            assert call("GET", content, 206, headers={"Range": "bytes=-5"}).content == big[-5:]
            r = call("GET", content, 416, headers={"Range": f"bytes={len(big)}-"})
            assert r.content == b""
            r = call("HEAD", content, 404)  # Oneprovider has no HEAD here: an error's headers
            assert r.content == b"" and int(r.headers["content-length"]) > 0
            call("PUT", content, 204, params={"offset": 0}, content=iter([b"ab", b"", b"cd"]))
            assert call("GET", content, 206, headers={"Range": "bytes=0-3"}).content == b"abcd"
            r = call("POST", f"{api}/lookup-file-id/keepalive/missing-{i}", 400)
            assert r.json()["error"]["details"] == {"errno": "enoent"}
            call("GET", f"{api}/spaces", 401, headers={"X-Auth-Token": "not-a-token"})
            call("GET", f"{api}/no-such-call", 404, content=b"x" * 1000)
            r = call("DELETE", f"{api}/data/{file_id}", 204)
            assert r.content == b""

        oz_api = f"{standin.onezone_url}/api/v3/onezone"
        for _ in range(25):
            r = call("GET", f"{oz_api}/user", 200, headers={"X-Auth-Token": "egi:checkin-alice"})
            assert r.json()["userId"] == "alice-id"
            call("POST", f"{oz_api}/tokens/infer_access_token_scope", 200, json={"token": token})
            call("GET", f"{oz_api}/user", 401, headers={"X-Auth-Token": "egi:forged"})

    after = standin.connections()
    assert after["oneprovider"] - before["oneprovider"] == 1
    assert after["onezone"] - before["onezone"] == 1
    assert len(elapsed) == 25 * 16 + 25 * 3
    assert statistics.median(elapsed) < 0.025, f"median {statistics.median(elapsed):.3f} s"


def _raw_tls(standin: OnedataStandin) -> ssl.SSLSocket:
    sock = socket.create_connection(("127.0.0.1", int(standin.provider_host.split(":")[1])), 5)
    return standin.client_tls().wrap_socket(sock, server_hostname="127.0.0.1")


def _read_to_eof(conn: ssl.SSLSocket) -> bytes:
    data = b""
    while chunk := conn.recv(65536):
        data += chunk
    return data


def test_standin_answers_pipelined_requests_in_order(standin):
    """Stand-in transport: two requests with bodies sent in one write are both answered,
    in order, so a request's body is read to its last byte before the next is parsed."""
    space = standin.add_space("pipelined", ["alice-id"])
    standin.write_file(space, "a.txt", b"first")
    token = standin.mint_token("alice-id")
    path = "/api/v3/oneprovider/lookup-file-id/pipelined/a.txt"
    body = b'{"ignored": "' + b"x" * 3000 + b'"}'
    one = (f"POST {path} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body  # fmt: skip
    last = (f"GET /api/v3/oneprovider/spaces HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\n"
            "Connection: close\r\n\r\n").encode()  # fmt: skip
    with _raw_tls(standin) as conn:
        conn.sendall(one + one + last)
        answer = _read_to_eof(conn)
    assert answer.count(b"HTTP/1.1 200 OK\r\n") == 3, answer
    assert answer.count(b'{"fileId": ') == 2 and answer.endswith(b"}]")
    assert answer.rindex(b'"name": "pipelined"') > answer.rindex(b'{"fileId": ')


@pytest.mark.parametrize(
    "framing",
    [
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",  # chunk size not hex
        b"Transfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n",  # chunk longer than said
        b"Content-Length: -5\r\n\r\n",
        b"Content-Length: five\r\n\r\n",
    ],
)
def test_standin_malformed_request_bodies_get_400_and_a_closed_connection(standin, framing):
    """Stand-in transport: a body whose end cannot be found is a 400 with
    ``Connection: close``, then the connection closes (nothing after it is parsed)."""
    token = standin.mint_token("alice-id")
    head = f"PUT /api/v3/oneprovider/spaces HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\n"
    with _raw_tls(standin) as conn:
        conn.sendall(head.encode() + framing + b"GET /api/v3/oneprovider/spaces HTTP/1.1\r\n\r\n")
        answer = _read_to_eof(conn)
    assert answer.startswith(b"HTTP/1.1 400 "), answer
    assert b"\r\nConnection: close\r\n" in answer and answer.count(b"HTTP/1.1") == 1
    assert b'"badMessage"' in answer


def test_a_stopped_standin_closes_its_kept_alive_connections(tmp_path):
    """Stand-in transport: stop() ends connections kept alive, so a stopped stand-in
    answers nobody (its handler threads would otherwise wait out a 30 s idle timeout
    and could still answer a request on the old connection)."""
    running = start_onedata_standin(tmp_path)
    running.add_user("checkin-carol", "carol-id", "Carol")
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    with httpx.Client(verify=running.client_tls(), timeout=5, limits=limits) as http:
        user = f"{running.onezone_url}/api/v3/onezone/user"
        headers = {"X-Auth-Token": "egi:checkin-carol"}
        assert http.get(user, headers=headers).status_code == 200
        running.stop()
        with pytest.raises(httpx.TransportError):
            http.get(user, headers=headers)
