"""The chart's hub config in a real JupyterHub: the chart and the site file mean the same.

One site file (tests/helm_equivalence_site.yaml: Check-in at a real OIDC provider, VO
quotas, VO profiles, an S3 mount, the site's pages) is rendered by the real helm as
``hub.config``. What the hub's pod would get is taken from the rendered manifests: the
files of its config Secret, and its container's command and environment (secret
variables resolved from the rendered Secrets, plus the site's own S3 Secret that
``hub.extraEnv`` names). Then, on loopback (`tests.chartpod`): every Service gets a
free port, each container path a folder in a tmp dir, and a real configurable-http-proxy
runs as the rendered proxy Deployment says (the chart's hub starts none). The hub runs
as the pod would: ``jupyterhub --config=<rendered jupyterhub_config.py>``.

Proved: the hub serves its API, sends a login to the provider with the site's client,
logs users in through the provider and offers each the profiles of their VOs; the
config it loads (``--show-config-json``, the same file and environment) equals what
``egi-hub up`` builds from the same site file (`egi_hub.stack.build_config`) for every
class the site names, except the differences listed in `MEANT` with their reasons. And
the Kubernetes API is never called: the hub's Kubernetes client (in-cluster variables
and a kubeconfig) points at a listener of the test's that records every connection.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
import yaml

from tests.chartpod import KubeApiTrap, hub_pod, loopback, run_hub, run_proxy, show_config
from tests.integration.test_helm_chart import render, secret_data
from tests.oidcprovider import CLIENT_ID, CLIENT_SECRET, Provider, login, start_provider
from tests.stackrunner import Stack, free_port, stop_process, wait_for

SITE = Path(__file__).resolve().parents[1] / "helm_equivalence_site.yaml"
NAMESPACE = "hub"  # what `render` installs into
#: The site's own Secret with the S3 keys (made by the site with kubectl, not by the chart).
S3_SECRET = {"s3-keys": {"access": "AKIAEQUIVALENCE", "secret": "equivalence-s3-secret"}}
S3_ENV = {"S3_KEY_SCRATCH": "access", "S3_SECRET_SCRATCH": "secret"}

#: Where the chart's hub and `egi-hub up` differ on purpose, (class, trait) -> why. A
#: trait here may differ or be set on one side only; every other trait of every class
#: the site names must be equal.
MEANT: dict[tuple[str, str], str] = {
    ("JupyterHub", "hub_bind_url"): "the chart's hub listens on every address at 8081, its "
    "Service's target (here mapped to loopback and a free port); the stack uses hub_ip/port",
    ("JupyterHub", "hub_connect_url"): "the chart's pods reach the hub by its Service name",
    ("JupyterHub", "hub_ip"): "the stack's hub is on loopback only",
    ("JupyterHub", "hub_port"): "the stack's hub port is a free one",
    ("JupyterHub", "ip"): "the stack's proxy serves on loopback; the chart's proxy is its own "
    "Deployment behind the proxy-public Service",
    ("JupyterHub", "port"): "the stack's public port (--port); the chart's is the proxy's",
    ("JupyterHub", "db_url"): "SQLite in the stack's data dir; the chart's on its PVC (or "
    "the external database's URL from a Secret)",
    ("JupyterHub", "cookie_secret_file"): "the stack keeps the cookie secret in its data "
    "dir; the chart passes it from its Secret ($JPY_COOKIE_SECRET)",
    ("JupyterHub", "pid_file"): "the stack's data dir; a pod needs none",
    ("JupyterHub", "config_file"): "the chart's hub is `jupyterhub --config=<the rendered "
    "jupyterhub_config.py>`; the stack runs JupyterHub in its own process, given no file",
    ("JupyterHub", "cleanup_servers"): "the chart's servers are pods that outlive a hub "
    "restart (an upgrade), as in zero-to-jupyterhub; the stack's servers are its children",
    ("JupyterHub", "allow_named_servers"): "the stack runs the Binder service by default "
    "(sessions are named servers); the chart's binder.enabled is false by default",
    ("EGIKubeSpawner", "binder_ticket_secret"): "the stack's Binder service's secret",
    ("EGIKubeSpawner", "namespace"): "the chart's servers run in the release's namespace "
    "($POD_NAMESPACE); `egi-hub up` leaves KubeSpawner's default",
    ("EGIKubeSpawner", "extra_labels"): "the chart labels every server's pod with its "
    "release, which its NetworkPolicies select the pods by",
    ("QuotaPolicy", "usage_log"): "usage.jsonl in the stack's data dir; the chart's on the "
    "hub's claim beside its SQLite database",
}
#: The values' singleuser section (zero-to-jupyterhub's keys: image, cpu, memory, uid...)
#: is in force where the site file sets the same trait in none of the spawner's classes
#: (a site's ``Spawner.start_timeout`` is kept beside ``singleuser.startTimeout``).
SINGLEUSER_WHY = "the chart's singleuser defaults (egi_hub.helm.singleuser)"
#: Entries of JupyterHub.services / load_roles that only one side has, and why.
BINDER = "binder"
BINDER_ROLE = "egi-binder"
CULLER = "idle-culler"
CULLER_WHY = (
    "the culler's flags: the chart's from the values' cull section (zero-to-jupyterhub's "
    "keys and defaults, every 600 s), the stack's from LocalStack (every 300 s)"
)


@dataclass
class ChartHub:
    """The chart's hub (and proxy) running on loopback, as rendered."""

    stack: Stack
    provider: Provider
    trap: KubeApiTrap
    site: dict[str, Any]
    loaded: dict[str, Any]  # the hub's config, as `jupyterhub --show-config-json` prints it
    values: dict[str, Any]  # the rendered values.json (the sections besides hub.config)
    env: dict[str, str]
    url: str


def hub_site(issuer: str, api_token: str) -> dict[str, Any]:
    text = SITE.read_text().replace("__ISSUER__", issuer).replace("__API_TOKEN__", api_token)
    return yaml.safe_load(text)


def render_site(helm: Path, tmp: Path, site: dict[str, Any]) -> list[dict[str, Any]]:
    """The chart rendered with ``site`` as hub.config, the Check-in client's secret, and
    the S3 keys from the site's own Secret (hub.extraEnv)."""
    extra_env = {
        var: {"valueFrom": {"secretKeyRef": {"name": "s3-keys", "key": key}}}
        for var, key in S3_ENV.items()
    }
    checkin = {"clientSecret": CLIENT_SECRET}
    values = {"hub": {"config": site, "checkin": checkin, "extraEnv": extra_env}}
    values_file = tmp / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    return render(helm, "-f", str(values_file))


@pytest.fixture(scope="module")
def chart_hub(helm: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChartHub]:
    tmp = tmp_path_factory.mktemp("helm-equivalence")
    public = free_port()
    url = f"http://127.0.0.1:{public}"
    trap = KubeApiTrap()
    provider = start_provider(tmp / "oidc", url)
    proxy = stack = None
    try:
        api_token = secrets.token_hex(16)
        site = hub_site(provider.issuer, api_token)
        docs = render_site(helm, tmp, site)
        secrets_by_name = {
            d["metadata"]["name"]: secret_data(d) for d in docs if d["kind"] == "Secret"
        }
        secrets_by_name.update(S3_SECRET)
        net = loopback(docs, NAMESPACE, {("proxy", 8000): public})
        pod = hub_pod(docs, tmp / "pod", net, secrets_by_name, trap)
        loaded = show_config(pod)
        proxy = run_proxy(docs, net, secrets_by_name, tmp / "proxy.log")
        stack = run_hub(pod, url, api_token, tmp / "hub.log")
        values = json.loads(pod.files["values.json"])
        yield ChartHub(stack, provider, trap, site, loaded, values, pod.env, url)
    finally:
        if stack is not None:
            stack.stop()
        if proxy is not None:
            stop_process(proxy)
        provider.stop()
        trap.close()


def test_the_hub_api_answers(chart_hub: ChartHub) -> None:
    r = httpx.get(f"{chart_hub.url}/hub/api/", timeout=10)
    assert r.status_code == 200
    assert r.json()["version"]
    # The site's service and its token; the culler from the values; no Binder service.
    services = chart_hub.stack.api.get("/services")
    assert services.status_code == 200, services.text
    assert sorted(services.json()) == ["egi-test", CULLER]


def test_the_login_goes_to_the_provider_with_the_sites_client(chart_hub: ChartHub) -> None:
    page = httpx.get(f"{chart_hub.url}/hub/login", timeout=10)
    assert page.status_code == 200
    assert "Example Notebooks" in page.text  # SitePages.site_name
    r = httpx.get(f"{chart_hub.url}/hub/oauth_login", timeout=10)
    assert r.status_code == 302, r.text
    discovery = f"{chart_hub.provider.issuer}/.well-known/openid-configuration"
    authorize = httpx.get(discovery, timeout=10).json()["authorization_endpoint"]
    location = urlparse(r.headers["location"])
    assert location._replace(query="").geturl() == authorize
    query = {k: v[0] for k, v in parse_qs(location.query).items()}
    assert query["client_id"] == CLIENT_ID == chart_hub.site["CheckinAuthenticator"]["client_id"]
    assert query["redirect_uri"] == f"{chart_hub.url}/hub/oauth_callback"
    assert query["prompt"] == "consent"  # CheckinAuthenticator.extra_authorize_params


def spawn_form(chart_hub: ChartHub, account: str) -> str:
    """Log ``account`` in through the provider and fetch their spawn form (no spawn)."""
    with httpx.Client(timeout=30) as client:
        assert login(chart_hub.url, account, client).status_code == 302
        r = client.get(f"{chart_hub.url}/hub/spawn")
        assert r.status_code == 200, r.text
        return r.text


def offered(form: str) -> set[str]:
    return {slug for slug in ("small", "medium", "gpu") if f'value="{slug}"' in form}


def test_a_login_through_the_provider_and_the_vo_profiles(chart_hub: ChartHub) -> None:
    form = spawn_form(chart_hub, "alice")
    user = chart_hub.stack.user("alice@egi.eu")
    assert user["groups"] == ["vo.access.egi.eu"]
    assert user["admin"] is False
    assert user["auth_state"]["refresh_token"]  # kept with the chart's crypt key
    assert user["servers"] == {}
    assert offered(form) == {"small", "medium"}


def test_the_kubernetes_api_is_never_called(chart_hub: ChartHub) -> None:
    """Nothing reached the hub's Kubernetes client's address while the hub started,
    answered, logged users in and served the spawn form; and that address is where a
    KubeSpawner in the hub's environment would go (checked last)."""
    assert offered(spawn_form(chart_hub, "bob")) == {"small", "medium", "gpu"}
    assert chart_hub.stack.user("bob@egi.eu")["admin"] is True  # admin_vos
    assert chart_hub.trap.connections == []

    probe = subprocess.run(
        [sys.executable, "-c", KUBE_PROBE],
        env=chart_hub.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr
    wait_for(lambda: chart_hub.trap.connections, 10, "KubeSpawner's client at the trap")
    assert b"/api/v1/namespaces/hub/pods" in chart_hub.trap.connections[0]


#: KubeSpawner's own client set-up (in-cluster, else the kubeconfig), then one request.
KUBE_PROBE = """
import asyncio
from kubespawner.clients import load_config, shared_client

async def main():
    load_config()
    try:
        await shared_client("CoreV1Api").list_namespaced_pod("hub", _request_timeout=5)
    except Exception:
        pass

asyncio.run(main())
"""


def comparable(value: Any) -> Any:
    """A config value as `--show-config-json` prints it (JSON, repr for the rest), the
    addresses in reprs left out (``<egi_hub.spawner.home.HomeView object>``)."""
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [comparable(v) for v in value]
    if isinstance(value, bool | int | float | str) or value is None:
        return ADDRESS.sub(">", value) if isinstance(value, str) else value
    return comparable(repr(value))


ADDRESS = re.compile(r" at 0x[0-9a-f]+>")


def without_meant(section: str, traits: dict[str, Any]) -> dict[str, Any]:
    """A class's traits without those `MEANT` lists, and with the Binder service's and
    the culler's own entries set apart (compared on their own)."""
    traits = {k: v for k, v in traits.items() if (section, k) not in MEANT}
    if section == "JupyterHub":
        traits["services"] = [
            {**s, "command": s["command"][:3]} if s["name"] == CULLER else s  # CULLER_WHY
            for s in traits.get("services", [])
            if s["name"] != BINDER
        ]
        roles = []
        for role in traits.get("load_roles", []):
            if role["name"] == BINDER_ROLE:
                continue
            scopes = [s for s in role.get("scopes", []) if s != f"access:services!service={BINDER}"]
            roles.append({**role, "scopes": scopes} if "scopes" in role else role)
        traits["load_roles"] = sorted(roles, key=lambda role: role["name"])  # any order
    return traits


def effective(config: dict[str, Any], cls: type) -> dict[str, Any]:
    """The settings an instance of ``cls`` gets from ``config``: its sections along its
    MRO, the most specific last (as traitlets applies them: ``Spawner.start_timeout``
    is hidden by ``KubeSpawner.start_timeout``)."""
    from traitlets.config import Configurable

    traits: dict[str, Any] = {}
    for base in reversed(cls.__mro__):
        if issubclass(base, Configurable) and base.__name__ in config:
            traits.update(config[base.__name__])
    return traits


def compared_classes(site: dict[str, Any]) -> dict[str, type]:
    """Every class the site names, and the spawner and authenticator the hub runs."""
    from importlib.metadata import entry_points

    from egi_hub.config import configurable_classes

    known = configurable_classes()
    classes = {name: known[name] for name in site}
    for trait, group in (("spawner_class", "spawners"), ("authenticator_class", "authenticators")):
        (entry,) = entry_points(group=f"jupyterhub.{group}", name=site["JupyterHub"][trait])
        cls = entry.load()
        classes[cls.__name__] = cls
    return classes


def setter(config: dict[str, Any], cls: type, trait: str) -> type | None:
    """The most specific class along ``cls``'s MRO whose section in ``config`` sets ``trait``."""
    return next((c for c in cls.__mro__ if trait in config.get(c.__name__, {})), None)


def test_the_loaded_config_is_egi_hub_ups_for_the_same_site(
    chart_hub: ChartHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from egi_hub.helm.singleuser import site_settings
    from egi_hub.stack import build_config

    for var, key in S3_ENV.items():  # `egi-hub up` reads the S3 keys from its environment
        monkeypatch.setenv(var, S3_SECRET["s3-keys"][key])
    local = comparable(build_config(chart_hub.site, data_dir=str(tmp_path)).config)
    loaded = comparable(chart_hub.loaded)
    singleuser = comparable(site_settings(chart_hub.values.get("singleuser"))[0])
    site = chart_hub.site
    classes = compared_classes(site)
    assert set(classes) >= {"EGIKubeSpawner", "CheckinAuthenticator", "JupyterHub", "SitePages"}
    for name, cls in classes.items():
        hub = without_meant(name, effective(loaded, cls))
        up = without_meant(name, effective(local, cls))
        own = effective(site, cls)
        for trait, value in effective(singleuser, cls).items():  # SINGLEUSER_WHY
            if setter(site, cls, trait) is None:  # else the site's own setting is in force
                assert hub.pop(trait) == value, f"{name}.{trait}: {SINGLEUSER_WHY}"
                up.pop(trait, None)
        differ = {
            f"{name}.{trait}": {"chart": hub.get(trait), "egi-hub up": up.get(trait)}
            for trait in sorted(set(hub) | set(up))
            if hub.get(trait) != up.get(trait)
        }
        assert not differ, json.dumps(differ, indent=1)
        # The site's own settings arrived unchanged (the rest is what both ways add).
        for trait, value in own.items():
            if trait not in ("services", "load_roles"):
                assert effective(loaded, cls)[trait] == value, f"{name}.{trait}"

    # What MEANT says is there, is: each listed trait differs, or is on one side only.
    for name, trait in MEANT:
        hub, up = effective(loaded, classes[name]), effective(local, classes[name])
        assert hub.get(trait) != up.get(trait), f"{name}.{trait} is listed but the same"
    culler = next(s["command"] for s in loaded["JupyterHub"]["services"] if s["name"] == CULLER)
    assert "--timeout=3600" in culler and "--cull-every=600" in culler, CULLER_WHY
    assert BINDER not in {s["name"] for s in loaded["JupyterHub"]["services"]}
