"""The token API (``api/v1/tokens``) and private build records, through the real app.

A real ``egi-hub up`` (hub, proxy, the Binder service with ``Resolver.allow_user_tokens``
on); alice and bob log in with the dev login and reach the service through the proxy
as their browsers do, or as API clients with their own hub token. Hostile requests:
another user, no XSRF token, another site's page, a forged, oversized or odd token, a
bad host. A private build record (written into the service's store, as a launch with a
token writes it) is shown to its owner only. A Binder guest keeps no token; a body far
over a token's size is refused by the service's HTTP server before it is read whole;
tokens are kept per https origin (``host:port``). A service whose builder settings
refuse private launches answers 404 with the reason (the real app, in this process).
Nothing here is a stand-in.
"""

from __future__ import annotations

import html
import json
import re
import time
from collections.abc import Iterator

import httpx
import pytest
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from egi_hub.binder_service.app import make_app
from egi_hub.binder_service.service import BinderService
from egi_hub.binder_service.token_api import MAX_REQUEST_BODY
from tests.stackrunner import Stack, default_site, start_stack

PREFIX = "/services/binder/"
API = f"{PREFIX}api/v1/tokens"
TOKEN = "ghp_alice0123456789abcdefghijklmnopqrstuv"


def token_site() -> dict:
    """Alice and bob (stackrunner's default site) on a site that lets users keep tokens."""
    return {
        **default_site("__API_TOKEN__"),
        "Resolver": {"allow_user_tokens": True},
        # the stack's venv builder: one OS user for all (its users trust each other here)
        "BinderService": {"private_repos_on_shared_machine": True},
    }


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stack = start_stack(tmp_path_factory.mktemp("stack"), token_site())
    try:
        yield stack
    finally:
        stack.stop()


class Browser:
    """A logged-in browser on the service: its client and the landing page's XSRF token."""

    def __init__(self, stack: Stack, name: str) -> None:
        self.client = stack.dev_login(name)
        self.client.follow_redirects = True
        page = self.client.get(PREFIX)
        assert page.status_code == 200
        # The landing page for a visitor first; the service's login through the hub.
        assert self.client.get(f"{PREFIX}api/v1/capacity").status_code == 200
        self.page = self.client.get(PREFIX).text
        found = re.search(r'data-xsrf="([^"]+)"', self.page)
        assert found, "the landing page offers no private-repository part"
        self.xsrf = html.unescape(found.group(1))
        self.origin = stack.url

    def headers(self, **extra: str) -> dict[str, str]:
        """What a fetch() of the landing page sends."""
        return {
            "X-XSRFToken": self.xsrf,
            "Origin": self.origin,
            "Sec-Fetch-Site": "same-origin",
            "Sec-Fetch-Mode": "cors",
            **extra,
        }

    def put(self, host: str, body: object, **headers: str) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.client.put(f"{API}/{host}", content=content, headers=self.headers(**headers))

    def listing(self) -> list[dict[str, object]]:
        r = self.client.get(API, headers={"Sec-Fetch-Site": "same-origin"})
        assert r.status_code == 200, r.text
        return r.json()["tokens"]


@pytest.fixture(scope="module")
def alice(stack: Stack) -> Browser:
    return Browser(stack, "alice")


@pytest.fixture(scope="module")
def bob(stack: Stack) -> Browser:
    return Browser(stack, "bob")


def test_a_user_keeps_lists_and_removes_a_token_and_never_sees_it_again(alice, bob, stack):
    before = time.time()
    r = alice.put("github.com", {"token": TOKEN})
    assert r.status_code == 200, r.text
    assert r.json()["host"] == "github.com"
    assert before + 8 * 3600 - 60 < r.json()["expires"] < time.time() + 8 * 3600 + 60
    listed = alice.listing()
    assert [t["host"] for t in listed] == ["github.com"]
    assert TOKEN not in json.dumps(listed) + alice.client.get(PREFIX).text
    assert bob.listing() == []  # alice's are hers
    r = bob.client.delete(f"{API}/github.com", headers=bob.headers())
    assert r.status_code == 404
    assert [t["host"] for t in alice.listing()] == ["github.com"]
    r = alice.client.delete(f"{API}/github.com", headers=alice.headers())
    assert r.status_code == 204
    assert alice.listing() == []
    assert TOKEN not in stack.log()


def test_writes_need_the_pages_xsrf_token_and_its_origin(alice):
    for headers in (
        {"X-XSRFToken": ""},  # none
        {"X-XSRFToken": "2|forged|token|1"},  # forged
        {"Origin": "https://evil.example.org"},  # another site's page
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},  # another port or subdomain
    ):
        r = alice.put("github.com", {"token": TOKEN}, **headers)
        assert r.status_code == 403, (headers, r.text)
        assert TOKEN not in r.text
    assert alice.listing() == []
    r = alice.client.delete(f"{API}/github.com", headers={"Sec-Fetch-Mode": "cors"})
    assert r.status_code == 403


def test_an_api_client_with_its_own_hub_token_needs_no_xsrf(stack, alice):
    hub_token = stack.api.post(
        "/users/alice/tokens", json={"scopes": ["access:services!service=binder"]}
    ).json()["token"]
    client = httpx.Client(base_url=stack.url, headers={"Authorization": f"token {hub_token}"})
    r = client.put(f"{API}/gitlab.example.org", json={"token": "glpat-abc"})
    assert r.status_code == 200, r.text
    assert [t["host"] for t in alice.listing()] == ["gitlab.example.org"]
    assert client.delete(f"{API}/gitlab.example.org").status_code == 204
    anonymous = httpx.Client(base_url=stack.url)
    assert anonymous.put(f"{API}/github.com", json={"token": "x"}).status_code == 403
    assert anonymous.get(API).status_code == 403


@pytest.mark.parametrize(
    ("host", "body", "reason"),
    [
        ("github.com", {"token": "a b"}, "printable ASCII"),
        ("github.com", {"token": "tok\u0000en"}, "printable ASCII"),
        ("github.com", {"token": "tok\nen"}, "printable ASCII"),
        ("github.com", {"token": "tök"}, "printable ASCII"),
        ("github.com", {"token": "x" * 600}, "at most 512"),
        ("github.com", b"x" * 5000, "too large"),
        ("github.com", {"token": ""}, "non-empty"),
        ("github.com", {"token": 12}, "non-empty"),
        ("github.com", {"token": "t", "user": "bob"}, "JSON object"),
        ("github.com", b"not json", "JSON object"),
        ("github.com", ["t"], "JSON object"),
        ("%2e%2e", {"token": "t"}, None),  # (the URL is normalised before the service)
        ("..", {"token": "t"}, None),
        ("a..b", {"token": "t"}, "not a host name"),
        ("..github.com", {"token": "t"}, "not a host name"),
        ("github.com%2f..%2f..", {"token": "t"}, "not a host name"),
        ("github.com:0", {"token": "t"}, "not a host name"),
        ("github.com:65536", {"token": "t"}, "not a host name"),
        ("github.com:", {"token": "t"}, "not a host name"),
        ("[::1]:443", {"token": "t"}, "not a host name"),
        ("git%20hub.com", {"token": "t"}, "not a host name"),
        ("github.com%00", {"token": "t"}, "not a host name"),
    ],
)
def test_odd_requests_are_refused_with_the_reason(alice, host, body, reason):
    r = alice.put(host, body)
    if reason is None:  # a path that no longer names a token: not found, nothing kept
        assert r.status_code == 404, r.text
    else:
        assert r.status_code == 400 and reason in r.json()["reason"], r.text
        token = body.get("token") if isinstance(body, dict) else None
        if isinstance(token, str) and len(token) > 3:  # (a short one is in any text)
            assert token not in r.text
    assert alice.listing() == []


def test_a_private_build_record_is_shown_to_its_owner_only(stack, alice, bob):
    builds = stack.data_dir / "binder" / "builds"
    key = "f" * 64
    record = {
        "key": key, "backend": "venv", "state": "built", "spec": "git/private/main",
        "label": "secret-project@1234567", "source": "https://git.example.org/secret",
        "ref": "1" * 40, "started": time.time(), "private": True, "owner": "alice",
    }  # fmt: skip
    (builds / f"{key}.json").write_text(json.dumps(record))
    (builds / f"{key}.log").write_text("installing secret-project\n")
    try:
        mine = alice.client.get(f"{PREFIX}api/v1/builds").json()["builds"]
        assert [b["key"] for b in mine if b["private"]] == [key]
        r = alice.client.get(f"{PREFIX}api/v1/builds/{key}")
        assert r.status_code == 200 and "secret-project" in r.json()["log"]
        listed = bob.client.get(f"{PREFIX}api/v1/builds")
        assert listed.status_code == 200 and "secret-project" not in listed.text
        r = bob.client.get(f"{PREFIX}api/v1/builds/{key}")
        assert r.status_code == 404 and "secret" not in r.text
    finally:
        (builds / f"{key}.json").unlink()
        (builds / f"{key}.log").unlink()


def test_a_token_is_kept_per_https_origin(alice):
    """``host`` is port 443; ``host:port`` another origin; one spelling each."""
    for given, kept in (("Git.Uni.Example:8443", "git.uni.example:8443"),
                        ("git.uni.example.:443", "git.uni.example")):  # fmt: skip
        r = alice.put(given, {"token": TOKEN})
        assert r.status_code == 200 and r.json()["host"] == kept, r.text
    assert [t["host"] for t in alice.listing()] == ["git.uni.example", "git.uni.example:8443"]
    for host in ("git.uni.example", "git.uni.example:8443"):
        assert alice.client.delete(f"{API}/{host}", headers=alice.headers()).status_code == 204
    assert alice.listing() == []


def test_a_binder_guest_keeps_no_token(stack, alice):
    """A guest (a temporary account, by its name and the guests' group) is refused with
    the reason, even with a hub token that cannot read its groups."""
    name = "guest--0123456789ab"
    assert stack.api.post(f"/users/{name}").status_code in (201, 409)
    if stack.api.get("/groups/binder-guests").status_code == 404:
        assert stack.api.post("/groups/binder-guests").status_code == 201
    r = stack.api.post("/groups/binder-guests/users", json={"users": [name]})
    assert r.status_code == 200, r.text
    for scopes in (["access:services!service=binder", "read:users:groups!user"],
                   ["access:services!service=binder"]):  # fmt: skip
        token = stack.api.post(f"/users/{name}/tokens", json={"scopes": scopes}).json()["token"]
        client = httpx.Client(base_url=stack.url, headers={"Authorization": f"token {token}"})
        r = client.put(f"{API}/github.com", json={"token": TOKEN})
        assert r.status_code == 403 and "guest" in r.json()["reason"], r.text
        assert client.get(API).status_code == 403
    assert alice.listing() == []


def test_a_large_body_is_refused_before_it_is_read_whole(stack, alice):
    r = alice.put("github.com", b"x" * (MAX_REQUEST_BODY + 1))
    # the HTTP server's refusal (no handler ran: not the handler's JSON reason)
    assert r.status_code >= 400 and "too large for a token" not in r.text, r.text
    assert alice.listing() == []  # and the service keeps serving
    r = alice.put("github.com", b"x" * (MAX_REQUEST_BODY - 1))  # under it: the handler's
    assert r.status_code == 400 and "too large" in r.json()["reason"]


@pytest.mark.parametrize(
    ("builder", "settings", "named"),
    [
        ("venv", {}, "BinderService.private_repos_on_shared_machine"),
        ("kubernetes", {"KubernetesBuilder": {"image_prefix": "r.example.org/e:"}},
         "KubernetesBuilder.private_image_prefix"),
        ("docker", {"DockerBuilder": {"push": True}}, "DockerBuilder.private_image_prefix"),
    ],
)  # fmt: skip
async def test_the_token_api_says_why_the_builder_refuses_private_launches(
    tmp_path, builder, settings, named
):
    """The real app (its HTTP server as ``__main__`` makes it) with a builder whose
    settings refuse private launches: the token API answers 404 with the reason, whoever
    asks, and the landing page offers no token field."""
    from traitlets.config import Config

    config = Config({"Resolver": {"allow_user_tokens": True}, **settings})
    binder = BinderService(
        config=config, data_dir=str(tmp_path / "b"), ticket_secret="s" * 40, builder=builder
    )
    app = make_app(binder, prefix=PREFIX)
    sockets = bind_sockets(0, "127.0.0.1")
    server = HTTPServer(app, max_body_size=MAX_REQUEST_BODY)
    server.add_sockets(sockets)
    base = f"http://127.0.0.1:{sockets[0].getsockname()[1]}"
    client = AsyncHTTPClient()
    try:
        for method, path, body in (("GET", API, None), ("PUT", f"{API}/github.com", b"{}"),
                                   ("DELETE", f"{API}/github.com", None)):  # fmt: skip
            r = await client.fetch(base + path, method=method, body=body, raise_error=False)
            assert r.code == 404, (method, r.body)
            assert named in json.loads(r.body)["reason"]
        page = await client.fetch(base + PREFIX, raise_error=False)
        assert page.code == 200 and b"private-repo" not in page.body
    finally:
        server.stop()
