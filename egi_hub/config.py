"""Site files: YAML that passes through to traitlets, checked before anything starts.

A site file is read exactly like zero-to-jupyterhub's ``hub.config``: each top-level
key names a configurable class, each nested key one of its traits::

    JupyterHub:
      port: 8000            # c.JupyterHub.port = 8000
    DevAuthenticator:
      users:
        alice: {entitlements: ["urn:mace:egi.eu:group:vo.access.egi.eu#aai.egi.eu"]}

`check_site` names every unknown class, unknown trait and ill-typed value by its key
path, so a typo stops the hub at start instead of being silently ignored.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import yaml
from traitlets import Container, Dict, TraitError
from traitlets.config import Config, Configurable

__all__ = [
    "ConfigIssue",
    "SiteConfigError",
    "TraitPathError",
    "check_site",
    "configurable_classes",
    "expect",
    "load_site_file",
    "secret_like",
    "site_to_config",
]

log = logging.getLogger(__name__)

# Entry-point groups whose classes a site may configure by name. egi-hub registers its
# own configurables that are neither authenticators nor spawners (QuotaPolicy,
# LocalStack) under "egi_hub.configurables".
ENTRY_POINT_GROUPS = (
    "jupyterhub.authenticators",
    "jupyterhub.spawners",
    "jupyterhub.proxies",
    "egi_hub.configurables",
)


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in a site file: where (a key path) and what."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class SiteConfigError(Exception):
    """A site file that cannot be used; ``issues`` lists every problem found."""

    def __init__(self, issues: Iterable[ConfigIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class TraitPathError(TraitError):
    """Raised by egi-hub trait types for a problem *inside* a value.

    ``path`` is relative to the trait (``alice.entitlements``), so the site-file
    check can name the full key (``DevAuthenticator.users.alice.entitlements``).
    """

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


def expect(value: Any, kind: type | tuple[type, ...], path: str, what: str) -> Any:
    """``value`` if it is a ``kind``; else a `TraitPathError` at ``path``: expected ``what``."""
    if not isinstance(value, kind):
        raise TraitPathError(path, f"expected {what}, got {describe(value, secret_like(path))}")
    return value


#: Names of traits and keys whose values are secrets: a message never shows such a value
#: (a site file's check output ends up in logs, terminals and CI records).
SECRET_NAME = re.compile(r"secret|(^|_)(tokens?|passw(or)?d|pwd|keys?|db_url)$", re.IGNORECASE)
#: Names whose own value is a secret when given as a plain value, though what is under
#: them has names of its own (``credentials.sts.endpoint_url`` is no secret).
SECRET_LEAF = re.compile(r"(^|_)credentials?$", re.IGNORECASE)


def secret_like(path: str) -> bool:
    """Whether any name of a key path (``JupyterHub.db_url``,
    ``JupyterHub.services[0].api_token.x``) names a secret: a value under a secret's
    key is part of the secret, however deep."""
    names = [name for name in re.split(r"[.\[\]]", path) if name]
    if names and SECRET_LEAF.search(names[-1]):
        return True
    return any(SECRET_NAME.search(name) for name in names)


#: What a message says in place of a secret's value.
HIDDEN = "value hidden: a secret"
#: A quoted value in a check's message (left out under a secret's key).
_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")

#: Values described by their type only: a container's contents may hold a secret
#: under a name (an ``api_token`` in a mapping, ``KEY=…`` in a list) no check foresaw.
CONTAINERS = (dict, list, tuple, set, frozenset)


def describe(value: Any, hidden: bool | str = False) -> str:
    """A short description of a value for error messages: its YAML type and the value
    (``hidden``: the type only, for the value of a secret, or with the reason given;
    a mapping or a list: its type and size only)."""
    names = {dict: "mapping", list: "list", str: "string", bool: "boolean", type(None): "null"}
    if hidden:
        why = HIDDEN if hidden is True else hidden
        return f"{names.get(type(value), type(value).__name__)} ({why})"
    if isinstance(value, CONTAINERS) and value:
        kind = names.get(type(value), type(value).__name__)
        return f"{kind} of {len(value)} (contents not shown)"
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{names.get(type(value), type(value).__name__)} {text}"


def load_site_file(path: str | Path) -> dict[str, Any]:
    """Read a site file; a missing, unreadable or non-YAML file is a `SiteConfigError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SiteConfigError([ConfigIssue(str(path), f"cannot read: {e.strerror}")]) from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problem = getattr(e, "problem", None) or str(e)
        raise SiteConfigError([ConfigIssue(str(path), f"not valid YAML{at}: {problem}")]) from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        issue = ConfigIssue(str(path), f"expected a mapping of class names, got {describe(data)}")
        raise SiteConfigError([issue])
    return data


def configurable_classes(*extra: type[Configurable]) -> dict[str, type[Configurable]]:
    """Every configurable class a site file may name, by class name.

    That is JupyterHub itself, every class registered under JupyterHub's entry-point
    groups (authenticators, spawners, proxies), ``extra``, and all their configurable
    base classes (so ``Spawner`` or ``Authenticator`` configure every subclass).
    """
    from jupyterhub.app import JupyterHub
    from jupyterhub.auth import Authenticator
    from jupyterhub.crypto import CryptKeeper
    from jupyterhub.spawner import Spawner

    roots: list[type] = [JupyterHub, Authenticator, Spawner, CryptKeeper, *extra]
    for group in ENTRY_POINT_GROUPS:
        for ep in entry_points(group=group):
            try:
                roots.append(ep.load())
            except Exception as e:  # a broken third-party plugin must not stop a check
                log.debug("Skipping entry point %s=%s: %r", group, ep.value, e)
    found: dict[str, type[Configurable]] = {}
    for root in roots:
        for cls in getattr(root, "__mro__", ()):
            if isinstance(cls, type) and issubclass(cls, Configurable):
                found.setdefault(cls.__name__, cls)
    return found


# traitlets' wording for Integer/Float min and max violations.
_BOUND = re.compile(r"should (not be (?:less|greater) than [^,]+),")


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check_trait(cls: type[Configurable], name: str, value: Any, path: str) -> list[ConfigIssue]:
    trait = cls.class_traits()[name]
    # A bare instance (no __init__): enough for the trait's own type validation,
    # without the side effects that constructing a hub component may have.
    obj = cls.__new__(cls)
    # Never echo a secret's value (nor an error quoting it), nor what was given for a
    # container (a mapping's or a list's entries may be secrets by another name).
    hidden: bool | str = secret_like(path) or (
        "value not shown" if isinstance(trait, Container | Dict) else False
    )
    try:
        trait.validate(obj, value)
    except TraitPathError as e:
        sub = e.path if not e.path or e.path.startswith("[") else f".{e.path}"
        message = e.message
        if secret_like(path + sub) and not message.endswith(f"({HIDDEN})"):
            # under a secret's key at any depth: the check's words, never what it quoted
            if ", got " in message:
                what = message.split(", got ")[0]
            else:  # the check's own words, anything it quoted left out
                what = _QUOTED.sub("(…)", message)
            message = f"{what} ({HIDDEN})"
        return [ConfigIssue(path + sub, message)]
    except TraitError as e:
        bound = _BOUND.search(str(e))
        if bound:  # right type, out of range
            got = describe(value, hidden) if hidden else repr(value)
            return [ConfigIssue(path, f"must {bound.group(1)}, got {got}")]
        return [ConfigIssue(path, f"expected {trait.info()}, got {describe(value, hidden)}")]
    except Exception as e:  # e.g. an entry point that cannot be loaded
        why = type(e).__name__ if hidden else str(e)
        return [ConfigIssue(path, f"invalid value {describe(value, hidden)}: {why}")]
    return []


def check_site(
    data: Mapping[str, Any], classes: Mapping[str, type[Configurable]]
) -> list[ConfigIssue]:
    """Every problem in a parsed site file, each named by its key path."""
    issues: list[ConfigIssue] = []
    for section, settings in data.items():
        cls = classes.get(section) if isinstance(section, str) else None
        if cls is None:
            hint = _did_you_mean(str(section), classes)
            issues.append(ConfigIssue(str(section), f"unknown class{hint}"))
            continue
        if not isinstance(settings, dict):
            issues.append(
                ConfigIssue(
                    section,
                    f"expected a mapping of settings, got {describe(settings, 'value not shown')}",
                )
            )
            continue
        configurable = cls.class_trait_names(config=True)
        for name, value in settings.items():
            path = f"{section}.{name}"
            if name not in configurable:
                known = "is not configurable" if cls.class_traits().get(name) else "unknown setting"
                issues.append(ConfigIssue(path, known + _did_you_mean(str(name), configurable)))
                continue
            issues.extend(_check_trait(cls, name, value, path))
    return issues


def site_to_config(data: Mapping[str, Any]) -> Config:
    """The traitlets `Config` a (checked) site file stands for."""
    config = Config()
    for section, settings in data.items():
        for name, value in settings.items():
            config[section][name] = value
    return config
