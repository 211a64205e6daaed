"""The hub's config inside the Helm chart: the values' ``hub.config``, read as a site file.

The chart renders ``hub.config`` into a file (``$EGI_HUB_SITE_FILE``) and ships a
``jupyterhub_config.py`` that calls `load`. So the same keys mean the same in both ways
to run: the file goes through `egi_hub.stack.validate_site` (what ``egi-hub config
check`` and ``egi-hub up`` run), and a bad key stops the hub before it starts, with one
line naming it. Beneath the site's settings lie the Kubernetes defaults (`kube_defaults`:
the chart's proxy, database and Services, told by the environment the chart sets); on
top, the same additions as the local stack's (the access-token scope, the storage-mounts
API, the hub's pages).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from traitlets.config import Config

from ..config import SiteConfigError, load_site_file, site_to_config
from .binder import BinderValuesError, add_binder
from .cull import add_culler
from .owned import refuse_chart_owned, refuse_pod_accounts
from .singleuser import SingleuserSite, add_release_label

__all__ = ["DEFAULT_SITE_FILE", "DEFAULT_VALUES_FILE", "hub_config", "kube_defaults", "load"]

DEFAULT_SITE_FILE = "/usr/local/etc/egi-hub/site.json"
#: The values sections the hub acts on besides hub.config (``cull``, ``singleuser``,
#: ``binder``, the top-level ``imagePullSecrets``), rendered by the chart as JSON.
DEFAULT_VALUES_FILE = "/usr/local/etc/egi-hub/values.json"


def kube_defaults(environ: Mapping[str, str]) -> Config:
    """What the chart's hub runs with unless ``hub.config`` says otherwise."""
    c = Config()
    c.JupyterHub.authenticator_class = "egi-checkin"
    c.JupyterHub.spawner_class = "egi-kube"
    c.JupyterHub.hub_bind_url = "http://:8081"
    if environ.get("EGI_HUB_CONNECT_URL"):
        c.JupyterHub.hub_connect_url = environ["EGI_HUB_CONNECT_URL"]
    # Servers are pods: they outlive a hub restart (an upgrade), as in zero-to-jupyterhub.
    c.JupyterHub.cleanup_servers = False
    db_url = environ.get("EGI_HUB_DB_URL", "")
    if db_url.startswith("mysql://"):  # SQLAlchemy's default is MySQLdb; the image has PyMySQL
        db_url = "mysql+pymysql://" + db_url.removeprefix("mysql://")
    # hub.db.upgrade (z2jh's): "true"/"false" when the values set it.
    if environ.get("EGI_HUB_DB_UPGRADE") in ("true", "false"):
        c.JupyterHub.upgrade_db = environ["EGI_HUB_DB_UPGRADE"] == "true"
    # hub.db.password: libpq (psycopg2) reads $PGPASSWORD itself; PyMySQL reads no
    # variable, so $MYSQL_PWD (z2jh's name) goes into the URL: JupyterHub's schema
    # upgrade (alembic) connects with the URL alone, never with db_kwargs. JupyterHub
    # logs the URL with its password redacted. A password in the URL itself wins.
    if environ.get("MYSQL_PWD") and db_url.startswith("mysql"):
        db_url = _with_password(db_url, environ["MYSQL_PWD"])
    if db_url:
        c.JupyterHub.db_url = db_url
    # The proxy is its own Deployment; the hub reads its token from CONFIGPROXY_AUTH_TOKEN.
    c.ConfigurableHTTPProxy.should_start = False
    if environ.get("EGI_HUB_PROXY_API_URL"):
        c.ConfigurableHTTPProxy.api_url = environ["EGI_HUB_PROXY_API_URL"]
    # The cookie secret (JPY_COOKIE_SECRET) and crypt key (JUPYTERHUB_CRYPT_KEY) come
    # from the chart's Secret; JupyterHub reads both variables itself.
    c.Authenticator.enable_auth_state = True
    # The usage log on the hub's claim (the chart sets it with SQLite on a PVC; with an
    # external database, hub.config.QuotaPolicy.usage_log names a file if wanted).
    if environ.get("EGI_HUB_USAGE_LOG"):
        c.QuotaPolicy.usage_log = environ["EGI_HUB_USAGE_LOG"]
    if environ.get("POD_NAMESPACE"):
        c.KubeSpawner.namespace = environ["POD_NAMESPACE"]
    # The public URL (the chart sets it with an Ingress host): Check-in's redirect URL
    # follows from it, so the site need not copy it into hub.config by hand.
    public = environ.get("EGI_HUB_PUBLIC_URL", "").rstrip("/")
    if public.startswith(("https://", "http://")):
        c.CheckinAuthenticator.oauth_callback_url = f"{public}/hub/oauth_callback"
    return c


def _with_password(db_url: str, password: str) -> str:
    """``db_url`` with ``password`` in it, unless it has one (or cannot be parsed: the
    hub then names the URL's problem itself, as for any URL)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(db_url)
    except (ArgumentError, ValueError):
        return db_url
    if url.password:
        return db_url
    return url.set(password=password).render_as_string(hide_password=False)


def hub_config(
    site: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    values: Mapping[str, Any] | None = None,
) -> Config:
    """The hub's config: the Kubernetes defaults, then the (checked) site file with the
    ``singleuser`` section's settings under it (`singleuser.SingleuserSite`), then the
    local stack's additions and the chart's services (``values``: the sections of
    `DEFAULT_VALUES_FILE`). Raises `SiteConfigError` naming every bad key as the values
    file spells it (``hub.config.…``, ``singleuser.…``), a key the chart owns
    (`egi_hub.helm.owned`) with the values key to use instead."""
    environ = os.environ if environ is None else environ
    values = values or {}
    refuse_chart_owned(site)  # keys the chart's resources rely on (egi_hub.helm.owned)
    merged = SingleuserSite.under(site, values.get("singleuser"), values.get("imagePullSecrets"))
    with merged.named_as_written():
        refuse_pod_accounts(merged.site)  # a server's token, wherever a pod is described
        config = _hub_config(merged.site, environ, values, merged.warning)
    add_release_label(config, environ)
    return config


def _hub_config(
    site: Mapping[str, Any],
    environ: Mapping[str, str],
    values: Mapping[str, Any],
    named: Callable[[str], str],
) -> Config:
    from .. import stack
    from ..pages import hub_page_config
    from ..storage_mounts.hub import mounts_hub_config

    for warning in stack.validate_site(site):  # its keys named as the values spell them
        print(f"egi-hub: warning: {named(warning)}", file=sys.stderr)
    config = kube_defaults(environ)
    config.merge(site_to_config(site))
    stack.add_access_token_scope(config)
    mounts_hub_config(config)  # the mounts API and scope; stops naming a missing S3 key
    add_culler(config, values.get("cull", {}))
    add_binder(config, values.get("binder"), environ)  # an external service of its own
    hub_page_config(config)
    stack.add_home_view(config)
    return config


def load_values(path: str | None = None) -> dict[str, Any]:
    """The chart's values file (`DEFAULT_VALUES_FILE`); none at all: no sections."""
    path = path or os.environ.get("EGI_HUB_VALUES_FILE") or DEFAULT_VALUES_FILE
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return {}


def load(path: str | None = None, values_path: str | None = None) -> Config:
    """`hub_config` of the chart's site file; a bad one exits (status 2) naming each key.

    Meant for ``jupyterhub_config.py``: a `SystemExit` there stops JupyterHub before it
    opens its database or talks to the proxy.
    """
    path = path or os.environ.get("EGI_HUB_SITE_FILE") or DEFAULT_SITE_FILE
    try:
        site = load_site_file(path)
    except SiteConfigError as e:  # the chart renders the file: this is not the values'
        print(f"egi-hub: {e.issues[0]}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        return hub_config(site, values=load_values(values_path))
    except BinderValuesError as e:
        print(f"egi-hub: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    except SiteConfigError as e:
        for issue in e.issues:  # named as in the values file
            print(f"egi-hub: {issue}", file=sys.stderr)
        print("egi-hub: the hub does not start: fix these keys in the values", file=sys.stderr)
        raise SystemExit(2) from None
