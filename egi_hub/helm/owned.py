"""Traits the chart sets itself: ``hub.config`` may not set them.

Why: the chart's resources are built around these settings. The hub's Role covers the
release's namespace and the VO namespaces it makes; the proxy's Deployment reads its
token from the hub Secret; the database URL, the cookie secret and the crypt key come
from the hub Secret (and must stay the same across upgrades). A ``hub.config`` that
set one of them would not fail at once, it would break later and far away (spawns
refused by RBAC, the proxy refusing the hub, stored tokens unreadable). So the hub
refuses such a key when it starts, naming the values key to use instead, as
`egi_hub.helm.binder` refuses Binder sections in ``hub.config``.

`CHART_OWNED` is the one list; `refuse_chart_owned` checks ``hub.config`` as written
(before the ``singleuser`` section is merged under it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import ConfigIssue, SiteConfigError

__all__ = ["CHART_OWNED", "refuse_chart_owned"]

#: The spawner's classes along its MRO (a trait of any of them is the spawner's).
SPAWNERS = ("Spawner", "KubeSpawner", "EGIKubeSpawner")

#: (sections, trait) -> what to set instead (and why), for every trait the chart owns.
CHART_OWNED: dict[tuple[tuple[str, ...], str], str] = {
    (SPAWNERS, "namespace"): "the chart runs servers in the release's namespace, where "
    "its Role is; per-VO namespaces are singleuser.voNamespaces",
    (SPAWNERS, "enable_user_namespaces"): "the hub's Role covers the release's namespace "
    "and singleuser.voNamespaces only: use singleuser.voNamespaces",
    (SPAWNERS, "vo_namespaces"): "the chart sets it from singleuser.voNamespaces, which "
    "also makes the namespaces and the hub's Roles in them: list them there",
    (("ConfigurableHTTPProxy",), "auth_token"): "the proxy's token is proxy.secretToken "
    "(the proxy's Deployment reads it from the hub Secret)",
    (("ConfigurableHTTPProxy",), "api_url"): "the chart's proxy API Service is the hub's "
    "proxy: leave it to the chart",
    (("ConfigurableHTTPProxy",), "should_start"): "the proxy is the chart's own Deployment",
    (("JupyterHub",), "db_url"): "use hub.db.url or hub.db.urlSecret (with hub.db.type)",
    (("JupyterHub",), "cookie_secret"): "use hub.cookieSecret (kept in the hub Secret)",
    (("JupyterHub",), "cookie_secret_file"): "use hub.cookieSecret (kept in the hub Secret)",
    (("CryptKeeper",), "keys"): "use hub.cryptKey (kept in the hub Secret)",
}

#: A server with a Kubernetes API token in it: its user runs any code they like there.
TOKEN_WHY = (
    "a service account's token would be mounted in every server, where users run any "
    "code: set automount_service_account_token: false with it"
)


def refuse_chart_owned(hub_site: Mapping[str, Any]) -> None:
    """Raise `SiteConfigError` (keys named ``hub.config.…``) for every chart-owned trait
    ``hub_site`` sets, and for a servers' service account whose token would be mounted."""
    issues: list[ConfigIssue] = []
    for (sections, trait), why in CHART_OWNED.items():
        for section in sections:
            settings = hub_site.get(section)
            if isinstance(settings, Mapping) and trait in settings:
                issues.append(ConfigIssue(f"hub.config.{section}.{trait}", why))
    # KubeSpawner mounts the token when automount is true, or unset with an account.
    account = automount = None  # the most specific class's setting wins
    for section in SPAWNERS:
        settings = hub_site.get(section)
        if isinstance(settings, Mapping):
            if settings.get("service_account"):
                account = section
            if "automount_service_account_token" in settings:
                automount = (section, settings["automount_service_account_token"])
    if automount and automount[1] is True:
        issues.append(
            ConfigIssue(f"hub.config.{automount[0]}.automount_service_account_token", TOKEN_WHY)
        )
    elif account and (automount is None or automount[1] is None):
        issues.append(ConfigIssue(f"hub.config.{account}.service_account", TOKEN_WHY))
    if issues:
        raise SiteConfigError(issues)
