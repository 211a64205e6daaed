"""A stand-in for an S3 service's STS endpoint: ``AssumeRoleWithWebIdentity``, on 127.0.0.1.

The S3 services that trust EGI Check-in (MinIO, Ceph RGW, AWS) cannot run here with
an STS, so this follows AWS's documented ``AssumeRoleWithWebIdentity`` (which MinIO and
Ceph RGW model theirs on), not what egi-hub's code happens to send:

- the query API: ``Action=AssumeRoleWithWebIdentity``, ``Version=2011-06-15``,
  ``WebIdentityToken``, ``RoleSessionName`` (required: ``[\\w+=,.@-]{2,64}``),
  ``DurationSeconds`` (900-43200, default 3600), ``RoleArn`` (required and checked when
  the stand-in is given a role, as AWS and Ceph do; refused when it has none, as MinIO
  does with claim-based policies), in a form body or the query string, unsigned;
- the token is verified at the real test OpenID provider (`tests/oidcprovider.py`).
  Check-in's access tokens are JWTs that the services check against its JWKS; the test
  provider (npm ``oidc-provider``) issues *opaque* access tokens, so the stand-in asks
  the provider's token introspection endpoint (RFC 7662, as the service's registered
  client) and gets the same verdict: not active (unknown, forged, revoked or expired) ->
  ``InvalidIdentityToken``; issued to another client (the audience the service trusts is
  the hub's client id) -> ``InvalidIdentityToken`` "Incorrect token audience"; past its
  ``exp`` -> ``ExpiredTokenException``; provider unreachable -> ``IDPCommunicationError``;
- the answer is AWS's XML (``AssumeRoleWithWebIdentityResult/Credentials/{AccessKeyId,
  SecretAccessKey, SessionToken, Expiration}``, ``SubjectFromWebIdentityToken``,
  ``Audience``, ``Provider``), errors ``ErrorResponse/Error/{Type, Code, Message}``
  with status 400 (403 for ``AccessDenied``).

The temporary credentials are key pairs from a pool the real S3 server (``rclone serve
s3``, which checks signatures) was started with, handed out in turn with a fresh
random session token each (rclone does not check session tokens). A real service would
also limit each session by its policy (``{username}`` prefixes); rclone lets every key
reach every bucket, so the tests check who got which credentials, not that the S3
server refuses another user's prefix. ``lifetime`` (a test knob) makes credentials end
sooner than ``DurationSeconds`` asks, so renewal can be seen without waiting 15 minutes.
"""

from __future__ import annotations

import datetime
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit
from xml.sax.saxutils import escape

import httpx

__all__ = ["Issued", "StsStandin", "start_sts_standin"]

NS = "https://sts.amazonaws.com/doc/2011-06-15/"
SESSION_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+=,.@-")


@dataclass(frozen=True)
class Issued:
    """Credentials the stand-in handed out, and to whom."""

    subject: str
    session_name: str
    key: str
    secret: str = field(repr=False)
    session_token: str = field(repr=False)
    expiration: float


class _Refusal(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


@dataclass
class StsStandin:
    """A running stand-in; `issued` lists every credential it gave, in order."""

    server: ThreadingHTTPServer
    thread: threading.Thread
    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    pool: list[tuple[str, str]] = field(repr=False)
    role_arn: str = ""
    lifetime: float | None = None
    issued: list[Issued] = field(default_factory=list)
    requests: int = 0
    _next: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    # -- the operation ------------------------------------------------------------------

    def _introspection_url(self) -> str:
        config = httpx.get(f"{self.issuer}/.well-known/openid-configuration", timeout=10)
        config.raise_for_status()
        return config.json()["introspection_endpoint"]

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims if the provider says it is active and for the hub's client."""
        try:
            r = httpx.post(
                self._introspection_url(),
                data={"token": token, "token_type_hint": "access_token"},
                auth=(self.client_id, self.client_secret),
                timeout=10,
            )
            r.raise_for_status()
            claims = r.json()
        except (httpx.HTTPError, ValueError, KeyError):
            raise _Refusal(
                "IDPCommunicationError", "The identity provider could not be reached."
            ) from None
        if claims.get("active") is not True:
            raise _Refusal(
                "InvalidIdentityToken",
                "The web identity token could not be validated: it is not active.",
            )
        if claims.get("client_id") != self.client_id:
            raise _Refusal("InvalidIdentityToken", "Incorrect token audience.")
        exp = claims.get("exp")
        if isinstance(exp, int | float) and exp <= time.time():
            raise _Refusal("ExpiredTokenException", "Token expired.")
        if not claims.get("sub"):
            raise _Refusal("InvalidIdentityToken", "The token has no subject.")
        return claims

    def assume(self, params: dict[str, str]) -> Issued:
        if params.get("Action") != "AssumeRoleWithWebIdentity":
            raise _Refusal("InvalidAction", "Could not find operation " + params.get("Action", ""))
        if params.get("Version") != "2011-06-15":
            raise _Refusal("InvalidParameterValue", "Version must be 2011-06-15.")
        for name in ("WebIdentityToken", "RoleSessionName"):
            if not params.get(name):
                raise _Refusal("MissingParameter", f"The request must contain {name}.")
        session = params["RoleSessionName"]
        if not 2 <= len(session) <= 64 or set(session) - SESSION_NAME_CHARS:
            raise _Refusal("ValidationError", "RoleSessionName does not satisfy its constraint.")
        try:
            duration = int(params.get("DurationSeconds", "3600"))
        except ValueError:
            raise _Refusal("ValidationError", "DurationSeconds is not a number.") from None
        if not 900 <= duration <= 43200:
            raise _Refusal("ValidationError", "DurationSeconds must be between 900 and 43200.")
        asked = params.get("RoleArn", "")
        if self.role_arn and not asked:
            raise _Refusal("MissingParameter", "The request must contain RoleArn.")
        if asked != self.role_arn:
            raise _Refusal(
                "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity", 403
            )
        claims = self.verify(params["WebIdentityToken"])
        with self._lock:
            key, secret = self.pool[self._next % len(self.pool)]
            self._next += 1
            issued = Issued(
                subject=str(claims["sub"]),
                session_name=session,
                key=key,
                secret=secret,
                session_token=secrets.token_urlsafe(48),
                expiration=time.time() + (self.lifetime or duration),
            )
            self.issued.append(issued)
        return issued

    def answer(self, issued: Issued) -> str:
        expiration = datetime.datetime.fromtimestamp(issued.expiration, datetime.UTC)
        return (
            f'<AssumeRoleWithWebIdentityResponse xmlns="{NS}">'
            "<AssumeRoleWithWebIdentityResult>"
            f"<SubjectFromWebIdentityToken>{escape(issued.subject)}</SubjectFromWebIdentityToken>"
            f"<Audience>{escape(self.client_id)}</Audience>"
            "<AssumedRoleUser>"
            f"<Arn>{escape(self.role_arn or 'arn:aws:sts::000000000000:assumed-role/standin')}"
            f"/{escape(issued.session_name)}</Arn>"
            f"<AssumedRoleId>AROASTANDIN:{escape(issued.session_name)}</AssumedRoleId>"
            "</AssumedRoleUser>"
            "<Credentials>"
            f"<SessionToken>{escape(issued.session_token)}</SessionToken>"
            f"<SecretAccessKey>{escape(issued.secret)}</SecretAccessKey>"
            f"<Expiration>{expiration.strftime('%Y-%m-%dT%H:%M:%SZ')}</Expiration>"
            f"<AccessKeyId>{escape(issued.key)}</AccessKeyId>"
            "</Credentials>"
            f"<Provider>{escape(self.issuer)}</Provider>"
            "</AssumeRoleWithWebIdentityResult>"
            f"<ResponseMetadata><RequestId>{secrets.token_hex(8)}</RequestId></ResponseMetadata>"
            "</AssumeRoleWithWebIdentityResponse>"
        )


def _error_xml(code: str, message: str) -> str:
    kind = "Receiver" if code == "IDPCommunicationError" else "Sender"
    return (
        f'<ErrorResponse xmlns="{NS}"><Error><Type>{kind}</Type><Code>{escape(code)}</Code>'
        f"<Message>{escape(message)}</Message></Error>"
        f"<RequestId>{secrets.token_hex(8)}</RequestId></ErrorResponse>"
    )


def _handler(standin: StsStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # the URL may carry a token: say nothing
            pass

        def _params(self) -> dict[str, str]:
            query = urlsplit(self.path).query
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode("utf-8", "replace") if length else ""
            params = {k: v[0] for k, v in parse_qs(query).items()}
            if body and self.headers.get("Content-Type", "").startswith(
                "application/x-www-form-urlencoded"
            ):
                params.update({k: v[0] for k, v in parse_qs(body).items()})
            return params

        def _send(self, status: int, text: str) -> None:
            data = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/xml")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            standin.requests += 1
            try:
                issued = standin.assume(self._params())
            except _Refusal as e:
                self._send(e.status, _error_xml(e.code, e.message))
                return
            self._send(200, standin.answer(issued))

        do_GET = do_POST  # AWS's query API takes both

    return Handler


def start_sts_standin(
    issuer: str,
    client_id: str,
    client_secret: str,
    pool: list[tuple[str, str]],
    *,
    role_arn: str = "",
    lifetime: float | None = None,
) -> StsStandin:
    """Serve the stand-in on a free port of 127.0.0.1 (in a thread of this process)."""
    if not pool:
        raise ValueError("the STS stand-in needs a pool of S3 key pairs to hand out")
    standin = StsStandin(
        server=None,  # type: ignore[arg-type]
        thread=None,  # type: ignore[arg-type]
        issuer=issuer,
        client_id=client_id,
        client_secret=client_secret,
        pool=list(pool),
        role_arn=role_arn,
        lifetime=lifetime,
    )
    standin.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(standin))
    standin.server.daemon_threads = True
    standin.thread = threading.Thread(target=standin.server.serve_forever, daemon=True)
    standin.thread.start()
    return standin
