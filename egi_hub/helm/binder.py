"""The chart's Binder service, the hub's side: the values' ``binder`` section.

On one machine ``egi-hub up`` runs the Binder service as a child of the hub. In the chart
it is a Deployment of its own (templates/binder/): its own ServiceAccount and Role for
the build pods, its own resources, restarted on its own. So the hub knows it as an
*external* JupyterHub service: the hub routes ``/services/binder/`` to its Service,
gives it an OAuth client (users log in to it through the hub) and a role, exactly as
``egi-hub up`` does (`egi_hub.stack.register_binder`, one place for both).

What the hub reads: the ``binder`` section of ``values.json`` (``enabled``, the service's
in-cluster ``url`` and its ``BinderGuests`` settings: the hub serves the guest page),
which holds no secret, and two secrets from its environment (the chart's Binder Secret,
by ``secretKeyRef``): the service's API token and the launch-ticket secret the spawners
check tickets with. The service's own settings (``binder.config``) reach the service
only, in that Secret.

`config_schema` is the values schema of ``binder.config``: the Binder sections of the
site file, made from the classes' traits, so ``helm template`` refuses an unknown or
ill-typed key by its name; the keys the chart sets itself (the builder, its registry,
the build namespace and the engine's socket, the data folder, the secrets) are left out,
and so refused: the build namespace is binder.build.namespace, never the release's own
(which holds the hub's Secrets), and the socket is the chart's dind's or
binder.build.dockerSocket.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from traitlets.config import Config

from ..config import ConfigIssue, SiteConfigError
from ..stack import BINDER, BINDER_SECTIONS, PROFILE_SECTIONS, register_binder

__all__ = [
    "API_TOKEN_ENV",
    "CHART_KEYS",
    "CHART_SECTIONS",
    "TICKET_SECRET_ENV",
    "BinderValuesError",
    "add_binder",
    "config_schema",
]

#: The hub's environment variables holding the service's API token and the ticket
#: secret (set by the chart from its Binder Secret).
API_TOKEN_ENV = "EGI_BINDER_API_TOKEN"
TICKET_SECRET_ENV = "EGI_BINDER_TICKET_SECRET"
MIN_SECRET = 32
#: The Binder sections ``binder.config`` takes: the builder is always ``kubernetes``.
CHART_SECTIONS = tuple(s for s in BINDER_SECTIONS if s not in ("VenvBuilder", "DockerBuilder"))
#: Traits the chart sets itself (binder.build, the Secret, the pod's volume and
#: namespace): not in ``binder.config``.
CHART_KEYS = {
    "BinderService": ("builder", "data_dir", "ticket_secret", "build_concurrency"),
    "KubernetesBuilder": ("namespace", "docker_socket", "image", "image_prefix", "push_secret"),
}
#: What an image prefix may look like (``[host[:port]/]name[/name...]`` and an ending
#: ``-``, ``/``, ``_``, ``.`` or ``:``); the service's own check is stricter.
IMAGE_PREFIX_PATTERN = r"^(([a-z0-9.-]+(:[0-9]{1,5})?/)?[a-z0-9]([a-z0-9._/-]*[a-z0-9._/:-])?)?$"


class BinderValuesError(Exception):
    """The hub cannot register the Binder service: ``str()`` is one line naming why."""


def add_binder(
    config: Config, binder: Mapping[str, Any] | None, environ: Mapping[str, str]
) -> None:
    """Register the chart's Binder service in the hub's ``config`` (see the module).

    Refuses (`SiteConfigError`, named as hub.config keys) Binder sections in hub.config
    (they go in ``binder.config``) and a spawner ticket secret of the site's own (the
    chart makes the one the service signs with); `BinderValuesError` when the chart's
    secrets are missing from ``environ``.
    """
    binder = binder or {}
    issues = [
        ConfigIssue(section, "the Binder service's settings go in binder.config")
        for section in BINDER_SECTIONS
        if section in config
    ]
    if binder.get("enabled"):
        issues += [
            ConfigIssue(
                f"{section}.binder_ticket_secret",
                "the chart makes the Binder ticket secret (binder.enabled): leave it out",
            )
            for section in PROFILE_SECTIONS
            if section in config and "binder_ticket_secret" in config[section]
        ]
    if issues:
        raise SiteConfigError(issues)
    if not binder.get("enabled"):
        return
    token, secret = environ.get(API_TOKEN_ENV, ""), environ.get(TICKET_SECRET_ENV, "")
    for name, value in ((API_TOKEN_ENV, token), (TICKET_SECRET_ENV, secret)):
        if len(value) < MIN_SECRET:
            raise BinderValuesError(
                f"binder.enabled: ${name} is {'too short' if value else 'not set'} "
                "(the chart's Binder Secret gives it to the hub)"
            )
    url = str(binder.get("url") or "")
    if not url.startswith(("http://", "https://")):
        raise BinderValuesError(f"binder.url: {url!r} is not the service's http(s) URL")
    guests = dict(binder.get("BinderGuests") or {})
    for key, value in guests.items():  # the hub serves the guest page
        config.BinderGuests[key] = value
    service = {"name": BINDER, "url": url, "api_token": token}
    register_binder(config, service, secret, guests=bool(guests.get("enabled")))


def _trait_schema(name: str, trait: Any) -> dict[str, Any]:
    """A trait's JSON schema: its type (and bounds, choices), its help as description."""
    from traitlets import Bool, Dict, Enum, Float, Integer, List, Set, Tuple, Unicode

    schema: dict[str, Any] = {}
    if isinstance(trait, Enum):
        schema["enum"] = list(trait.values)
    elif isinstance(trait, Bool):
        schema["type"] = "boolean"
    elif isinstance(trait, Integer | Float):
        schema["type"] = "integer" if isinstance(trait, Integer) else "number"
        for key, bound in (("minimum", trait.min), ("maximum", trait.max)):
            if bound is not None and math.isfinite(bound):  # a Float's are infinite
                schema[key] = bound
    elif isinstance(trait, Unicode):
        schema["type"] = "string"
        if name.endswith("image_prefix"):
            schema["pattern"] = IMAGE_PREFIX_PATTERN
    elif isinstance(trait, List | Tuple | Set):
        schema["type"] = "array"
    elif isinstance(trait, Dict):
        schema["type"] = "object"
    if trait.allow_none and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    schema["description"] = " ".join((trait.help or name).split())
    return schema


def config_schema() -> dict[str, Any]:
    """The values schema of ``binder.config`` (see the module)."""
    from ..config import configurable_classes

    classes = configurable_classes()
    sections: dict[str, Any] = {}
    for section in CHART_SECTIONS:
        cls = classes[section]
        skip = CHART_KEYS.get(section, ())
        traits = {
            name: _trait_schema(name, trait)
            for name, trait in sorted(cls.class_traits(config=True).items())
            if name not in skip
        }
        doc = " ".join((cls.__doc__ or section).split())
        if skip:
            doc += f" Set by the chart, so not here: {', '.join(skip)} (see binder.build)."
        sections[section] = {
            "type": "object",
            "additionalProperties": False,
            "description": doc,
            "properties": traits,
        }
    return {
        "type": "object",
        "additionalProperties": False,
        "description": (
            "The Binder service's settings: the Binder sections of the site file, with "
            "the same keys and meaning as for `egi-hub up` (docs/admin/binder.md), "
            "rendered into the service's Secret. The builder is always kubernetes "
            "(VenvBuilder and DockerBuilder do not apply). Secrets such as "
            "GitProvider.github_token are better given by binder.extraEnv "
            "($EGI_BINDER_GITHUB_TOKEN from a Secret)."
        ),
        "properties": sections,
    }
