"""The mount list: one entry per DataHub space set, S3 bucket or NFS export a site offers.

    StorageMounts:
      mounts:
        - {name: datahub, kind: datahub, onezone_url: https://datahub.egi.eu,
           vos: [vo.access.egi.eu], path: /datahub, read_only: false}
        - {name: scratch, kind: s3, endpoint_url: https://s3.example.org,
           bucket: "{vo}-scratch", path: /s3/scratch,
           credentials: {per_vo: {vo.access.egi.eu: {key: S3_KEY_A, secret: S3_SECRET_A}}}}
        - {name: shared, kind: nfs, server: nfs.example.org, export: /exports/{vo},
           path: /nfs/shared}

Each kind is one small class (`Mount` subclass) that reads its own keys, as
repo2docker's content providers each handle one source; the keys every kind shares
(``name``, ``kind``, ``path``, ``vos``, ``profiles``, ``read_only``) are read here, once.
The list is parsed when the trait is set, so ``egi-hub config check`` names a bad key
(``StorageMounts.mounts[1].bucket``) and the hub never starts with a mount it cannot use.

Who gets a mount: a user whose VOs match one of its ``vos`` rules (none: everyone) and,
if it lists ``profiles``, whose server runs one of them. ``{vo}`` in a template is the VO
the server is charged to when the rules admit it, else the first of the user's VOs they
admit; a mount with ``{vo}`` is never given to a user in no VO.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from traitlets import List
from traitlets.config import SingletonConfigurable

from egi_hub.config import TraitPathError, describe, expect
from egi_hub.context import UserContext
from egi_hub.vo import RuleError, VORule, parse_rule

from .templates import TemplateError, check_separated, check_template, expand

__all__ = [
    "KINDS",
    "Mount",
    "MountListTrait",
    "ResolvedMount",
    "StorageMounts",
    "parse_mount",
    "register_kind",
]

COMMON_KEYS = ("name", "kind", "path", "vos", "profiles", "read_only")
# A mount's name: a Kubernetes volume name and a file-browser label (DNS-1123 label).
_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,38}[a-z0-9])?")
# Mount paths: plain absolute paths, nothing a shell or a YAML reader could misread.
_PATH = re.compile(r"(/[A-Za-z0-9][A-Za-z0-9._-]*)+")
# Where a mount would hide the system or the user's own files.
_RESERVED = ("/bin", "/boot", "/dev", "/etc", "/lib", "/proc", "/root", "/sbin", "/sys", "/usr")

KINDS: dict[str, type[Mount]] = {}


def register_kind(cls: type[Mount]) -> type[Mount]:
    """Class decorator: make a `Mount` subclass available as ``kind: <cls.kind>``."""
    KINDS[cls.kind] = cls
    return cls


def check_mount_path(value: Any, where: str) -> str:
    """An absolute, normalised mount path without ``..``, metacharacters or system dirs."""
    expect(value, str, where, "an absolute path such as /datahub")
    if not _PATH.fullmatch(value) or posixpath.normpath(value) != value:
        raise TraitPathError(
            where,
            f"not a plain absolute path: {value!r} (letters, digits, '.', '_', '-' between "
            "'/'; no '..', no spaces or shell characters)",
        )
    if any(part in (".", "..") for part in value.split("/")):
        raise TraitPathError(where, f"'..' is not allowed in a mount path: {value!r}")
    for reserved in _RESERVED:
        if value == reserved or value.startswith(reserved + "/"):
            raise TraitPathError(where, f"{value!r} would hide the system's {reserved}")
    return value


def check_template_value(value: Any, where: str, what: str) -> str:
    """A non-empty string whose placeholders are only ``{username}`` and ``{vo}``."""
    expect(value, str, where, what)
    if not value.strip():
        raise TraitPathError(where, f"expected {what}, got an empty string")
    try:
        check_template(value)
    except TemplateError as e:
        raise TraitPathError(where, str(e)) from None
    return value


def check_https_url(value: Any, where: str, *, allow_http: bool = False) -> str:
    """An ``https://host[:port][/path]`` URL (``http://`` too when allowed), without a
    trailing slash, query or credentials."""
    from urllib.parse import urlsplit

    expect(value, str, where, "a URL such as https://datahub.egi.eu")
    parts = urlsplit(value)
    schemes = ("https", "http") if allow_http else ("https",)
    if parts.scheme not in schemes or not parts.hostname:
        raise TraitPathError(where, f"expected an {' or '.join(schemes)} URL, got {value!r}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise TraitPathError(where, f"no credentials, query or fragment in the URL: {value!r}")
    if any(ord(c) < 33 for c in value):
        raise TraitPathError(where, f"white space or control characters in {value!r}")
    return value.rstrip("/")


@dataclass(frozen=True)
class ResolvedMount:
    """A mount as one user's server gets it: templates expanded for that user and VO."""

    mount: Mount
    username: str
    vo: str | None
    settings: Mapping[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.mount.name

    @property
    def path(self) -> str:
        return self.mount.path


@dataclass(frozen=True)
class Mount:
    """What every kind shares. Subclasses add their keys and say how to expand them."""

    kind: ClassVar[str] = ""
    # Keys of the subclass that are templates, and how each is escaped.
    templates: ClassVar[Mapping[str, str]] = {}

    name: str
    path: str
    vos: tuple[VORule, ...] = ()
    profiles: tuple[str, ...] = ()
    read_only: bool = False

    @classmethod
    def parse(cls, data: Mapping[str, Any], where: str) -> Mount:
        """Read one entry (its common keys here, its own in `parse_fields`)."""
        known = (*COMMON_KEYS, *cls.own_keys())
        for key in data:
            if key not in known:
                known_text = ", ".join(known)
                raise TraitPathError(
                    f"{where}.{key}", f"unknown key for a {cls.kind} mount (known: {known_text})"
                )
        name = expect(data.get("name"), str, f"{where}.name", "a mount name")
        if not _NAME.fullmatch(name):
            raise TraitPathError(
                f"{where}.name",
                f"{name!r}: use 1-40 lower-case letters, digits and '-' (not at either end)",
            )
        if "path" not in data:
            raise TraitPathError(f"{where}.path", "missing: where the notebook sees the mount")
        path = check_mount_path(data["path"], f"{where}.path")
        rules = []
        for i, rule in enumerate(expect(data.get("vos", []), list, f"{where}.vos", "a list")):
            try:
                rules.append(parse_rule(rule))
            except (RuleError, TypeError) as e:
                raise TraitPathError(f"{where}.vos[{i}]", f"not a VO rule: {e}") from None
        profiles = expect(data.get("profiles", []), list, f"{where}.profiles", "a list of slugs")
        for i, slug in enumerate(profiles):
            expect(slug, str, f"{where}.profiles[{i}]", "a profile slug")
        read_only = data.get("read_only", False)
        expect(read_only, bool, f"{where}.read_only", "true or false")
        fields = cls.parse_fields(data, where)
        for key, style in cls.templates.items():
            try:
                check_separated(fields.get(key, ""), style)  # type: ignore[arg-type]
            except TemplateError as e:
                raise TraitPathError(f"{where}.{key}", str(e)) from None
        return cls(
            name=name,
            path=path,
            vos=tuple(rules),
            profiles=tuple(profiles),
            read_only=read_only,
            **fields,
        )

    @classmethod
    def own_keys(cls) -> tuple[str, ...]:
        """The keys this kind reads besides the common ones."""
        return ()

    @classmethod
    def parse_fields(cls, data: Mapping[str, Any], where: str) -> dict[str, Any]:
        """This kind's own fields from ``data``; `TraitPathError` names a bad key."""
        return {}

    def templates_use_vo(self) -> bool:
        """Whether a templated key uses ``{vo}``."""
        return any("vo" in check_template(getattr(self, key)) for key in self.templates)

    @property
    def depends_on_vo(self) -> bool:
        """Whether what a server gets depends on the VO ``{vo}`` stands for (a templated
        key uses it; kinds with per-VO credentials say so too)."""
        return self.templates_use_vo()

    def vo_for(self, context: UserContext, charged_vo: str | None) -> tuple[bool, str | None]:
        """Whether the user gets this mount, and the VO its ``{vo}`` stands for."""
        if not self.vos:
            # The charged VO only while the user is in it (a running server's mounts
            # are checked again after a refresh: egi_hub.storage_mounts.spawner).
            vo = charged_vo if charged_vo in context.vos else context.primary_vo
        else:
            admitted = [
                vo
                for vo in context.vos
                if any(rule.vo == vo and context.matches(rule) for rule in self.vos)
            ]
            if not admitted:
                return False, None
            vo = charged_vo if charged_vo in admitted else admitted[0]
        if self.templates_use_vo() and not vo:
            return False, None
        return True, vo

    def resolve(self, context: UserContext, charged_vo: str | None) -> ResolvedMount | None:
        """This mount for this user (templates expanded), or None if it is not theirs."""
        applies, vo = self.vo_for(context, charged_vo)
        if not applies:
            return None
        settings = {
            key: expand(getattr(self, key), username=context.username, vo=vo, style=style)
            for key, style in self.templates.items()
        }
        return ResolvedMount(mount=self, username=context.username, vo=vo, settings=settings)


def parse_mount(data: Any, where: str) -> Mount:
    """One entry of the list, by its ``kind``."""
    _load_kinds()  # the kinds register themselves on import: never "known: (none)"
    expect(data, dict, where, "a mapping (name, kind, path, ...)")
    kind = data.get("kind")
    if kind not in KINDS:
        known = ", ".join(sorted(KINDS))
        raise TraitPathError(
            f"{where}.kind", f"unknown mount kind {describe(kind)} (known: {known})"
        )
    return KINDS[kind].parse(data, where)


class MountListTrait(List):
    """The list of mounts, parsed into `Mount` values; names and paths must be unique."""

    info_text = "a list of mounts (name, kind, path, ...)"

    def validate(self, obj: Any, value: Any) -> list[Mount]:
        _load_kinds()
        expect(value, list | tuple, "", self.info_text)
        mounts: list[Mount] = []
        for i, entry in enumerate(value):
            mount = entry if isinstance(entry, Mount) else parse_mount(entry, f"[{i}]")
            for j, other in enumerate(mounts):
                if other.name == mount.name:
                    raise TraitPathError(
                        f"[{i}].name", f"{mount.name!r} is also mount [{j}]'s name"
                    )
                if _nested(other.path, mount.path):
                    raise TraitPathError(
                        f"[{i}].path", f"{mount.path!r} overlaps mount [{j}]'s path {other.path!r}"
                    )
            mounts.append(mount)
        return super().validate(obj, mounts)


def _nested(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _load_kinds() -> None:
    """Import the kind modules (each registers itself)."""
    from . import datahub, nfs, s3  # noqa: F401


class StorageMounts(SingletonConfigurable):
    """The storage a site offers in notebooks, and who gets which (one per hub)."""

    mounts = MountListTrait(
        help="""
        The mounts: each a mapping with ``name`` (1-40 of a-z, 0-9, -), ``kind``
        (``datahub``, ``s3``, ``nfs``), ``path`` (where it appears in the notebook, an
        absolute path), and optionally ``vos`` (VO rules as in ``allowed_vos``; none:
        every user), ``profiles`` (profile slugs; none: every profile) and ``read_only``
        (default false), plus the kind's own keys (see the admin guide). ``{username}``
        and ``{vo}`` in a kind's templated keys are escaped per user. Default: none.
        """,
    ).tag(config=True)

    def for_user(
        self, context: UserContext, charged_vo: str | None, profile: str | None = None
    ) -> list[ResolvedMount]:
        """The mounts of one server: the user's VOs and the server's profile decide."""
        resolved = []
        for mount in self.mounts:
            if mount.profiles and profile not in mount.profiles:
                continue
            entry = mount.resolve(context, charged_vo)
            if entry is not None:
                resolved.append(entry)
        return resolved
