"""DataHub (Onedata): the spaces a user's Check-in identity reaches in a Onezone.

    - {name: datahub, kind: datahub, onezone_url: https://datahub.egi.eu,
       vos: [vo.access.egi.eu], path: /datahub, read_only: false}

No site secret is involved: the hub exchanges the user's own Check-in access token at
Onezone (``idp_prefix``: the identity provider's name there, ``egi`` for EGI Check-in)
for Onedata tokens scoped to one use each (FUSE or REST, read-only when the mount is),
see `egi_hub.storage_mounts.datahub_tokens`. ``spaces`` (optional) keeps only the
named spaces (ids, ``name@id``, or names unique among the user's spaces, as
`egi_hub.spaces` matches them); by default every space the user's token reaches
appears under ``path``. The filter goes, as configured, into the mounts document (the notebook's
``datahub://`` applies it to Onezone's current answer, so spaces joined later appear) and
into the Kubernetes sidecar's ``--space-id`` options (`egi_hub.storage_mounts.kube`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from egi_hub.config import TraitPathError, expect
from egi_hub.names import CONTROL as _CONTROL

from .mounts import Mount, check_https_url, register_kind

__all__ = ["DatahubMount"]

_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@register_kind
@dataclass(frozen=True)
class DatahubMount(Mount):
    """The user's DataHub spaces (all, or those named in ``spaces``)."""

    kind: ClassVar[str] = "datahub"

    onezone_url: str = ""
    idp_prefix: str = "egi"
    spaces: tuple[str, ...] = ()

    @classmethod
    def own_keys(cls) -> tuple[str, ...]:
        return ("onezone_url", "idp_prefix", "spaces")

    @classmethod
    def parse_fields(cls, data: Mapping[str, Any], where: str) -> dict[str, Any]:
        onezone = check_https_url(data.get("onezone_url"), f"{where}.onezone_url")
        prefix = data.get("idp_prefix", "egi")
        if not isinstance(prefix, str) or not _PREFIX.fullmatch(prefix):
            raise TraitPathError(
                f"{where}.idp_prefix", f"not an identity provider name: {prefix!r}"
            )
        spaces = expect(data.get("spaces", []), list, f"{where}.spaces", "a list of space names")
        for i, space in enumerate(spaces):
            if (
                not isinstance(space, str)
                or not space
                or len(space) > 255
                or "/" in space
                or ".." in space
                or _CONTROL.search(space)
            ):
                raise TraitPathError(
                    f"{where}.spaces[{i}]", f"not a space name or id: {space!r:.100}"
                )
        return {"onezone_url": onezone, "idp_prefix": prefix, "spaces": tuple(spaces)}
