"""The Binder badge: a small SVG that READMEs link to the launch link.

Drawn here rather than fetched from a badge service, so a README's badge works for a
site without internet access to one, and its colours are the site's (white on EGI
blue, 7:1 and more). The two texts may come from a request (a site's own wording, a
``?label=`` some day), so they are hostile: control characters (invalid in XML 1.0)
are dropped, each text is cut to `MAX_TEXT` characters, and everything is XML-escaped
(text and attributes). The width of each half is estimated from the characters and
pinned with ``textLength``, so the text fits whatever font the viewer has.
"""

from __future__ import annotations

import hashlib
import re
from xml.sax.saxutils import escape

__all__ = ["MAX_TEXT", "badge_svg"]

MAX_TEXT = 40
HEIGHT = 20
LABEL_FILL = "#555555"
MESSAGE_FILL = "#0b4f8a"  # the hub's accent colour (egi_style.html)
LOGO_WIDTH = 14  # the EGI mark, left of the label

# Characters XML 1.0 cannot hold (and line breaks, which a badge cannot show).
_UNFIT = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]+")
# Rough advance widths at 11 px (Verdana-like): enough to size the halves, since
# textLength makes the text fill exactly the estimated width.
_NARROW = set("ijlI.,:;'|!`")
_SEMI = set("frt()[]{}/\\- ")
_WIDE = set("mwMW@%")


def _clean(text: str) -> str:
    text = " ".join(_UNFIT.sub(" ", str(text)).split())
    if len(text) > MAX_TEXT:
        text = text[: MAX_TEXT - 1] + "…"
    return text


def _width(text: str) -> float:
    """The estimated width of ``text`` in pixels at font-size 11."""
    total = 0.0
    for ch in text:
        if ch in _NARROW:
            total += 3.3
        elif ch in _SEMI:
            total += 4.6
        elif ch in _WIDE:
            total += 10.6
        elif ch.isupper() or ch.isdigit() or not ch.isascii():
            total += 7.4
        else:
            total += 6.6
    return round(total, 1)


def _attr(text: str) -> str:
    return escape(text, {'"': "&quot;", "'": "&apos;"})


def badge_svg(label: str = "launch", message: str = "binder") -> str:
    """The badge as SVG text: ``label`` on grey (after the EGI mark), ``message`` on blue."""
    label, message = _clean(label), _clean(message)
    label_text, message_text = _width(label), _width(message)
    pad = 6
    label_w = round(pad + LOGO_WIDTH + 4 + label_text + pad)
    message_w = round(pad + message_text + pad)
    width = label_w + message_w
    label_x = pad + LOGO_WIDTH + 4 + label_text / 2
    message_x = label_w + message_w / 2
    title = f"{label}: {message}" if label and message else label or message
    # Ids of its own, so two badges inlined in one page do not clip each other.
    uid = hashlib.sha256(f"{label}\0{message}".encode()).hexdigest()[:8]
    return f"""<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{HEIGHT}" \
viewBox="0 0 {width} {HEIGHT}" role="img" aria-label="{_attr(title)}">
  <title>{escape(title)}</title>
  <linearGradient id="shine-{uid}" x2="0" y2="100%">
    <stop offset="0" stop-color="#ffffff" stop-opacity=".12"/>
    <stop offset="1" stop-opacity=".12"/>
  </linearGradient>
  <clipPath id="round-{uid}"><rect width="{width}" height="{HEIGHT}" rx="3"/></clipPath>
  <g clip-path="url(#round-{uid})">
    <rect width="{label_w}" height="{HEIGHT}" fill="{LABEL_FILL}"/>
    <rect x="{label_w}" width="{message_w}" height="{HEIGHT}" fill="{MESSAGE_FILL}"/>
    <rect width="{width}" height="{HEIGHT}" fill="url(#shine-{uid})"/>
  </g>
  <g transform="translate({pad} 3)" stroke="#ffffff" stroke-width="1.3" \
stroke-linecap="round" fill="#ffffff">
    <path d="M7 7 L2.5 3 M7 7 L11.5 3.5 M7 7 L7 12.5" fill="none"/>
    <circle cx="7" cy="7" r="1.9" stroke="none"/>
    <circle cx="2.5" cy="3" r="1.3" stroke="none"/>
    <circle cx="11.5" cy="3.5" r="1.3" stroke="none"/>
    <circle cx="7" cy="12.5" r="1.3" stroke="none"/>
  </g>
  <g fill="#ffffff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" \
font-size="11">
    <text x="{label_x:.1f}" y="14" textLength="{label_text}" \
lengthAdjust="spacingAndGlyphs">{escape(label)}</text>
    <text x="{message_x:.1f}" y="14" textLength="{message_text}" \
lengthAdjust="spacingAndGlyphs">{escape(message)}</text>
  </g>
</svg>
"""
