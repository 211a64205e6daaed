"""The chart's ``singleuser`` section: the single-user defaults, as site-file settings.

The keys z2jh has mean what they mean there, and go where z2jh's hub config puts them
(``KubeSpawner``): ``image``, ``cpu``, ``memory``, ``extraResource``, ``defaultUrl``,
``uid``, ``fsGid``, ``extraEnv``, ``nodeSelector``, ``extraLabels``,
``extraAnnotations``, ``extraTolerations``, ``startTimeout``; and, as in z2jh, the
servers pull their images with the top-level ``imagePullSecrets`` followed by
``singleuser.image.pullSecrets``. The egi-hub keys are
whole site-file sections under another name, with the same keys and meaning:
``profileList`` is ``EGIKubeSpawner.profile_list`` (VO rules included), ``quotas`` is
``QuotaPolicy``, ``storageMounts`` is ``StorageMounts``; ``voNamespaces`` (when
enabled) sets ``EGIKubeSpawner.vo_namespaces``, the namespaces the chart makes.
``storage`` is z2jh's users' homes (`egi_hub.helm.home`): a claim per server by default.

`SingleuserSite.under` merges all that *under* ``hub.config``, trait by trait (a trait
``hub.config`` sets wins, as in z2jh, whose ``hub.config`` is applied last), before
`egi_hub.stack.validate_site` runs: one set of checks for both ways to write a setting.
A bad key is named where the admin wrote it: ``singleuser.quotas.vo_limits.vo.a...``
for one that came from this section, ``hub.config...`` otherwise; and so are the
keys `validate_site`'s warnings name (`SingleuserSite.warning`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from traitlets.config import Config

from .._version import __version__
from ..config import ConfigIssue, SiteConfigError, describe
from .home import TOGETHER, home_settings

__all__ = ["KUBE", "RELEASE_LABEL", "SingleuserSite", "add_release_label", "site_settings"]

KUBE = "KubeSpawner"
EGI_KUBE = "EGIKubeSpawner"
#: The label the chart's NetworkPolicies select the release's single-user pods by
#: (with KubeSpawner's ``app.kubernetes.io/component: singleuser-server``).
RELEASE_LABEL = "app.kubernetes.io/instance"

#: z2jh's values keys -> KubeSpawner traits (as z2jh's jupyterhub_config.py maps them).
TRAITS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("image", "pullPolicy"), "image_pull_policy"),
    (("cpu", "limit"), "cpu_limit"),
    (("cpu", "guarantee"), "cpu_guarantee"),
    (("memory", "limit"), "mem_limit"),
    (("memory", "guarantee"), "mem_guarantee"),
    (("extraResource", "limits"), "extra_resource_limits"),
    (("extraResource", "guarantees"), "extra_resource_guarantees"),
    (("defaultUrl",), "default_url"),
    (("uid",), "uid"),
    (("fsGid",), "fs_gid"),
    (("extraEnv",), "environment"),
    (("nodeSelector",), "node_selector"),
    (("extraLabels",), "extra_labels"),
    (("extraAnnotations",), "extra_annotations"),
    (("extraTolerations",), "tolerations"),
    (("startTimeout",), "start_timeout"),
)
#: Values keys that are site-file sections under another name.
SECTIONS = {"quotas": "QuotaPolicy", "storageMounts": "StorageMounts"}
#: The spawner's sections along its MRO: a trait the site sets in any of them is the
#: site's (a ``singleuser`` default in ``KubeSpawner`` would hide ``Spawner.mem_limit``),
#: so the same site file means the same on the chart as with ``egi-hub up``.
SPAWNER_SECTIONS = ("Spawner", KUBE, EGI_KUBE)


def _dotted(keys: tuple[str, ...]) -> str:
    return "singleuser." + ".".join(keys)


def site_settings(
    singleuser: Any, image_pull_secrets: Any = None
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The site-file settings a ``singleuser`` section stands for, and where each was
    written (``"KubeSpawner.cpu_limit" -> "singleuser.cpu.limit"``).

    ``image_pull_secrets`` is the values' top-level ``imagePullSecrets``: with
    ``singleuser.image.pullSecrets`` after it (duplicates once), the servers' pull
    secrets. A null, an empty mapping or an empty list sets nothing (the trait keeps
    its default, or what ``hub.config`` says in any section). Raises `SiteConfigError`
    (values paths) for a section that is not even the right shape.
    """
    issues: list[ConfigIssue] = []
    pull_secrets = _list(image_pull_secrets, "imagePullSecrets", issues)
    if singleuser is None:
        singleuser = {}

    def mapping(keys: tuple[str, ...]) -> Mapping[str, Any]:
        value: Any = singleuser
        for i, key in enumerate(keys):
            value = value.get(key) if isinstance(value, Mapping) else None
            if value is None:
                return {}
            if not isinstance(value, Mapping):
                where = _dotted(keys[: i + 1])
                issues.append(ConfigIssue(where, f"expected a mapping, got {describe(value)}"))
                return {}
        return value

    if not isinstance(singleuser, Mapping):
        issue = ConfigIssue("singleuser", f"expected a mapping, got {describe(singleuser)}")
        raise SiteConfigError([issue])
    site: dict[str, dict[str, Any]] = {}
    origins: dict[str, str] = {}

    def put(section: str, trait: str, value: Any, where: str) -> None:
        if value is None or (isinstance(value, dict | list) and not value):
            return
        site.setdefault(section, {})[trait] = value
        origins[f"{section}.{trait}"] = where

    image = mapping(("image",))
    if image.get("name"):  # no tag: the chart's appVersion, which is the package's
        tag = image.get("tag") or __version__
        put(KUBE, "image", f"{image['name']}:{tag}", "singleuser.image")
    own = _list(image.get("pullSecrets"), "singleuser.image.pullSecrets", issues)
    secrets = {"imagePullSecrets": pull_secrets, "singleuser.image.pullSecrets": own}
    merged: list[Any] = []
    for secret in (s for names in secrets.values() for s in names):
        if secret not in merged:
            merged.append(secret)
    put(KUBE, "image_pull_secrets", merged, " and ".join(k for k, v in secrets.items() if v))
    for keys, trait in TRAITS:
        put(KUBE, trait, mapping(keys[:-1]).get(keys[-1]), _dotted(keys))
    put(EGI_KUBE, "profile_list", singleuser.get("profileList"), "singleuser.profileList")
    for key, section in SECTIONS.items():
        for trait, value in mapping((key,)).items():
            put(section, str(trait), value, _dotted((key, str(trait))))
    for trait, value, where in home_settings(mapping(("storage",)), issues):
        put(KUBE, trait, value, where)
    namespaces = mapping(("voNamespaces",))
    if namespaces.get("enabled"):
        names = {}
        for vo, entry in mapping(("voNamespaces", "namespaces")).items():
            names[vo] = entry.get("name") if isinstance(entry, Mapping) else entry
        put(EGI_KUBE, "vo_namespaces", names, "singleuser.voNamespaces.namespaces")
    if issues:
        raise SiteConfigError(issues)
    return site, origins


def _list(value: Any, where: str, issues: list[ConfigIssue]) -> list[Any]:
    """The Secret names listed at ``where`` (null: none), each item a name or, as z2jh
    also takes it, ``{name: <Secret>}``; anything else is an issue."""
    if value is None:
        return []
    if not isinstance(value, list):
        issues.append(ConfigIssue(where, f"expected a list of Secret names, got {describe(value)}"))
        return []
    names: list[Any] = []
    for i, item in enumerate(value):
        if isinstance(item, Mapping) and set(item) == {"name"}:
            item = item["name"]
        if not isinstance(item, str) or not item:
            why = f"expected a Secret's name or {{name: <Secret>}}, got {describe(item)}"
            issues.append(ConfigIssue(f"{where}[{i}]", why))
            continue
        names.append(item)
    return names


def _site_sets(hub_site: Mapping[str, Any], section: str, trait: str) -> bool:
    """Whether hub.config sets ``trait`` for the spawner in any section along its MRO."""
    if section not in SPAWNER_SECTIONS:
        return False
    return any(
        isinstance(hub_site.get(s), Mapping) and trait in hub_site[s] for s in SPAWNER_SECTIONS
    )


@dataclass
class SingleuserSite:
    """``hub.config`` with the ``singleuser`` settings merged under it."""

    site: dict[str, Any]
    #: ``Section.trait`` -> the values path it came from (only those hub.config left).
    origins: dict[str, str] = field(default_factory=dict)

    @classmethod
    def under(
        cls, hub_site: Mapping[str, Any], singleuser: Any, image_pull_secrets: Any = None
    ) -> SingleuserSite:
        """Merge (``image_pull_secrets``: the values' top-level ``imagePullSecrets``);
        `SiteConfigError` (values paths) for a section of the wrong shape. (hub.config's
        own ``vo_namespaces`` is refused before, with the other keys the chart owns:
        `egi_hub.helm.owned`.)"""
        settings, written = site_settings(singleuser, image_pull_secrets)
        site = {k: dict(v) if isinstance(v, Mapping) else v for k, v in hub_site.items()}
        origins: dict[str, str] = {}
        for section, traits in settings.items():
            target = site.setdefault(section, {})
            if not isinstance(target, dict):
                continue  # hub.config's section is not a mapping: the checks name it
            for trait, value in traits.items():
                pair = TOGETHER if trait in TOGETHER else {trait}
                if trait in target or any(_site_sets(hub_site, section, t) for t in pair):
                    continue  # hub.config wins (volumes and their mounts: as a pair)
                target[trait] = value
                origins[f"{section}.{trait}"] = written[f"{section}.{trait}"]
        merged = cls(site, origins)
        merged.check_home_path()
        return merged

    def check_home_path(self) -> None:
        """A storage mount at the home's own path would hide it (the pod would be
        refused at every start): `SiteConfigError` naming the mount's path."""
        kube = self.site.get(KUBE)
        if f"{KUBE}.volume_mounts" not in self.origins or not isinstance(kube, Mapping):
            return
        home = [m.get("mountPath") for m in kube["volume_mounts"] if isinstance(m, Mapping)]
        mounts = self.site.get("StorageMounts", {})
        mounts = mounts.get("mounts") if isinstance(mounts, Mapping) else None
        for i, mount in enumerate(mounts if isinstance(mounts, list) else []):
            if isinstance(mount, Mapping) and mount.get("path") in home:
                where = self.name(f"StorageMounts.mounts[{i}].path")
                why = (
                    f"singleuser.storage mounts a volume at {mount['path']} already "
                    "(the home directory, or one of its extraVolumeMounts)"
                )
                raise SiteConfigError([ConfigIssue(where, why)])

    def name(self, path: str) -> str:
        """A site-file key path (``QuotaPolicy.vo_limits.vo.a``) as the values spell it."""
        for origin, where in self.origins.items():
            if path == origin or path.startswith((origin + ".", origin + "[")):
                rest = path[len(origin) :]
                if origin == f"{EGI_KUBE}.vo_namespaces" and rest:
                    rest += ".name"  # the trait maps a VO to what its entry's name says
                return where + rest
        return f"hub.config.{path}"

    def warning(self, text: str) -> str:
        """A `validate_site` warning (``Section.trait...: why``) with its key named as
        the values spell it; one that names no key stays as it is."""
        path, sep, why = text.partition(": ")
        if not sep or not path or any(c.isspace() for c in path):
            return text
        return f"{self.name(path)}: {why}"

    def renamed(self, error: SiteConfigError) -> SiteConfigError:
        return SiteConfigError(ConfigIssue(self.name(i.path), i.message) for i in error.issues)

    @contextmanager
    def named_as_written(self) -> Iterator[None]:
        """Within: a `SiteConfigError` names its keys as the values spell them."""
        try:
            yield
        except SiteConfigError as e:
            raise self.renamed(e) from None


def add_release_label(config: Config, environ: Mapping[str, str]) -> None:
    """Label every single-user pod with the chart's release (``$EGI_HUB_RELEASE``), on
    top of whatever extra labels the site set: the release's NetworkPolicies select the
    pods by it, so a site's ``extra_labels`` never removes it."""
    release = environ.get("EGI_HUB_RELEASE")
    if not release:
        return
    labels: dict[str, Any] = {}
    for section in (KUBE, EGI_KUBE):  # the more specific class's setting wins
        if "extra_labels" in config[section]:
            labels = dict(config[section].extra_labels)
    config[EGI_KUBE].extra_labels = {**labels, RELEASE_LABEL: release}
