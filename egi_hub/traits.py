"""Trait types shared by egi-hub's configurable classes."""

from __future__ import annotations

from typing import Any

from traitlets import List

from .config import TraitPathError, expect
from .vo import RuleError, VORule, parse_rule

__all__ = ["VORuleList"]


class VORuleList(List):
    """A list of VO rules (``vo``, ``vo/subgroup``, ``vo:role=x``), parsed once.

    The value is a list of `VORule` (``str(rule)`` gives the text back), so logins and
    spawns never parse a rule again; a bad rule is a `TraitPathError` naming its index.
    """

    info_text = "a list of VO rules"

    def validate(self, obj: Any, value: Any) -> list[VORule]:
        expect(value, list | tuple, "", self.info_text)
        parsed = []
        for i, item in enumerate(value):
            if isinstance(item, VORule):
                parsed.append(item)
                continue
            try:
                parsed.append(parse_rule(item))
            except RuleError as e:
                raise TraitPathError(f"[{i}]", f"not a VO rule: {e}") from None
        return super().validate(obj, parsed)
