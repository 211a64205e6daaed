"""Quota use as users read it: "vo.access.egi.eu: 1 of 3 servers, 2 of 8 GiB".

One place that turns the `QuotaPolicy`'s figures into words, for the spawn form's
profile cards, the home page and anything else that shows a VO's use against its
limits. Only what is limited is shown ("1 of 3 servers"); what is not limited is left
out, so a VO without limits reads "no limits".
"""

from __future__ import annotations

from dataclasses import dataclass

from .quota import Limits, QuotaPolicy, Usage

__all__ = ["NOT_CHARGED", "UseFigure", "VOUse", "vo_use"]

# Servers of users in no VO, in words (the quota's own bucket name, "(no VO)", is for
# admins' logs and metrics).
NOT_CHARGED = "not charged to a VO"


@dataclass(frozen=True)
class UseFigure:
    """One limited resource: how much is used of how much (``used``/``limit`` in units
    of the resource: servers, cores, bytes, GPUs)."""

    resource: str  # "servers", "cpu", "memory" or "gpu"
    used: float
    limit: float

    @property
    def text(self) -> str:
        """``1 of 3 servers``, ``1.5 of 4 CPUs``, ``2 of 8 GiB``, ``0 of 1 GPU``."""
        if self.resource == "memory":
            return f"{_gib(self.used)} of {_gib(self.limit)} GiB"
        unit = {"servers": "server", "cpu": "CPU", "gpu": "GPU"}[self.resource]
        plural = "" if self.limit == 1 else "s"
        return f"{self.used:g} of {self.limit:g} {unit}{plural}"

    @property
    def full(self) -> bool:
        """Nothing more fits (a limit of 0 is always full)."""
        return self.used >= self.limit


@dataclass(frozen=True)
class VOUse:
    """A VO's use against its limits, and one user's inside it (when ``per_user`` is set)."""

    vo: str | None
    figures: tuple[UseFigure, ...]
    user_figures: tuple[UseFigure, ...]

    @property
    def name(self) -> str:
        """The VO, or ``not charged to a VO``."""
        return self.vo or NOT_CHARGED

    @property
    def text(self) -> str:
        """``vo.access.egi.eu: 1 of 3 servers, 2 of 8 GiB`` (and ``; you: ...``);
        ``Servers not charged to a VO: 0 of 2 servers`` for users in no VO."""
        parts = ", ".join(f.text for f in self.figures) or "no limits"
        if self.user_figures:
            parts += "; you: " + ", ".join(f.text for f in self.user_figures)
        return f"{self.vo or 'Servers ' + NOT_CHARGED}: {parts}"


def _gib(value: float) -> str:
    return f"{value / 2**30:.2f}".rstrip("0").rstrip(".")


def _figures(limits: Limits, usage: Usage) -> tuple[UseFigure, ...]:
    pairs = [
        ("servers", usage.servers, limits.max_servers),
        ("cpu", usage.cpu, limits.max_cpu),
        ("memory", usage.memory, limits.max_memory),
        ("gpu", usage.gpu, limits.max_gpu),
    ]
    return tuple(UseFigure(name, used, limit) for name, used, limit in pairs if limit is not None)


def vo_use(policy: QuotaPolicy, vo: str | None, user: str | None = None) -> VOUse:
    """What is in use in ``vo`` (and by ``user`` inside it) against its limits."""
    limits = policy.limits_for(vo)
    user_figures: tuple[UseFigure, ...] = ()
    if user is not None and limits.per_user is not None:
        user_figures = _figures(limits.per_user, policy.usage(vo, user))
    return VOUse(vo=vo, figures=_figures(limits, policy.usage(vo)), user_figures=user_figures)
