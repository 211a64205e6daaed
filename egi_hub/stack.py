"""The local stack: a real JupyterHub, proxy, local spawner and idle culler on one machine.

`build_config` turns a checked site file into the hub's traitlets config, with the
stack's defaults beneath it (the site file wins) and the command-line flags above it.
`run` checks the ports and runs JupyterHub in this process; JupyterHub's own signal
handling stops the proxy, the culler and every single-user server on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from traitlets import Bool, Integer, Unicode, default
from traitlets.config import Config, Configurable

from .config import ConfigIssue, SiteConfigError, check_site, configurable_classes, site_to_config
from .context import GUEST_GROUP
from .pages import add_template_vars, hub_page_config
from .procs import check_port_free, free_port
from .proxy import check_proxy, proxy_command
from .singleuser_config import ACCESS_TOKEN_SCOPE

__all__ = [
    "CryptKeyError",
    "LocalStack",
    "StackConfig",
    "add_access_token_scope",
    "add_home_view",
    "add_idle_culler",
    "build_config",
    "check_ports",
    "register_binder",
    "run",
    "validate_site",
]

IDLE_CULLER = "idle-culler"
BINDER = "binder"
#: What the Binder service's login token may do, for the user who logged in only: start
#: and follow their own servers, never stop or delete them (egi_hub.binder_service
#: .launcher launches as the user, so the hub's rules apply as to any start). Not
#: ``tokens!user``: the hub checks a new token's scopes against its owner's, so that
#: would let the service make any token of the user's, admin ones included; nor
#: ``access:servers``: it never talks to sessions. The user's own groups: the launch page
#: tells a Binder guest (group ``binder-guests``) what a guest session is.
BINDER_OAUTH_SCOPES = ["start:servers!user", "read:servers!user", "read:users:groups!user"]
BINDER_SERVICE_SCOPES = ["list:users", "read:servers"]
#: With guests on (``BinderGuests.enabled``): read, stop and delete guest accounts, no
#: others (egi_hub.binder_service.guest_reaper deletes those whose session ended, and
#: stops those past their ``max_age``); each scope is filtered to the guests' group.
BINDER_GUEST_SCOPES = ("read:groups", "read:users", "delete:servers", "delete:users")
#: Sections of the site file that configure the Binder service (its own process).
BINDER_SECTIONS = (
    "BinderGuests",
    "BinderService",
    "Resolver",
    "GitProvider",
    "RecordProvider",
    "VenvBuilder",
    "DockerBuilder",
    "KubernetesBuilder",
)
CULLER_SCOPES = ["list:users", "read:users:activity", "read:servers", "delete:servers"]


class LocalStack(Configurable):
    """Settings of ``egi-hub up`` that are not JupyterHub's own."""

    data_dir = Unicode(
        help="""
        Where the local stack keeps its state: the hub database, cookie secret, the
        generated encryption key, users' work directories (``users/``) and server logs
        (``logs/``). ``--data-dir`` overrides it. Default: ``~/.local/share/egi-hub``.
        """,
    ).tag(config=True)

    idle_timeout = Integer(
        3600,
        min=0,
        help="""
        Seconds without activity after which ``jupyterhub-idle-culler`` stops a
        server. 0 turns the culler off.
        """,
    ).tag(config=True)

    idle_cull_every = Integer(
        300,
        min=1,
        help="How often (seconds) the idle culler checks for idle servers.",
    ).tag(config=True)

    binder = Bool(
        True,
        help="""
        Start the Binder service (``/services/binder/``): launch links from git
        repositories and DOIs, built with the venv builder on this machine. False turns
        it off.
        """,
    ).tag(config=True)

    @default("data_dir")
    def _default_data_dir(self) -> str:
        base = os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")
        return os.path.join(base, "egi-hub")


PROFILE_SECTIONS = ("EGILocalSpawner", "EGIKubeSpawner")


def validate_site(data: Mapping[str, Any]) -> list[str]:
    """Raise `SiteConfigError` naming every bad key of a parsed site file.

    Returns warnings: things that are allowed but probably not meant (a VO with
    limits that no user, login rule or profile mentions).
    """
    issues = check_site(data, configurable_classes())
    if issues:
        raise SiteConfigError(issues)
    from egi_hub.spawner.quota import QuotaPolicy, unfit_profiles

    vo_limits, default_limits, total_limits = QuotaPolicy.site_limits(data.get("QuotaPolicy", {}))
    for section in PROFILE_SECTIONS:
        profiles = data.get(section, {}).get("profile_list", [])
        for i, why in unfit_profiles(vo_limits, default_limits, profiles, total_limits):
            issues.append(ConfigIssue(f"{section}.profile_list[{i}]", why))
    if issues:
        raise SiteConfigError(issues)
    known = _mentioned_vos(data)
    return [
        f"QuotaPolicy.vo_limits.{vo}: no user, login rule or profile mentions this VO"
        for vo in vo_limits
        if known and vo not in known
    ]


def _mentioned_vos(data: Mapping[str, Any]) -> set[str]:
    """VOs the site file names: dev users' entitlements, login rules, profile rules."""
    from egi_hub.vo import EntitlementError, parse_entitlement, parse_rule

    vos: set[str] = set()
    for entry in data.get("DevAuthenticator", {}).get("users", {}).values():
        for value in (entry or {}).get("entitlements", []):
            try:
                vos.add(parse_entitlement(value).vo)
            except EntitlementError:
                pass
    rules = [
        *data.get("CheckinAuthenticator", {}).get("allowed_vos", []),
        *data.get("CheckinAuthenticator", {}).get("admin_vos", []),
    ]
    for section in PROFILE_SECTIONS:
        for profile in data.get(section, {}).get("profile_list", []):
            rules.extend(profile.get("allowed_vos", []))
            if profile.get("vo"):
                vos.add(profile["vo"])
    vos.update(parse_rule(rule).vo for rule in rules)
    return vos


@dataclass
class StackConfig:
    """The hub config the stack runs, and where its state lives."""

    config: Config
    data_dir: Path


class CryptKeyError(Exception):
    """The data dir's ``crypt_key`` cannot be used: ``egi-hub up`` says so in one line."""


def _make_secret(path: Path) -> None:
    """Write 32 random bytes in hex to ``path`` (0600) unless it exists already."""
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))


def _crypt_key(data_dir: Path) -> bytes | None:
    """The auth-state encryption key: ``$JUPYTERHUB_CRYPT_KEY``, else one kept in the data dir.

    A key file that is unreadable or not 32 bytes in hex is a `CryptKeyError` naming the
    file: generating a new key silently would make every stored auth state unreadable.
    """
    if os.environ.get("JUPYTERHUB_CRYPT_KEY"):
        return None  # JupyterHub reads the variable itself
    path = data_dir / "crypt_key"
    _make_secret(path)
    advice = (
        "restore it from a backup, set $JUPYTERHUB_CRYPT_KEY, or delete it to make a new "
        "key (users' stored tokens are then lost: they log in again)"
    )
    try:
        key = bytes.fromhex(path.read_text(encoding="ascii").strip())
    except OSError as e:
        raise CryptKeyError(
            f"{path}: cannot read the encryption key ({e.strerror}); {advice}"
        ) from None
    except ValueError:  # not ASCII, or not hex
        key = b""
    if len(key) != 32:
        raise CryptKeyError(
            f"{path}: not a valid encryption key (expected 64 hex digits); {advice}"
        )
    return key


def _stack_defaults(data_dir: Path) -> Config:
    c = Config()
    c.JupyterHub.authenticator_class = "egi-dev"
    c.JupyterHub.spawner_class = "egi-local"
    c.JupyterHub.ip = "127.0.0.1"
    c.JupyterHub.port = 8000
    c.JupyterHub.hub_ip = "127.0.0.1"
    c.JupyterHub.hub_port = free_port()
    c.JupyterHub.db_url = f"sqlite:///{data_dir / 'jupyterhub.sqlite'}"
    c.JupyterHub.cookie_secret_file = str(data_dir / "jupyterhub_cookie_secret")
    c.JupyterHub.pid_file = str(data_dir / "jupyterhub.pid")
    # npm's configurable-http-proxy 5.x: the checkout's, else the one on PATH (egi_hub.proxy).
    c.ConfigurableHTTPProxy.command = proxy_command()
    c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{free_port()}"
    c.ConfigurableHTTPProxy.pid_file = str(data_dir / "proxy.pid")
    # At "info" the proxy logs every route the hub reads or sets (each few seconds) into
    # the hub's output; its warnings and errors (a server it cannot reach) still show.
    c.ConfigurableHTTPProxy.log_level = "warn"
    c.EGILocalSpawner.work_dir_root = str(data_dir / "users")
    c.EGILocalSpawner.log_dir = str(data_dir / "logs")
    c.QuotaPolicy.usage_log = str(data_dir / "usage.jsonl")
    c.Authenticator.enable_auth_state = True
    key = _crypt_key(data_dir)
    if key is not None:
        c.CryptKeeper["keys"] = [key]  # item syntax: Config.keys is dict.keys
    return c


SERVER_TOKEN_SCOPES = ["users:activity!user", "access:servers!server", f"{ACCESS_TOKEN_SCOPE}!user"]


def add_access_token_scope(c: Config) -> None:
    """Let each user, and their servers, read their own Check-in access token."""
    scopes = dict(c.JupyterHub.get("custom_scopes", {}))
    scopes.setdefault(
        ACCESS_TOKEN_SCOPE, {"description": "Read one's own fresh Check-in access token."}
    )
    c.JupyterHub.custom_scopes = scopes
    roles = [dict(r) for r in c.JupyterHub.get("load_roles", [])]
    user_role = next((r for r in roles if r.get("name") == "user"), None)
    if user_role is None:
        roles.append({"name": "user", "scopes": ["self", f"{ACCESS_TOKEN_SCOPE}!user"]})
    elif f"{ACCESS_TOKEN_SCOPE}!user" not in user_role.get("scopes", []):
        user_role["scopes"] = [*user_role.get("scopes", []), f"{ACCESS_TOKEN_SCOPE}!user"]
    c.JupyterHub.load_roles = roles
    if "server_token_scopes" not in c.Spawner:
        c.Spawner.server_token_scopes = SERVER_TOKEN_SCOPES


def _add_idle_culler(c: Config, stack: LocalStack) -> None:
    if stack.idle_timeout == 0:
        return
    add_idle_culler(c, [f"--timeout={stack.idle_timeout}", f"--cull-every={stack.idle_cull_every}"])


def add_idle_culler(c: Config, flags: Sequence[str], scopes: Sequence[str] = CULLER_SCOPES) -> None:
    """``jupyterhub-idle-culler`` as a hub-managed service run with ``flags``, and its
    role (``scopes``), unless the site configured a service of that name itself."""
    services = list(c.JupyterHub.get("services", []))
    if any(s.get("name") == IDLE_CULLER for s in services):
        return
    command = [sys.executable, "-m", "jupyterhub_idle_culler", *flags]
    services.append({"name": IDLE_CULLER, "command": command})
    roles = list(c.JupyterHub.get("load_roles", []))
    roles.append({"name": "egi-idle-culler", "scopes": list(scopes), "services": [IDLE_CULLER]})
    c.JupyterHub.services = services
    c.JupyterHub.load_roles = roles


def _secret_file(path: Path) -> str:
    """A secret kept in ``path`` (made once, 0600): the same across restarts."""
    _make_secret(path)
    return path.read_text(encoding="ascii").strip()


def _add_binder_service(
    c: Config, stack: LocalStack, site: Mapping[str, Any], data_dir: Path
) -> None:
    """The Binder service as a hub-managed service, its settings from the site file in
    its own config file (0600: it holds the ticket secret), registered as
    `register_binder` does for the chart too."""
    services = list(c.JupyterHub.get("services", []))
    if not stack.binder or any(s.get("name") == BINDER for s in services):
        return
    secret = _secret_file(data_dir / "binder_ticket_secret")
    binder_dir = data_dir / "binder"
    binder_dir.mkdir(mode=0o700, exist_ok=True)
    settings = {section: dict(site.get(section, {})) for section in BINDER_SECTIONS}
    settings["BinderService"].setdefault("data_dir", str(binder_dir))
    settings["BinderService"]["ticket_secret"] = secret
    config_file = binder_dir / "config.json"
    fd = os.open(config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({k: v for k, v in settings.items() if v}, f, indent=1)
    service = {
        "name": BINDER,
        "url": f"http://127.0.0.1:{free_port()}",
        "command": [sys.executable, "-m", "egi_hub.binder_service"],
        "environment": {"EGI_BINDER_CONFIG": str(config_file)},
    }
    register_binder(c, service, secret, guests=bool(settings["BinderGuests"].get("enabled")))


def register_binder(
    c: Config, service: dict[str, Any], ticket_secret: str, *, guests: bool = False
) -> None:
    """The hub's side of the Binder service, one place for ``egi-hub up`` (a managed
    service) and the Helm chart (an external one, egi_hub.helm.binder): ``service``
    (a ``JupyterHub.services`` entry named ``binder``) with its OAuth client (users'
    logins confirmed at once, `BINDER_OAUTH_SCOPES`) unless the site has a service of
    that name; named servers on (a Binder session is one); the spawners' ticket secret
    (unless the site set one); the service's role (`BINDER_SERVICE_SCOPES`, plus the
    guests' scopes filtered to their group with ``guests``: ``BinderGuests.enabled``);
    and every user's access to the service."""
    services = list(c.JupyterHub.get("services", []))
    if any(s.get("name") == BINDER for s in services):
        return
    services.append(
        {
            "oauth_no_confirm": True,
            "oauth_client_allowed_scopes": list(BINDER_OAUTH_SCOPES),
            "display": True,
            **service,
            "name": BINDER,
        }
    )
    c.JupyterHub.services = services
    c.JupyterHub.allow_named_servers = True
    for spawner in PROFILE_SECTIONS:
        if "binder_ticket_secret" not in c[spawner]:
            c[spawner].binder_ticket_secret = ticket_secret
    roles = [dict(r) for r in c.JupyterHub.get("load_roles", [])]
    # The service's own token reads server names only (BinderService.repo_quota counts
    # a repository's sessions); it launches with each user's own login token.
    scopes = list(BINDER_SERVICE_SCOPES)
    if guests:
        scopes += [f"{scope}!group={GUEST_GROUP}" for scope in BINDER_GUEST_SCOPES]
    roles.append({"name": "egi-binder", "scopes": scopes, "services": [BINDER]})
    user_role = next((r for r in roles if r.get("name") == "user"), None)
    if user_role is None:
        user_role = {"name": "user", "scopes": ["self"]}
        roles.append(user_role)
    user_role["scopes"] = [*user_role.get("scopes", []), f"access:services!service={BINDER}"]
    c.JupyterHub.load_roles = roles


def add_home_view(c: Config) -> None:
    """The home page's servers, VOs, quota use and hours (``egi_home``), unless the site
    set that template variable itself."""
    from egi_hub.spawner.home import template_vars

    add_template_vars(c, template_vars(c))


def build_config(
    site: Mapping[str, Any],
    *,
    port: int | None = None,
    ip: str | None = None,
    data_dir: str | None = None,
) -> StackConfig:
    """The stack's hub config: its defaults, then the (checked) site file, then the flags."""
    site_config = site_to_config(site)
    stack = LocalStack(config=site_config)
    root = Path(data_dir or stack.data_dir).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = _stack_defaults(root)
    config.merge(site_config)
    if port is not None:
        config.JupyterHub.port = port
    if ip is not None:
        config.JupyterHub.ip = ip
    _add_idle_culler(config, stack)
    add_access_token_scope(config)
    from egi_hub.storage_mounts.hub import mounts_hub_config

    mounts_hub_config(config)  # the mounts API and scope; stops naming a missing S3 key
    _add_binder_service(config, stack, site, root)
    hub_page_config(config)
    add_home_view(config)
    return StackConfig(config=config, data_dir=root)


def _address(url: str, default_ip: str) -> tuple[str, int]:
    parsed = urlparse(url)
    return parsed.hostname or default_ip, parsed.port or (443 if parsed.scheme == "https" else 80)


def check_ports(config: Config) -> None:
    """Raise `PortInUseError` if a port the hub or proxy will listen on is taken."""
    hub = config.JupyterHub
    if "bind_url" in hub:
        public = _address(hub.bind_url, "0.0.0.0")
    else:
        public = (hub.get("ip", "") or "0.0.0.0", hub.get("port", 8000))
    if "hub_bind_url" in hub:
        internal = _address(hub.hub_bind_url, "127.0.0.1")
    else:
        internal = (hub.get("hub_ip", "127.0.0.1"), hub.get("hub_port", 8081))
    api = _address(config.ConfigurableHTTPProxy.get("api_url", "http://127.0.0.1:8001"), "")
    check_port_free(*public, "public port: JupyterHub.port or --port")
    check_port_free(*internal, "hub port: JupyterHub.hub_port")
    check_port_free(*api, "proxy API port: ConfigurableHTTPProxy.api_url")


def _public_url(url: str) -> str:
    """The public URL to open in a browser (a hub on every address answers on loopback)."""
    parsed = urlparse(url)
    if parsed.hostname in (None, "", "0.0.0.0", "::"):
        parsed = parsed._replace(netloc=f"127.0.0.1:{parsed.port}" if parsed.port else "127.0.0.1")
    return parsed.geturl()


def banner(url: str, authenticator: Any) -> str:
    """What ``egi-hub up`` prints once the hub serves: where to go and who to log in as.

    The dev login lists the site file's users with their VOs, so a first-time user
    knows which names to type and what each can see; any other login names its method.
    """
    lines = [f"egi-hub is running at {_public_url(url)}"]
    usernames = getattr(authenticator, "dev_usernames", None)
    if usernames is not None:
        lines.append("Development login (no password). Log in as one of:")
        width = max((len(name) for name in usernames), default=0)
        for name in usernames:
            vos = ", ".join(authenticator.user_context(name).vos) or "(no VO)"
            lines.append(f"  {name:{width}}  {vos}")
        if not usernames:
            lines.append("  (none: add users under DevAuthenticator.users in the site file)")
    elif getattr(authenticator, "login_service", ""):
        lines.append(f'Log in with the "Sign in with {authenticator.login_service}" button.')
    else:
        lines.append(f"Log in with {type(authenticator).__name__}.")
    lines.append("Stop it with Ctrl-C.")
    return "\n".join(lines)


def _hub_class() -> type:
    """JupyterHub, printing `banner` once it serves (its start() returns after the
    proxy is up and routes are in place; the log line before it is easy to miss).

    Made here so that ``egi-hub config check`` never imports JupyterHub's app; named
    ``JupyterHub`` because traitlets names the log after the class, and the lines
    should read as JupyterHub's.
    """
    from jupyterhub import app

    class JupyterHub(app.JupyterHub):
        async def start(self) -> None:
            await super().start()
            print(banner(self.proxy.public_url, self.authenticator), flush=True)

    return JupyterHub


def run(stack_config: StackConfig) -> None:
    """Run JupyterHub with this config in this process until it is stopped."""
    hub_class = _hub_class()
    config = stack_config.config
    if config.ConfigurableHTTPProxy.get("should_start", True):
        check_proxy(config.ConfigurableHTTPProxy.command)
    check_ports(config)
    # Started in the background by a shell, this process ignores SIGINT and so would
    # every process it starts; restore the default so SIGINT stops all of them.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    # JupyterHub reads ./jupyterhub_config.py if it exists: in the data dir, that is
    # where Python-only settings (hooks) go; never one from wherever egi-hub was started.
    os.chdir(stack_config.data_dir)
    hub_class.instance(config=config)
    hub_class.launch_instance(argv=[])
