"""Defaults egi-hub gives the notebook server's other extensions, unless the site set them.

jupyter-resource-usage reads its settings (``ResourceUseDisplay``) from the server's
config. A package cannot ship such settings the usual way: Jupyter Server reads only
``ServerApp.jpserver_extensions`` from the ``jupyter_server_config.d/*.json`` drop-ins,
and a ``jupyter_server_config.json`` of our own under ``<prefix>/etc/jupyter`` would
replace whatever file an image already has there. So this small extension, enabled by
the same drop-in as the token keeper, fills in each default when Jupyter Server links it.
Linking goes in alphabetical order of module names, so ``egi_hub.*`` comes before
``jupyter_resource_usage`` reads its config; and a trait the server's config already
holds (a ``jupyter_server_config`` file anywhere on the Jupyter config path, or a
command-line option) is left as the site set it.

JupyterLab's own news and update-check defaults are settings, not server config: they
ship as ``labconfig/default_setting_overrides.json`` next to the drop-in.
"""

from __future__ import annotations

from typing import Any

from traitlets.config import Config

__all__ = ["DEFAULTS", "apply_defaults"]

DEFAULTS: dict[str, dict[str, Any]] = {
    "ResourceUseDisplay": {
        # CPU use beside memory in JupyterLab's status bar; CPU_LIMIT (set by the spawner
        # from the profile, in cores) is the limit the metrics endpoint reports.
        "track_cpu_percent": True,
        # No CPU warning: jupyter-resource-usage (1.x) compares CPU_LIMIT in cores with
        # the use in percent of a core, so with a 1-core limit any use above 0.1 % would
        # turn the indicator red. The memory warning (same units on both sides) stays.
        "cpu_warning_threshold": 0.0,
    },
}


def apply_defaults(config: Config, defaults: dict[str, dict[str, Any]] = DEFAULTS) -> list[str]:
    """Set each ``Section.trait`` of ``defaults`` that ``config`` has no value for.

    Returns the names set, so the server's log says what egi-hub chose.
    """
    applied = []
    for section, traits in defaults.items():
        for name, value in traits.items():
            if f"{section}.{name}" in config:
                continue
            config[section][name] = value
            applied.append(f"{section}.{name}")
    return applied


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "egi_hub.singleuser.defaults"}]


def _link_jupyter_server_extension(serverapp: Any) -> None:
    applied = apply_defaults(serverapp.config)
    if applied:
        serverapp.log.info("egi-hub defaults (not set by the site's config): %s", applied)


def _load_jupyter_server_extension(serverapp: Any) -> None:
    """Nothing to load: the work is done when linking, before other extensions load."""
