"""`SitePages`: what the hub's pages say about the site running it.

One configurable (site file key ``SitePages``) for everything a user reads on the
hub's own pages that is the site's and not egi-hub's: its name and logo, where to get
help, the terms of use and privacy notice that Check-in services must link, and where
to enrol in a VO. The defaults are EGI's; a national site sets its own::

    SitePages:
      site_name: France Grilles Notebooks
      support_url: https://www.france-grilles.fr/support
      enrolment_urls:
        vo.france-grilles.fr: https://.../enrol

Spawners, authenticators and templates read the one instance
(``SitePages.instance(config=...)``), so a link is configured once.

`hub_page_config` puts egi-hub's page templates (``egi_hub/templates``) in front of
JupyterHub's and gives them the instance as ``site``: the local stack calls it, and the
Helm chart's hub config (issue 12, not written yet) will call the same function, so both
show the same pages. A site's own ``page.html`` replaces egi-hub's frame; it can extend
it as ``egi_page.html`` (``page.html`` would name the site's file itself).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from http import HTTPStatus
from pathlib import Path
from typing import Any

from traitlets import Bool, Unicode
from traitlets.config import Config, SingletonConfigurable

from .traits import URL, URLMap

__all__ = ["TEMPLATES", "SitePages", "add_template_vars", "hub_page_config", "readable_error"]

TEMPLATES = Path(__file__).resolve().parent / "templates"

# tornado's text for an HTTPError: "HTTP 403: Forbidden (the message)", which JupyterHub
# shows as it is when an error has no jupyterhub_message of its own.
_HTTP_WRAPPER = re.compile(r"\AHTTP \d{3}: [^(\n]*\((?P<message>.*)\)\Z", re.DOTALL)


class SitePages(SingletonConfigurable):
    """The site's name, links and enrolment pages, as the hub's pages show them."""

    site_name = Unicode(
        "EGI Notebooks",
        help="The service's name: page titles, the header and the login page.",
    ).tag(config=True)

    logo_url = URL(
        schemes=("https", "http", "data:image/"),
        help="""
        URL of the logo in the page header: ``https://`` (or ``http://``), or
        ``data:image/...`` for an inline image. Empty: egi-hub's own EGI-coloured mark.
        """,
    ).tag(config=True)

    support_url = URL(
        "https://helpdesk.egi.eu/",
        schemes=("https", "http", "mailto"),
        help="""
        Where users get help (the footer's and the error pages' support link):
        ``https://``, ``http://`` or ``mailto:``. Empty: no support link.
        """,
    ).tag(config=True)

    terms_url = URL(
        "https://www.egi.eu/terms-of-use/",
        help="""
        The service's terms of use / acceptable use policy (linked on every page):
        ``https://`` or ``http://``. Empty: no link.
        """,
    ).tag(config=True)

    privacy_url = URL(
        "https://www.egi.eu/privacy-policy/",
        help="""
        The service's privacy notice (linked on every page; Check-in requires it):
        ``https://`` or ``http://``. Empty: no link.
        """,
    ).tag(config=True)

    enrolment_urls = URLMap(
        help="""
        Enrolment page per VO (or per VO rule, as written in ``allowed_vos``): linked
        where a user lacks a membership (the login refusal, profiles that need a VO,
        quota refusals of users in no VO). Each an ``https://`` or ``http://`` link.
        """,
    ).tag(config=True)

    default_enrolment_url = URL(
        "https://operations-portal.egi.eu/vo/search",
        help="""
        Where to find and join a VO when `enrolment_urls` names none for it (and for
        users in no VO at all): ``https://`` or ``http://``. Empty: no link.
        """,
    ).tag(config=True)

    show_unavailable_profiles = Bool(
        False,
        help="""
        List the profiles a user's VOs do not allow on the spawn form, disabled, each
        saying which membership it needs (with its enrolment link). Default: such
        profiles are not shown at all.
        """,
    ).tag(config=True)

    def enrolment_url(self, vo_or_rule: Any | None = None) -> str:
        """The enrolment page for a VO or rule (its text or its VO), else the default."""
        if vo_or_rule is not None:
            text = str(vo_or_rule)
            url = self.enrolment_urls.get(text)
            vo = getattr(vo_or_rule, "vo", None)
            if not url and vo:
                url = self.enrolment_urls.get(vo)
            if url:
                return url
        return self.default_enrolment_url

    @staticmethod
    def readable_error(message: Any) -> str:
        """`readable_error` for templates (``site.readable_error(error_message)``)."""
        return readable_error(message)

    @staticmethod
    def error_title(status_code: int, exception: Any = None) -> str:
        """An error page's heading: the error's own reason (``Not a member of an allowed
        VO``) when it gives one, else the status in words (``403`` -> ``Forbidden``).

        JupyterHub's own heading is the reason, else the whole message (a long sentence
        about scopes as a title). Some reasons are metrics labels, not words for people:
        a `SpawnException`'s (``quota``), and the ``error`` or ``timeout`` JupyterHub
        writes into any exception a spawn raised; a label is one lower-case word.
        """
        from jupyterhub.spawner import SpawnException
        from tornado.web import HTTPError

        reason = getattr(exception, "reason", None) or ""
        if isinstance(exception, HTTPError) and not isinstance(exception, SpawnException):
            in_words = reason[:1].isupper() or " " in reason
            if in_words and len(reason) <= 80:
                return reason
        try:
            return HTTPStatus(int(status_code)).phrase
        except ValueError:
            return f"Error {status_code}"


def readable_error(message: Any) -> str:
    """An error message without tornado's ``HTTP 403: Forbidden (...)`` around it.

    JupyterHub shows ``str(exception)`` when an error carries no ``jupyterhub_message``:
    for a plain ``web.HTTPError`` that is the status line wrapped around the reason,
    which reads as a crash. The pages show the reason alone.
    """
    text = "" if message is None else str(message).strip()
    match = _HTTP_WRAPPER.match(text)
    return match["message"].strip() if match else text


class _SiteForPages:
    """The ``site`` template variable: the hub's `SitePages`, looked up when a page renders.

    JupyterHub calls a callable template variable with the current user; this one
    returns the process's one `SitePages` (made from the hub's config on first use),
    so the pages and the spawners' and authenticator's messages read the same links.
    """

    def __init__(self, config: Config) -> None:
        self.config = config

    def __call__(self, user: Any = None) -> SitePages:
        return SitePages.instance(config=self.config)


def add_template_vars(config: Config, values: Mapping[str, Any]) -> None:
    """Add variables to ``JupyterHub.template_vars``, never replacing one the site set."""
    variables = dict(config.JupyterHub.get("template_vars", {}))
    for name, value in values.items():
        variables.setdefault(name, value)
    config.JupyterHub.template_vars = variables


def hub_page_config(config: Config) -> Config:
    """Add egi-hub's pages to a hub config (in place; also returned).

    - ``JupyterHub.template_paths``: egi-hub's templates after the site's own (a site
      that ships its own ``page.html`` still wins) and before JupyterHub's defaults,
      which ours extend as ``templates/<name>.html``;
    - ``JupyterHub.template_vars``: ``site`` (the `SitePages`), added to the site's own
      variables, never replacing one the site set;
    - ``CheckinAuthenticator.enrolment_urls`` (deprecated) merged beneath
      ``SitePages.enrolment_urls``, so every page finds a VO's enrolment link in one place.
    """
    hub = config.JupyterHub
    paths = [str(p) for p in hub.get("template_paths", [])]
    if str(TEMPLATES) not in paths:
        paths.append(str(TEMPLATES))
    hub.template_paths = paths
    add_template_vars(config, {"site": _SiteForPages(config)})
    legacy = config.CheckinAuthenticator.get("enrolment_urls")
    if legacy:
        merged = {**legacy, **config.SitePages.get("enrolment_urls", {})}
        config.SitePages.enrolment_urls = merged
    return config
