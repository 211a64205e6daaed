"""`VOSpawnerMixin`: VO profiles and quota admission, for any spawner.

Mixed into `EGILocalSpawner` and `EGIKubeSpawner`. At start it reads the user's
`UserContext`, picks the profile from the ones the user's VOs allow (a `Refusal`
saying which VO another needs), undoes whatever an earlier start's profile changed on
this spawner object (JupyterHub 6 usually makes a new one after a stop, but a spawner
started again must not carry one profile's command, image or GPUs into another),
applies the profile with the chosen ``profile_options``, and only then asks the
`QuotaPolicy` to admit the server with the resources read back from the spawner: what
is charged is what was applied. A failed or cancelled start, a stop, or a server found
dead releases the capacity; the charge is kept in the spawner's state so that a
restarted hub counts the servers still running.

It also keeps the records honest. JupyterHub saves the requested ``user_options`` and
sets the server's ``last_activity`` before ``start`` runs; a start that fails or is
refused puts back the options of the last server that really started (kept in the
spawner's state) and the activity the server had before, so the admin panel never
shows a profile that did not run or activity of a server that never answered.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from jupyterhub.utils import url_path_join
from traitlets import HasTraits, default

from egi_hub.context import UserContext
from egi_hub.pages import SitePages
from egi_hub.quantities import parse_memory

from .cards import OPTION_PREFIX, profile_cards, render_cards
from .profiles import (
    UNLISTED,
    UNLISTED_CHOICE,
    Profile,
    ProfileListTrait,
    available_profiles,
    choose_profile,
    merge_override,
    option_overrides,
    override_keys,
)
from .progress import ProgressEvents
from .quota import Charge, QuotaPolicy
from .quota_view import NOT_CHARGED, vo_use
from .refusals import (
    Links,
    QuotaExceededError,
    Refusal,
    amount,
    no_profile_refusal,
    option_refusal,
    quota_refusal,
)

__all__ = ["VOSpawnerMixin"]

GPU_RESOURCE = "nvidia.com/gpu"
LOGGED_NAMES = 10  # unhandled option names logged (API callers can send any number)


class VOSpawnerMixin(ProgressEvents, HasTraits):
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
    # user_options another mixin handles (e.g. Binder's ticket): not logged as unknown.
    handled_user_options: tuple[str, ...] = ()
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

    @property
    def pages(self) -> SitePages:
        return SitePages.instance(config=self.config)

    def refusal_links(self) -> Links:
        """Where refusals send the user: the hub's home page, the enrolment pages."""
        base = self.hub.base_url if getattr(self, "hub", None) is not None else "/hub/"
        return Links(home_url=url_path_join(base, "home"), pages=self.pages)

    @default("options_form")
    def _default_options_form(self) -> Any:
        return VOSpawnerMixin._profiles_form if self.profile_list else ""

    @staticmethod
    async def _profiles_form(spawner: VOSpawnerMixin) -> str:
        """The profile cards; or, when no start can succeed, why not, without a form.

        A user in no VO, where the limits for servers not charged to a VO allow none
        (``default_limits: {max_servers: 0}``), is told to join a VO, with the
        enrolment link, rather than offered cards that every start would refuse.
        """
        context = await spawner.user_context()
        admin = bool(spawner.user.admin)
        profiles = available_profiles(spawner.profile_list, context, admin)
        links = spawner.refusal_links()
        if not profiles:
            return _no_start(no_profile_refusal(context.vos, spawner.profile_list, links))
        exempt = admin and spawner.quota.admins_exempt
        if not context.vos and not exempt:
            chargeable = [p for p in profiles if p.charged_vo(context) is not None]
            if not chargeable and not spawner.quota.allows_servers(None):
                return _no_start(no_profile_refusal((), profiles, links))
        return spawner.render_profiles_form(profiles, context)

    def render_profiles_form(
        self, profiles: Sequence[Profile], context: UserContext | None = None
    ) -> str:
        """The spawn form: a card for each of these (allowed) profiles, with a radio
        button and a field for each of its ``profile_options``, named as KubeSpawner
        names them; with ``show_unavailable_profiles``, the others too, disabled."""
        context = context or UserContext(self.user.name)
        unavailable: list[Profile] = []
        if self.pages.show_unavailable_profiles:
            unavailable = [p for p in self.profile_list if p not in profiles]
        cards = profile_cards(
            profiles, unavailable, context, self.quota, self.pages, self.user_options
        )
        return render_cards(cards, self.pages.site_name)

    @default("apply_user_options")
    def _default_apply_user_options(self) -> Any:
        return VOSpawnerMixin._check_user_options

    @staticmethod
    def _check_user_options(spawner: VOSpawnerMixin, user_options: dict[str, Any]) -> None:
        """JupyterHub's hook for ``user_options``: here the profile and its options are
        ours to handle (chosen, checked and applied at start, after the VO rules and
        before the quota). Anything else is named in the log and ignored.

        The profile and the values of its options must be text: JupyterHub saves the
        options before the start, and a list or a mapping there would break the form
        at every later visit. Such a request is refused with 400 before anything
        starts, and its options are not kept (the refused start's records are undone).
        """
        slug = user_options.get("profile")
        profile = next((p for p in spawner.profile_list if p.slug == slug), None)
        known = {"profile"}
        for name in (profile or {}).get("profile_options", {}):
            known |= {name, name + UNLISTED}
        for name in sorted(known & set(user_options)):
            value = user_options[name]
            if value is not None and not isinstance(value, str):
                spawner._egi_failed_start = True  # stop() puts the last options back
                what = "The profile" if name == "profile" else f"Option {name!r}"
                raise option_refusal(
                    f"{what} must be given as text, not {type(value).__name__} {value!r:.40}."
                )
        handled = set(spawner.handled_user_options)
        unknown = sorted(str(k)[:100] for k in user_options if k not in known | handled)
        if unknown:
            spawner.log.warning(
                "%s: ignoring %d user_options that no profile option takes: %r",
                spawner._log_name,
                len(unknown),
                unknown[:LOGGED_NAMES] + (["..."] if len(unknown) > LOGGED_NAMES else []),
            )

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        """``{"profile": slug, <option>: choice, ...}``: KubeSpawner's user_options.

        A free value (``<option>--unlisted-choice``) is taken only with the select's
        "Other…" entry chosen, or for an option that has no choices: a text left in
        the box never overrides the entry chosen above it.
        """
        slug = (formdata.get("profile") or [""])[0]
        options: dict[str, Any] = {"profile": slug}
        prefix = f"{OPTION_PREFIX}{slug}--"
        for key, values in formdata.items():
            if slug and key.startswith(prefix) and values and values[0]:
                options[key[len(prefix) :]] = values[0]
        for key in [k for k in options if k.endswith(UNLISTED)]:
            chosen = options.get(key.removesuffix(UNLISTED))
            if chosen is not None and chosen != UNLISTED_CHOICE:
                del options[key]
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
        profile = choose_profile(self.profile_list, context, slug, admin, self.refusal_links())
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
        try:
            self.quota.admit(charge, admin=bool(self.user.admin))
        except QuotaExceededError as e:
            raise quota_refusal(e, self.refusal_links()) from None
        self.label_charge(charge)
        self.progress_event(20, self._admitted_message(charge, profile))
        return charge

    def label_charge(self, charge: Charge) -> None:
        """Mark the server with its VO and profile (Kubernetes labels; nothing locally)."""

    def _admitted_message(self, charge: Charge, profile: Profile | None) -> str:
        """``Admitted: profile Small (1 CPU, 1 GiB of memory), charged to vo.x. vo.x: ...``"""
        asked = [amount("cpu", charge.cpu)] if charge.cpu else []
        asked += [amount("memory", charge.memory)] if charge.memory else []
        asked += [amount("gpu", charge.gpu)] if charge.gpu else []
        what = f"profile {profile.get('display_name') or profile.slug}" if profile else "server"
        if asked:
            what += f" ({', '.join(asked)})"
        use = vo_use(self.quota, charge.vo, charge.user)
        charged = f"charged to {charge.vo}" if charge.vo else NOT_CHARGED
        return f"Admitted: {what}, {charged}. {use.text}."

    async def progress(self) -> Any:
        """The start's events as they happen (see `ProgressEvents`)."""
        async for event in self.follow_progress():
            yield event

    async def start(self) -> Any:
        self._egi_failed_start = False
        try:
            charge = await self.admit()
            try:
                result = await super().start()
            except BaseException:  # failed or cancelled: give the capacity back
                self.quota.release(charge.user, charge.server)
                raise
        except BaseException:
            self._egi_failed_start = True  # stop() (JupyterHub's cleanup) undoes the records
            raise
        finally:
            self._egi_profile_loaded = False  # the next start chooses again
            self.progress_end()
        self._egi_charge = charge
        self._egi_last_options = copy.deepcopy(dict(self.user_options or {}))
        self.quota.started(charge)
        return result

    async def stop(self, now: bool = False) -> None:
        try:
            await super().stop(now=now)
        finally:
            self.quota.release(self.user.name, self.name)

    def run_post_stop_hook(self) -> Any:
        # JupyterHub's cleanup after a failed start sets the server's last_activity
        # (to "now") after stopping it; this hook runs after that, before the state is
        # saved: the place to put the records back.
        if getattr(self, "_egi_failed_start", False):
            self._egi_failed_start = False
            self._undo_records()
        return super().run_post_stop_hook()

    def _undo_records(self) -> None:
        """A start that failed or was refused leaves no trace in the server's record:
        the options of the last server that started, the activity from before."""
        last = copy.deepcopy(getattr(self, "_egi_last_options", None) or {})
        self.user_options = copy.deepcopy(last)
        orm_spawner = getattr(self, "orm_spawner", None)
        if orm_spawner is not None:
            orm_spawner.user_options = last
            orm_spawner.last_activity = getattr(self, "_egi_prior_activity", None)

    def get_state(self) -> dict[str, Any]:
        state = super().get_state()
        if self._egi_charge is not None:
            state["egi_charge"] = asdict(self._egi_charge)
            state["egi_started"] = self.quota.started_at(self._egi_charge)
        if getattr(self, "_egi_last_options", None) is not None:
            # Kept across stops: what the last server that really started was given.
            state["egi_last_options"] = self._egi_last_options
        return state

    def load_state(self, state: dict[str, Any]) -> None:
        super().load_state(state)
        if "egi_last_options" in state:
            self._egi_last_options = dict(state["egi_last_options"] or {})
        if "egi_charge" in state:
            self._egi_charge = Charge(**state["egi_charge"])
            self.quota.restore(self._egi_charge)
            self.quota.started(self._egi_charge, since=state.get("egi_started"))

    def clear_state(self) -> None:
        super().clear_state()
        if self._egi_charge is not None:
            self.quota.release(self._egi_charge.user, self._egi_charge.server)
            self._egi_charge = None
        # JupyterHub clears the state just before it marks a new start's activity:
        # remember the activity from before, in case this start fails. (Not while a
        # failed start is cleaned up: poll() clears the state then, after the mark.)
        if not getattr(self, "_egi_failed_start", False):
            orm_spawner = getattr(self, "orm_spawner", None)
            self._egi_prior_activity = getattr(orm_spawner, "last_activity", None)


def _no_start(refusal: Refusal) -> str:
    """A refusal in place of the spawn form; ``data-egi-no-start`` tells the page
    template to leave out the Start button (there is nothing to start)."""
    return (
        '<div class="alert alert-warning pb-0 egi-no-start" id="egi-no-start" data-egi-no-start>'
        f"{refusal.message_html}</div>"
    )
