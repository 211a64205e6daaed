"""Trait types shared by egi-hub's configurable classes."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from traitlets import Dict, List, Unicode

from .config import TraitPathError, describe, expect
from .vo import RuleError, VORule, parse_rule

__all__ = ["URL", "PatternList", "URLMap", "VORuleList", "check_url"]


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


# Schemes whose URLs name a place (host) and must say which.
_NEEDS_HOST = ("http", "https")


def check_url(value: str, schemes: Iterable[str], path: str = "") -> str:
    """``value`` if it is empty or a link with one of ``schemes``; else a `TraitPathError`.

    The pages put these values in ``href`` and ``src`` attributes, where escaping does
    not help: ``javascript:...`` is a working link. So only the schemes a link to a web
    page (or a mail address, or an inline image) needs are let through. ``data:image/``
    in ``schemes`` stands for inline images only (``data:text/html`` would run).
    """
    if not value:
        return value
    schemes = tuple(schemes)
    shown = ", ".join(f"{s}" if s.endswith("/") else f"{s}:" for s in schemes)
    wrong = f"expected a link starting with {shown}, got {describe(value)}"
    if "data:image/" in schemes and value[:11].lower() == "data:image/":
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise TraitPathError(path, f"control characters in an inline image: {describe(value)}")
        return value
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        raise TraitPathError(path, f"spaces or control characters in a link: {describe(value)}")
    try:
        parts = urlsplit(value)
    except ValueError:
        raise TraitPathError(path, wrong) from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise TraitPathError(path, wrong)
    if scheme in _NEEDS_HOST and not parts.netloc:
        raise TraitPathError(path, f"a {scheme}: link needs a host, got {describe(value)}")
    if scheme == "mailto" and "@" not in parts.path:
        raise TraitPathError(path, f"a mailto: link needs an address, got {describe(value)}")
    return value


class URL(Unicode):
    """A link the hub's pages show (``href``/``src``): empty, or one of ``schemes``.

    ``schemes`` are lower-case scheme names (``https``, ``mailto``) and, for images,
    ``data:image/``. A refused value is a `TraitPathError`, so the site-file check names
    the key it came from.
    """

    info_text = "a link, or empty"

    def __init__(
        self, default_value: Any = "", schemes: Iterable[str] = ("https", "http"), **kwargs: Any
    ) -> None:
        self.schemes = tuple(schemes)
        super().__init__(default_value, **kwargs)

    def info(self) -> str:
        return "a link (" + ", ".join(self.schemes) + "), or empty"

    def validate(self, obj: Any, value: Any) -> str:
        return check_url(super().validate(obj, value), self.schemes)


class URLMap(Dict):
    """A mapping of names to links (``https``/``http``), each checked as `URL` checks one."""

    info_text = "a mapping of names to links"

    def __init__(self, schemes: Iterable[str] = ("https", "http"), **kwargs: Any) -> None:
        self.schemes = tuple(schemes)
        super().__init__(**kwargs)

    def validate(self, obj: Any, value: Any) -> dict[str, str]:
        expect(value, dict, "", self.info_text)
        for key, url in value.items():
            if not isinstance(key, str):
                raise TraitPathError(str(key), f"expected a name, got {describe(key)}")
            expect(url, str, key, "a link")
            check_url(url, self.schemes, key)
        return super().validate(obj, value)


class PatternList(List):
    """A list of regular expressions (kept as text), each compiled when set, so a site
    file with a broken one fails its check naming the index instead of at first use."""

    info_text = "a list of regular expressions"

    def validate(self, obj: Any, value: Any) -> list[str]:
        expect(value, list | tuple, "", self.info_text)
        for i, item in enumerate(value):
            expect(item, str, f"[{i}]", "a regular expression")
            try:
                re.compile(item)
            except re.error as e:
                raise TraitPathError(f"[{i}]", f"not a regular expression: {e}") from None
        return super().validate(obj, list(value))
