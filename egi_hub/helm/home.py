"""The chart's ``singleuser.storage``: users' home directories, as z2jh gives them.

Servers are culled after an hour idle and restarted at will, so a home that lives in
the container is lost every time: by default (``type: dynamic``, as in z2jh) each
server gets a PersistentVolumeClaim of its own, made by KubeSpawner at its first start
(``storage_pvc_ensure``) in the namespace the server runs in, kept across stops, and
mounted at ``homeMountPath``. ``static`` mounts one existing claim for everyone, each
user in a ``subPath`` of it; ``none`` gives servers no home volume (ephemeral servers).

The keys mean what z2jh's ``jupyterhub_config.py`` makes of them (`home_settings`
returns the KubeSpawner traits), with the name templates checked here, since a
template is where one user could reach another's files: a claim name must come from an
escaped per-user field (``{username}``, ``{user_server}``, ``{userid}``, or their
``safe_``/``escaped_`` forms, which KubeSpawner makes distinct for distinct users),
never from ``{unescaped_username}``, never from no user field at all (one claim for
every user), and a field KubeSpawner does not know would fail every spawn. A server's
name reaches a claim or a subPath only through ``{user_server}`` (or its forms):
KubeSpawner's ``{servername}`` has no separator, so ``claim-{username}{servername}``
is ``claim-ab`` for user ``ab`` and for user ``a``'s server ``b`` (and a separator
of the template's own, ``-``, is one a username may hold too). A ``static`` claim is
everyone's: its ``subPath`` must name the user.

``volumes`` and ``volume_mounts`` go together: the home's mount names the home's
volume, so when ``hub.config`` sets either one the chart sets neither
(`singleuser.SingleuserSite.under`).
"""

from __future__ import annotations

import re
import string
from collections.abc import Iterator, Mapping
from typing import Any

from ..config import ConfigIssue, TraitPathError, describe

__all__ = ["TOGETHER", "TYPES", "check_claim_template", "home_settings"]

TYPES = ("dynamic", "static", "none")
#: Traits a site sets as a pair, or not at all (the chart's mount names its volume).
TOGETHER = frozenset({"volumes", "volume_mounts"})

#: KubeSpawner's template fields whose values are escaped (valid in names, distinct for
#: distinct users); ``unescaped_*`` are not, and ``pod_name``/``pvc_name`` refer back.
FIELDS = frozenset(
    {
        "userid",
        "username",
        "servername",
        "user_server",
        "safe_username",
        "safe_servername",
        "safe_user_server",
        "escaped_username",
        "escaped_servername",
        "escaped_user_server",
        "hubnamespace",
    }
)
#: The fields that tell one user from another.
PER_USER = frozenset(
    {
        "userid",
        "username",
        "user_server",
        "safe_username",
        "safe_user_server",
        "escaped_username",
        "escaped_user_server",
    }
)
#: A server's name alone: it tells one user's servers apart, not one user from another,
#: and joined to a username it can spell another user's name.
SERVER_ONLY = frozenset({"servername", "safe_servername", "escaped_servername"})
SERVER_WHY = (
    "{{{field}}} joined to a username can spell another user's name (user ab, and user "
    "a's server b): use {{user_server}} for a name per server"
)
#: What a name template may say around its fields: a claim is a DNS subdomain, a
#: volume a DNS label; a subPath a relative path.
NAME_TEXT = {"claim": re.compile(r"[a-z0-9.-]*"), "volume": re.compile(r"[a-z0-9-]*")}
SUBPATH_TEXT = re.compile(r"[A-Za-z0-9._/-]*")


def _fields(template: str, where: str, issues: list[ConfigIssue]) -> list[tuple[str, str]]:
    """``(literal text, field)`` pairs of a ``str.format`` template, or an issue."""
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError as e:
        issues.append(ConfigIssue(where, f"not a template ({e}): {template!r:.80}"))
        return []
    out = []
    for text, field, spec, conversion in parts:
        if field is not None and (spec or conversion or field not in FIELDS):
            known = ", ".join(f"{{{f}}}" for f in sorted(FIELDS))
            why = f"{{{field}}} is not one of {known}"
            if field.startswith("unescaped_"):
                why = f"{{{field}}} is not escaped: use {{{field.removeprefix('unescaped_')}}}"
            issues.append(ConfigIssue(where, why))
            return []
        out.append((text, field or ""))
    return out


def _name_template(template: Any, where: str, kind: str, issues: list[ConfigIssue]) -> None:
    """A claim's or a volume's name template: known fields, name characters around
    them; a claim's names a user."""
    if not isinstance(template, str) or not template:
        issues.append(ConfigIssue(where, f"expected a name template, got {describe(template)}"))
        return
    parts = _fields(template, where, issues)
    if not parts:
        return
    if kind == "claim" and _server_only(parts, where, issues):
        return
    if not all(NAME_TEXT[kind].fullmatch(text) for text, _ in parts):
        what = "a-z, 0-9, '.', '-'" if kind == "claim" else "a-z, 0-9, '-'"
        issues.append(ConfigIssue(where, f"only {what} around the {{fields}}: {template!r:.80}"))
    elif kind == "claim" and not any(field in PER_USER for _, field in parts):
        issues.append(
            ConfigIssue(
                where,
                "names no user ({username}, {user_server} or {userid}): every user's "
                "server would mount the same claim",
            )
        )


def check_claim_template(template: Any, where: str, issues: list[ConfigIssue]) -> None:
    """A ``pvc_name_template`` set in ``hub.config`` (or a profile's override), checked
    as ``singleuser.storage.dynamic.pvcNameTemplate`` is."""
    _name_template(template, where, "claim", issues)


def _server_only(parts: list[tuple[str, str]], where: str, issues: list[ConfigIssue]) -> bool:
    """Whether a template names a server by a server-only field (an issue if so)."""
    for _, field in parts:
        if field in SERVER_ONLY:
            issues.append(ConfigIssue(where, SERVER_WHY.format(field=field)))
            return True
    return False


def _sub_path(
    value: Any, where: str, issues: list[ConfigIssue], shared: bool = False
) -> str | None:
    """A subPath (template) inside the volume: relative, no '..'; empty: the root.
    ``shared``: the volume is everyone's (static), so the path must name the user."""
    if value is not None and value != "" and not isinstance(value, str):
        issues.append(ConfigIssue(where, f"expected a path, got {describe(value)}"))
        return None
    parts = _fields(value, where, issues) if value else []
    if value and not parts:
        return None  # not a template: named already
    if shared and not any(field in PER_USER for _, field in parts):
        why = (
            "names no user ({username}, {user_server} or {userid}): the claim is "
            "everyone's, so every user would see the same files"
        )
        issues.append(ConfigIssue(where, why))
        return None
    if not value or _server_only(parts, where, issues):
        return None
    text = "".join(t for t, _ in parts)
    if (
        not all(SUBPATH_TEXT.fullmatch(t) for t, _ in parts)
        or value.startswith("/")
        or ".." in text.split("/")
    ):
        issues.append(ConfigIssue(where, f"not a relative path inside the volume: {value!r:.80}"))
        return None
    return value


def _mount_path(value: Any, where: str, issues: list[ConfigIssue]) -> str | None:
    from ..storage_mounts.mounts import check_mount_path

    try:
        return check_mount_path(value, where)
    except TraitPathError as e:
        issues.append(ConfigIssue(e.path, e.message))
        return None


def _extra(value: Any, where: str, issues: list[ConfigIssue]) -> list[Any]:
    """z2jh's extraVolumes/extraVolumeMounts: a list, or a mapping (its values, by key)."""
    if value is None:
        return []
    if isinstance(value, Mapping):
        return [value[k] for k in sorted(value)]
    if isinstance(value, list):
        return list(value)
    issues.append(ConfigIssue(where, f"expected a list or a mapping, got {describe(value)}"))
    return []


def home_settings(
    storage: Mapping[str, Any], issues: list[ConfigIssue]
) -> Iterator[tuple[str, Any, str]]:
    """The KubeSpawner traits of a ``singleuser.storage`` section, each with the values
    path it came from: ``(trait, value, where)``. Problems are added to ``issues``.
    An empty section (or one without ``type``) sets no home volume."""
    where = "singleuser.storage"
    kind = storage.get("type")
    if kind is not None and kind not in TYPES:
        issues.append(
            ConfigIssue(f"{where}.type", f"expected one of {', '.join(TYPES)}, got {kind!r:.40}")
        )
        return
    volumes: list[Any] = []
    mounts: list[Any] = []
    if kind in ("dynamic", "static"):
        path = _mount_path(storage.get("homeMountPath"), f"{where}.homeMountPath", issues)
        own = storage.get(kind)
        own = {} if own is None else own
        if not isinstance(own, Mapping):
            why = f"expected a mapping, got {describe(own)}"
            issues.append(ConfigIssue(f"{where}.{kind}", why))
            own = {}
        at = f"{where}.{kind}.subPath"
        sub_path = _sub_path(own.get("subPath"), at, issues, shared=kind == "static")
        if kind == "dynamic":
            yield "storage_pvc_ensure", True, f"{where}.type"
            if own.get("pvcNameTemplate"):
                template = own["pvcNameTemplate"]
                _name_template(template, f"{where}.dynamic.pvcNameTemplate", "claim", issues)
                yield "pvc_name_template", template, f"{where}.dynamic.pvcNameTemplate"
            yield "storage_capacity", storage.get("capacity"), f"{where}.capacity"
            yield "storage_class", own.get("storageClass"), f"{where}.dynamic.storageClass"
            modes = own.get("storageAccessModes")
            yield "storage_access_modes", modes, f"{where}.dynamic.storageAccessModes"
            name = own.get("volumeNameTemplate") or "volume-{user_server}"
            _name_template(name, f"{where}.dynamic.volumeNameTemplate", "volume", issues)
            claim = "{pvc_name}"  # KubeSpawner's, remembered in the server's state
        else:
            name, claim = "home", own.get("pvcName")
            if claim is None or claim == "":
                why = "required with type static: the existing claim to mount"
                issues.append(ConfigIssue(f"{where}.static.pvcName", why))
            elif not isinstance(claim, str):
                why = f"expected a claim's name, got {describe(claim)}"
                issues.append(ConfigIssue(f"{where}.static.pvcName", why))
        volumes.append({"name": name, "persistentVolumeClaim": {"claimName": claim}})
        mount = {"name": name, "mountPath": path}
        if sub_path:
            mount["subPath"] = sub_path
        mounts.append(mount)
    volumes += _extra(storage.get("extraVolumes"), f"{where}.extraVolumes", issues)
    mounts += _extra(storage.get("extraVolumeMounts"), f"{where}.extraVolumeMounts", issues)
    yield "volumes", volumes, where
    yield "volume_mounts", mounts, where
    yield "storage_extra_labels", storage.get("extraLabels"), f"{where}.extraLabels"
