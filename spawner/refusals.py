"""Refusals people understand: every "no" the spawner and the quota give, in words.

One place for the wording. The quota policy (`egi_hub.spawner.quota`) and the
profile rules (`egi_hub.spawner.profiles`) decide; this module says what they decided,
twice: plain text (the REST API's ``message``, JupyterHub's ``jupyterhub_message``)
and escaped HTML with links (``jupyterhub_html_message``: the spawn form, the
spawn-pending page). JupyterHub shows ``jupyterhub_message`` as it is, so no refusal
here reads "HTTP 403: error (...)".

A refusal says which VO a profile needs (and where to join it), which limit was
reached (``vo.access.egi.eu allows 3 servers and 3 are running``), what the user has
running and where to stop it (the hub's home page). A user in no VO is told to join
one, never that a quota was reached: for them the quota is not the problem.

Links come from `Links` (the hub's home page and `SitePages`' enrolment pages). The
quota policy knows neither; its refusals carry the facts (`Breach`), and the spawner
words them again with its links before the user sees them.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from jupyterhub.spawner import SpawnException

from egi_hub.pages import SitePages

__all__ = [
    "Breach",
    "Links",
    "QuotaExceededError",
    "Refusal",
    "amount",
    "cluster_policy_refusal",
    "home_quota_refusal",
    "no_profile_refusal",
    "option_refusal",
    "profile_refusal",
    "quota_refusal",
    "resource_quota_refusal",
    "server_names",
]


@dataclass(frozen=True)
class Links:
    """Where a refusal can send the user: the hub's home page and the enrolment pages."""

    home_url: str = ""
    pages: SitePages | None = None

    def enrolment(self, rule: Any | None = None) -> str:
        """The enrolment page for a VO or rule (or the site's default), or ""."""
        return self.pages.enrolment_url(rule) if self.pages is not None else ""


class Refusal(SpawnException):
    """A spawn refused for a reason the user can act on: plain text and HTML."""

    def __init__(
        self, message: str, html_message: str, *, reason: str, status_code: int = 403
    ) -> None:
        super().__init__(message, reason=reason, message_html=html_message, status_code=status_code)
        # What JupyterHub shows (format_exception, the API's error message).
        self.jupyterhub_message = message
        self.jupyterhub_html_message = html_message

    def __str__(self) -> str:
        return self.message


def _p(*parts: str) -> str:
    return "<p>" + "".join(parts) + "</p>"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _a(url: str, text: str) -> str:
    return f'<a href="{_e(url)}">{_e(text)}</a>'


def _join_url(text: str, url: str) -> tuple[str, str]:
    """``text: url.`` and its HTML, ``<a href=url>text</a>.``; without a URL, ``text.``."""
    if not url:
        return f"{text}.", f"{_e(text)}."
    return f"{text}: {url}.", f"{_a(url, text)}."


# --- profiles ---------------------------------------------------------------------------


def _names(profiles: Sequence[Any]) -> str:
    return ", ".join(str(p.get("display_name") or p.get("slug")) for p in profiles) or "none"


def _no_vo(links: Links) -> Refusal:
    text = (
        "You are not a member of any VO, and this hub starts servers for the members "
        "of a Virtual Organisation."
    )
    url = links.enrolment()
    join, join_html = _join_url("Join a VO, then log out and log in again", url)
    return Refusal(f"{text} {join}", _p(_e(text), " ", join_html), reason="no-vo")


def profile_refusal(
    slug: str, profile: Any | None, allowed: Sequence[Any], links: Links
) -> Refusal:
    """A profile the user may not start: one their VOs do not allow, or none by that name."""
    open_to_you = f"Profiles open to you: {_names(allowed)}."
    if profile is None:
        text = f"There is no profile {slug!r} on this hub."
        return Refusal(
            f"{text} {open_to_you}", _p(_e(text), " ", _e(open_to_you)), reason="profile"
        )
    name = str(profile.get("display_name") or slug)
    rules = [str(rule) for rule in getattr(profile, "rules", ())]
    needs = " or ".join(rules)
    text = f"The profile {name!r} needs membership of {needs}."
    joins, joins_html = [], []
    for rule in getattr(profile, "rules", ()):
        url = links.enrolment(rule)
        if url:
            joins.append(f"Join {rule}: {url}.")
            joins_html.append(_a(url, f"Join {rule}") + ".")
    if joins:
        joins.append("Then log out and log in again.")
        joins_html.append("Then log out and log in again.")
    message = " ".join([text, *joins, open_to_you])
    html_message = _p(_e(text), " ", " ".join(joins_html)) + _p(_e(open_to_you))
    return Refusal(message, html_message, reason="profile")


def no_profile_refusal(vos: Sequence[str], profiles: Sequence[Any], links: Links) -> Refusal:
    """None of the hub's profiles is open to this user's VOs (or they are in none)."""
    if not vos:
        return _no_vo(links)
    text = f"None of this hub's profiles is open to your VOs ({', '.join(vos)})."
    rules = list(dict.fromkeys(rule for p in profiles for rule in getattr(p, "rules", ())))
    joins = []
    joins_html = []
    for rule in rules:
        url = links.enrolment(rule)
        joins.append(f"{rule}: {url}" if url else str(rule))
        joins_html.append(_a(url, str(rule)) if url else _e(rule))
    if not joins:
        return Refusal(text, _p(_e(text)), reason="profile")
    more = "They need membership of one of: "
    return Refusal(
        f"{text} {more}{'; '.join(joins)}.",
        _p(_e(text)) + _p(_e(more), ", ".join(joins_html), "."),
        reason="profile",
    )


def option_refusal(message: str) -> Refusal:
    """A profile option value the profile does not offer (400: the request is wrong)."""
    return Refusal(message, _p(_e(message)), reason="options", status_code=400)


# --- quota ------------------------------------------------------------------------------

_UNITS = {"servers": ("server", "servers"), "cpu": ("CPU", "CPUs"), "gpu": ("GPU", "GPUs")}


def _number(value: float) -> str:
    return f"{value:g}"


def amount(resource: str, value: float) -> str:
    """``1 server``, ``3 servers``, ``1.5 CPUs``, ``2 GiB of memory``, ``1 GPU``."""
    if resource == "memory":
        gib = f"{value / 2**30:.2f}".rstrip("0").rstrip(".")
        return f"{gib} GiB of memory"
    one, many = _UNITS[resource]
    return f"{_number(value)} {one if value == 1 else many}"


@dataclass(frozen=True)
class Breach:
    """Which limit a server would break, and what is in use: the quota's decision.

    ``scope`` is ``"vo"`` (the VO's limit), ``"user"`` (the VO's per-user limit) or
    ``"hub"`` (`total_limits`); ``vo`` is None for a user in no VO.
    """

    scope: str
    vo: str | None
    resource: str  # "servers", "cpu", "memory" or "gpu"
    limit: float
    used: float
    asked: float
    user: str
    from_default: bool = False
    running: tuple[str, ...] = field(default=())  # the user's servers' names ("": default)

    def sentence(self) -> str:
        """``vo.access.egi.eu allows 3 servers and 3 are running.``"""
        whose = {
            "vo": f"{self.vo}",
            "user": f"{self.vo}",
            "hub": "This hub (all VOs together)",
        }[self.scope]
        if self.from_default and self.scope != "hub":
            whose += ", under the hub's limits for VOs without their own,"
        each = " each member" if self.scope == "user" else ""
        if self.limit == 0:
            nothing = "memory" if self.resource == "memory" else _UNITS[self.resource][1]
            return f"{whose} allows{each} no {nothing} at all."
        allows = f"{whose} allows{each} {amount(self.resource, self.limit)}"
        mine = self.scope == "user"
        if self.resource == "servers":
            count = int(self.used)
            if mine:
                return f"{allows} and you have {count} running."
            verb = "is" if count == 1 else "are"
            return f"{allows} and {count} {verb} running."
        used = amount(self.resource, self.used)
        asked = amount(self.resource, self.asked)
        if self.resource == "memory":
            used, asked = used.removesuffix(" of memory"), asked.removesuffix(" of memory")
        in_use = f"you use {used}" if mine else f"{used} in use"
        return f"{allows}: {in_use}, and this server asks for {asked}."


class QuotaExceededError(Refusal):
    """A spawn refused by the quota policy: which limit, what is in use, which servers."""

    def __init__(self, breach: Breach | str, links: Links | None = None) -> None:
        if isinstance(breach, str):  # a refusal from elsewhere (a Kubernetes quota)
            self.breach = None
            super().__init__(breach, _p(_e(breach)), reason="quota")
            return
        self.breach = breach
        message, html_message, reason = _quota_words(breach, links or Links())
        super().__init__(message, html_message, reason=reason)


def server_names(names: Sequence[str]) -> str:
    """``your default server and your server 'gpu'``: servers as the home page names
    them (never JupyterHub's ``alice/``)."""
    words = [f"your server {n!r}" if n else "your default server" for n in names]
    if len(words) > 1:
        return ", ".join(words[:-1]) + " and " + words[-1]
    return words[0] if words else "nothing"


def _running(breach: Breach, links: Links) -> tuple[str, str]:
    if breach.limit == 0:
        return "", ""
    if not breach.running:
        text = "You have no server running: try again when other servers stop."
        return text, _p(_e(text))
    text = f"Running now: {server_names(breach.running)}."
    stop = "Stop one on your home page to start another"
    home, home_html = _join_url(stop, links.home_url)
    return f"{text} {home}", _p(_e(text), " ", home_html)


def _quota_words(breach: Breach, links: Links) -> tuple[str, str, str]:
    """(text, HTML, reason) for a breach."""
    if breach.vo is None and breach.scope != "hub":
        refusal = _no_vo(links)
        return refusal.message, refusal.message_html, "no-vo"
    sentence = breach.sentence()
    message, html_message = sentence, _p(_e(sentence))
    if breach.scope == "vo" and breach.limit == 0:
        join, join_html = _join_url(
            "To use another VO's share of this hub, join that VO", links.enrolment()
        )
        message, html_message = f"{message} {join}", _p(_e(sentence), " ", join_html)
    running, running_html = _running(breach, links)
    return " ".join(filter(None, [message, running])), html_message + running_html, "quota"


def quota_refusal(error: QuotaExceededError, links: Links) -> QuotaExceededError:
    """The quota's refusal again, with the links the spawner knows."""
    if error.breach is None:
        return error
    return QuotaExceededError(error.breach, links)


def resource_quota_refusal(namespace: str, detail: str, links: Links) -> QuotaExceededError:
    """A pod the Kubernetes API refused for a namespace ResourceQuota."""
    text = (
        f"The cluster's quota for namespace {namespace} has no room for this server "
        f"(Kubernetes says: {detail})."
    )
    home, home_html = _join_url("Stop a server on your home page, or try later", links.home_url)
    error = QuotaExceededError(f"{text} {home}")
    error.jupyterhub_html_message = error.message_html = _p(_e(text), " ", home_html)
    return error


def cluster_policy_refusal(namespace: str, detail: str) -> Refusal:
    """A pod refused by its namespace's rules: a setting only the hub's admins can change."""
    text = (
        f"The cluster's rules for namespace {namespace} do not admit this server as the hub "
        f"sets it up (Kubernetes says: {detail}). Please tell the hub's admins."
    )
    return Refusal(text, _p(_e(text)), reason="cluster-policy", status_code=500)


def home_quota_refusal(namespace: str, detail: str) -> Refusal:
    """A home claim refused by its namespace's ResourceQuota: stopping servers frees
    no storage (claims outlive them), so only the hub's admins can make room."""
    text = (
        f"The cluster's storage quota for namespace {namespace} has no room for this "
        f"server's home volume (Kubernetes says: {detail}). Please tell the hub's admins."
    )
    return Refusal(text, _p(_e(text)), reason="storage-quota", status_code=403)
