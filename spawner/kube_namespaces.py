"""Per-VO namespaces: which Kubernetes namespace a server charged to a VO starts in.

A site that gives each VO its own namespace (the chart's ``singleuser.voNamespaces``)
gets a ResourceQuota, a NetworkPolicy and Pod Security labels per VO, enforced by
Kubernetes whatever the hub decides. `EGIKubeSpawner.vo_namespaces` maps each VO to
its namespace; `namespace_for` is the one rule that picks a server's:

- the namespace of the VO the server is charged to, only when the user is a member of
  that VO (their entitlements say so): a profile whose ``vo`` names another VO, or an
  admin starting a VO's profile from outside it, never puts a pod among that VO's pods
  and under its quota on behalf of someone who is not in it;
- otherwise (no VO, a VO without a namespace of its own, not a member) the hub's own
  namespace, as without this setting.

The namespace is chosen after the profile and the quota's admission, so what a user
asks for (profile options, ``kubespawner_override``) never chooses it.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any

from traitlets import Dict

from egi_hub.config import TraitPathError, expect

__all__ = ["VONamespacesTrait", "namespace_for"]

#: A namespace name: an RFC 1123 DNS label, as Kubernetes requires.
DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


class VONamespacesTrait(Dict):
    """``{vo: namespace}``, each VO name and namespace name checked."""

    info_text = "a mapping of VO names to Kubernetes namespace names"

    def validate(self, obj: Any, value: Any) -> dict[str, str]:
        expect(value, dict, "", self.info_text)
        for vo, namespace in value.items():
            if not isinstance(vo, str) or not vo or any(c in vo for c in ":#/ "):
                raise TraitPathError(str(vo), "not a VO name")
            if not isinstance(namespace, str) or not DNS_LABEL.fullmatch(namespace):
                raise TraitPathError(
                    vo,
                    f"not a namespace name (a DNS label: at most 63 of a-z, 0-9 and '-', "
                    f"starting and ending with a letter or digit), got {namespace!r:.80}",
                )
        return super().validate(obj, dict(value))


def namespace_for(
    vo_namespaces: Mapping[str, str], vo: str | None, member_of: Collection[str], home: str
) -> str:
    """The namespace of a server charged to ``vo`` for a user in the VOs ``member_of``:
    the VO's own if it has one and the user is a member, else ``home`` (the hub's)."""
    if vo and vo in member_of and vo in vo_namespaces:
        return vo_namespaces[vo]
    return home
