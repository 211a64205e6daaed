"""Profiles per VO: KubeSpawner's ``profile_list`` format plus ``allowed_vos`` and ``vo``.

    profile_list:
      - display_name: "Small (1 CPU, 1 GiB)"
        slug: small
        default: true
        kubespawner_override: {cpu_limit: 1, mem_limit: 1G}
      - display_name: "GPU"
        slug: gpu
        allowed_vos: ["vo.notebooks.egi.eu:role=member"]
        vo: vo.notebooks.egi.eu          # the VO this server is charged to
        kubespawner_override: {cpu_limit: 4, mem_limit: 16G,
                               extra_resource_limits: {"nvidia.com/gpu": "1"}}
        profile_options:                 # KubeSpawner's choices inside a profile
          image:
            display_name: Image
            choices:
              minimal: {display_name: Minimal, kubespawner_override: {image: "...:min"}}
              full: {display_name: Full, kubespawner_override: {image: "...:full"}}

A profile without ``allowed_vos`` is open to everyone. A request for a profile the user's
VOs do not allow, or for a slug that does not exist, is refused with 403; a choice that a
profile's options do not offer, with 400 (both worded in `egi_hub.spawner.refusals`).

The list is checked and parsed once, when the trait is set: each profile becomes a
`Profile`, still the mapping KubeSpawner reads (with its ``slug`` filled in, so that
KubeSpawner and egi-hub always name it alike), plus its VO rules already parsed.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

from traitlets import List

from egi_hub.config import TraitPathError, expect
from egi_hub.context import UserContext
from egi_hub.vo import RuleError, VORule, parse_rule

from .refusals import Links, Refusal, no_profile_refusal, option_refusal, profile_refusal

__all__ = [
    "UNLISTED",
    "UNLISTED_CHOICE",
    "Profile",
    "ProfileListTrait",
    "available_profiles",
    "choose_profile",
    "merge_override",
    "option_overrides",
    "override_keys",
    "profile_slug",
]

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
UNLISTED = "--unlisted-choice"  # KubeSpawner's suffix for a free-form option value
UNLISTED_CHOICE = "unlisted-choice"  # KubeSpawner's value of the "Other…" entry in a select


def profile_slug(profile: Mapping[str, Any]) -> str:
    """The profile's slug, or one made from its display name."""
    if profile.get("slug"):
        return str(profile["slug"])
    return re.sub(r"[^a-z0-9]+", "-", str(profile.get("display_name", "")).lower()).strip("-")


class Profile(dict):
    """One checked profile: the mapping KubeSpawner reads, plus its parsed VO rules.

    A ``dict`` so that it goes to KubeSpawner (and its form template) unchanged; the
    rules ride along as an attribute, which copies keep.
    """

    rules: tuple[VORule, ...] = ()

    def __init__(self, data: Mapping[str, Any], rules: Sequence[VORule] = ()) -> None:
        super().__init__(data)
        self.rules = tuple(rules)

    @property
    def slug(self) -> str:
        return profile_slug(self)

    def charged_vo(self, context: UserContext) -> str | None:
        """The VO a server of this profile is charged to, for this user.

        The profile's ``vo`` if set; else the first of the user's VOs (in their
        order) that one of its ``allowed_vos`` rules admits, so a profile granted by
        one VO is never charged to another; else (an open profile, or an admin
        outside its VOs) the user's primary VO.
        """
        if self.get("vo"):
            return str(self["vo"])
        for vo in context.vos:
            if any(rule.vo == vo and rule.matches_any(context.entitlements) for rule in self.rules):
                return vo
        return context.primary_vo


def _check_options(options: Any, where: str) -> None:
    """``profile_options``: ``{name: {display_name, choices, unlisted_choice}}``."""
    expect(options, dict, where, "a mapping of options")
    for name, option in options.items():
        at = f"{where}.{name}"
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise TraitPathError(at, "an option name is letters, digits, '_', '.' or '-'")
        if name == "profile" or "--" in name:
            raise TraitPathError(at, "reserved option name")
        expect(option, dict, at, "a mapping")
        choices = expect(option.get("choices", {}), dict, f"{at}.choices", "a mapping")
        for key, choice in choices.items():
            expect(choice, dict, f"{at}.choices.{key}", "a mapping")
            override = choice.get("kubespawner_override", {})
            expect(override, dict, f"{at}.choices.{key}.kubespawner_override", "a mapping")
        unlisted = expect(
            option.get("unlisted_choice", {}), dict, f"{at}.unlisted_choice", "a mapping"
        )
        override = unlisted.get("kubespawner_override", {})
        expect(override, dict, f"{at}.unlisted_choice.kubespawner_override", "a mapping")
        if unlisted.get("validation_regex"):
            try:
                re.compile(unlisted["validation_regex"])
            except (re.error, TypeError) as e:
                raise TraitPathError(f"{at}.unlisted_choice.validation_regex", str(e)) from None
        if not choices and not unlisted.get("enabled"):
            raise TraitPathError(at, "no choices, and no unlisted_choice enabled")


class ProfileListTrait(List):
    """A ``profile_list``, checked profile by profile; its value is a list of `Profile`."""

    info_text = "a list of profiles"

    def validate(self, obj: Any, value: Any) -> list[Profile]:
        expect(value, list, "", self.info_text)
        slugs: set[str] = set()
        profiles = []
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
            texts = expect(profile.get("allowed_vos", []), list, f"{where}.allowed_vos", "a list")
            rules = []
            for j, rule in enumerate(texts):
                try:
                    rules.append(parse_rule(rule))
                except RuleError as e:
                    raise TraitPathError(f"{where}.allowed_vos[{j}]", str(e)) from None
            override = profile.get("kubespawner_override", {})
            expect(override, dict, f"{where}.kubespawner_override", "a mapping")
            if "profile_options" in profile:
                _check_options(profile["profile_options"], f"{where}.profile_options")
            # The slug written out: KubeSpawner would make a different one from a
            # non-ASCII display name, and then not find the profile egi-hub chose.
            profiles.append(Profile({**profile, "slug": slug}, rules))
        return super().validate(obj, profiles)


def available_profiles(
    profiles: Sequence[Mapping[str, Any]], context: UserContext, admin: bool = False
) -> list[Profile]:
    """The profiles this user may choose: open ones, and those their VOs allow."""
    allowed = []
    for p in profiles:
        profile = p if isinstance(p, Profile) else ProfileListTrait().validate(None, [p])[0]
        if admin or not profile.rules or context.matches_any(profile.rules):
            allowed.append(profile)
    return allowed


def choose_profile(
    profiles: Sequence[Mapping[str, Any]],
    context: UserContext,
    slug: str | None,
    admin: bool = False,
    links: Links | None = None,
) -> Profile | None:
    """The profile to start: the one asked for, else the default; a 403 `Refusal` (which
    VO it needs, with ``links``' enrolment page) if not allowed.

    The default is the first allowed profile marked ``default``, else the first allowed
    one: KubeSpawner's rule, applied to the list this user may choose from.
    """
    if not profiles:
        return None
    links = links or Links()
    allowed = available_profiles(profiles, context, admin)
    if slug:
        for profile in allowed:
            if profile.slug == slug:
                return profile
        wanted = next((p for p in profiles if profile_slug(p) == slug), None)
        raise profile_refusal(slug, wanted, allowed, links)
    if not allowed:
        raise no_profile_refusal(context.vos, profiles, links)
    return next((p for p in allowed if p.get("default")), allowed[0])


class _KeepMissing(dict):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _fill(value: Any, text: str) -> Any:
    """An unlisted choice's override with ``{value}`` replaced (KubeSpawner's rule:
    other ``{...}`` stay as they are)."""
    if isinstance(value, str):
        return value.format_map(_KeepMissing(value=text))
    if isinstance(value, dict):
        return {k: _fill(v, text) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, text) for v in value]
    return value


def _refuse(message: str) -> Refusal:
    return option_refusal(message)


def option_overrides(
    profile: Mapping[str, Any], user_options: Mapping[str, Any]
) -> list[dict[str, Any]]:
    """The ``kubespawner_override`` of each of the profile's options, as chosen.

    KubeSpawner 7's rules (its ``_load_profile``), so that the local spawner and the
    Kubernetes one start the same thing for the same ``user_options``: a non-empty
    ``user_options[name + "--unlisted-choice"]`` is a free value (where enabled and
    matching ``validation_regex``) and wins; else ``user_options[name]`` picks a
    choice; else the default choice (or the first). The spawn form sends the free
    value only with its "Other…" entry chosen (``name`` is then ``"unlisted-choice"``,
    KubeSpawner's value), so a text typed once never outlives a later choice.

    Refusals (400, in words): a value that is not text, a choice the option does not
    offer (listing the ones it does), "Other…" without a value, a free value where
    none is allowed or that does not match.
    """
    found = []
    slug = profile_slug(profile)
    for name, option in profile.get("profile_options", {}).items():
        choices = option.get("choices", {})
        spec = option.get("unlisted_choice", {})
        unlisted = user_options.get(name + UNLISTED)
        choice = user_options.get(name)
        for value in (unlisted, choice):
            if value is not None and not isinstance(value, str):
                raise _refuse(f"Option {name!r} of profile {slug!r}: the value must be text")
        if unlisted:
            if not spec.get("enabled"):
                raise _refuse(f"Option {name!r} of profile {slug!r} takes no free value")
            regex = spec.get("validation_regex")
            if regex and not re.match(regex, unlisted):
                hint = spec.get("validation_message") or f"it must match {regex}"
                raise _refuse(f"Option {name!r} of profile {slug!r}: {unlisted!r}: {hint}")
            found.append(_fill(spec.get("kubespawner_override", {}), unlisted))
        elif choice == UNLISTED_CHOICE and spec.get("enabled"):
            other = str(spec.get("display_name") or "Other")
            raise _refuse(f"Option {name!r} of profile {slug!r}: enter a value for {other!r}")
        elif choice:
            if choice not in choices:
                names = ", ".join(choices) or "none"
                raise _refuse(
                    f"Option {name!r} of profile {slug!r} has no choice {choice!r} "
                    f"(choices: {names})"
                )
            found.append(choices[choice].get("kubespawner_override", {}))
        elif choices:
            default = next((c for c in choices.values() if c.get("default")), None)
            found.append((default or next(iter(choices.values()))).get("kubespawner_override", {}))
        else:
            raise _refuse(f"Option {name!r} of profile {slug!r} needs a value")
    return found


def override_keys(profile: Mapping[str, Any]) -> set[str]:
    """Every setting the profile may override, with any of its options' choices."""
    keys = set(profile.get("kubespawner_override", {}))
    for option in profile.get("profile_options", {}).values():
        for choice in option.get("choices", {}).values():
            keys.update(choice.get("kubespawner_override", {}))
        keys.update(option.get("unlisted_choice", {}).get("kubespawner_override", {}))
    return keys


def merge_override(current: Any, value: Any) -> Any:
    """What an override makes of a setting: a mapping is merged into the current one
    (a key set to None is removed), anything else replaces it. KubeSpawner's rule, but
    on a copy: the current value is never changed in place."""
    if not (isinstance(value, dict) and isinstance(current, dict)):
        return copy.deepcopy(value)
    merged = copy.deepcopy(current)
    for key, item in value.items():
        if item is None:
            merged.pop(key, None)
        elif isinstance(item, dict):
            inner = merged.get(key)
            merged[key] = merge_override(inner if isinstance(inner, dict) else {}, item)
        else:
            merged[key] = copy.deepcopy(item)
    return merged
