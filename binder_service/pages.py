"""The Binder service's own pages: the landing page, the launch progress page, errors.

The service is not the hub, so the hub's templates and Bootstrap are not at hand: the
pages have their own small Jinja base (``templates/base.html``) drawn to look like the
hub's (same colours, header with the site's name and mark, both themes, the theme the
user chose on the hub, which shares the origin's ``localStorage``), and their own CSS and
JavaScript in `STATIC_DIR`, which the service serves at ``{base_url}static/``.

Every page is safe under a strict Content-Security-Policy (``default-src 'self'``): no
inline script or style, no external resource; what a script needs from the server goes
in ``data-*`` attributes of ``<main>``. Autoescaping is on, so a label or reason with
markup in it shows as text. The scripts' contracts (the check API, the event stream) are
described at the top of ``static/landing.js`` and ``static/launch.js``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from functools import cache
from http import HTTPStatus
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

__all__ = ["STATIC_DIR", "TEMPLATES", "render_error", "render_landing", "render_launch"]

HERE = Path(__file__).resolve().parent
TEMPLATES = HERE / "templates"
STATIC_DIR = HERE / "static"

#: The phases of a launch, in order, as the event stream names them (mybinder's), and
#: what the progress page calls each one. ``failed`` can end any of them.
PHASES = (
    ("fetching", "Fetching the content"),
    ("waiting", "Waiting for a builder"),
    ("building", "Building the environment"),
    ("built", "Environment ready"),
    ("launching", "Starting your server"),
    ("ready", "Opening your session"),
)

_env = Environment(
    loader=FileSystemLoader(str(TEMPLATES)),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


@cache
def _version(name: str) -> str:
    """A short hash of a static file, so a new release's file is never read from a cache."""
    return hashlib.sha256((STATIC_DIR / name).read_bytes()).hexdigest()[:12]


def _static_url(base_url: str) -> Callable[[str], str]:
    def static_url(name: str) -> str:
        return f"{base_url}static/{name}?v={_version(name)}"

    return static_url


def _render(name: str, *, base_url: str, site_name: str, **values: Any) -> str:
    if not base_url.endswith("/"):
        base_url += "/"
    return _env.get_template(name).render(
        base_url=base_url,
        site_name=site_name,
        static_url=_static_url(base_url),
        **values,
    )


def render_landing(
    *,
    base_url: str,
    user: str | None,
    hub_url: str,
    site_name: str,
    providers: Mapping[str, str],
    tokens: Mapping[str, str] | None = None,
) -> str:
    """The landing page (``GET {base_url}``): paste a repository or DOI, get the link,
    the badge and a launch button. ``user`` is None for a visitor not signed in.
    ``tokens`` (`token_api.landing_tokens`), when the site takes users' own tokens: the
    page offers to keep one for the host of a git repository (``static/tokens.js``)."""
    return _render(
        "landing.html",
        base_url=base_url,
        site_name=site_name,
        user=user,
        hub_url=hub_url,
        providers=dict(providers),
        tokens=dict(tokens) if tokens else None,
    )


def render_launch(
    *, base_url: str, link: str, label: str, build_url: str, user: str, site_name: str,
    confirm: bool = False, guest: bool = False,
) -> str:  # fmt: skip
    """The progress page of one launch (``GET {base_url}v2/...``): ``link`` is the
    shareable launch link, ``label`` what it launches (shown as text), ``build_url`` the
    event stream the page opens: at once, or with ``confirm`` (a link not opened from
    the service's own pages) only after the user has read what will run with their
    account and pressed Launch (``guest``: a Binder guest's, said so)."""
    return _render(
        "launch.html",
        base_url=base_url,
        site_name=site_name,
        user=user,
        hub_url=None,
        link=link,
        label=label,
        build_url=build_url,
        phases=PHASES,
        confirm=confirm,
        guest=guest,
    )


def render_error(*, base_url: str, status: int, reason: str, site_name: str) -> str:
    """An error page: the status, its standard phrase, and the one-line ``reason``."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    return _render(
        "error.html",
        base_url=base_url,
        site_name=site_name,
        user=None,
        hub_url=None,
        status=status,
        phrase=phrase,
        reason=reason,
    )
