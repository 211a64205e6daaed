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
"""

from __future__ import annotations

from typing import Any

from traitlets import Bool, Dict, Unicode
from traitlets.config import SingletonConfigurable

__all__ = ["SitePages"]


class SitePages(SingletonConfigurable):
    """The site's name, links and enrolment pages, as the hub's pages show them."""

    site_name = Unicode(
        "EGI Notebooks",
        help="The service's name: page titles, the header and the login page.",
    ).tag(config=True)

    logo_url = Unicode(
        help="""
        URL of the logo in the page header (``https://``, or ``data:`` for an inline
        image). Empty: egi-hub's own EGI-coloured mark.
        """,
    ).tag(config=True)

    support_url = Unicode(
        "https://helpdesk.egi.eu/",
        help="Where users get help (the footer's and the error pages' support link).",
    ).tag(config=True)

    terms_url = Unicode(
        "https://www.egi.eu/terms-of-use/",
        help="The service's terms of use / acceptable use policy (linked on every page).",
    ).tag(config=True)

    privacy_url = Unicode(
        "https://www.egi.eu/privacy-policy/",
        help="The service's privacy notice (linked on every page; Check-in requires it).",
    ).tag(config=True)

    enrolment_urls = Dict(
        value_trait=Unicode(),
        help="""
        Enrolment page per VO (or per VO rule, as written in ``allowed_vos``): linked
        where a user lacks a membership (the login refusal, profiles that need a VO,
        quota refusals of users in no VO).
        """,
    ).tag(config=True)

    default_enrolment_url = Unicode(
        "https://operations-portal.egi.eu/vo/search",
        help="""
        Where to find and join a VO when `enrolment_urls` names none for it (and for
        users in no VO at all). Empty: no link.
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
