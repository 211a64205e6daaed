"""Virtual Organisations: entitlements (AARC-G002) and the rules sites write about them.

An EGI Check-in entitlement names a group membership, for example::

    urn:mace:egi.eu:group:vo.access.egi.eu:role=member#aai.egi.eu

that is ``urn:<namespace>:group:<group>[:<subgroup>...][:role=<role>]#<authority>``
(AARC-G002). The first group segment is the VO; further segments are subgroups.

Sites write *VO rules* to grant things to members:

``vo.access.egi.eu``
    any member of the VO, in any subgroup, with any role;
``vo.access.egi.eu/training``
    any member of that subgroup (or of a subgroup below it), any role;
``vo.access.egi.eu:role=manager``
    holders of that role in exactly that group (a manager of a subgroup is
    not a manager of the VO).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import quote, unquote

__all__ = [
    "Entitlement",
    "EntitlementError",
    "RuleError",
    "VORule",
    "parse_entitlement",
    "parse_rule",
]

_ROLE_PREFIX = "role="
# A segment of a group path: no separators of the URN or of rules, no white space.
_SEGMENT = re.compile(r"[^\s:#/]+")


class EntitlementError(ValueError):
    """A value that is not an AARC-G002 group entitlement."""


class RuleError(ValueError):
    """A VO rule that cannot be parsed."""


def _check_segment(segment: str, what: str, error: type[ValueError]) -> str:
    if not _SEGMENT.fullmatch(segment):
        raise error(f"invalid {what} {segment!r}")
    return segment


@dataclass(frozen=True, slots=True)
class Entitlement:
    """One group membership taken from an ``eduperson_entitlement`` value."""

    namespace: str
    groups: tuple[str, ...]
    role: str | None
    authority: str

    @property
    def vo(self) -> str:
        """The VO: the first segment of the group path."""
        return self.groups[0]

    @property
    def path(self) -> str:
        """The group path, segments joined by ``/`` (``vo/subgroup``)."""
        return "/".join(self.groups)

    def __str__(self) -> str:
        parts = ["urn", self.namespace, "group", *(quote(g, safe=".-_~") for g in self.groups)]
        if self.role is not None:
            parts.append(_ROLE_PREFIX + quote(self.role, safe=".-_~"))
        return ":".join(parts) + "#" + self.authority


def parse_entitlement(value: str) -> Entitlement:
    """Parse one ``eduperson_entitlement`` value; raise `EntitlementError` if malformed."""
    if not isinstance(value, str):
        raise EntitlementError(f"expected a string, got {type(value).__name__}")
    urn, sep, authority = value.partition("#")
    if not sep or not authority or any(c.isspace() for c in authority) or "#" in authority:
        raise EntitlementError("missing '#<authority>'")
    head, sep, rest = urn.partition(":")
    if not sep or head.lower() != "urn":
        raise EntitlementError("does not start with 'urn:'")
    # The namespace may itself contain colons (mace:egi.eu); ':group:' ends it.
    match = re.search(r":group:", rest, flags=re.IGNORECASE)
    if match is None:
        raise EntitlementError("no ':group:' part")
    namespace = rest[: match.start()]
    if not namespace or any(not p for p in namespace.split(":")):
        raise EntitlementError("empty namespace")
    segments = rest[match.end() :].split(":")
    role = None
    if segments and segments[-1].startswith(_ROLE_PREFIX):
        role = unquote(segments.pop()[len(_ROLE_PREFIX) :])
        _check_segment(role, "role", EntitlementError)
    if not segments:
        raise EntitlementError("no group")
    groups = tuple(_check_segment(unquote(s), "group", EntitlementError) for s in segments)
    return Entitlement(namespace=namespace, groups=groups, role=role, authority=authority)


@dataclass(frozen=True, slots=True)
class VORule:
    """A site's rule about VO membership: ``vo``, ``vo/subgroup``, ``vo:role=x``."""

    groups: tuple[str, ...]
    role: str | None = None

    @property
    def vo(self) -> str:
        return self.groups[0]

    def matches(self, entitlement: Entitlement) -> bool:
        """True when the entitlement satisfies this rule."""
        if self.role is not None:
            return entitlement.groups == self.groups and entitlement.role == self.role
        return entitlement.groups[: len(self.groups)] == self.groups

    def matches_any(self, entitlements: Iterable[Entitlement]) -> bool:
        return any(self.matches(e) for e in entitlements)

    def __str__(self) -> str:
        text = "/".join(self.groups)
        return text if self.role is None else f"{text}:{_ROLE_PREFIX}{self.role}"


def parse_rule(text: str) -> VORule:
    """Parse a VO rule; raise `RuleError` with the reason if it is not one."""
    if not isinstance(text, str):
        raise RuleError(f"expected a string, got {type(text).__name__}")
    path, sep, role = text.strip().partition(":")
    if sep:
        if not role.startswith(_ROLE_PREFIX):
            raise RuleError(f"{text!r}: after ':' only 'role=<role>' may follow")
        role = _check_segment(role[len(_ROLE_PREFIX) :], "role", RuleError)
    else:
        role = None
    if not path:
        raise RuleError(f"{text!r}: no VO named")
    groups = tuple(_check_segment(s, "group", RuleError) for s in path.split("/"))
    return VORule(groups=groups, role=role)
