"""Hub-side cost of a Check-in login: CheckinAuthenticator vs oauthenticator, one run.

Both hubs log in against the same real OpenID provider (npm oidc-provider, configured
like Check-in) with the same account, interleaved:

* egi-hub's local stack with ``CheckinAuthenticator`` (code flow with PKCE, ID token
  verified against the cached keys, userinfo, VO groups), and
* a plain JupyterHub with oauthenticator's ``GenericOAuthenticator`` (code flow with
  PKCE, userinfo, groups from the entitlements, no ID-token verification).

The time measured is the browser's request to ``/hub/oauth_callback``: the hub's code
exchange, verification and user update. Prints medians, p90 and the ratio
(goal: egi-hub / oauthenticator <= 1.10).

    python -m tests.benchmarks.bench_login [--logins 200]
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from tests.benchmarks.bench_spawn import p90
from tests.oidcprovider import (
    CLIENT_ID,
    CLIENT_SECRET,
    callback_url,
    checkin_site,
    start_provider,
)
from tests.stackrunner import Stack, free_port, start_plain_hub, start_stack


def start_generic_hub(tmp: Path, port: int, issuer: str) -> Stack:
    endpoint = f"{issuer}/protocol/openid-connect"
    return start_plain_hub(
        tmp,
        port,
        f"""
c.JupyterHub.authenticator_class = "generic-oauth"
c.GenericOAuthenticator.client_id = {CLIENT_ID!r}
c.GenericOAuthenticator.client_secret = {CLIENT_SECRET!r}
c.GenericOAuthenticator.oauth_callback_url = "http://127.0.0.1:{port}/hub/oauth_callback"
c.GenericOAuthenticator.authorize_url = "{endpoint}/auth"
c.GenericOAuthenticator.token_url = "{endpoint}/token"
c.GenericOAuthenticator.userdata_url = "{endpoint}/userinfo"
c.GenericOAuthenticator.username_claim = "voperson_id"
c.GenericOAuthenticator.scope = {checkin_scope()!r}
c.GenericOAuthenticator.extra_authorize_params = {{"prompt": "consent"}}
c.GenericOAuthenticator.enable_pkce = True
c.GenericOAuthenticator.enable_auth_state = True
c.GenericOAuthenticator.allow_all = True
# The same group work as egi-hub (a group per entitlement; egi-hub: a group per VO).
c.GenericOAuthenticator.manage_groups = True
c.GenericOAuthenticator.auth_state_groups_key = "oauth_user.eduperson_entitlement"
c.CryptKeeper.keys = [bytes.fromhex({secrets.token_hex(32)!r})]
""",
    )


def checkin_scope() -> list[str]:
    from egi_hub.authenticator.checkin import CheckinAuthenticator

    return list(CheckinAuthenticator.class_traits()["scope"].default())


def timed_login(hub_url: str, account: str) -> float:
    """Seconds the hub spends answering the provider's redirect to its callback."""
    with httpx.Client(timeout=30) as client:
        url = callback_url(hub_url, account, client)
        start = time.perf_counter()
        r = client.get(url)
        elapsed = time.perf_counter() - start
        assert r.status_code == 302, r.text[:300]
        return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logins", type=int, default=200)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="egi-bench-login-") as tmp:
        tmp = Path(tmp)
        egi_port, generic_port = free_port(), free_port()
        hubs = [f"http://127.0.0.1:{egi_port}", f"http://127.0.0.1:{generic_port}"]
        provider = start_provider(tmp / "oidc", hubs, access_token_ttl=3600)
        egi = generic = None
        try:
            egi = start_stack(
                tmp / "egi",
                checkin_site(provider.issuer),
                port=egi_port,
                env={"EGI_CHECKIN_CLIENT_SECRET": CLIENT_SECRET},
            )
            generic = start_generic_hub(tmp / "generic", generic_port, provider.issuer)
            for hub in (egi, generic):  # warm-up: first user creation, caches
                timed_login(hub.url, "alice")
            times: dict[str, list[float]] = {"egi": [], "generic": []}
            for _ in range(args.logins):
                times["egi"].append(timed_login(egi.url, "alice"))
                times["generic"].append(timed_login(generic.url, "alice"))
        finally:
            for hub in (egi, generic):
                if hub is not None:
                    hub.stop()
            provider.stop()
    med = {k: statistics.median(v) for k, v in times.items()}
    high = {k: p90(v) for k, v in times.items()}
    print(f"OAuth callback (hub side), {args.logins} logins each, interleaved in one run")
    for key, label in (
        ("egi", "egi-hub CheckinAuthenticator"),
        ("generic", "GenericOAuthenticator"),
    ):
        print(f"  {label:30}  median {med[key] * 1000:.1f} ms  p90 {high[key] * 1000:.1f} ms")
    print(
        f"  ratio egi-hub / oauthenticator  median {med['egi'] / med['generic']:.3f}"
        f"    p90 {high['egi'] / high['generic']:.3f}   (goal <= 1.10)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
