"""The two ways CARMIN platforms speak: the 0.3.1 spec's, and VIP's.

Why a switch and not per-call guesses: VIP, the main CARMIN platform, differs from the
spec in a few documented ways (``../shared/specs/README.md``) and the client must do the
right thing for each without the user knowing. A `Dialect` holds those differences.

Detection (``dialect="auto"``): the client asks ``GET /platform`` (open to anyone, no key
needed) once, before its first other request. The platform speaks VIP's dialect when its
``platformName`` names VIP ("VIP" as a word, or "Virtual Imaging Platform"), or when it
lists error codes in VIP's 8000-8999 range in ``APIErrorCodesAndMessages``; when
``/platform`` cannot be read, when the URL's host is VIP's own. Anything else is the
spec's dialect. ``dialect="vip"`` or ``"carmin"`` skips the question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from egi_hub.carmin.models import Platform

__all__ = ["CARMIN", "DIALECTS", "VIP", "Dialect", "detect"]


@dataclass(frozen=True)
class Dialect:
    """What differs between platforms: the API key's header, the date unit, where a
    pipeline's Boutiques descriptor is served, whether ``POST /executions`` starts the
    execution at once, and how an execution is deleted."""

    name: str
    key_header: str
    dates_in_ms: bool | None  # None: guess from the size
    boutiques_as_query: bool  # VIP: /pipelines/{id}?format=boutiques
    starts_on_create: bool
    delete_with_put: bool  # VIP's portal: PUT /executions/{id}/delete {"deleteFiles": ...}


CARMIN = Dialect("carmin", "apiKey", None, False, False, False)
VIP = Dialect("vip", "apikey", True, True, True, True)
DIALECTS = {"carmin": CARMIN, "spec": CARMIN, "vip": VIP}

_VIP_NAME = re.compile(r"\bvip\b|virtual imaging platform", re.IGNORECASE)
VIP_HOST = "vip.creatis.insa-lyon.fr"


def _vip_host(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower().rstrip(".")
    return host == VIP_HOST or host.endswith("." + VIP_HOST)


def detect(platform: Platform | None, url: str) -> Dialect:
    """The dialect of the platform at ``url`` from its ``/platform`` answer (None when
    that could not be read)."""
    if platform is None:
        return VIP if _vip_host(url) else CARMIN
    if _VIP_NAME.search(platform.name):
        return VIP
    if any(8000 <= e.code <= 8999 for e in platform.error_codes):
        return VIP
    return CARMIN
