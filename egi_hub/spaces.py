"""Which of a user's DataHub (Onedata) spaces a mount's ``spaces`` filter names.

One rule, used by the hub (the token's ``data.path``/``service`` caveats), the
notebook (the spaces ``datahub://`` shows) and the Kubernetes sidecar (the Oneprovider
oneclient connects to), so the three never disagree about which space is meant.

Space names are chosen by any Onedata user and are not unique: anyone can create a
space named ``project``, or named after another space's id, and invite a victim into
it. So each filter item is matched by exactly one rule, never by several at once:

- an item equal to one of the user's space **ids** names that space only (a space
  whose *name* is that id is not matched);
- an item with an ``@`` is **name@id** (split at the last ``@``) and names the space
  with that id, and only if its name is that name; it is never read as a bare name, so
  a space named ``project@<id>`` cannot stand in for it;
- anything else is a bare **name** and names the space with that name; if several of
  the user's spaces carry it, the filter is ambiguous (`AmbiguousSpaceName`): a
  lookalike space could otherwise be mounted, or its provider sent the token, in
  place of the real one. The admin writes the id or ``name@id`` instead.

Core module: imported by the hub side and the notebook side alike, it imports nothing
from either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["AmbiguousSpaceName", "match_spaces", "split_pair"]


class AmbiguousSpaceName(ValueError):
    """A bare name in a spaces filter that several of the user's spaces carry."""

    def __init__(self, name: str, space_ids: Iterable[str]) -> None:
        self.name = name
        self.space_ids = tuple(sorted(space_ids))
        shown = name if len(name) <= 80 else name[:80] + "…"
        super().__init__(
            f"several of your spaces are named {shown!r} "
            f"({len(self.space_ids)} spaces): the mount's 'spaces' must name the space by "
            f"its id or as name@id (ask the site admin)"
        )


def split_pair(item: str) -> tuple[str, str] | None:
    """``(name, id)`` of a ``name@id`` filter item, split at the last ``@``; None for an
    item without ``@`` (or with nothing on one side of it)."""
    name, at, space_id = item.rpartition("@")
    if not at or not name or not space_id:
        return None
    return name, space_id


def match_spaces(wanted: Iterable[str], spaces: Mapping[str, str | None]) -> list[str]:
    """The ids, in ``spaces`` order, of the spaces that the filter ``wanted`` names.

    ``spaces`` is ``{space id: name}`` of *all* the user's spaces (a name may be None
    when it is not known: such a space is matched by its id only). Items that name none
    of them are ignored (the caller says what to do when nothing is left). Raises
    `AmbiguousSpaceName` for a bare name that more than one space carries.
    """
    chosen: set[str] = set()
    for item in dict.fromkeys(wanted):
        if item in spaces:  # an id: that space only
            chosen.add(item)
            continue
        pair = split_pair(item)
        if pair is not None:  # name@id: that exact pair only
            name, space_id = pair
            if space_id in spaces and spaces[space_id] == name:
                chosen.add(space_id)
            continue
        named = [space_id for space_id, name in spaces.items() if name == item]
        if len(named) > 1:
            raise AmbiguousSpaceName(item, named)
        chosen.update(named)
    return [space_id for space_id in spaces if space_id in chosen]
