"""``{username}`` and ``{vo}`` in mount settings, expanded so that no user can escape.

Sites write one mount for everyone (``bucket: "{vo}-scratch"``, ``export:
/exports/{vo}/{username}``); each user gets their own expansion. A username comes from
an identity provider and a VO name from an entitlement: neither is trusted. So every
value is escaped for where it lands before it is put in:

- ``path``: one file-system path component (`egi_hub.names.path_component`): no ``/``,
  no ``..``, no hidden names, injective (two users never share a directory);
- ``bucket``: lower-case letters and digits other than ``x`` are kept; every other byte
  (``.``, ``-`` and ``x`` included) becomes ``x`` and two hex digits. The result starts
  and ends with a letter or digit and holds nothing else, so it is valid anywhere in an
  S3 bucket name (no dots: servers such as rclone's refuse them, AWS advises against
  them), and it is again injective: ``vo.access.egi.eu`` gives
  ``vox2eaccessx2eegix2eeu``. A site that wants readable names uses a fixed bucket and
  ``prefix: "{vo}/"``.

Only the two placeholders exist; a template with another field, a format spec or a
conversion (``{username!r}``, ``{vo:>10}``) is refused when the site file is checked.
Each escaping is injective alone, but two placeholders side by side are not
(``{vo}{username}``: ``ab`` + ``c`` and ``a`` + ``bc`` meet), so `check_separated`
demands a literal between two placeholders holding a character the escaping never
writes (``/`` in paths, ``-`` or ``.`` in buckets): its first occurrence then shows where
the first value ends.
"""

from __future__ import annotations

import string
from typing import Literal

from egi_hub.names import path_component

__all__ = ["FIELDS", "TemplateError", "check_separated", "check_template", "expand"]

FIELDS = ("username", "vo")
Style = Literal["path", "bucket"]
_BUCKET_SAFE = frozenset(string.ascii_lowercase + string.digits) - {"x"}
# What each escaping may write: a separator needs a character outside this set.
_WRITTEN: dict[str, frozenset[str]] = {
    "path": frozenset(string.ascii_lowercase + string.digits + "_.-"),
    "bucket": frozenset(string.ascii_lowercase + string.digits),
}
_SEPARATOR_HINT = {"path": "'/'", "bucket": "'-' or '.'"}


class TemplateError(ValueError):
    """A template that uses something other than ``{username}`` and ``{vo}``."""


def check_template(template: str) -> tuple[str, ...]:
    """The placeholders ``template`` uses; `TemplateError` for anything else."""
    used = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as e:  # a lone "{" or "}"
        raise TemplateError(f"{template!r}: {e} (write {{{{ and }}}} for literal braces)") from None
    for _, field, spec, conversion in parsed:
        if field is None:
            continue
        if field not in FIELDS or spec or conversion:
            raise TemplateError(
                f"{template!r}: unknown placeholder {{{field}}}; only {{username}} and {{vo}} exist"
            )
        used.append(field)
    return tuple(dict.fromkeys(used))


def check_separated(template: str, style: Style) -> None:
    """`TemplateError` unless every two placeholders have a separating literal between
    them (a character the ``style`` escaping never writes), so the expansion stays
    injective."""
    seen_field = False
    for literal, field, _, _ in string.Formatter().parse(template):
        if field is None:
            continue
        if seen_field and not (set(literal) - _WRITTEN[style]):
            raise TemplateError(
                f"{template!r}: put a separator such as {_SEPARATOR_HINT[style]} between "
                "placeholders; side by side, two users' (or VOs') values could expand to "
                "the same text"
            )
        seen_field = True


def _bucket_part(value: str) -> str:
    out: list[str] = []
    for byte in value.encode("utf-8"):
        char = chr(byte)
        out.append(char if char in _BUCKET_SAFE else f"x{byte:02x}")
    return "".join(out)


def escape(value: str, style: Style) -> str:
    """``value`` escaped for a path component or a bucket name."""
    if style == "path":
        return path_component(value)
    return _bucket_part(value)


def expand(template: str, *, username: str, vo: str | None, style: Style) -> str:
    """The template with the user's escaped name and VO put in.

    A template that uses ``{vo}`` for a user without a VO is a `TemplateError`: the
    mount cannot apply to them (mounts with ``{vo}`` are only given to users of a VO).
    """
    fields = check_template(template)
    if "vo" in fields and not vo:
        raise TemplateError(f"{template!r} needs a VO and the user is in none")
    values = {"username": username, "vo": vo or ""}
    return template.format(**{name: escape(values[name], style) for name in fields})
