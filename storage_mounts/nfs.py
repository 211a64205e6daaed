"""NFS exports: mounted as they are (no credentials), owned by a configured uid/gid.

    - {name: shared, kind: nfs, server: nfs.example.org, export: /exports/{vo},
       path: /nfs/shared, uid: 1000, gid: 100}

On Kubernetes an export is a native ``nfs`` volume (the kubelet mounts it; no privileges
in the pod). ``export`` may use ``{vo}`` and ``{username}``, each escaped into one path
component, so a user can never name another VO's or user's directory.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from egi_hub.config import TraitPathError, expect

from .mounts import Mount, check_template_value, register_kind

__all__ = ["NFSMount"]

# A host name or an IPv4/IPv6 address, nothing else (it ends up in a volume spec).
_HOST = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]")
_EXPORT = re.compile(r"(/[A-Za-z0-9{}][A-Za-z0-9._{}-]*)+")


@register_kind
@dataclass(frozen=True)
class NFSMount(Mount):
    """One NFS export, the same for everyone or per VO/user through templates."""

    kind: ClassVar[str] = "nfs"
    templates: ClassVar[Mapping[str, str]] = {"export": "path"}

    server: str = ""
    export: str = ""
    uid: int | None = None
    gid: int | None = None

    @classmethod
    def own_keys(cls) -> tuple[str, ...]:
        return ("server", "export", "uid", "gid")

    @classmethod
    def parse_fields(cls, data: Mapping[str, Any], where: str) -> dict[str, Any]:
        server = expect(data.get("server"), str, f"{where}.server", "a host name")
        if not _HOST.fullmatch(server):
            raise TraitPathError(f"{where}.server", f"not a host name or address: {server!r}")
        export = check_template_value(
            data.get("export"), f"{where}.export", "an absolute export path"
        )
        if not _EXPORT.fullmatch(export) or "/../" in export + "/" or "/./" in export + "/":
            raise TraitPathError(
                f"{where}.export", f"not a plain absolute path (no '..', no spaces): {export!r}"
            )
        ids = {}
        for key in ("uid", "gid"):
            value = data.get(key)
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise TraitPathError(f"{where}.{key}", f"expected a number >= 0, got {value!r}")
            ids[key] = value
        return {"server": server, "export": export, **ids}
