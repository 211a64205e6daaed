"""The quota policy: per-VO, per-user and hub-wide limits on servers, CPU, memory and GPUs.

Backend-neutral: spawners (local or Kubernetes) describe each server as a `Charge`
(its user, the VO it is charged to, its resources) and ask `QuotaPolicy.admit`. The
decision and the reservation happen together, without yielding to the event loop, so
concurrent spawns can never overbook; `release` gives the capacity back on stop or
failure; `restore` re-charges running servers after a hub restart.

    QuotaPolicy:
      vo_limits:
        vo.access.egi.eu: {max_servers: 20, max_cpu: 20, max_memory: 40G, max_gpu: 0,
                           per_user: {max_servers: 1, max_cpu: 1, max_memory: 1G}}
      default_limits: {max_servers: 0}     # each VO not listed above (and "no VO")
      total_limits: {max_cpu: 64, max_memory: 256G, max_gpu: 4}   # the whole hub

Limits are parsed once, by the traits (as JupyterHub's ByteSpecification gives an int):
``vo_limits`` holds `Limits` values, never the raw mappings of the site file.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from typing import Any

from prometheus_client import Gauge
from traitlets import Bool, Dict, TraitType, Unicode
from traitlets.config import SingletonConfigurable

from egi_hub.config import TraitPathError, describe, expect
from egi_hub.quantities import QuantityError, format_bytes, parse_cpu, parse_memory
from egi_hub.vo import parse_rule

from .refusals import Breach, QuotaExceededError

__all__ = ["Charge", "Limits", "QuotaExceededError", "QuotaPolicy", "Usage"]

NO_VO = "(no VO)"

# Exposed on the hub's /hub/metrics (Prometheus), one series per VO.
VO_SERVERS = Gauge("egi_hub_vo_servers", "Running servers charged to the VO", ["vo"])
VO_CPU = Gauge("egi_hub_vo_cpu", "CPUs of the running servers charged to the VO", ["vo"])
VO_MEMORY = Gauge(
    "egi_hub_vo_memory_bytes", "Memory of the running servers charged to the VO", ["vo"]
)
VO_GPU = Gauge("egi_hub_vo_gpu", "GPUs of the running servers charged to the VO", ["vo"])
# The same, hub-wide (what `total_limits` caps).
HUB_SERVERS = Gauge("egi_hub_servers", "Running servers of the hub, all VOs")
HUB_CPU = Gauge("egi_hub_cpu", "CPUs of the hub's running servers, all VOs")
HUB_MEMORY = Gauge("egi_hub_memory_bytes", "Memory of the hub's running servers, all VOs")
HUB_GPU = Gauge("egi_hub_gpu", "GPUs of the hub's running servers, all VOs")


@dataclass(frozen=True)
class Limits:
    """Ceilings for one scope (a VO, or one user inside it); None means no limit."""

    max_servers: int | None = None
    max_cpu: float | None = None
    max_memory: int | None = None
    max_gpu: int | None = None
    per_user: Limits | None = None

    @classmethod
    def parse(cls, data: Any, path: str = "", nested: bool = True) -> Limits:
        """Read limits from the site file; `TraitPathError` names the bad key."""
        expect(data, dict, path, "a mapping of limits")
        known = [f.name for f in fields(cls) if nested or f.name != "per_user"]
        values: dict[str, Any] = {}
        for key, value in data.items():
            where = f"{path}.{key}" if path else str(key)
            if key not in known:
                raise TraitPathError(where, f"unknown limit (known: {', '.join(known)})")
            try:
                if key == "per_user":
                    values[key] = cls.parse(value, where, nested=False)
                elif key == "max_cpu":
                    values[key] = parse_cpu(value)
                elif key == "max_memory":
                    values[key] = parse_memory(value)
                elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise QuantityError(f"expected a whole number >= 0, got {describe(value)}")
                else:
                    values[key] = value
            except QuantityError as e:
                raise TraitPathError(where, str(e)) from None
        return cls(**values)


class LimitsTrait(TraitType):
    """A `Limits` mapping in the site file, checked key by key; its value is a `Limits`."""

    info_text = "a mapping of limits"
    default_value = Limits()

    def __init__(self, *, nested: bool = True, **kwargs: Any) -> None:
        self.nested = nested
        keys = "max_servers, max_cpu, max_memory, max_gpu" + (", per_user" if nested else "")
        self.info_text = f"a mapping of limits ({keys})"
        super().__init__(**kwargs)

    def validate(self, obj: Any, value: Any) -> Limits:
        if isinstance(value, Limits):
            if not self.nested and value.per_user is not None:
                raise TraitPathError("per_user", "not a limit here")
            return value
        return Limits.parse(value, nested=self.nested)

    def default_value_repr(self) -> str:
        return "{}"


class VOLimitsTrait(Dict):
    """``{vo: limits}``, each checked; its value maps each VO to its `Limits`."""

    info_text = "a mapping of VO names to limits"

    def validate(self, obj: Any, value: Any) -> dict[str, Limits]:
        expect(value, dict, "", self.info_text)
        parsed: dict[str, Limits] = {}
        for vo, limits in value.items():
            if not isinstance(vo, str) or not vo or any(c in vo for c in ":#/ "):
                raise TraitPathError(str(vo), "not a VO name")
            parsed[vo] = limits if isinstance(limits, Limits) else Limits.parse(limits, vo)
        return super().validate(obj, parsed)


@dataclass(frozen=True)
class Charge:
    """One server's resources, charged to one VO (None: the user is in no VO)."""

    user: str
    server: str
    vo: str | None
    cpu: float = 0.0
    memory: int = 0
    gpu: int = 0
    profile: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.user, self.server)

    @property
    def label(self) -> str:
        """``user/server`` as JupyterHub names servers (``user/`` for the default one)."""
        return f"{self.user}/{self.server}"


@dataclass
class Usage:
    """What is in use in one scope."""

    servers: int = 0
    cpu: float = 0.0
    memory: int = 0
    gpu: int = 0
    labels: dict[tuple[str, str], Charge] = field(default_factory=dict)

    def add(self, charge: Charge, sign: int = 1) -> None:
        self.servers += sign
        self.cpu += sign * charge.cpu
        self.memory += sign * charge.memory
        self.gpu += sign * charge.gpu
        if sign > 0:
            self.labels[charge.key] = charge
        else:
            self.labels.pop(charge.key, None)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _append(path: str, line: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")


def _broken(limits: Limits, usage: Usage, charge: Charge) -> tuple[str, float, float, float] | None:
    """The first limit the charge would break: (resource, limit, in use, asked)."""
    if limits.max_servers is not None and usage.servers + 1 > limits.max_servers:
        return "servers", limits.max_servers, usage.servers, 1
    if limits.max_cpu is not None and usage.cpu + charge.cpu > limits.max_cpu + 1e-9:
        return "cpu", limits.max_cpu, usage.cpu, charge.cpu
    if limits.max_memory is not None and usage.memory + charge.memory > limits.max_memory:
        return "memory", limits.max_memory, usage.memory, charge.memory
    if limits.max_gpu is not None and usage.gpu + charge.gpu > limits.max_gpu:
        return "gpu", limits.max_gpu, usage.gpu, charge.gpu
    return None


def _exceeded(limits: Limits, usage: Usage, charge: Charge) -> tuple[str, str] | None:
    """The first limit the charge would break, as the site file names it: (key, limit)."""
    broken = _broken(limits, usage, charge)
    if broken is None:
        return None
    resource, limit = broken[0], broken[1]
    shown = format_bytes(int(limit)) if resource == "memory" else f"{limit:g}"
    return f"max_{resource}", shown


class QuotaPolicy(SingletonConfigurable):
    """Admission of servers against per-VO, per-user and hub-wide limits (one per hub)."""

    vo_limits = VOLimitsTrait(
        help="""
        Limits per VO: ``max_servers``, ``max_cpu`` (cores, ``500m``), ``max_memory``
        (``40G``, ``512Mi``), ``max_gpu``, and ``per_user`` (the same keys, for each user
        inside the VO). A key left out is not limited. Numbers must be finite (no
        ``.nan``/``.inf``).
        """,
    ).tag(config=True)

    default_limits = LimitsTrait(
        help="""
        Limits for each VO that `vo_limits` does not list, applied to every such VO
        separately (each gets its own usage, with these ceilings; they do not share one
        pool), and to the servers of users in no VO (counted together as ``(no VO)``).
        Same keys as a VO's limits, ``per_user`` included. Default: no limit.
        """,
    ).tag(config=True)

    total_limits = LimitsTrait(
        nested=False,
        help="""
        Hub-wide limits, across all VOs: the site's real capacity (``max_servers``,
        ``max_cpu``, ``max_memory``, ``max_gpu``; no ``per_user``). Checked in the same
        step as the VO limits; a refusal names the "hub-wide limit". Default: no limit.
        """,
    ).tag(config=True)

    admins_exempt = Bool(
        True,
        help="Admins' servers are counted (in every limit) but never refused.",
    ).tag(config=True)

    usage_log = Unicode(
        help="""
        File that receives one JSON line per server start and stop (user, server, vo,
        profile, cpu, memory, gpu, start, stop), for accounting. Empty: none. The local
        stack writes ``<data dir>/usage.jsonl``.
        """,
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._charges: dict[tuple[str, str], Charge] = {}
        self._vo_usage: dict[str, Usage] = defaultdict(Usage)
        self._user_usage: dict[tuple[str, str], Usage] = defaultdict(Usage)
        self._total = Usage()
        self._started: dict[tuple[str, str], str] = {}
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="egi-usage")

    @staticmethod
    def site_limits(section: Mapping[str, Any]) -> tuple[dict[str, Limits], Limits, Limits]:
        """``(vo_limits, default_limits, total_limits)`` of a checked site-file section."""
        traits = QuotaPolicy.class_traits()
        return (
            traits["vo_limits"].validate(None, section.get("vo_limits", {})),
            traits["default_limits"].validate(None, section.get("default_limits", {})),
            traits["total_limits"].validate(None, section.get("total_limits", {})),
        )

    def limits_for(self, vo: str | None) -> Limits:
        """The limits of a VO (`default_limits` for a VO without its own, or no VO)."""
        return self.vo_limits.get(vo, self.default_limits) if vo else self.default_limits

    def allows_servers(self, vo: str | None) -> bool:
        """Whether the limits of ``vo`` (None: servers not charged to a VO) let anyone
        start a server at all: no ``max_servers: 0``, for the VO or per user, nor for
        the whole hub."""
        limits = self.limits_for(vo)
        for ceiling in (limits, limits.per_user, self.total_limits):
            if ceiling is not None and ceiling.max_servers == 0:
                return False
        return True

    def total_usage(self) -> Usage:
        """What is in use on the whole hub."""
        return self._total

    def usage(self, vo: str | None, user: str | None = None) -> Usage:
        """What is in use in a VO, or by one user inside it."""
        bucket = vo or NO_VO
        if user is None:
            return self._vo_usage.get(bucket, Usage())
        return self._user_usage.get((bucket, user), Usage())

    def charge_of(self, user: str, server: str) -> Charge | None:
        return self._charges.get((user, server))

    def admit(self, charge: Charge, *, admin: bool = False) -> None:
        """Reserve capacity for ``charge``, or raise `QuotaExceededError` saying why.

        Synchronous on purpose: the check and the reservation cannot be interleaved
        with another spawn's.
        """
        if charge.key in self._charges:
            self.release(charge.user, charge.server)
        bucket = charge.vo or NO_VO
        limits = self.limits_for(charge.vo)
        if not (admin and self.admins_exempt):
            # In this order: the VO, the user inside it, the whole hub.
            checks = [("vo", limits, self._vo_usage[bucket])]
            if limits.per_user is not None:
                user_usage = self._user_usage[(bucket, charge.user)]
                checks.append(("user", limits.per_user, user_usage))
            checks.append(("hub", self.total_limits, self._total))
            for scope, ceiling, usage in checks:
                broken = _broken(ceiling, usage, charge)
                if broken:
                    raise QuotaExceededError(self._breach(charge, scope, broken))
        self.restore(charge)

    def restore(self, charge: Charge) -> None:
        """Record a running server without checking (after a hub restart)."""
        if charge.key in self._charges:
            return
        bucket = charge.vo or NO_VO
        self._charges[charge.key] = charge
        self._vo_usage[bucket].add(charge)
        self._user_usage[(bucket, charge.user)].add(charge)
        self._total.add(charge)
        self._export(bucket)

    def release(self, user: str, server: str) -> Charge | None:
        """Give back what a stopped (or failed) server held; None if it held nothing."""
        charge = self._charges.pop((user, server), None)
        if charge is not None:
            bucket = charge.vo or NO_VO
            self._vo_usage[bucket].add(charge, -1)
            self._user_usage[(bucket, charge.user)].add(charge, -1)
            self._total.add(charge, -1)
            self._export(bucket)
            started = self._started.pop(charge.key, None)
            if started is not None:
                self._record("stop", charge, started, _now())
        return charge

    def started(self, charge: Charge, since: str | None = None) -> None:
        """Note that an admitted server runs; ``since`` re-notes one after a restart."""
        if charge.key in self._started:
            return
        self._started[charge.key] = since or _now()
        if since is None:
            self._record("start", charge, self._started[charge.key], None)

    def started_at(self, charge: Charge) -> str | None:
        return self._started.get(charge.key)

    def _export(self, bucket: str) -> None:
        usage = self._vo_usage[bucket]
        VO_SERVERS.labels(vo=bucket).set(usage.servers)
        VO_CPU.labels(vo=bucket).set(usage.cpu)
        VO_MEMORY.labels(vo=bucket).set(usage.memory)
        VO_GPU.labels(vo=bucket).set(usage.gpu)
        HUB_SERVERS.set(self._total.servers)
        HUB_CPU.set(self._total.cpu)
        HUB_MEMORY.set(self._total.memory)
        HUB_GPU.set(self._total.gpu)

    def _record(self, event: str, charge: Charge, start: str, stop: str | None) -> None:
        if not self.usage_log:
            return
        line = json.dumps({"event": event, **asdict(charge), "start": start, "stop": stop})
        self._writer.submit(_append, self.usage_log, line)

    def _breach(
        self, charge: Charge, scope: str, broken: tuple[str, float, float, float]
    ) -> Breach:
        resource, limit, used, asked = broken
        own = sorted(c.server for c in self._charges.values() if c.user == charge.user)
        return Breach(
            scope=scope,
            vo=charge.vo,
            resource=resource,
            limit=limit,
            used=used,
            asked=asked,
            user=charge.user,
            from_default=bool(charge.vo) and charge.vo not in self.vo_limits,
            running=tuple(own),
        )


def profile_resources(profile: dict[str, Any]) -> Charge:
    """The resources a profile asks for, from its ``kubespawner_override``."""
    override = profile.get("kubespawner_override", {})
    gpus = override.get("extra_resource_limits", {}).get("nvidia.com/gpu", 0)
    return Charge(
        user="",
        server="",
        vo=profile.get("vo"),
        cpu=parse_cpu(override.get("cpu_limit", 0) or 0),
        memory=parse_memory(override.get("mem_limit", 0) or 0),
        gpu=int(gpus or 0),
    )


def unfit_profiles(
    vo_limits: Mapping[str, Limits],
    default_limits: Limits,
    profiles: Sequence[Mapping[str, Any]],
    total_limits: Limits | None = None,
) -> list[tuple[int, str]]:
    """Profiles that could never be admitted (for a user who is not an admin): (index, why).

    A profile is charged to its ``vo``, else to the VO of one of its ``allowed_vos``,
    else to any VO (or to none, under ``default_limits``). One that asks for more than
    ``total_limits`` fits nowhere.
    """
    empty = Usage()
    problems = []
    for i, profile in enumerate(profiles):
        try:
            asked = profile_resources(profile)
        except QuantityError as e:
            problems.append((i, str(e)))
            continue
        broken = _exceeded(total_limits or Limits(), empty, asked)
        if broken:
            problems.append(
                (i, f"asks for more than the hub-wide limit allows ({broken[0]} = {broken[1]})")
            )
            continue
        if profile.get("vo"):
            candidates = [profile["vo"]]
        elif profile.get("allowed_vos"):
            candidates = [parse_rule(rule).vo for rule in profile["allowed_vos"]]
        else:
            candidates = [*vo_limits, None]
        reasons = []
        for vo in candidates:
            limits = vo_limits.get(vo, default_limits) if vo else default_limits
            broken = _exceeded(limits, empty, asked) or (
                limits.per_user and _exceeded(limits.per_user, empty, asked)
            )
            if not broken:
                break
            reasons.append(f"{vo or NO_VO}: {broken[0]} = {broken[1]}")
        else:
            problems.append(
                (
                    i,
                    "asks for more than any VO it can be charged to allows ("
                    + "; ".join(reasons)
                    + ")",
                )
            )
    return problems
