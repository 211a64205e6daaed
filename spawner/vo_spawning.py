"""`VOSpawnerMixin`: VO profiles and quota admission, for any spawner.

Mixed into `EGILocalSpawner` and `EGIKubeSpawner`. At start it reads the user's
`UserContext`, picks the profile from the ones the user's VOs allow (403 for another),
undoes whatever an earlier start's profile changed on this spawner object (JupyterHub 6
usually makes a new one after a stop, but a spawner started again must not carry one
profile's command, image or GPUs into another), applies the profile with the chosen
``profile_options``, and only then asks the `QuotaPolicy` to admit the server with the
resources read back from the spawner: what is charged is what was applied. A failed or
cancelled start, a stop, or a server found dead releases the capacity; the charge is
kept in the spawner's state so that a restarted hub counts the servers still running.
"""

from __future__ import annotations

import copy
import html
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from traitlets import HasTraits, default

from egi_hub.context import UserContext
from egi_hub.quantities import parse_memory

from .profiles import (
    UNLISTED,
    Profile,
    ProfileListTrait,
    available_profiles,
    choose_profile,
    merge_override,
    option_overrides,
    override_keys,
)
from .quota import Charge, QuotaPolicy

__all__ = ["VOSpawnerMixin"]

GPU_RESOURCE = "nvidia.com/gpu"
OPTION_PREFIX = "profile-option-"  # KubeSpawner's form fields: profile-option-<slug>--<option>


class VOSpawnerMixin(HasTraits):
    """Profiles per VO and quota admission (put it before the spawner class)."""

    profile_list = ProfileListTrait(
        help="""
        KubeSpawner's profile_list format (``kubespawner_override``, ``profile_options``),
        plus ``allowed_vos`` (VO rules; none: open to all) and ``vo`` (the VO a server of
        this profile is charged to; default: the first of the user's VOs that its
        allowed_vos admit, else the user's primary VO). Users see, and may start, only
        the profiles their VOs allow.
        """,
    ).tag(config=True)

    # Overrides a spawner can apply; the rest of kubespawner_override is for Kubernetes.
    applicable_overrides: tuple[str, ...] = ()
    # Settings restored before each start besides the profiles' own (e.g. labels).
    profile_reset_extra: tuple[str, ...] = ()
    # What the running server is charged (kept in the spawner state across restarts).
    _egi_charge: Charge | None = None
    # The settings profiles may change, as they were before any profile was applied.
    _egi_baseline: dict[str, Any] | None = None
    # The profile applied for the start under way (None: none yet).
    _egi_profile: Profile | None = None
    _egi_profile_loaded = False

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
        return spawner.render_profiles_form(profiles)

    def render_profiles_form(self, profiles: Sequence[Profile]) -> str:
        """The spawn form for these (allowed) profiles: a radio button each, and a
        select for each of their ``profile_options``, named as KubeSpawner names them."""
        chosen = next((p for p in profiles if p.get("default")), profiles[0])
        rows = []
        for profile in profiles:
            slug = html.escape(profile.slug, quote=True)
            checked = " checked" if profile is chosen else ""
            description = html.escape(str(profile.get("description", "")))
            rows.append(
                f'<div class="form-check"><input class="form-check-input" type="radio" '
                f'name="profile" id="profile-{slug}" value="{slug}"{checked}>'
                f'<label class="form-check-label" for="profile-{slug}">'
                f"<strong>{html.escape(str(profile['display_name']))}</strong> {description}"
                "</label>"
            )
            for name, option in profile.get("profile_options", {}).items():
                rows.append(_option_field(profile.slug, name, option))
            rows.append("</div>")
        return "\n".join(rows)

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        """``{"profile": slug, <option>: choice, ...}``: KubeSpawner's user_options."""
        slug = (formdata.get("profile") or [""])[0]
        options: dict[str, Any] = {"profile": slug}
        prefix = f"{OPTION_PREFIX}{slug}--"
        for key, values in formdata.items():
            if slug and key.startswith(prefix) and values and values[0]:
                options[key[len(prefix) :]] = values[0]
        return options

    def reset_profile(self) -> None:
        """Undo what an earlier start's profile (and options) changed on this spawner.

        The first time, remember how every setting a profile may change was; later,
        put those values back, so that a server started with one profile and then with
        another keeps nothing of the first (command, limits, image, GPUs, environment).
        """
        names = set(self.profile_reset_extra)
        for profile in self.profile_list:
            names |= override_keys(profile)
        if self._egi_baseline is None:
            self._egi_baseline = {}
        for name in sorted(names - set(self._egi_baseline)):
            if self.has_trait(name):
                self._egi_baseline[name] = copy.deepcopy(getattr(self, name))
        for name, value in self._egi_baseline.items():
            setattr(self, name, copy.deepcopy(value))

    async def apply_profile(self, profile: Profile, allowed: Sequence[Profile]) -> None:
        """Set the profile's (and its chosen options') overrides this spawner understands.

        ``allowed`` is the list this user may choose from (the Kubernetes spawner hands
        it to KubeSpawner).
        """
        overrides = [profile.get("kubespawner_override", {})]
        overrides += option_overrides(profile, self.user_options or {})
        for override in overrides:
            for key, value in override.items():
                if key in self.applicable_overrides:
                    if key in ("mem_limit", "mem_guarantee") and isinstance(value, str):
                        value = parse_memory(value)  # the quota's units, 1G = 2**30
                    setattr(self, key, merge_override(getattr(self, key), value))
                else:
                    self.log.debug("%s: override %s does not apply here", self._log_name, key)

    async def load_profile(self) -> tuple[Profile | None, UserContext]:
        """Choose the profile this user asked for (or their default) and apply it."""
        context = await self.user_context()
        admin = bool(self.user.admin)
        slug = (self.user_options or {}).get("profile") or None
        profile = choose_profile(self.profile_list, context, slug, admin)
        self.reset_profile()
        if profile is not None:
            option_overrides(profile, self.user_options or {})  # a 400 before anything
            allowed = available_profiles(self.profile_list, context, admin)
            await self.apply_profile(profile, allowed)
        self._egi_profile = profile
        self._egi_profile_loaded = True
        return profile, context

    def resources(self) -> tuple[float, int, int]:
        """CPU, memory (bytes) and GPUs of the server about to start.

        The limit, or the guarantee where it is larger (a profile with guarantees
        only still holds what it reserves)."""
        gpus = getattr(self, "extra_resource_limits", {}).get(GPU_RESOURCE, 0)
        cpu = max(float(self.cpu_limit or 0), float(self.cpu_guarantee or 0))
        memory = max(int(self.mem_limit or 0), int(self.mem_guarantee or 0))
        return cpu, memory, int(gpus or 0)

    async def admit(self) -> Charge:
        """Choose and apply the profile, then reserve what was applied (or refuse)."""
        profile, context = await self.load_profile()
        cpu, memory, gpu = self.resources()
        charge = Charge(
            user=self.user.name,
            server=self.name,
            vo=profile.charged_vo(context) if profile is not None else context.primary_vo,
            cpu=cpu,
            memory=memory,
            gpu=gpu,
            profile=profile.slug if profile else "",
        )
        self.quota.admit(charge, admin=bool(self.user.admin))
        self.label_charge(charge)
        return charge

    def label_charge(self, charge: Charge) -> None:
        """Mark the server with its VO and profile (Kubernetes labels; nothing locally)."""

    async def start(self) -> Any:
        try:
            charge = await self.admit()
            try:
                result = await super().start()
            except BaseException:  # failed or cancelled: give the capacity back
                self.quota.release(charge.user, charge.server)
                raise
        finally:
            self._egi_profile_loaded = False  # the next start chooses again
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


def _option_field(slug: str, name: str, option: dict[str, Any]) -> str:
    """One ``profile_options`` entry as a labelled select (and a text field for a free
    value, when the option takes one)."""
    field = html.escape(f"{OPTION_PREFIX}{slug}--{name}", quote=True)
    label = html.escape(str(option.get("display_name") or name))
    choices = option.get("choices", {})
    default = next((k for k, c in choices.items() if c.get("default")), None)
    items = []
    for key, choice in choices.items():
        selected = " selected" if key == default else ""
        text = html.escape(str(choice.get("display_name") or key))
        items.append(f'<option value="{html.escape(key, quote=True)}"{selected}>{text}</option>')
    parts = [f'<div class="egi-profile-option"><label for="{field}">{label}</label>']
    if items:
        parts.append(
            f'<select class="form-select" name="{field}" id="{field}">{"".join(items)}</select>'
        )
    unlisted = option.get("unlisted_choice", {})
    if unlisted.get("enabled"):
        other = html.escape(str(unlisted.get("display_name") or "Other"))
        parts.append(
            f'<input class="form-control" type="text" name="{field}{UNLISTED}" '
            f'placeholder="{other}" aria-label="{other}">'
        )
    parts.append("</div>")
    return "".join(parts)
