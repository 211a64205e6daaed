"""The user context: who a user is in VO terms, shared by auth, quota, profiles and storage."""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .vo import Entitlement, EntitlementError, VORule, parse_entitlement, parse_rule

__all__ = ["GUEST_GROUP", "UserContext", "is_guest", "parse_entitlements"]

log = logging.getLogger(__name__)

#: The hub group of Binder guests (egi_hub.binder_service.guests): temporary accounts.
GUEST_GROUP = "binder-guests"
#: A guest's name: never a Check-in user's (egi_hub.authenticator.usernames: a name with
#: ``--`` ends in 16 hex digits there) and never a VO's group.
GUEST_NAME = re.compile(r"guest--[0-9a-f]{12}")


def is_guest(user: Any) -> bool:
    """Whether a hub user (orm, wrapper or API model) is a Binder guest: a guest's name
    and the guests' group, both (a group alone could come from somewhere else)."""
    groups = getattr(user, "groups", None)
    if groups is None and isinstance(user, Mapping):
        groups = user.get("groups")
    names = {g if isinstance(g, str) else getattr(g, "name", None) for g in groups or ()}
    name = user.get("name") if isinstance(user, Mapping) else getattr(user, "name", None)
    return GUEST_GROUP in names and isinstance(name, str) and bool(GUEST_NAME.fullmatch(name))


def parse_entitlements(
    values: Iterable[Any],
    *,
    namespaces: Collection[str] | None = None,
    authorities: Collection[str] | None = None,
) -> list[Entitlement]:
    """Parse entitlement values in order, skipping what is malformed or not trusted.

    Malformed values are logged at debug level and ignored: one bad value from an
    identity provider never stops a login. ``namespaces`` and ``authorities``, when
    given, keep only entitlements from those URN namespaces and authorities.
    """
    parsed = []
    for value in values:
        try:
            entitlement = parse_entitlement(value)
        except EntitlementError as e:
            log.debug("Ignoring entitlement %r: %s", value, e)
            continue
        if namespaces is not None and entitlement.namespace not in namespaces:
            log.debug("Ignoring entitlement %r: namespace not trusted", value)
            continue
        if authorities is not None and entitlement.authority not in authorities:
            log.debug("Ignoring entitlement %r: authority not trusted", value)
            continue
        parsed.append(entitlement)
    return parsed


@dataclass(frozen=True)
class UserContext:
    """A user's VO memberships, in the order the identity provider gave them."""

    username: str
    entitlements: tuple[Entitlement, ...] = ()
    _vos: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_vos", tuple(dict.fromkeys(e.vo for e in self.entitlements)))

    @classmethod
    def from_entitlements(
        cls,
        username: str,
        values: Iterable[Any],
        *,
        namespaces: Collection[str] | None = None,
        authorities: Collection[str] | None = None,
    ) -> UserContext:
        """Build a context from raw ``eduperson_entitlement`` values."""
        found = parse_entitlements(values, namespaces=namespaces, authorities=authorities)
        return cls(username=username, entitlements=tuple(found))

    @classmethod
    def from_auth_state(cls, username: str, auth_state: Mapping[str, Any] | None) -> UserContext:
        """Rebuild the context stored in a user's ``auth_state`` (see `to_auth_state`)."""
        values = (auth_state or {}).get("entitlements") or []
        return cls.from_entitlements(username, values)

    def to_auth_state(self) -> dict[str, list[str]]:
        """The part of ``auth_state`` from which `from_auth_state` rebuilds this context."""
        return {"entitlements": [str(e) for e in self.entitlements]}

    @property
    def vos(self) -> tuple[str, ...]:
        """The user's VOs, each once, in the order of their first entitlement."""
        return self._vos

    @property
    def hub_groups(self) -> list[str]:
        """The hub groups of a user with this context: the VOs, never the Binder
        guests' group (a VO of that name must not make its members guests)."""
        return [vo for vo in self._vos if vo != GUEST_GROUP]

    @property
    def primary_vo(self) -> str | None:
        """The VO of the first entitlement, or None for a user in no VO."""
        return self._vos[0] if self._vos else None

    @property
    def subgroups(self) -> tuple[str, ...]:
        """Group paths below a VO (``vo/subgroup``) the user belongs to."""
        return tuple(dict.fromkeys(e.path for e in self.entitlements if len(e.groups) > 1))

    def roles(self, group: str) -> frozenset[str]:
        """The roles the user holds in exactly this group path (``vo`` or ``vo/sub``)."""
        return frozenset(e.role for e in self.entitlements if e.path == group and e.role)

    def matches(self, rule: VORule | str) -> bool:
        """True when one of the user's entitlements satisfies the rule."""
        if isinstance(rule, str):
            rule = parse_rule(rule)
        return rule.matches_any(self.entitlements)

    def matches_any(self, rules: Iterable[VORule | str]) -> bool:
        return any(self.matches(rule) for rule in rules)
