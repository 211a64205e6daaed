"""Trait types shared by egi-hub's configurable classes."""

from __future__ import annotations

from typing import Any

from traitlets import List

from .config import TraitPathError, expect
from .vo import RuleError, VORule, parse_rule

__all__ = ["VORuleList", "rules"]


class VORuleList(List):
    """A list of VO rules (``vo``, ``vo/subgroup``, ``vo:role=x``), each checked."""

    info_text = "a list of VO rules"

    def validate(self, obj: Any, value: Any) -> list[str]:
        expect(value, list | tuple, "", self.info_text)
        for i, item in enumerate(value):
            try:
                parse_rule(item)
            except RuleError as e:
                raise TraitPathError(f"[{i}]", f"not a VO rule: {e}") from None
        return super().validate(obj, list(value))


def rules(values: list[str]) -> list[VORule]:
    """Parse a validated `VORuleList` value."""
    return [parse_rule(v) for v in values]
