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
(before the ``singleuser`` section is merged under it), with its ``spawner_class``:
the chart's RBAC, NetworkPolicies and storage are made for servers that are pods, and a
spawner that runs users' code beside the hub (``localprocess``) would hand every user
the hub's own token, database and Secrets.

A service account's token in a server gives its user the Kubernetes API, so it is
refused wherever a server's pod is described (`refuse_pod_accounts`, on the merged
site): the spawner's traits, ``extra_pod_config`` (camelCase or snake_case, as
KubeSpawner reads it) and each profile's ``kubespawner_override`` (and its options'
choices), from ``hub.config`` and ``singleuser.profileList`` alike. A
``pvc_name_template`` there is checked as ``singleuser.storage``'s is (`egi_hub.helm.home`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..config import ConfigIssue, SiteConfigError
from .home import check_claim_template
from .singleuser import SPAWNER_SECTIONS as SPAWNERS  # a trait of any is the spawner's

__all__ = ["CHART_OWNED", "refuse_chart_owned", "refuse_pod_accounts"]

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
    (("JupyterHub",), "hub_bind_url"): "the hub listens on the port the chart's hub "
    "Service and NetworkPolicies name: leave it to the chart",
    (("JupyterHub",), "hub_ip"): "the hub listens where the chart's hub Service points: "
    "leave it to the chart",
    (("JupyterHub",), "hub_port"): "the hub listens on the port the chart's hub Service "
    "and NetworkPolicies name: leave it to the chart",
    (("JupyterHub",), "hub_connect_url"): "servers reach the hub by the chart's hub "
    "Service (per-VO namespaces too): leave it to the chart",
    (("JupyterHub",), "cleanup_servers"): "servers are pods that outlive a hub restart "
    "(an upgrade): the chart keeps them, as zero-to-jupyterhub does",
}

#: Why a spawner that is not KubeSpawner's is refused.
SPAWNER_WHY = (
    "the chart runs servers as pods (KubeSpawner, e.g. egi-kube); {name!r} would run "
    "users' code in the hub's pod, with the hub's token, database and Secrets"
)
#: extra_pod_config's keys (camelCase or snake_case) for a pod's service account.
POD_ACCOUNT = frozenset(
    {"serviceAccountName", "serviceAccount", "service_account_name", "service_account"}
)
POD_AUTOMOUNT = frozenset({"automountServiceAccountToken", "automount_service_account_token"})
POD_ACCOUNT_WHY = (
    "a service account in a server's pod gives its user the Kubernetes API: use "
    "KubeSpawner.service_account with automount_service_account_token: false"
)

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
    issues += _spawner_class(hub_site.get("JupyterHub"))
    if issues:
        raise SiteConfigError(issues)


def _spawner_class(hub: Any) -> list[ConfigIssue]:
    """A ``JupyterHub.spawner_class`` that is not KubeSpawner or a subclass of it (one
    that cannot be loaded is left to the site-file checks, which name it)."""
    if not isinstance(hub, Mapping) or hub.get("spawner_class") is None:
        return []
    from jupyterhub.app import JupyterHub

    value = hub["spawner_class"]
    try:
        cls = JupyterHub.class_traits()["spawner_class"].validate(
            JupyterHub.__new__(JupyterHub), value
        )
    except Exception:
        return []
    if any(c.__name__ == "KubeSpawner" for c in getattr(cls, "__mro__", ())):
        return []
    name = str(value)[:60]
    return [ConfigIssue("hub.config.JupyterHub.spawner_class", SPAWNER_WHY.format(name=name))]


def refuse_pod_accounts(site: Mapping[str, Any]) -> None:
    """Raise `SiteConfigError` (keys as site-file paths: ``KubeSpawner.extra_pod_config.…``)
    for a service account or a mounted token set through ``extra_pod_config`` or a
    profile's ``kubespawner_override``; ``site`` is the merged site (``hub.config`` with
    the ``singleuser`` section under it)."""
    issues: list[ConfigIssue] = []
    sections = [(s, site[s]) for s in SPAWNERS if isinstance(site.get(s), Mapping)]
    automount: Any = None  # the most specific class's setting wins
    for _, settings in sections:
        automount = settings.get("automount_service_account_token", automount)
    for section, settings in sections:
        if "pvc_name_template" in settings:  # set in hub.config: checked as the values' is
            check_claim_template(
                settings["pvc_name_template"], f"{section}.pvc_name_template", issues
            )
        _pod_config(settings.get("extra_pod_config"), f"{section}.extra_pod_config", issues)
        profiles = settings.get("profile_list")
        if isinstance(profiles, list):
            for i, profile in enumerate(profiles):
                _profile(profile, f"{section}.profile_list[{i}]", automount, issues)
    if issues:
        raise SiteConfigError(issues)


def _pod_config(pod: Any, where: str, issues: list[ConfigIssue]) -> None:
    if not isinstance(pod, Mapping):
        return
    for key in sorted(POD_ACCOUNT & pod.keys()):
        if pod[key]:
            issues.append(ConfigIssue(f"{where}.{key}", POD_ACCOUNT_WHY))
    for key in sorted(POD_AUTOMOUNT & pod.keys()):
        if pod[key] is True:
            issues.append(ConfigIssue(f"{where}.{key}", TOKEN_WHY))


def _profile(profile: Any, where: str, automount: Any, issues: list[ConfigIssue]) -> None:
    """One profile: its override, and each choice's of each of its options."""
    if not isinstance(profile, Mapping):
        return
    _override(
        profile.get("kubespawner_override"), f"{where}.kubespawner_override", automount, issues
    )
    options = profile.get("profile_options")
    if not isinstance(options, Mapping):
        return
    for name, option in options.items():
        choices = option.get("choices") if isinstance(option, Mapping) else None
        if not isinstance(choices, Mapping):
            continue
        for key, choice in choices.items():
            if isinstance(choice, Mapping):
                at = f"{where}.profile_options.{name}.choices.{key}.kubespawner_override"
                _override(choice.get("kubespawner_override"), at, automount, issues)


def _override(override: Any, where: str, automount: Any, issues: list[ConfigIssue]) -> None:
    """A ``kubespawner_override``: spawner traits set on the spawner as it starts."""
    if not isinstance(override, Mapping):
        return
    mine = override.get("automount_service_account_token", automount)
    if override.get("automount_service_account_token") is True:
        issues.append(ConfigIssue(f"{where}.automount_service_account_token", TOKEN_WHY))
    elif override.get("service_account") and mine is not False:
        issues.append(ConfigIssue(f"{where}.service_account", TOKEN_WHY))
    for (sections, trait), why in CHART_OWNED.items():
        if sections == SPAWNERS and trait in override:
            issues.append(ConfigIssue(f"{where}.{trait}", why))
    if "pvc_name_template" in override:
        check_claim_template(override["pvc_name_template"], f"{where}.pvc_name_template", issues)
    _pod_config(override.get("extra_pod_config"), f"{where}.extra_pod_config", issues)
