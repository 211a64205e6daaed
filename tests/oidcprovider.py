"""A real OpenID Connect provider for tests: npm `oidc-provider`, configured like Check-in.

`tests/oidc/provider.mjs` runs it on 127.0.0.1 under ``/auth/realms/egi`` with
``eduperson_entitlement`` and ``voperson_id`` claims, refresh-token rotation and
RP-initiated logout. `login` walks through its login form the way a browser does.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.stackrunner import TEST_SERVICE, free_port, stop_process, wait_for

OIDC_DIR = Path(__file__).resolve().parent / "oidc"
CLIENT_ID = "egi-hub-test"
CLIENT_SECRET = "egi-hub-test-secret"
# A second, unrelated application registered at the same provider: its tokens are
# genuine Check-in tokens, but not meant for the hub.
OTHER_CLIENT = ("other-app", "other-app-secret")

ACCESS_MEMBER = "urn:mace:egi.eu:group:vo.access.egi.eu:role=member#aai.egi.eu"
ACCOUNTS: dict[str, dict[str, Any]] = {
    "alice": {
        "voperson_id": "alice@egi.eu",
        "name": "Alice",
        "email": "alice@example.org",
        "eduperson_entitlement": [ACCESS_MEMBER],
    },
    "bob": {
        "voperson_id": "bob@egi.eu",
        "name": "Bob",
        "eduperson_entitlement": [
            "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu",
            "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=manager#aai.egi.eu",
            "urn:mace:egi.eu:group:vo.access.egi.eu:training:role=member#aai.egi.eu",
        ],
    },
    "eve": {
        "voperson_id": "eve@egi.eu",
        "name": "Eve",
        "eduperson_entitlement": [
            "urn:mace:egi.eu:group:vo.other.eu:role=member#aai.egi.eu",
            # The right VO, but from an authority the hub does not trust:
            "urn:mace:egi.eu:group:vo.access.egi.eu:role=member#idp.untrusted.example",
        ],
    },
    "carol": {
        "voperson_id": "carol@egi.eu",
        "eduperson_entitlement": [ACCESS_MEMBER],
    },
    "Zoë Ünicode": {
        "voperson_id": "Zoë Ünicode/Research@Example.ORG",
        "eduperson_entitlement": [ACCESS_MEMBER],
    },
    # Another provider's proxy asserting EGI VO names (not mace:egi.eu, not aai.egi.eu).
    "mallory": {
        "voperson_id": "mallory@evil.example",
        "eduperson_entitlement": [
            "urn:mace:evil.example:group:vo.notebooks.egi.eu:role=manager#evil.example",
            "urn:mace:evil.example:group:vo.access.egi.eu:role=member#evil.example",
        ],
    },
    # No voperson_id: the username falls back to sub, which is alice's voperson_id.
    "alice@egi.eu": {"eduperson_entitlement": [ACCESS_MEMBER]},
}


def checkin_site(issuer: str, **extra: Any) -> dict[str, Any]:
    """A site file for a hub that logs in with CheckinAuthenticator at ``issuer``."""
    return {
        "JupyterHub": {
            "authenticator_class": "egi-checkin",
            "services": [{"name": TEST_SERVICE, "api_token": "__API_TOKEN__"}],
            "load_roles": [{"name": "admin", "services": [TEST_SERVICE]}],
        },
        "CheckinAuthenticator": {
            "issuer": issuer,
            "client_id": CLIENT_ID,
            "allowed_vos": ["vo.access.egi.eu", "vo.notebooks.egi.eu"],
            "admin_vos": ["vo.notebooks.egi.eu:role=manager"],
            "admin_users": ["carol@egi.eu"],
            "enrolment_urls": {"vo.access.egi.eu": "https://aai.egi.eu/registry/enrol/access"},
            # oidc-provider, unlike Check-in, issues refresh tokens only after consent.
            "extra_authorize_params": {"prompt": "consent"},
            **extra,
        },
    }


def rsa_jwk(kid: str) -> dict[str, Any]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key))
    jwk.pop("key_ops", None)  # the provider signs and verifies with it
    jwk.update(kid=kid, use="sig", alg="RS256")
    return jwk


@dataclass
class Provider:
    proc: subprocess.Popen
    port: int
    issuer: str
    log_path: Path
    signing_jwk: dict[str, Any]
    accounts_path: Path

    def set_account(self, account: str, claims: dict[str, Any]) -> None:
        """Change an account's claims (e.g. its entitlements) while the provider runs."""
        accounts = json.loads(self.accounts_path.read_text())
        accounts[account] = claims
        tmp = self.accounts_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(accounts))
        tmp.replace(self.accounts_path)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def count(self, line: str) -> int:
        return sum(1 for x in self.log().splitlines() if x.strip() == line)

    def stop(self) -> None:
        stop_process(self.proc)


def start_provider(
    tmp: Path,
    hub_url: str | list[str],
    *,
    access_token_ttl: int = 60,
    accounts: dict[str, dict[str, Any]] | None = None,
    port: int | None = None,
    client_ttls: dict[str, int] | None = None,
) -> Provider:
    if not (OIDC_DIR / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError("oidc-provider is not installed: run `npm ci` in tests/oidc")
    tmp.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    jwk = rsa_jwk("test-key-1")
    hubs = [hub_url] if isinstance(hub_url, str) else hub_url
    accounts_path = tmp / "accounts.json"
    accounts_path.write_text(json.dumps(accounts or ACCOUNTS))
    config = {
        "port": port,
        "accessTokenTTL": access_token_ttl,
        "accessTokenTTLByClient": client_ttls or {},
        "jwks": {"keys": [jwk]},
        "accountsFile": str(accounts_path),
        "clients": [
            {
                "client_id": client_id,
                "client_secret": secret,
                "redirect_uris": [f"{hub}/hub/oauth_callback" for hub in hubs],
                "post_logout_redirect_uris": [f"{hub}/hub/login" for hub in hubs],
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
            }
            for client_id, secret in ((CLIENT_ID, CLIENT_SECRET), OTHER_CLIENT)
        ],
    }
    config_path = tmp / "oidc-config.json"
    config_path.write_text(json.dumps(config))
    log_path = tmp / "oidc-provider.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            ["node", str(OIDC_DIR / "provider.mjs"), str(config_path)],
            cwd=OIDC_DIR,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )
    issuer = f"http://127.0.0.1:{port}/auth/realms/egi"
    provider = Provider(proc, port, issuer, log_path, jwk, accounts_path)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"oidc-provider exited:\n{provider.log()}")
        return "READY " in provider.log()

    wait_for(ready, 30, "oidc-provider to listen")
    return provider


class _Form(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = a.get("action")
        elif tag == "input" and a.get("name"):
            self.fields[a["name"]] = a.get("value") or ""


def _to_callback(client: httpx.Client, r: httpx.Response) -> httpx.Response | str:
    """Follow redirects until the hub's callback URL (returned) or a page (returned)."""
    while r.is_redirect:
        url = urljoin(str(r.url), r.headers["location"])
        if "/hub/oauth_callback" in url:
            return url
        r = client.get(url)
    return r


def callback_url(
    hub_url: str, account: str, client: httpx.Client, next_url: str | None = None
) -> str | httpx.Response:
    """Walk from the hub's login through the provider's forms to the hub's callback URL.

    Returns that URL (not yet requested), or the page that stopped the walk (an error
    before the provider's forms, e.g. the provider being down).
    """
    params = {"next": next_url} if next_url else None
    start = client.get(f"{hub_url}/hub/oauth_login", params=params)
    return _through_forms(client, start, account)


def _through_forms(client: httpx.Client, r: httpx.Response, account: str) -> str | httpx.Response:
    step = _to_callback(client, r)
    # The provider's pages: its login form, then (for offline_access) its consent form.
    for _ in range(3):
        if not isinstance(step, httpx.Response) or "<form" not in step.text:
            return step
        form = _Form()
        form.feed(step.text)
        data = dict(form.fields)
        if "login" in data:
            data.update(login=account, password="any")
        step = _to_callback(client, client.post(urljoin(str(step.url), form.action), data=data))
    if isinstance(step, httpx.Response):
        raise AssertionError(f"the provider did not send us back: {step.status_code}")
    return step


def login(
    hub_url: str, account: str, client: httpx.Client | None = None, next_url: str | None = None
) -> httpx.Response:
    """Log in to the hub through the provider's login form; the callback's answer.

    Stops at the hub's answer to the callback (a redirect after a login, or an error
    page), so no server is started. ``client`` keeps the hub's and provider's cookies.
    """
    client = client or httpx.Client(timeout=30)
    step = callback_url(hub_url, account, client, next_url)
    return step if isinstance(step, httpx.Response) else client.get(step)


def code_flow_tokens(
    provider: Provider,
    hub_url: str,
    account: str,
    client: tuple[str, str] = (CLIENT_ID, CLIENT_SECRET),
) -> dict[str, Any]:
    oauth_client = client
    """Tokens for ``account`` from a code flow with PKCE run by the test itself.

    ``hub_url`` is only the registered redirect URI; nothing is sent to it. ``client``
    is the OAuth client that asks (``OTHER_CLIENT`` for another application's tokens).
    """
    import base64
    import hashlib
    import secrets
    from urllib.parse import parse_qs, urlencode, urlparse

    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    params = {
        "response_type": "code",
        "client_id": oauth_client[0],
        "redirect_uri": f"{hub_url}/hub/oauth_callback",
        "scope": "openid profile eduperson_entitlement voperson_id offline_access",
        "state": "s",
        "nonce": "n",
        "prompt": "consent",
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
    }
    with httpx.Client(timeout=30) as client:
        url = f"{provider.issuer}/protocol/openid-connect/auth?{urlencode(params)}"
        step = _through_forms(client, client.get(url), account)
        code = parse_qs(urlparse(step).query)["code"][0]
        r = client.post(
            f"{provider.issuer}/protocol/openid-connect/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": params["redirect_uri"],
                "code_verifier": verifier,
            },
            auth=oauth_client,
        )
        r.raise_for_status()
        return r.json()


def start_checkin_hub(
    tmp: Path,
    access_token_ttl: int = 60,
    client_ttls: dict[str, int] | None = None,
    **checkin: Any,
) -> tuple[Any, Provider]:
    """A real provider and an egi-hub stack that logs in with it (`checkin_site`).

    ``client_ttls`` sets other clients' access-token lifetimes; ``checkin`` adds or
    replaces CheckinAuthenticator settings.
    """
    from tests.stackrunner import start_stack

    port = free_port()
    provider = start_provider(
        tmp / "oidc",
        f"http://127.0.0.1:{port}",
        access_token_ttl=access_token_ttl,
        client_ttls=client_ttls,
    )
    try:
        stack = start_stack(
            tmp / "hub",
            checkin_site(provider.issuer, **checkin),
            port=port,
            env={"EGI_CHECKIN_CLIENT_SECRET": CLIENT_SECRET},
        )
    except BaseException:
        provider.stop()
        raise
    return stack, provider
