"""Profiles per VO: KubeSpawner's ``profile_list`` format plus ``allowed_vos`` and ``vo``.

    profile_list:
      - display_name: "Small (1 CPU, 1 GB)"
        slug: small
        default: true
        kubespawner_override: {cpu_limit: 1, mem_limit: 1G}
      - display_name: "GPU"
        slug: gpu
        allowed_vos: ["vo.notebooks.egi.eu:role=member"]
        vo: vo.notebooks.egi.eu          # the VO this server is charged to
        kubespawner_override: {cpu_limit: 4, mem_limit: 16G,
                               extra_resource_limits: {"nvidia.com/gpu": "1"}}

A profile without ``allowed_vos`` is open to everyone. A request for a profile the user's
VOs do not allow, or for a slug that does not exist, is refused with 403.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from tornado import web
from traitlets import List

from egi_hub.config import TraitPathError, expect
from egi_hub.context import UserContext
from egi_hub.vo import RuleError, parse_rule

__all__ = ["ProfileListTrait", "available_profiles", "choose_profile", "profile_slug"]

_PROFILE_KEYS = {
    "display_name",
    "slug",
    "description",
    "default",
    "kubespawner_override",
    "profile_options",
    "allowed_vos",
    "vo",
}


def profile_slug(profile: dict[str, Any]) -> str:
    """The profile's slug, or one made from its display name (as KubeSpawner does)."""
    if profile.get("slug"):
        return str(profile["slug"])
    return re.sub(r"[^a-z0-9]+", "-", str(profile.get("display_name", "")).lower()).strip("-")


class ProfileListTrait(List):
    """A ``profile_list``, checked profile by profile."""

    info_text = "a list of profiles"

    def validate(self, obj: Any, value: Any) -> list[dict[str, Any]]:
        expect(value, list, "", self.info_text)
        slugs: set[str] = set()
        for i, profile in enumerate(value):
            where = f"[{i}]"
            expect(profile, dict, where, "a mapping")
            for key in profile:
                if key not in _PROFILE_KEYS:
                    raise TraitPathError(f"{where}.{key}", "unknown profile key")
            if not profile.get("display_name"):
                raise TraitPathError(f"{where}.display_name", "every profile needs one")
            slug = profile_slug(profile)
            if not slug or slug in slugs:
                raise TraitPathError(f"{where}.slug", f"empty or repeated slug {slug!r}")
            slugs.add(slug)
            rules = expect(profile.get("allowed_vos", []), list, f"{where}.allowed_vos", "a list")
            for j, rule in enumerate(rules):
                try:
                    parse_rule(rule)
                except RuleError as e:
                    raise TraitPathError(f"{where}.allowed_vos[{j}]", str(e)) from None
            override = profile.get("kubespawner_override", {})
            expect(override, dict, f"{where}.kubespawner_override", "a mapping")
        return super().validate(obj, value)


def available_profiles(
    profiles: Sequence[dict[str, Any]], context: UserContext, admin: bool = False
) -> list[dict[str, Any]]:
    """The profiles this user may choose: open ones, and those their VOs allow."""
    return [
        p
        for p in profiles
        if admin or not p.get("allowed_vos") or context.matches_any(p["allowed_vos"])
    ]


def choose_profile(
    profiles: Sequence[dict[str, Any]],
    context: UserContext,
    slug: str | None,
    admin: bool = False,
) -> dict[str, Any] | None:
    """The profile to start: the one asked for, else the default; 403 if not allowed."""
    if not profiles:
        return None
    allowed = available_profiles(profiles, context, admin)
    if slug:
        for profile in allowed:
            if profile_slug(profile) == slug:
                return profile
        names = ", ".join(profile_slug(p) for p in allowed) or "none"
        raise web.HTTPError(
            403, "%s", f"Profile {slug!r} is not available to you (available: {names})"
        )
    if not allowed:
        raise web.HTTPError(403, "%s", "No profile is available to your VOs")
    return next((p for p in allowed if p.get("default")), allowed[0])
