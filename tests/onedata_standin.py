"""A stand-in for EGI DataHub: one Onezone and one Oneprovider over HTTPS on 127.0.0.1.

Onedata cannot run on the test machines, so this follows the documented REST behaviour
(`/work/shared/specs/remote-apis.md`, Onedata's API reference and its own Python clients),
not what egi-hub's code happens to expect: Onedata's own `onedatafilerestclient` is run
against it in `tests/integration/test_onedata_standin.py`. Both servers speak HTTPS with a
CA made at start-up, because Onedata's clients always use ``https://<host:port>``.

Onezone: IdP token delegation (``X-Auth-Token: <prefix>:<idp token>``: tokens registered
with `OnedataStandin.add_user`, or, after `OnedataStandin.trust_idp`, any token the IdP's
userinfo endpoint accepts, as Onezone's authority delegation does), ``GET /user``,
named tokens (get by name, create, delete by id), temporary tokens (a ``time`` caveat is
required), ``POST /tokens/infer_access_token_scope`` (no auth header). Caveats enforced:
``time`` (expired -> 401), ``interface`` (``oneclient`` tokens cannot call REST),
``data.readonly`` (writes -> POSIX ``eacces``), ``data.path`` (a whitelist of
base64-encoded canonical paths ``/<space id>[/...]``: other spaces are invisible, so
``lookup-file-id``, ``GET /spaces`` and scope discovery leave them out and a file id in
one is POSIX ``enoent``; a file of a visible space outside the whitelist is ``eacces``)
and ``service`` (``opw-<provider id>``/``opw-*``: any other provider answers 401
``tokenCaveatUnverified``, Onezone too unless ``ozw-onezone`` is listed; scope discovery
names only whitelisted providers); tokens with ``data.*`` or ``oneclient``
caveats are refused by every Onezone call but scope discovery. ``GET /user/spaces`` and
``GET /user/spaces/{id}`` (``{"spaceId", "name", "providers": {id: size}}``) answer a
user's spaces, e.g. to an IdP token.

Oneprovider: ``lookup-file-id``, ``/data/{id}`` (stat with attributes as a JSON body or
``?attribute=``, children paging with ``limit`` <= 1000, ranged content, ``PUT`` content
truncating without ``offset``, create by path, ``DELETE``), ``GET /spaces``, and CDMI
``move``. `OnedataStandin.start_provider` runs another Oneprovider (same files, own id)
to test ``service`` caveats against a second real server. Errors are Onedata's JSON
(``posix`` errnos, ``unauthorized``...). Files live in memory. Tokens are opaque random
strings here (real ones are macaroons): nothing outside the stand-in may parse them.
"""

from __future__ import annotations

import base64
import bisect
import datetime
import hashlib
import ipaddress
import json
import re
import secrets
import socket
import ssl
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PROVIDER_VERSION = "25.2.0"
MAX_LIMIT = 1000
CAVEAT_TYPES = {"time", "interface", "data.readonly", "data.path", "service"}
NAME_RE = re.compile(r"^[\w][\w\-.() ]{0,48}[\w)]$")
DEFAULT_ATTRS = [
    "fileId", "parentFileId", "name", "posixPermissions", "atime", "mtime", "ctime",
    "type", "size", "directShareIds", "index", "displayGid", "displayUid", "ownerUserId",
    "originProviderId", "hardlinkCount",
]  # fmt: skip
SNAKE = {
    "file_id": "fileId", "parent_id": "parentFileId", "name": "name", "mode": "posixPermissions",
    "atime": "atime", "mtime": "mtime", "ctime": "ctime", "type": "type", "size": "size",
    "shares": "directShareIds", "index": "index", "storage_group_id": "displayGid",
    "storage_user_id": "displayUid", "owner_id": "ownerUserId", "provider_id": "originProviderId",
    "hardlinks_count": "hardlinkCount",
}  # fmt: skip


class ApiError(Exception):
    """An HTTP error answer in Onedata's shape: ``{"error": {"id", "details", "description"}}``."""

    def __init__(self, status: int, error_id: str, description: str, details: Any = None):
        super().__init__(description)
        self.status = status
        self.body: dict[str, Any] = {"error": {"id": error_id, "description": description}}
        if details is not None:
            self.body["error"]["details"] = details


def posix(errno: str, what: str = "") -> ApiError:
    return ApiError(
        400, "posix", f"Operation failed with POSIX error: {errno}. {what}".strip(),
        {"errno": errno},
    )  # fmt: skip


def unauthorized(auth_error: str, description: str, details: Any = None) -> ApiError:
    inner: dict[str, Any] = {"id": auth_error}
    if details is not None:
        inner["details"] = details
    return ApiError(401, "unauthorized", description, {"authError": inner})


@dataclass
class Token:
    """A token Onezone issued: whose it is and what its caveats allow."""

    token_id: str
    user_id: str
    caveats: list[dict[str, Any]]
    name: str | None = None  # None for temporary tokens
    revoked: bool = False

    def valid_until(self) -> int | None:
        times = [c["validUntil"] for c in self.caveats if c["type"] == "time"]
        return min(times) if times else None

    def interface(self) -> str | None:
        for c in self.caveats:
            if c["type"] == "interface":
                return c["interface"]
        return None

    def readonly(self) -> bool:
        return any(c["type"] == "data.readonly" for c in self.caveats)

    def has_data_caveats(self) -> bool:
        return any(c["type"].startswith("data.") for c in self.caveats)

    def paths(self) -> list[list[str]] | None:
        """The ``data.path`` whitelists, each as decoded canonical paths split into
        ``[space id, ...]`` (every caveat must hold); None without such a caveat."""
        found = [c for c in self.caveats if c["type"] == "data.path"]
        if not found:
            return None
        return [[base64.b64decode(e).decode().strip("/") for e in c["whitelist"]]
                for c in found]  # fmt: skip

    def path_allowed(self, canonical: str) -> bool:
        """Whether ``<space id>/<path>`` is a whitelisted path or below one, per caveat."""
        whitelists = self.paths()
        return whitelists is None or all(
            any(canonical == w or canonical.startswith(w + "/") for w in wl) for wl in whitelists
        )

    def space_visible(self, space_id: str) -> bool:
        """Whether a ``data.path`` caveat leaves any of the space visible."""
        whitelists = self.paths()
        return whitelists is None or all(
            any(w.split("/")[0] == space_id for w in wl) for wl in whitelists
        )

    def service_allowed(self, service: str) -> bool:
        """Whether every ``service`` caveat lists ``service`` (or its type's ``*``)."""
        kind = service.split("-", 1)[0]
        return all(
            service in c["whitelist"] or f"{kind}-*" in c["whitelist"]
            for c in self.caveats
            if c["type"] == "service"
        )


@dataclass
class Node:
    """A file or directory of a space, in memory."""

    file_id: str
    name: str
    type: str  # REG or DIR
    space_id: str
    parent: str | None
    data: bytearray = field(default_factory=bytearray)
    children: dict[str, str] = field(default_factory=dict)
    mtime: int = field(default_factory=lambda: int(time.time()))
    mode: str = "664"


@dataclass
class Space:
    space_id: str
    name: str
    members: set[str]
    supports: dict[str, bool]  # provider id -> readonly support


class State:
    """Everything both servers share, behind one lock."""

    def __init__(self, idp_prefix: str) -> None:
        self.lock = threading.RLock()
        self.idp_prefix = idp_prefix
        self.idp_tokens: dict[str, str] = {}  # IdP access token -> user id (add_user)
        self.idp: IdpTrust | None = None  # the IdP whose userinfo endpoint is asked
        self.idp_cache: dict[str, tuple[float, str]] = {}  # IdP token -> (until, user id)
        self.idp_refused: set[str] = set()  # forget_idp_token: refused from then on
        self.userinfo_calls = 0
        self.clock = time.time  # for the IdP answer cache only
        self.users: dict[str, str] = {}  # user id -> full name
        self.tokens: dict[str, Token] = {}  # serialized -> record
        self.spaces: dict[str, Space] = {}
        self.providers: dict[str, dict[str, Any]] = {}
        self.nodes: dict[str, Node] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # method, path, headers
        self.errors: list[str] = []  # stand-in bugs (500s): tests assert there are none

    # --- authentication -------------------------------------------------------------
    def resolve(self, serialized: str) -> tuple[str, Token | None]:
        """The user a token stands for, and its record (None for an IdP token)."""
        if ":" in serialized:
            prefix, _, idp_token = serialized.partition(":")
            user_id = self.idp_user(idp_token) if prefix == self.idp_prefix else None
            if user_id is None:
                raise unauthorized(
                    "badIdpAccessToken", f"Provided access token issued by '{prefix}' is not valid."
                )
            return user_id, None
        record = self.tokens.get(serialized)
        if record is None:
            raise unauthorized("badToken", "Provided token could not be understood by the server.")
        if record.revoked:
            raise unauthorized("tokenRevoked", "Provided token has been revoked.")
        until = record.valid_until()
        if until is not None and until <= time.time():
            caveat = {"type": "time", "validUntil": until}
            raise unauthorized(
                "tokenCaveatUnverified", "Token caveat unverified: time.", {"caveat": caveat}
            )
        return record.user_id, record

    def idp_user(self, idp_token: str) -> str | None:
        """The user an IdP access token stands for, or None if it is not valid.

        A token registered with `OnedataStandin.add_user` first; else, with `trust_idp`,
        Onezone's authority delegation: the token is valid if the IdP's userinfo endpoint
        answers it (sent as ``Authorization: Bearer``, Onezone's default
        ``accessTokenPassMethod``), and the answer's ``sub`` is the subject of a linked
        account whose Onedata user is made on first sight with the id Onezone gives it,
        ``md5(<idp>:<sub>)`` (`idp_user_id`), and ``name`` as full name. Answers, and
        refusals, are kept ``cache_seconds`` (a page of file requests asks the IdP once).
        The call is made under the state lock: one validation at a time, as tests need.
        """
        if not idp_token or idp_token in self.idp_refused:
            return None
        if idp_token in self.idp_tokens:
            return self.idp_tokens[idp_token]
        if self.idp is None:
            return None
        now = self.clock()
        cached = self.idp_cache.get(idp_token)
        if cached is not None and cached[0] > now:
            return cached[1] or None
        claims = self.idp.userinfo(idp_token)
        self.userinfo_calls += 1
        sub = claims.get("sub") if claims else None
        user_id = ""
        if isinstance(sub, str) and sub:
            user_id = idp_user_id(self.idp.name, sub)
            name = claims.get("name") if claims else None  # type: ignore[union-attr]
            self.users.setdefault(user_id, name if isinstance(name, str) and name else sub)
        self.idp_cache[idp_token] = (now + self.idp.cache_seconds, user_id)
        return user_id or None

    def mint(self, user_id: str, caveats: list[dict[str, Any]], name: str | None = None) -> str:
        serialized = "MDAx" + secrets.token_urlsafe(48)
        token_id = secrets.token_hex(16)
        self.tokens[serialized] = Token(token_id, user_id, caveats, name)
        return serialized

    # --- files ------------------------------------------------------------------------
    def new_node(self, name: str, kind: str, space_id: str, parent: str | None) -> Node:
        node = Node(secrets.token_hex(20), name, kind, space_id, parent)
        node.mode = "775" if kind == "DIR" else "664"
        self.nodes[node.file_id] = node
        if parent is not None:
            self.nodes[parent].children[name] = node.file_id
            self.nodes[parent].mtime = int(time.time())
        return node

    def walk(self, start: str, parts: list[str], create: str | None = None) -> Node:
        """The node at ``parts`` below ``start``; with ``create``, missing parents are made."""
        node = self.nodes[start]
        for part in parts:
            if node.type != "DIR":
                raise posix("enotdir", f"'{node.name}' is not a directory.")
            child = node.children.get(part)
            if child is None:
                if create is None:
                    raise posix("enoent", "No such file or directory.")
                child = self.new_node(part, create, node.space_id, node.file_id).file_id
            node = self.nodes[child]
        return node

    def delete(self, node: Node) -> None:
        for child in list(node.children.values()):
            self.delete(self.nodes[child])
        self.nodes.pop(node.file_id, None)
        if node.parent is not None:
            self.nodes[node.parent].children.pop(node.name, None)


def idp_user_id(idp: str, sub: str) -> str:
    """The Onedata user id Onezone gives the user first seen through an IdP account:
    ``md5(<idp>:<subjectId>)`` (Onezone's admin guide, "Merging linked accounts")."""
    return hashlib.md5(f"{idp}:{sub}".encode()).hexdigest()


@dataclass
class IdpTrust:
    """An OpenID Connect IdP whose access tokens Onezone accepts (authority delegation).

    ``name`` is the IdP's identifier in Onezone's ``auth.config`` (it names the linked
    accounts, so it makes the user ids); ``userinfo_url`` its userinfo endpoint.
    """

    name: str
    userinfo_url: str
    cache_seconds: float = 30.0
    timeout: float = 10.0

    def userinfo(self, access_token: str) -> dict[str, Any] | None:
        """The userinfo answer for the token; None if the IdP refuses it or cannot be
        asked (Onezone then answers ``badIdpAccessToken`` either way)."""
        try:
            r = httpx.get(
                self.userinfo_url,
                headers={"Authorization": f"Bearer {access_token}"},
                timeout=self.timeout,
            )
        except httpx.HTTPError:
            return None
        if r.status_code != 200:
            return None
        try:
            claims = r.json()
        except ValueError:
            return None
        return claims if isinstance(claims, dict) else None


def split_path(path: str) -> list[str]:
    """URL path segments, percent-decoded; ``.``/``..`` refused as Onedata does."""
    parts = [unquote(p) for p in path.split("/") if p]
    if any(p in (".", "..") for p in parts):
        raise posix("einval", "Relative path elements are not allowed.")
    return parts


class Handler(BaseHTTPRequestHandler):
    """Reads the request, dispatches to ``route``, writes JSON or bytes back."""

    # HTTP/1.1 keep-alive, as Oneprovider serves. Two settings make it work:
    # * ``wbufsize``: the status line, headers and a small body leave in one write (one
    #   TLS record, one TCP segment); `handle_one_request` flushes after each answer.
    # * ``disable_nagle_algorithm`` (TCP_NODELAY, as every real server sets): unbuffered,
    #   headers and body were two small writes, and Nagle held the body back until the
    #   client's delayed ACK (~40 ms on Linux), so httpx sat "waiting for the rest of the
    #   body" on every request of a kept-alive connection. One request per connection hid
    #   it (closing a socket pushes out what Nagle holds) at the cost of a TLS handshake
    #   per request. tests/integration/test_onedata_standin.py drives mixed requests over
    #   one kept-alive connection to keep it fixed.
    protocol_version = "HTTP/1.1"
    wbufsize = 64 * 1024
    disable_nagle_algorithm = True
    state: State
    server_role: str  # "onezone" or "oneprovider"

    def log_message(self, *args: Any) -> None:  # quiet: tests read `state.requests`
        pass

    def setup(self) -> None:
        # The TLS handshake runs here, in the connection's own thread (see _TLSServer):
        # a client that connects and stays silent holds one thread, not the accept loop.
        self.request.do_handshake()
        super().setup()

    def _body(self) -> bytes:
        """The whole request body, so the next request on the connection starts at its
        first byte. Bad framing raises ValueError (answered 400, connection closed)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline(1024).split(b";")[0].strip(), 16)
                if size < 0:
                    raise ValueError("negative chunk size")
                if size == 0:  # no trailers here; read up to the empty line ending them
                    while self.rfile.readline(1024).strip():
                        pass
                    return b"".join(chunks)
                chunk = self.rfile.read(size)
                if len(chunk) != size or self.rfile.readline(1024).strip():
                    raise ValueError("truncated chunk")
                chunks.append(chunk)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        body = self.rfile.read(length)
        if len(body) != length:
            raise ValueError("request body shorter than its Content-Length")
        return body

    def _handle(self) -> None:
        try:
            body = self._body()
        except (ValueError, OSError):
            # Where the next request would start is unknown: answer, then close.
            self.close_connection = True
            self._send(400, {"error": {"id": "badMessage",
                                       "description": "Malformed request body."}}, {})  # fmt: skip
            return
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        headers = {k.lower(): v for k, v in self.headers.items()}
        with self.state.lock:
            self.state.requests.append((self.command, self.path, headers))
        try:
            status, payload, extra = self.route(self.command, url.path, query, headers, body)
        except ApiError as e:
            status, payload, extra = e.status, e.body, {}
        except Exception as e:  # a stand-in bug must show, not hang the client
            status, payload, extra = 500, {"error": {"id": "internalServerError"}}, {}
            with self.state.lock:
                self.state.errors.append(f"{self.command} {url.path}: {e!r}")
        self._send(status, payload, extra)

    def _send(self, status: int, payload: Any, extra: dict[str, str]) -> None:
        if isinstance(payload, bytes | bytearray):
            data, ctype = bytes(payload), "application/octet-stream"
        elif payload is None:
            data, ctype = b"", None
        else:
            data, ctype = json.dumps(payload).encode(), "application/json"
        no_body = status in (204, 304) or status < 200  # RFC 9110: no body, no length
        self.send_response(status)
        if ctype and not no_body:
            self.send_header("Content-Type", extra.pop("Content-Type", ctype))
        for k, v in extra.items():
            self.send_header(k, v)
        if not no_body:  # HEAD: the length a GET would have, and no body
            self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and not no_body:
            self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _handle

    def token(self, headers: dict[str, str]) -> str:
        value = headers.get("x-auth-token")
        if value is None and headers.get("authorization", "").startswith("Bearer "):
            value = headers["authorization"][len("Bearer ") :]
        if not value:
            raise unauthorized(
                "badToken", "You must authenticate yourself to perform this operation."
            )
        return value.strip()

    def route(self, method, path, query, headers, body):
        if self.server_role == "onezone":
            return OnezoneApi(self.state).route(self, method, path, query, headers, body)
        return ProviderApi(self.state, self.provider_id).route(  # type: ignore[attr-defined]
            self, method, path, query, headers, body
        )


def _json(body: bytes) -> Any:
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError as e:
        raise ApiError(400, "badValueJSON", "Provided JSON could not be understood.") from e


class OnezoneApi:
    """The Onezone REST calls egi-hub and Onedata's clients use."""

    base = "/api/v3/onezone"

    def __init__(self, state: State) -> None:
        self.state = state

    def route(self, handler, method, path, query, headers, body):
        if not path.startswith(self.base + "/"):
            raise ApiError(404, "notFound", "The resource could not be found.")
        rel = path[len(self.base) :]
        with self.state.lock:
            if rel == "/tokens/infer_access_token_scope" and method == "POST":
                return self.infer_scope(_json(body))
            user_id = self.authenticate(handler.token(headers))
            if rel == "/user" and method == "GET":
                return 200, {"userId": user_id, "fullName": self.state.users[user_id],
                             "username": None}, {}  # fmt: skip
            if rel == "/user/spaces" and method == "GET":
                mine = [s.space_id for s in self.state.spaces.values() if user_id in s.members]
                return 200, {"spaces": mine}, {}
            if rel.startswith("/user/spaces/") and method == "GET":
                space = self.state.spaces.get(unquote(rel.rsplit("/", 1)[1]))
                if space is None or user_id not in space.members:
                    raise ApiError(404, "notFound", "The resource could not be found.")
                return 200, {"spaceId": space.space_id, "name": space.name,
                             "providers": {p: 10**12 for p in space.supports}}, {}  # fmt: skip
            if rel.startswith("/user/tokens/named/name/") and method == "GET":
                return self.named_by_name(user_id, unquote(rel.rsplit("/", 1)[1]))
            if rel == "/user/tokens/named" and method == "POST":
                return self.create_named(user_id, _json(body))
            if rel.startswith("/user/tokens/named/") and method == "DELETE":
                return self.delete_named(user_id, unquote(rel.rsplit("/", 1)[1]))
            if rel == "/user/tokens/temporary" and method == "POST":
                return self.create_temporary(user_id, _json(body))
        raise ApiError(404, "notFound", "The resource could not be found.")

    def authenticate(self, serialized: str) -> str:
        user_id, record = self.state.resolve(serialized)
        if record is not None and not record.service_allowed("ozw-onezone"):
            caveat = next(c for c in record.caveats if c["type"] == "service")
            raise unauthorized(
                "tokenCaveatUnverified", "Token caveat unverified: service.", {"caveat": caveat}
            )
        if record is not None and (record.has_data_caveats() or record.interface() == "oneclient"):
            bad = next(c for c in record.caveats if c["type"].startswith("data.")
                       or c.get("interface") == "oneclient")  # fmt: skip
            raise unauthorized(
                "tokenCaveatUnverified", f"Token caveat unverified: {bad['type']}.", {"caveat": bad}
            )
        return user_id

    def token_info(self, serialized: str, record: Token) -> dict[str, Any]:
        return {
            "tokenId": record.token_id, "name": record.name, "revoked": record.revoked,
            "subject": {"type": "user", "id": record.user_id},
            "type": {"accessToken": {}}, "caveats": record.caveats, "metadata": {},
            "token": serialized,
        }  # fmt: skip

    def named_by_name(self, user_id: str, name: str):
        for serialized, record in self.state.tokens.items():
            if record.user_id == user_id and record.name == name:
                return 200, self.token_info(serialized, record), {}
        raise ApiError(404, "notFound", "The resource could not be found.")

    def check_request(self, data: Any) -> list[dict[str, Any]]:
        if not isinstance(data, dict):
            raise ApiError(400, "badValueJSON", "Provided JSON could not be understood.")
        kind = data.get("type", {"accessToken": {}})
        if kind != {"accessToken": {}}:
            raise ApiError(400, "badValueTokenType", "Only access tokens are supported here.",
                           {"key": "type"})  # fmt: skip
        caveats = data.get("caveats", [])
        if not isinstance(caveats, list) or not all(
            isinstance(c, dict) and self.caveat_ok(c) for c in caveats
        ):
            raise ApiError(400, "badValueCaveats", "Provided caveats are invalid.",
                           {"key": "caveats"})  # fmt: skip
        return caveats

    @staticmethod
    def caveat_ok(c: dict[str, Any]) -> bool:
        if c.get("type") not in CAVEAT_TYPES:
            return False
        if c["type"] == "time":
            return isinstance(c.get("validUntil"), int) and not isinstance(c["validUntil"], bool)
        if c["type"] == "interface":
            return c.get("interface") in ("oneclient", "rest", "graphsync")
        if c["type"] == "service":
            return isinstance(c.get("whitelist"), list) and all(
                isinstance(w, str) and re.fullmatch(r"(ozw|ozp|opw|opp)-[\w*-]+", w)
                for w in c["whitelist"]
            )
        if c["type"] == "data.path":
            entries = c.get("whitelist")
            if not isinstance(entries, list) or not entries:
                return False
            try:
                paths = [base64.b64decode(e, validate=True).decode() for e in entries]
            except (ValueError, TypeError):
                return False
            # canonical: "/<space id>[/...]", no trailing slash, no empty or dot segments
            return all(
                p.startswith("/") and p != "/" and not p.endswith("/")
                and all(seg not in ("", ".", "..") for seg in p[1:].split("/"))
                for p in paths
            )  # fmt: skip
        return True

    def create_named(self, user_id: str, data: Any):
        caveats = self.check_request(data)
        name = data.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise ApiError(400, "badValueName", "Bad value: provided \"name\" must be 2-50 "
                           "characters long and composed only of letters, digits, brackets "
                           "and some punctuation.", {"key": "name"})  # fmt: skip
        if any(r.user_id == user_id and r.name == name for r in self.state.tokens.values()):
            raise ApiError(400, "badValueIdentifierOccupied",
                           "Bad value: provided identifier (\"name\") is already occupied.",
                           {"key": "name"})  # fmt: skip
        serialized = self.state.mint(user_id, caveats, name)
        return 201, {"tokenId": self.state.tokens[serialized].token_id, "token": serialized}, {}

    def delete_named(self, user_id: str, token_id: str):
        for serialized, record in list(self.state.tokens.items()):
            if record.user_id == user_id and record.name and record.token_id == token_id:
                del self.state.tokens[serialized]
                return 204, None, {}
        raise ApiError(404, "notFound", "The resource could not be found.")

    def create_temporary(self, user_id: str, data: Any):
        caveats = self.check_request(data)
        if not any(c["type"] == "time" for c in caveats):
            raise ApiError(400, "tokenTimeCaveatRequired", "You must specify a time caveat "
                           "for temporary tokens.", {"maxTtl": 31536000})  # fmt: skip
        return 201, {"token": self.state.mint(user_id, caveats)}, {}

    def infer_scope(self, data: Any):
        serialized = data.get("token") if isinstance(data, dict) else None
        if not isinstance(serialized, str):
            raise ApiError(400, "missingRequiredValue", "Missing required value: token.",
                           {"key": "token"})  # fmt: skip
        user_id, record = self.state.resolve(serialized)
        spaces, providers = {}, {}
        for space in self.state.spaces.values():
            if user_id not in space.members or (
                record and not record.space_visible(space.space_id)
            ):
                continue
            supports = {pid: ro for pid, ro in space.supports.items()
                        if record is None or record.service_allowed(f"opw-{pid}")}  # fmt: skip
            spaces[space.space_id] = {
                "name": space.name,
                "supports": {pid: {"readonly": ro} for pid, ro in supports.items()},
            }
            for pid in supports:
                providers[pid] = dict(self.state.providers[pid])
        scope = {
            "readonly": bool(record and record.readonly()),
            "spaces": spaces,
            "providers": providers,
        }
        return 200, {"validUntil": record.valid_until() if record else None,
                     "dataAccessScope": scope}, {}  # fmt: skip


class ProviderApi:
    """The Oneprovider file REST API and the CDMI move, over ``State.nodes``."""

    base = "/api/v3/oneprovider"

    def __init__(self, state: State, provider_id: str) -> None:
        self.state = state
        self.provider_id = provider_id

    # --- authorization --------------------------------------------------------------
    def user(self, handler: Handler, headers: dict[str, str]) -> tuple[str, Token | None]:
        user_id, record = self.state.resolve(handler.token(headers))
        if record is not None and record.interface() == "oneclient":
            caveat = {"type": "interface", "interface": "oneclient"}
            raise unauthorized(
                "tokenCaveatUnverified", "Token caveat unverified: interface.", {"caveat": caveat}
            )
        if record is not None and not record.service_allowed(f"opw-{self.provider_id}"):
            caveat = next(c for c in record.caveats if c["type"] == "service")
            raise unauthorized(
                "tokenCaveatUnverified", "Token caveat unverified: service.", {"caveat": caveat}
            )
        self.record = record
        return user_id, record

    def space_of(self, user_id: str, spec: str) -> Space:
        name, _, space_id = spec.partition("@")
        record = getattr(self, "record", None)
        for space in self.state.spaces.values():
            if (
                user_id in space.members
                and (record is None or record.space_visible(space.space_id))
                and space.name == name
                and (not space_id or space.space_id == space_id)
                and self.provider_id in space.supports
            ):
                return space
        raise posix("enoent", f"Space '{spec}' is not accessible.")

    def node(self, user_id: str, file_id: str) -> Node:
        node = self.state.nodes.get(file_id)
        if node is None:
            raise posix("enoent", "No such file or directory.")
        space = self.state.spaces[node.space_id]
        if user_id not in space.members or self.provider_id not in space.supports:
            raise ApiError(403, "forbidden", "You are not authorized to perform this operation.")
        record = getattr(self, "record", None)
        if record is not None and not record.space_visible(node.space_id):
            raise posix("enoent", "No such file or directory.")  # invisible with this token
        if record is not None and not record.path_allowed(self.canonical(node)):
            raise posix("eacces", "Permission denied.")
        return node

    def canonical(self, node: Node) -> str:
        """``<space id>/<path>`` of a node, as ``data.path`` caveats name files."""
        parts, cur = [], node
        while cur.parent is not None:
            parts.append(cur.name)
            cur = self.state.nodes[cur.parent]
        return "/".join([node.space_id, *reversed(parts)])

    def writable(self, record: Token | None, space_id: str) -> None:
        if record is not None and record.readonly():
            raise posix("eacces", "The token allows read-only data access.")
        if self.state.spaces[space_id].supports[self.provider_id]:
            raise posix("eacces", "The space is supported read-only by this provider.")

    # --- routing ----------------------------------------------------------------------
    def route(self, handler, method, path, query, headers, body):
        with self.state.lock:
            user_id, record = self.user(handler, headers)
            if path.startswith("/cdmi/") and method == "PUT":
                return self.cdmi_move(user_id, record, path[len("/cdmi/") :], headers, body)
            if not path.startswith(self.base + "/"):
                raise ApiError(404, "notFound", "The resource could not be found.")
            rel = path[len(self.base) :]
            if rel == "/spaces" and method == "GET":
                mine = [s for s in self.state.spaces.values()
                        if user_id in s.members and self.provider_id in s.supports
                        and (record is None or record.space_visible(s.space_id))]  # fmt: skip
                return 200, [{"spaceId": s.space_id, "name": s.name} for s in mine], {}
            if rel.startswith("/lookup-file-id/") and method == "POST":
                parts = split_path(rel[len("/lookup-file-id/") :])
                if not parts:
                    raise posix("enoent", "No space given.")
                space = self.space_of(user_id, parts[0])
                return 200, {"fileId": self.state.walk(space.space_id, parts[1:]).file_id}, {}
            m = re.fullmatch(r"/data/([^/]+)(/children|/content|/path/.*)?", rel)
            if not m:
                raise ApiError(404, "notFound", "The resource could not be found.")
            file_id, sub = unquote(m.group(1)), m.group(2) or ""
            node = self.node(user_id, file_id)
            if sub == "" and method == "GET":
                return 200, self.attrs(node, self.wanted(query, body)), {}
            if sub == "" and method == "DELETE":
                self.writable(record, node.space_id)
                if node.parent is None:
                    raise posix("eperm", "A space's root directory cannot be removed.")
                self.state.delete(node)
                return 204, None, {}
            if sub == "/children" and method == "GET":
                return self.children(node, query, body)
            if sub == "/content" and method == "GET":
                return self.read(node, headers)
            if sub == "/content" and method == "PUT":
                self.writable(record, node.space_id)
                return self.write(node, query, body)
            if sub.startswith("/path/") and method == "PUT":
                self.writable(record, node.space_id)
                return self.create(node, sub[len("/path/") :], query, body)
        raise ApiError(404, "notFound", "The resource could not be found.")

    # --- attributes -----------------------------------------------------------------
    def wanted(self, query: dict[str, str], body: bytes) -> list[str]:
        data = _json(body)
        if isinstance(data, dict) and "attributes" in data:
            attrs = data["attributes"]
        elif "attribute" in query:
            attrs = [SNAKE.get(query["attribute"], query["attribute"])]
        else:
            return DEFAULT_ATTRS
        if not isinstance(attrs, list) or any(a not in [*DEFAULT_ATTRS, "path"] for a in attrs):
            raise ApiError(400, "badValueListNotAllowed", "Bad value: provided \"attributes\" "
                           "must be a list of allowed values.", {"key": "attributes"})  # fmt: skip
        return attrs

    def attrs(self, node: Node, wanted: list[str]) -> dict[str, Any]:
        # Only what is asked for is computed: a 10,000-entry listing must cost the
        # stand-in little next to its client (tests/benchmarks/bench_storage.py).
        every = {
            "fileId": node.file_id, "parentFileId": node.parent, "name": node.name,
            "posixPermissions": node.mode, "atime": node.mtime, "mtime": node.mtime,
            "ctime": node.mtime, "type": node.type,
            "size": len(node.data) if node.type == "REG" else None,
            "displayGid": 0, "displayUid": 0, "ownerUserId": "standin",
            "originProviderId": self.provider_id, "hardlinkCount": 1,
        }  # fmt: skip
        out = {}
        for key in wanted:
            if key in every:
                out[key] = every[key]
            elif key == "directShareIds":
                out[key] = []
            elif key == "index":
                out[key] = base64.b64encode(node.name.encode()).decode()
            elif key == "path":
                parts, cur = [], node
                while cur.parent is not None:
                    parts.append(cur.name)
                    cur = self.state.nodes[cur.parent]
                space = self.state.spaces[node.space_id]
                out[key] = "/" + "/".join([space.name, *reversed(parts)])
        return out

    def children(self, node: Node, query: dict[str, str], body: bytes):
        if node.type != "DIR":
            raise posix("enotdir", f"'{node.name}' is not a directory.")
        try:
            limit = int(query.get("limit", "1000"))
        except ValueError:
            raise ApiError(400, "badValueInteger", "Bad value: provided \"limit\" must be an "
                           "integer.", {"key": "limit"}) from None  # fmt: skip
        if not 1 <= limit <= MAX_LIMIT:
            raise ApiError(400, "badValueNotInRange", f"Bad value: provided \"limit\" must be "
                           f"between 1 and {MAX_LIMIT}.",
                           {"key": "limit", "low": 1, "high": MAX_LIMIT})  # fmt: skip
        names = sorted(node.children)
        after = query.get("token")
        if after:
            try:
                last = base64.urlsafe_b64decode(after.encode()).decode()
            except ValueError:
                raise ApiError(400, "badValueToken", "Bad value: provided \"token\" could not "
                               "be understood.", {"key": "token"}) from None  # fmt: skip
            names = names[bisect.bisect_right(names, last) :]
        page = names[:limit]
        wanted = self.wanted(query, body) if (body.strip() or "attribute" in query) else [
            "fileId", "name"]  # fmt: skip
        is_last = len(names) <= limit
        result: dict[str, Any] = {
            "children": [self.attrs(self.state.nodes[node.children[n]], wanted) for n in page],
            "isLast": is_last,
            "nextPageToken": None
            if is_last or not page
            else base64.urlsafe_b64encode(page[-1].encode()).decode(),
        }
        return 200, result, {}

    # --- content --------------------------------------------------------------------
    def read(self, node: Node, headers: dict[str, str]):
        if node.type != "REG":
            raise posix("eisdir", f"'{node.name}' is a directory.")
        data, size = node.data, len(node.data)
        spec = headers.get("range")
        if not spec:
            return 200, bytes(data), {}
        m = re.fullmatch(r"bytes=(\d*)-(\d*)", spec.strip())
        if not m or m.group(1) == m.group(2) == "":
            raise ApiError(400, "badValueRange", 'Bad value: provided "range" is invalid.')
        if m.group(1) == "":
            start, end = max(0, size - int(m.group(2))), size - 1
        else:
            start = int(m.group(1))
            end = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
        if start >= size or start > end:
            return 416, None, {"Content-Range": f"bytes */{size}"}
        return 206, bytes(data[start : end + 1]), {"Content-Range": f"bytes {start}-{end}/{size}"}

    def write(self, node: Node, query: dict[str, str], body: bytes):
        if node.type != "REG":
            raise posix("eisdir", f"'{node.name}' is a directory.")
        if "offset" in query:
            try:
                offset = int(query["offset"])
                assert offset >= 0
            except (ValueError, AssertionError):
                raise ApiError(400, "badValueInteger", "Bad value: provided \"offset\" must be "
                               "a non-negative integer.", {"key": "offset"}) from None  # fmt: skip
            if len(node.data) < offset:
                node.data.extend(b"\0" * (offset - len(node.data)))
            node.data[offset : offset + len(body)] = body
        else:  # Onedata's documented behaviour: no offset truncates and writes from 0
            node.data = bytearray(body)
        node.mtime = int(time.time())
        return 204, None, {}

    def create(self, parent: Node, rel: str, query: dict[str, str], body: bytes):
        parts = split_path(rel)
        kind = query.get("type", "REG")
        if kind not in ("REG", "DIR") or not parts:
            raise ApiError(400, "badValueNotAllowed", "Bad value: provided \"type\" must be "
                           "one of: REG, DIR.", {"key": "type"})  # fmt: skip
        flag = {"true": True, "false": False}
        create_parents = flag.get(query.get("create_parents", "false"), False)
        update = flag.get(query.get("update_existing", "false"), False)
        directory = self.state.walk(parent.file_id, parts[:-1], "DIR" if create_parents else None)
        if directory.type != "DIR":
            raise posix("enotdir", f"'{directory.name}' is not a directory.")
        existing = directory.children.get(parts[-1])
        if existing is not None:
            node = self.state.nodes[existing]
            if not update or node.type != kind:
                raise posix("eexist", "File exists.")
        else:
            node = self.state.new_node(parts[-1], kind, directory.space_id, directory.file_id)
        if kind == "REG" and body:  # update_existing writes from offset 0, not truncating
            node.data[0 : len(body)] = body
        if "mode" in query and re.fullmatch(r"[0-7]{3,4}", query["mode"]):
            node.mode = query["mode"][-3:]
        node.mtime = int(time.time())
        return 201, {"fileId": node.file_id}, {}

    # --- CDMI move --------------------------------------------------------------------
    def cdmi_move(self, user_id, record, rel, headers, body):
        if headers.get("x-cdmi-specification-version") != "1.1.1":
            raise ApiError(400, "badValueVersion", "Bad value: provided "
                           "\"X-CDMI-Specification-Version\" must be 1.1.1.",
                           {"key": "X-CDMI-Specification-Version"})  # fmt: skip
        data = _json(body)
        if not isinstance(data, dict) or not isinstance(data.get("move"), str):
            raise ApiError(400, "missingRequiredValue", "Missing required value: move.",
                           {"key": "move"})  # fmt: skip
        dst = split_path(rel)
        src = split_path(data["move"])
        if len(dst) < 2 or len(src) < 2:
            raise posix("einval", "A space's root directory cannot be moved.")
        dst_space, src_space = self.space_of(user_id, dst[0]), self.space_of(user_id, src[0])
        if dst_space.space_id != src_space.space_id:
            raise posix("exdev", "Moving between spaces is not supported.")
        self.writable(record, dst_space.space_id)
        node = self.state.walk(src_space.space_id, src[1:])
        target_dir = self.state.walk(dst_space.space_id, dst[1:-1])
        if target_dir.type != "DIR":
            raise posix("enotdir", f"'{target_dir.name}' is not a directory.")
        cur: Node | None = target_dir
        while cur is not None:  # a directory cannot go below itself
            if cur.file_id == node.file_id:
                raise posix("einval", "Cannot move a directory into itself.")
            cur = self.state.nodes[cur.parent] if cur.parent else None
        existing = target_dir.children.get(dst[-1])
        if existing is not None and existing != node.file_id:
            other = self.state.nodes[existing]
            if other.type == "DIR" and node.type != "DIR":
                raise posix("eisdir", f"'{other.name}' is a directory.")
            if other.type != "DIR" and node.type == "DIR":
                raise posix("enotdir", f"'{other.name}' is not a directory.")
            if other.children:
                raise posix("enotempty", f"'{other.name}' is not empty.")
            self.state.delete(other)
        self.state.nodes[node.parent].children.pop(node.name)  # type: ignore[index]
        node.name, node.parent = dst[-1], target_dir.file_id
        target_dir.children[node.name] = node.file_id
        kind = "application/cdmi-container" if node.type == "DIR" else "application/cdmi-object"
        answer = {"objectType": kind, "objectID": node.file_id, "objectName": node.name,
                  "parentURI": "/" + "/".join(dst[:-1]) + "/"}  # fmt: skip
        return 201, answer, {"Content-Type": kind, "X-CDMI-Specification-Version": "1.1.1"}


def make_ca(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1/localhost: (ca, cert, key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Onedata stand-in test CA")])
    ca_cert = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                       critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))  # fmt: skip
    paths[2].chmod(0o600)
    return paths


class _TLSServer(ThreadingHTTPServer):
    """TLS per accepted connection; the handshake is left to the connection's thread
    (`Handler.setup`) so the accept loop never waits on a client, and a timeout so a
    silent client (or an idle kept-alive connection) cannot hold a thread forever."""

    daemon_threads = True
    tls: ssl.SSLContext
    accepted = 0  # connections so far: keep-alive tests check reuse with it

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open: set[Any] = set()  # connections still open (kept alive, or mid-request)
        self._open_lock = threading.Lock()

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = self.socket.accept()
        self.accepted += 1  # only the accept loop's thread writes it
        sock.settimeout(30)
        conn = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        with self._open_lock:
            self._open.add(conn)
        return conn, addr

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End every open connection: a stopped stand-in answers nobody, and no handler
        thread outlives it by the 30 s idle timeout of a kept-alive connection."""
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by its client

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A failed handshake, a timeout or a client gone mid-answer is the client's
        # business; anything else is a stand-in bug and is printed.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class OnedataStandin:
    """A running Onezone + Oneprovider pair; the Python API tests use to set it up."""

    def __init__(self, tmp: Path, idp_prefix: str = "egi") -> None:
        self.state = State(idp_prefix)
        ca, cert, key = make_ca(Path(tmp) / "onedata-standin-tls")
        self.ca_file = str(ca)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.provider_id = "standin-provider-" + secrets.token_hex(8)
        self._servers = []
        for role in ("onezone", "oneprovider"):
            handler = type(
                f"{role}Handler",
                (Handler,),
                {"state": self.state, "server_role": role, "provider_id": self.provider_id},
            )
            server = _TLSServer(("127.0.0.1", 0), handler)
            server.tls = context
            threading.Thread(target=server.serve_forever, daemon=True,
                             name=f"onedata-standin-{role}").start()  # fmt: skip
            self._servers.append(server)
        self.onezone_host = f"127.0.0.1:{self._servers[0].server_port}"
        self.provider_host = f"127.0.0.1:{self._servers[1].server_port}"
        self.onezone_url = f"https://{self.onezone_host}"
        self.provider_url = f"https://{self.provider_host}"
        self.state.providers[self.provider_id] = {
            "name": "Stand-in Oneprovider", "domain": self.provider_host,
            "version": PROVIDER_VERSION, "online": True}  # fmt: skip

    def start_provider(self, name: str) -> tuple[str, str]:
        """Another running Oneprovider over the same files, with an id of its own;
        returns ``(provider id, https URL)``. Support spaces with ``add_space``'s
        ``other_supports``; it stops with the stand-in."""
        provider_id = "standin-provider-" + secrets.token_hex(8)
        handler = type("oneproviderHandler", (Handler,), {"state": self.state,
                       "server_role": "oneprovider", "provider_id": provider_id})  # fmt: skip
        server = _TLSServer(("127.0.0.1", 0), handler)
        server.tls = self._servers[1].tls
        threading.Thread(target=server.serve_forever, daemon=True,
                         name=f"onedata-standin-{name}").start()  # fmt: skip
        self._servers.append(server)
        host = f"127.0.0.1:{server.server_port}"
        with self.state.lock:
            self.state.providers[provider_id] = {
                "name": name, "domain": host, "version": PROVIDER_VERSION,
                "online": True}  # fmt: skip
        return provider_id, f"https://{host}"

    def client_tls(self) -> ssl.SSLContext:
        """A client TLS context trusting the stand-in's CA (httpx's ``verify=``)."""
        return ssl.create_default_context(cafile=self.ca_file)

    # --- set-up -----------------------------------------------------------------------
    def add_user(self, idp_token: str, user_id: str, full_name: str = "") -> None:
        """Register a user whose IdP (Check-in) access token Onezone accepts as
        ``X-Auth-Token: <prefix>:<idp_token>``."""
        with self.state.lock:
            self.state.users[user_id] = full_name or user_id
            self.state.idp_tokens[idp_token] = user_id

    def forget_idp_token(self, idp_token: str) -> None:
        """The IdP token stops being accepted (as when it expires at Check-in)."""
        with self.state.lock:
            self.state.idp_tokens.pop(idp_token, None)
            self.state.idp_cache.pop(idp_token, None)
            self.state.idp_refused.add(idp_token)

    def trust_idp(self, userinfo_url: str, *, name: str | None = None,
                  cache_seconds: float = 30.0) -> None:  # fmt: skip
        """Accept any access token of this IdP that its userinfo endpoint answers
        (``X-Auth-Token: <prefix>:<token>``), as Onezone does with authority delegation
        enabled for an OpenID Connect IdP. ``name``: the IdP's identifier in Onezone's
        config (default: the token prefix, as in Onezone's default ``tokenPrefix``)."""
        with self.state.lock:
            self.state.idp = IdpTrust(
                name or self.state.idp_prefix, userinfo_url, cache_seconds=cache_seconds
            )

    def idp_user_id(self, sub: str) -> str:
        """The Onedata user id of the IdP account ``sub`` (for `add_space` members)."""
        idp = self.state.idp.name if self.state.idp else self.state.idp_prefix
        return idp_user_id(idp, sub)

    def add_provider(self, name: str, *, online: bool = False, version: str = PROVIDER_VERSION,
                     domain: str = "127.0.0.1:9") -> str:  # fmt: skip
        """A provider that only exists in scope answers (no server): for offline/old ones."""
        provider_id = "standin-provider-" + secrets.token_hex(8)
        with self.state.lock:
            self.state.providers[provider_id] = {
                "name": name, "domain": domain, "version": version, "online": online}  # fmt: skip
        return provider_id

    def add_space(self, name: str, members: list[str], *, readonly_support: bool = False,
                  other_supports: dict[str, bool] | None = None) -> str:  # fmt: skip
        """A space supported by the stand-in provider (and, in scope answers only, by
        ``other_supports`` {provider id: readonly}); returns its id, also its root's file id."""
        space_id = "standin-space-" + secrets.token_hex(8)
        with self.state.lock:
            supports = {self.provider_id: readonly_support, **(other_supports or {})}
            self.state.spaces[space_id] = Space(space_id, name, set(members), supports)
            root = Node(space_id, name, "DIR", space_id, None, mode="775")
            self.state.nodes[space_id] = root
        return space_id

    def mint_token(self, user_id: str, caveats: list[dict[str, Any]] | None = None,
                   ttl: int | None = 3600) -> str:  # fmt: skip
        """A REST access token for ``user_id`` (interface rest + a time caveat by default)."""
        caveats = list(caveats or [{"type": "interface", "interface": "rest"}])
        if ttl is not None and not any(c["type"] == "time" for c in caveats):
            caveats.append({"type": "time", "validUntil": int(time.time()) + ttl})
        with self.state.lock:
            return self.state.mint(user_id, caveats)

    def revoke(self, token: str) -> None:
        with self.state.lock:
            self.state.tokens[token].revoked = True

    # --- direct file access for tests ------------------------------------------------
    def write_file(self, space_id: str, path: str, data: bytes) -> None:
        """Put a file in a space without HTTP (parents made): fast set-up for big trees."""
        with self.state.lock:
            parts = split_path(path)
            directory = self.state.walk(space_id, parts[:-1], "DIR")
            existing = directory.children.get(parts[-1])
            node = (
                self.state.nodes[existing]
                if existing
                else self.state.new_node(parts[-1], "REG", space_id, directory.file_id)
            )
            node.data = bytearray(data)

    def read_file(self, space_id: str, path: str) -> bytes:
        with self.state.lock:
            return bytes(self.state.walk(space_id, split_path(path)).data)

    def exists(self, space_id: str, path: str) -> bool:
        with self.state.lock:
            try:
                self.state.walk(space_id, split_path(path))
            except ApiError:
                return False
            return True

    def requests(self) -> list[tuple[str, str, dict[str, str]]]:
        """Every request so far: (method, path with query, lower-cased headers)."""
        with self.state.lock:
            return list(self.state.requests)

    def connections(self) -> dict[str, int]:
        """Connections each server accepted so far: ``{"onezone": n, "oneprovider": m}``."""
        return {"onezone": self._servers[0].accepted, "oneprovider": self._servers[1].accepted}

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
            server.close_connections()


def start_onedata_standin(tmp: Path, idp_prefix: str = "egi") -> OnedataStandin:
    """Start the stand-in (two HTTPS servers on free ports of 127.0.0.1); ``.stop()`` it."""
    return OnedataStandin(tmp, idp_prefix)


def main(argv: list[str] | None = None) -> int:
    """``python -m tests.onedata_standin DIR``: the stand-in in a process of its own, so a
    benchmark's client is timed (and its CPU counted) apart from the server. It prints one
    JSON line (URLs, CA file, a REST token, the space id), then serves until its standard
    input closes. ``--fill FOLDER=N`` puts N one-byte files in FOLDER before that."""
    import argparse

    parser = argparse.ArgumentParser(
        description=main.__doc__.splitlines()[0] if main.__doc__ else ""
    )
    parser.add_argument("directory", type=Path)
    parser.add_argument("--space", default="bench")
    parser.add_argument("--fill", action="append", default=[], metavar="FOLDER=N")
    args = parser.parse_args(argv)
    standin = start_onedata_standin(args.directory)
    try:
        space_id = standin.add_space(args.space, ["bench-user"])
        for spec in args.fill:
            folder, _, count = spec.rpartition("=")
            for i in range(int(count)):
                standin.write_file(space_id, f"{folder}/entry-{i:06d}.txt", b"x")
        print(json.dumps({
            "onezone_url": standin.onezone_url, "provider_url": standin.provider_url,
            "ca_file": standin.ca_file, "token": standin.mint_token("bench-user", ttl=None),
            "space_id": space_id, "space": args.space,
        }), flush=True)  # fmt: skip
        sys.stdin.read()
    finally:
        standin.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
