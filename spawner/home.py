"""What the hub's home page shows a user: their servers, VOs, quota use and hours.

JupyterHub renders ``home.html`` with the current ``user``, their ``auth_state`` and
their ``spawners``; egi-hub's template asks `HomeView.view` for a small view model:

- each running (or starting) server with its profile, the VO it is charged to and its
  CPU, memory and GPUs, as the `QuotaPolicy` charged them;
- the user's VOs, from the entitlements their login stored (so users see them, not only
  admins);
- each VO's use against its limits ("vo.access.egi.eu: 1 of 3 servers, 2 of 8 GiB"),
  from `quota_view.vo_use`;
- the user's server-hours per VO over the last 30 days, from the usage log
  (`usage_report.UsageReport`, read in a thread, incrementally).

Everything is about the user the page is rendered for: servers, charges and hours are
looked up by that user's name only, never from another user's records.

The object reaches templates as the template variable ``egi_home``: `template_vars`
gives the mapping to merge into ``JupyterHub.template_vars``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from traitlets.config import Config

from egi_hub.context import UserContext
from egi_hub.pages import SitePages

from .quota import Charge, QuotaPolicy
from .quota_view import NOT_CHARGED, VOUse, vo_use
from .usage_report import WINDOW, UsageReport, parse_time

__all__ = ["HomeModel", "HomeView", "ServerView", "VOView", "template_vars"]

TEMPLATE_VAR = "egi_home"


@dataclass(frozen=True)
class ServerView:
    """One of the user's servers as the home page lists it."""

    name: str  # "" for the default server
    status: str  # "running", "starting" or "stopping"
    profile: str  # the profile's display name ("" when there are no profiles)
    vo: str  # the VO it is charged to, or "not charged to a VO"
    resources: str  # "1 CPU, 1 GiB memory" (what the quota charged)
    url: str

    @property
    def label(self) -> str:
        return self.name or "default server"


@dataclass(frozen=True)
class VOView:
    """One VO on the home page: membership, use against its limits, the user's hours."""

    name: str  # the VO, or "not charged to a VO"
    member: bool
    left: bool  # a VO the user is not in (now), listed for a server or hours charged to it
    use: VOUse
    hours: float

    @property
    def hours_text(self) -> str:
        """``2.5 h``; a run of a few minutes still reads as more than nothing."""
        if self.hours == 0:
            return "0 h"
        if self.hours < 0.1:
            return "< 0.1 h"
        return f"{self.hours:.1f} h"


@dataclass(frozen=True)
class HomeModel:
    servers: tuple[ServerView, ...]
    vos: tuple[VOView, ...]
    in_no_vo: bool
    enrolment_url: str
    window_days: int


def resources_text(cpu: float, memory: int, gpu: int) -> str:
    """``1 CPU, 1 GiB memory, 1 GPU`` (what is not set is left out)."""
    parts = []
    if cpu:
        parts.append(f"{cpu:g} CPU" + ("" if cpu == 1 else "s"))
    if memory:
        gib = f"{memory / 2**30:.2f}".rstrip("0").rstrip(".")
        parts.append(f"{gib} GiB memory")  # as the quota figures read: "2 of 8 GiB"
    if gpu:
        parts.append(f"{gpu} GPU" + ("" if gpu == 1 else "s"))
    return ", ".join(parts) or "no limits set"


def _status(spawner: Any, orm_spawner: Any) -> str | None:
    """running / starting / stopping, or None for a server that is not active."""
    pending = getattr(spawner, "pending", None) if spawner is not None else None
    if pending == "stop":
        return "stopping"
    if pending:
        return "starting"
    if spawner is not None and getattr(spawner, "ready", False):
        return "running"
    return "running" if getattr(orm_spawner, "server", None) is not None else None


def _profile_name(spawner: Any, slug: str) -> str:
    for profile in getattr(spawner, "profile_list", None) or ():
        if profile.get("slug") == slug:
            return str(profile.get("display_name") or slug)
    return slug


class HomeView:
    """The home page's data source, one per hub (the template variable ``egi_home``)."""

    def __init__(self, config: Config | None = None) -> None:
        self.config = config or Config()
        self._reports: dict[str, UsageReport] = {}

    def _hub_config(self, user: Any) -> Config:
        """The hub's whole config, as the user's default spawner carries it.

        The hub's spawners make the `QuotaPolicy` (one per hub) with it; the config
        given to `template_vars` may be only a part of it (a config file's).
        """
        spawner = getattr(user, "spawner", None)
        return getattr(spawner, "config", None) or self.config

    def _report(self, path: str) -> UsageReport:
        if path not in self._reports:
            self._reports[path] = UsageReport(path, WINDOW)
        return self._reports[path]

    def servers(
        self, user: Any, policy: QuotaPolicy, spawners: Iterable[Any]
    ) -> tuple[list[ServerView], list[Charge]]:
        """The user's active servers (and their charges), default server first."""
        own_id = getattr(getattr(user, "orm_user", None), "id", None)
        # dict.items: looking a name up in user.spawners would make a spawner for it.
        objects = dict(dict.items(getattr(user, "spawners", None) or {}))
        views, charges = [], []
        for orm_spawner in sorted(spawners, key=lambda s: (s.name != "", s.name)):
            if own_id is not None and getattr(orm_spawner, "user_id", own_id) != own_id:
                continue  # never another user's server
            spawner = objects.get(orm_spawner.name)
            status = _status(spawner, orm_spawner)
            if status is None:
                continue
            charge = policy.charge_of(user.name, orm_spawner.name)
            if charge is not None:
                charges.append(charge)
                slug, vo = charge.profile, charge.vo or NOT_CHARGED
                resources = resources_text(charge.cpu, charge.memory, charge.gpu)
            else:  # not admitted yet (or a spawner without quotas)
                slug = str((orm_spawner.user_options or {}).get("profile") or "")
                vo, resources = "", ""
            views.append(
                ServerView(
                    name=orm_spawner.name,
                    status=status,
                    profile=_profile_name(spawner or getattr(user, "spawner", None), slug),
                    vo=vo,
                    resources=resources,
                    url=user.server_url(orm_spawner.name),
                )
            )
        return views, charges

    async def view(self, user: Any, auth_state: dict[str, Any] | None, spawners: Any) -> HomeModel:
        """The home page's view model for ``user`` (JupyterHub's ``User``)."""
        config = self._hub_config(user)
        policy = QuotaPolicy.instance(config=config)
        context = UserContext.from_auth_state(user.name, auth_state)
        servers, charges = self.servers(user, policy, spawners or ())
        hours: dict[str | None, float] = {}
        if policy.usage_log:
            running = {}
            for charge in charges:
                started = parse_time(policy.started_at(charge))
                if started is not None:
                    running[charge.server] = started
            hours = await self._report(policy.usage_log).hours(user.name, running)
        # The user's VOs first, in their order; then VOs only charged or used before.
        names: list[str | None] = list(context.vos)
        for vo in [c.vo for c in charges] + sorted(hours, key=lambda v: v or ""):
            if vo not in names:
                names.append(vo)
        vos = tuple(
            VOView(
                name=vo or NOT_CHARGED,
                member=vo in context.vos,
                left=vo is not None and vo not in context.vos,
                use=vo_use(policy, vo, user.name),
                hours=hours.get(vo, 0.0),
            )
            for vo in names
        )
        return HomeModel(
            servers=tuple(servers),
            vos=vos,
            in_no_vo=not context.vos,
            enrolment_url=SitePages.instance(config=config).enrolment_url(),
            window_days=WINDOW.days,
        )


def template_vars(config: Config | None = None) -> dict[str, Any]:
    """``{"egi_home": HomeView(config)}``: merge it into ``JupyterHub.template_vars``.

    The view is an object, not a callable: JupyterHub would call a callable template
    variable with the user and put the result in the template instead.
    """
    return {TEMPLATE_VAR: HomeView(config)}
