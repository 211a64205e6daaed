"""The spawn form as profile cards, for both spawners.

Each card shows what a user needs to choose: the profile's name and description, its
CPU, memory and GPUs (limits, and guarantees where set), the VO the server will be
charged to, and that VO's use against its limits with the user's own share
(`quota_view.vo_use`). Profiles the user's VOs do not allow are either left out or,
with ``SitePages.show_unavailable_profiles``, shown disabled with the membership they
need and its enrolment link.

The HTML comes from a Jinja2 template shipped with the package
(``form_templates/profile_cards.html``), autoescaped: profile names, descriptions
and VO names from the site file can never inject markup. Field names are
KubeSpawner's (``profile``, ``profile-option-<slug>--<option>``, ``...--unlisted-choice``),
so its ``options_from_form`` and ours read the same form.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape

from egi_hub.context import UserContext
from egi_hub.pages import SitePages
from egi_hub.quantities import QuantityError, parse_cpu, parse_memory

from .profiles import UNLISTED, UNLISTED_CHOICE, Profile
from .quota import QuotaPolicy
from .quota_view import NOT_CHARGED, UseFigure, VOUse, vo_use

__all__ = ["Card", "profile_cards", "render_cards"]

OPTION_PREFIX = "profile-option-"  # KubeSpawner's form fields: profile-option-<slug>--<option>
GPU_RESOURCE = "nvidia.com/gpu"
TEMPLATES = Path(__file__).parent / "form_templates"


@dataclass
class Card:
    """One profile as the form shows it."""

    slug: str
    name: str
    description: str
    resources: list[tuple[str, str]]  # ("CPU", "2 (1 guaranteed)"), ...
    vo: str  # the VO it is charged to, or "not charged to a VO"
    use: VOUse | None
    checked: bool = False
    needs: list[tuple[str, str]] = field(default_factory=list)  # (rule, enrolment URL)
    options: list[dict[str, Any]] = field(default_factory=list)

    @property
    def charged(self) -> bool:
        """Whether the server is charged to a VO (not so for a user in no VO)."""
        return self.vo != NOT_CHARGED

    @property
    def disabled(self) -> bool:
        return bool(self.needs)

    @property
    def use_text(self) -> str:
        """``vo.access.egi.eu: 1 of 3 servers, 2 of 8 GiB (full)``."""
        if self.use is None:
            return ""
        name = self.use.vo or "Servers " + NOT_CHARGED
        return f"{name}: {_figures(self.use.figures) or 'no limits'}"

    @property
    def your_use_text(self) -> str:
        """The user's own share inside the VO (its ``per_user`` limits), if any."""
        return _figures(self.use.user_figures) if self.use is not None else ""


def _figures(figures: Sequence[UseFigure]) -> str:
    return ", ".join(f.text + (" (full)" if f.full else "") for f in figures)


def _number(value: float) -> str:
    return f"{value:g}"


def _gib(value: int) -> str:
    return f"{value / 2**30:.2f}".rstrip("0").rstrip(".") + " GiB"


def _resources(profile: Mapping[str, Any]) -> list[tuple[str, str]]:
    """CPU, memory and GPUs of a profile: its limits, with guarantees where set."""
    override = profile.get("kubespawner_override", {})
    rows = []
    try:
        for label, limit_key, guarantee_key, parse, show in (
            ("CPU", "cpu_limit", "cpu_guarantee", parse_cpu, _number),
            ("Memory", "mem_limit", "mem_guarantee", parse_memory, _gib),
        ):
            limit = parse(override[limit_key]) if override.get(limit_key) else None
            guarantee = parse(override[guarantee_key]) if override.get(guarantee_key) else None
            if limit is None and guarantee is None:
                continue
            if limit is None:
                rows.append((label, f"{show(guarantee)} guaranteed"))
            elif guarantee is None:
                rows.append((label, f"up to {show(limit)}"))
            else:
                rows.append((label, f"up to {show(limit)} ({show(guarantee)} guaranteed)"))
    except QuantityError:  # the site check refuses these; never fail the form for one
        pass
    gpus = override.get("extra_resource_limits", {}).get(GPU_RESOURCE)
    if gpus:
        rows.append(("GPU", str(gpus)))
    return rows


def _options(profile: Profile, chosen: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The profile's ``profile_options`` as fields, with the user's last choice.

    As KubeSpawner's form: an option with a free value has an "Other…" entry in its
    select, and its text box is filled (and "Other…" selected) only when the last start
    used a free value. A stored value that is not text (an old API request) is
    ignored: the default is shown instead.
    """
    fields = []
    for name, option in profile.get("profile_options", {}).items():
        choices = option.get("choices", {})
        unlisted = option.get("unlisted_choice", {})
        enabled = bool(unlisted.get("enabled"))
        selected = chosen.get(name)
        free = chosen.get(name + UNLISTED)
        free = free if enabled and isinstance(free, str) and free else ""
        if free:
            selected = UNLISTED_CHOICE
        elif not isinstance(selected, str) or selected not in choices:
            selected = next((k for k, c in choices.items() if c.get("default")), None)
        label = str(option.get("display_name") or name)
        fields.append(
            {
                "field": f"{OPTION_PREFIX}{profile.slug}--{name}",
                "unlisted_field": f"{OPTION_PREFIX}{profile.slug}--{name}{UNLISTED}",
                "label": label,
                "choices": [(k, str(c.get("display_name") or k)) for k, c in choices.items()],
                "selected": selected,
                "unlisted": enabled,
                "unlisted_choice": UNLISTED_CHOICE,
                "unlisted_in_choices": str(unlisted.get("display_name_in_choices") or "Other…"),
                "unlisted_label": str(unlisted.get("display_name") or f"{label} (other)"),
                "unlisted_value": free,
                "unlisted_pattern": str(unlisted.get("validation_regex") or ""),
                "unlisted_hint": str(unlisted.get("validation_message") or ""),
            }
        )
    return fields


def profile_cards(
    profiles: Sequence[Profile],
    unavailable: Sequence[Profile],
    context: UserContext,
    policy: QuotaPolicy,
    pages: SitePages,
    user_options: Mapping[str, Any] | None = None,
) -> list[Card]:
    """Cards for the allowed ``profiles`` (one checked) and the disabled ``unavailable``.

    The checked one is the profile of the user's last options if still allowed, else
    the default, else the first: with one allowed profile, that one.
    """
    user_options = user_options or {}
    last = user_options.get("profile")
    last = last if isinstance(last, str) else None  # an old API request's list or mapping
    chosen = next((p for p in profiles if p.slug == last), None)
    chosen = chosen or next((p for p in profiles if p.get("default")), None)
    chosen = chosen or (profiles[0] if profiles else None)
    cards = []
    for profile in [*profiles, *unavailable]:
        allowed = profile in profiles
        vo = profile.charged_vo(context)
        card = Card(
            slug=profile.slug,
            name=str(profile.get("display_name") or profile.slug),
            description=str(profile.get("description") or ""),
            resources=_resources(profile),
            vo=vo or NOT_CHARGED,
            use=vo_use(policy, vo, context.username) if allowed else None,
            checked=profile is chosen,
        )
        if allowed:
            mine = user_options if profile is chosen else {}
            card.options = _options(profile, mine)
        else:
            card.needs = [(str(rule), pages.enrolment_url(rule)) for rule in profile.rules]
        cards.append(card)
    return cards


@cache
def _environment() -> Environment:
    return Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_cards(cards: Sequence[Card], site_name: str = "") -> str:
    """The form's HTML for these cards."""
    template = _environment().get_template("profile_cards.html")
    other = any(o["unlisted"] and o["choices"] for card in cards for o in card.options)
    return template.render(
        cards=cards, site_name=site_name, unlisted_choice=UNLISTED_CHOICE, other_fields=other
    )
