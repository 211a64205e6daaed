"""`VOSpawnerMixin`: VO profiles and quota admission, for any spawner.

Mixed into `EGILocalSpawner` (and, next, the Kubernetes spawner). At start it reads the
user's `UserContext`, picks the profile (403 for one the user's VOs do not allow),
applies its overrides, and only then asks the `QuotaPolicy` to admit the server with
its real resources. A failed or cancelled start, a stop, or a server found dead
releases the capacity; the charge is kept in the spawner's state so that a restarted
hub counts the servers that are still running.
"""

from __future__ import annotations

import html
from dataclasses import asdict
from typing import Any

from traitlets import HasTraits, default

from egi_hub.context import UserContext
from egi_hub.quantities import parse_memory

from .profiles import ProfileListTrait, available_profiles, choose_profile, profile_slug
from .quota import Charge, QuotaPolicy

__all__ = ["VOSpawnerMixin"]

GPU_RESOURCE = "nvidia.com/gpu"


class VOSpawnerMixin(HasTraits):
    """Profiles per VO and quota admission (put it before the spawner class)."""

    profile_list = ProfileListTrait(
        help="""
        KubeSpawner's profile_list format, plus ``allowed_vos`` (VO rules; none: open to
        all) and ``vo`` (the VO a server of this profile is charged to; default: the
        user's primary VO). Users see only the profiles their VOs allow.
        """,
    ).tag(config=True)

    # Overrides a spawner can apply; the rest of kubespawner_override is for Kubernetes.
    applicable_overrides: tuple[str, ...] = ()
    # What the running server is charged (kept in the spawner state across restarts).
    _egi_charge: Charge | None = None

    @property
    def quota(self) -> QuotaPolicy:
        return QuotaPolicy.instance(config=self.config)

    async def user_context(self) -> UserContext:
        """The user's VOs, from the entitlements their login stored in auth_state."""
        auth_state = await self.user.get_auth_state()
        return UserContext.from_auth_state(self.user.name, auth_state)

    @default("options_form")
    def _default_options_form(self) -> Any:
        return VOSpawnerMixin._profiles_form if self.profile_list else ""

    @staticmethod
    async def _profiles_form(spawner: VOSpawnerMixin) -> str:
        context = await spawner.user_context()
        profiles = available_profiles(spawner.profile_list, context, spawner.user.admin)
        if not profiles:
            return "<p>No profile is available to your VOs.</p>"
        chosen = next((p for p in profiles if p.get("default")), profiles[0])
        rows = []
        for profile in profiles:
            slug = html.escape(profile_slug(profile), quote=True)
            checked = " checked" if profile is chosen else ""
            description = html.escape(str(profile.get("description", "")))
            rows.append(
                f'<div class="form-check"><input class="form-check-input" type="radio" '
                f'name="profile" id="profile-{slug}" value="{slug}"{checked}>'
                f'<label class="form-check-label" for="profile-{slug}">'
                f"<strong>{html.escape(str(profile['display_name']))}</strong> {description}"
                "</label></div>"
            )
        return "\n".join(rows)

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        return {"profile": (formdata.get("profile") or [""])[0]}

    async def apply_profile(self, profile: dict[str, Any]) -> None:
        """Set the profile's overrides this spawner understands."""
        for key, value in profile.get("kubespawner_override", {}).items():
            if key in self.applicable_overrides:
                if key in ("mem_limit", "mem_guarantee") and isinstance(value, str):
                    value = parse_memory(value)
                setattr(self, key, value)
            else:
                self.log.debug("%s: override %s does not apply here", self._log_name, key)

    def resources(self) -> tuple[float, int, int]:
        """CPU, memory (bytes) and GPUs of the server about to start."""
        gpus = getattr(self, "extra_resource_limits", {}).get(GPU_RESOURCE, 0)
        return float(self.cpu_limit or 0), int(self.mem_limit or 0), int(gpus or 0)

    async def admit(self) -> Charge:
        """Choose and apply the profile, then reserve its resources (or refuse)."""
        context = await self.user_context()
        admin = bool(self.user.admin)
        slug = (self.user_options or {}).get("profile") or None
        profile = choose_profile(self.profile_list, context, slug, admin)
        if profile is not None:
            await self.apply_profile(profile)
        cpu, memory, gpu = self.resources()
        charge = Charge(
            user=self.user.name,
            server=self.name,
            vo=(profile or {}).get("vo") or context.primary_vo,
            cpu=cpu,
            memory=memory,
            gpu=gpu,
            profile=profile_slug(profile) if profile else "",
        )
        self.quota.admit(charge, admin=admin)
        self.label_charge(charge)
        return charge

    def label_charge(self, charge: Charge) -> None:
        """Mark the server with its VO and profile (Kubernetes labels; nothing locally)."""

    async def start(self) -> Any:
        charge = await self.admit()
        try:
            result = await super().start()
        except BaseException:  # failed or cancelled: give the capacity back
            self.quota.release(charge.user, charge.server)
            raise
        self._egi_charge = charge
        self.quota.started(charge)
        return result

    async def stop(self, now: bool = False) -> None:
        try:
            await super().stop(now=now)
        finally:
            self.quota.release(self.user.name, self.name)

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self._egi_charge is not None:
            state["egi_charge"] = asdict(self._egi_charge)
            state["egi_started"] = self.quota.started_at(self._egi_charge)
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        if "egi_charge" in state:
            self._egi_charge = Charge(**state["egi_charge"])
            self.quota.restore(self._egi_charge)
            self.quota.started(self._egi_charge, since=state.get("egi_started"))

    def clear_state(self) -> None:
        super().clear_state()
        if self._egi_charge is not None:
            self.quota.release(self._egi_charge.user, self._egi_charge.server)
            self._egi_charge = None
