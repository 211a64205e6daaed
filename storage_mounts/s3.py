"""S3 buckets: per-VO static keys the site keeps in its secrets, or per-user STS credentials.

    - {name: scratch, kind: s3, endpoint_url: https://s3.example.org,
       bucket: "{vo}-scratch", path: /s3/scratch,
       credentials: {per_vo: {vo.access.egi.eu: {key: S3_KEY_ACCESS, secret: S3_SECRET_ACCESS},
                              vo.notebooks.egi.eu: {key: S3_KEY_NB, secret: S3_SECRET_NB}}}}
    - {name: public, kind: s3, endpoint_url: https://s3.example.org, bucket: public-data,
       read_only: true, credentials: {from_env: {key: S3_KEY, secret: S3_SECRET}},
       vos: [vo.access.egi.eu], path: /s3/public}
    - {name: home, kind: s3, endpoint_url: https://s3.example.org, bucket: homes,
       prefix: "{username}/", path: /s3/home,
       credentials: {sts: {role_arn: "arn:aws:iam::123456789012:role/notebooks"}}}

*Static* keys: the S3 server, not the hub, decides what a key may touch. So a mount's
isolation is exactly what its keys give, and the check refuses templates that would
promise more:

- ``credentials.from_env`` names one site-wide pair of the hub's environment variables
  (on Kubernetes, filled from a Secret): everyone who gets the mount gets that key. Its
  ``bucket`` and ``prefix`` cannot use ``{vo}`` or ``{username}`` (each VO, or user,
  would see its own folder in the file browser yet hold a key that opens all the others').
- ``credentials.per_vo`` maps each VO to its own pair of variables: a user gets the key
  of the VO their server is charged to (or the first of their VOs that has one), and
  nothing without one. ``bucket``/``prefix`` may use ``{vo}``; the site gives each VO's
  key access to that VO's bucket or prefix only.
- ``{username}`` is refused with either: no static key can keep one user out of another
  user's prefix.

The values are read when the hub starts and a missing one stops it, naming the variable.

*STS* (``credentials.sts``): the hub exchanges each user's own Check-in access token at
the S3 service's Security Token Service (``AssumeRoleWithWebIdentity``,
`egi_hub.storage_mounts.sts`) for temporary credentials that the service's policy,
keyed to the user's identity, limits. So ``{username}`` (and ``{vo}``) may be used:
the service enforces them. Keys: ``endpoint_url`` (default: the mount's; https, or http
on the loopback only, since the Check-in token travels in it), ``role_arn`` (required by
AWS and Ceph RGW; leave it out for MinIO without a role policy), ``duration_seconds``
(900-43200, default 3600) and ``web_identity`` (``access_token``, the only one so far).

In ``bucket`` ``{vo}`` and ``{username}`` are escaped into S3's bucket-name characters,
in ``prefix`` into one path component (`egi_hub.storage_mounts.templates`), except
``{username}`` in an STS mount's ``prefix``: kept as it is when plain (`key_component`),
so that the service's policy can name it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from egi_hub.config import TraitPathError, expect
from egi_hub.context import UserContext
from egi_hub.names import path_component
from egi_hub.vo import parse_rule

from .mounts import Mount, ResolvedMount, check_https_url, check_template_value, register_kind
from .templates import check_template, escape

__all__ = ["S3Mount"]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BUCKET = re.compile(r"[a-z0-9{][a-z0-9.{}_-]*[a-z0-9}]")
_REGION = re.compile(r"[a-z0-9-]{1,40}")
# A VO name as entitlements carry it (the per_vo map's keys).
_VO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")
# An ARN as AWS, Ceph and MinIO write them (arn:partition:service:region:account:resource).
_ARN = re.compile(r"arn:[A-Za-z0-9-]+:[A-Za-z0-9-]+:[A-Za-z0-9-]*:[A-Za-z0-9-]*:[\x21-\x7e]+")
_STS_KEYS = ("endpoint_url", "role_arn", "duration_seconds", "web_identity")
_WEB_IDENTITIES = ("access_token",)
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")
# A user name kept as it is in an STS mount's prefix: what path_component keeps, plus
# upper case and ``@+=,`` (never ``-``, the escape character, or ``/``; no leading ``.``).
_PLAIN_KEY_NAME = re.compile(r"[A-Za-z0-9_@+=,][A-Za-z0-9_.@+=,]{0,119}")


def key_component(name: str) -> str:
    """A user name as one S3 key component that an S3 policy can name.

    With STS the S3 service's policy enforces ``prefix: "{username}/"``, written with the
    claim carrying the name (MinIO ``${jwt:...}``, AWS/Ceph condition keys), so the name
    must reach the key unchanged: ``alice@egi.eu`` stays ``alice@egi.eu``. A name with
    anything else (``/``, ``-``, spaces, non-ASCII, a leading ``.``) is escaped by
    `egi_hub.names.path_component`, whose results always hold a ``-``: they never meet a
    name kept as it is, so the mapping stays injective and never climbs out (``..``).
    """
    return name if _PLAIN_KEY_NAME.fullmatch(name) else path_component(name)


def _sts(value: Any, where: str, endpoint: str) -> dict[str, Any]:
    """``credentials.sts``: where the STS endpoint is and what to ask it."""
    sts = expect(value, dict, where, "{endpoint_url, role_arn, duration_seconds, web_identity}")
    extra = sorted(set(sts) - set(_STS_KEYS))
    if extra:
        raise TraitPathError(f"{where}.{extra[0]}", f"unknown key ({', '.join(_STS_KEYS)})")
    url = sts.get("endpoint_url", endpoint)
    url = check_https_url(url, f"{where}.endpoint_url", allow_http=True)
    parts = urlsplit(url)
    if parts.scheme != "https" and parts.hostname not in _LOOPBACK_HOSTS:
        raise TraitPathError(
            f"{where}.endpoint_url",
            f"the users' Check-in tokens are sent there: use https, not {url!r} (http is "
            "allowed on the loopback only); the mount's endpoint_url is the default",
        )
    role_arn = sts.get("role_arn", "")
    if role_arn != "" and not (
        isinstance(role_arn, str) and 20 <= len(role_arn) <= 2048 and _ARN.fullmatch(role_arn)
    ):
        raise TraitPathError(
            f"{where}.role_arn",
            f"not a role ARN such as arn:aws:iam::123456789012:role/notebooks: {role_arn!r}",
        )
    duration = sts.get("duration_seconds", 3600)
    if not isinstance(duration, int) or isinstance(duration, bool) or not 900 <= duration <= 43200:
        raise TraitPathError(
            f"{where}.duration_seconds",
            f"expected whole seconds from 900 to 43200 (AWS's bounds), got {duration!r}",
        )
    identity = sts.get("web_identity", "access_token")
    if identity not in _WEB_IDENTITIES:
        raise TraitPathError(
            f"{where}.web_identity",
            f"expected one of {', '.join(_WEB_IDENTITIES)} (the user's Check-in access "
            f"token), got {identity!r}",
        )
    return {
        "sts_endpoint_url": url,
        "sts_role_arn": role_arn,
        "sts_duration_seconds": duration,
        "sts_web_identity": identity,
    }


def _env_pair(value: Any, where: str) -> tuple[str, str]:
    """``{key: VAR, secret: VAR}``: the names of two of the hub's environment variables."""
    env = expect(value, dict, where, "{key: VARIABLE, secret: VARIABLE}")
    extra = set(env) - {"key", "secret"}
    if extra:
        raise TraitPathError(f"{where}.{sorted(extra)[0]}", "unknown key (key, secret)")
    names = []
    for part in ("key", "secret"):
        name = env.get(part)
        if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
            raise TraitPathError(
                f"{where}.{part}", f"expected the name of an environment variable, got {name!r}"
            )
        names.append(name)
    return names[0], names[1]


@register_kind
@dataclass(frozen=True)
class S3Mount(Mount):
    """One bucket (or a prefix inside it) on an S3-compatible endpoint."""

    kind: ClassVar[str] = "s3"
    templates: ClassVar[Mapping[str, str]] = {"bucket": "bucket", "prefix": "path"}

    endpoint_url: str = ""
    bucket: str = ""
    prefix: str = ""
    region: str = ""
    # credentials.from_env (site-wide key): the variables' names; empty with per_vo.
    key_env: str = ""
    secret_env: str = ""
    # credentials.per_vo: (VO, key variable, secret variable), in the site file's order.
    per_vo: tuple[tuple[str, str, str], ...] = ()
    # credentials.sts: the STS endpoint (empty: static keys), role, duration, token.
    sts_endpoint_url: str = ""
    sts_role_arn: str = ""
    sts_duration_seconds: int = 0
    sts_web_identity: str = ""

    @property
    def depends_on_vo(self) -> bool:
        """Templates with ``{vo}``, or per-VO keys (another VO: another key pair)."""
        return super().depends_on_vo or bool(self.per_vo)

    @property
    def uses_sts(self) -> bool:
        """Whether users get temporary credentials from an STS endpoint (not static keys)."""
        return bool(self.sts_endpoint_url)

    @classmethod
    def own_keys(cls) -> tuple[str, ...]:
        return ("endpoint_url", "bucket", "prefix", "region", "credentials")

    def env_names(self, vo: str | None) -> tuple[str, str] | None:
        """The variables holding the key for a server charged to ``vo`` (None: no key)."""
        if not self.per_vo:
            return self.key_env, self.secret_env
        for name, key_env, secret_env in self.per_vo:
            if name == vo:
                return key_env, secret_env
        return None

    def key_variables(self) -> list[tuple[str, str, str]]:
        """(site-file key below ``credentials``, part, variable) for each variable named."""
        if self.uses_sts:
            return []
        if not self.per_vo:
            return [
                ("from_env.key", "key", self.key_env),
                ("from_env.secret", "secret", self.secret_env),
            ]
        out = []
        for vo, key_env, secret_env in self.per_vo:
            out.append((f"per_vo.{vo}.key", "key", key_env))
            out.append((f"per_vo.{vo}.secret", "secret", secret_env))
        return out

    def resolve(self, context: UserContext, charged_vo: str | None) -> ResolvedMount | None:
        """As every mount, but with STS ``{username}`` in ``prefix`` is `key_component`
        (the name as the S3 service's policy sees it), not the file-path escaping."""
        entry = super().resolve(context, charged_vo)
        if entry is None or not self.uses_sts or "username" not in check_template(self.prefix):
            return entry
        values = {
            "username": key_component(context.username),
            "vo": escape(entry.vo, "path") if entry.vo else "",
        }
        fields = check_template(self.prefix)
        prefix = self.prefix.format(**{name: values[name] for name in fields})
        return ResolvedMount(
            mount=self,
            username=entry.username,
            vo=entry.vo,
            settings={**entry.settings, "prefix": prefix},
        )

    def vo_for(self, context: UserContext, charged_vo: str | None) -> tuple[bool, str | None]:
        """With per-VO keys, only a VO that has a key counts (the charged one first)."""
        if not self.per_vo:
            return super().vo_for(context, charged_vo)
        keyed = {vo for vo, _, _ in self.per_vo}
        candidates = [vo for vo in context.vos if vo in keyed]
        if self.vos:
            candidates = [
                vo
                for vo in candidates
                if any(rule.vo == vo and context.matches(rule) for rule in self.vos)
            ]
        if not candidates:
            return False, None
        return True, charged_vo if charged_vo in candidates else candidates[0]

    @classmethod
    def parse_fields(cls, data: Mapping[str, Any], where: str) -> dict[str, Any]:
        # http is allowed for endpoints on the site's own network (and test servers).
        endpoint = check_https_url(
            data.get("endpoint_url"), f"{where}.endpoint_url", allow_http=True
        )
        bucket = check_template_value(data.get("bucket"), f"{where}.bucket", "a bucket name")
        if not _BUCKET.fullmatch(bucket):
            raise TraitPathError(
                f"{where}.bucket", f"not an S3 bucket name (a-z, 0-9, '.', '-'): {bucket!r}"
            )
        prefix = data.get("prefix", "")
        if prefix:
            prefix = check_template_value(prefix, f"{where}.prefix", "a key prefix")
            parts = prefix.rstrip("/").split("/")
            if prefix.startswith("/") or any(p in ("", ".", "..") for p in parts):
                raise TraitPathError(f"{where}.prefix", f"not a relative key prefix: {prefix!r}")
        region = data.get("region", "")
        if region and not (isinstance(region, str) and _REGION.fullmatch(region)):
            raise TraitPathError(f"{where}.region", f"not a region name: {region!r}")
        creds = expect(
            data.get("credentials"),
            dict,
            f"{where}.credentials",
            "{from_env: ...}, {per_vo: ...} or {sts: ...}",
        )
        if len(creds) != 1 or next(iter(creds)) not in ("from_env", "per_vo", "sts"):
            raise TraitPathError(
                f"{where}.credentials",
                "expected exactly one key: from_env (one site-wide key), per_vo (a key per "
                "VO) or sts (per-user credentials from the S3 service's STS endpoint)",
            )
        key_env = secret_env = ""
        per_vo: list[tuple[str, str, str]] = []
        sts: dict[str, Any] = {}
        if "sts" in creds:
            sts = _sts(creds["sts"], f"{where}.credentials.sts", endpoint)
        elif "from_env" in creds:
            key_env, secret_env = _env_pair(creds["from_env"], f"{where}.credentials.from_env")
        else:
            table = expect(
                creds["per_vo"], dict, f"{where}.credentials.per_vo", "{<VO>: {key, secret}}"
            )
            if not table:
                raise TraitPathError(f"{where}.credentials.per_vo", "no VO: name at least one")
            for vo, pair in table.items():
                if not isinstance(vo, str) or not _VO_NAME.fullmatch(vo):
                    raise TraitPathError(f"{where}.credentials.per_vo", f"not a VO name: {vo!r}")
                per_vo.append((vo, *_env_pair(pair, f"{where}.credentials.per_vo.{vo}")))
        if not sts:
            cls._check_isolation(where, bucket, prefix, per_vo, data.get("vos", []))
        return {
            **sts,
            "endpoint_url": endpoint,
            "bucket": bucket,
            "prefix": prefix,
            "region": region,
            "key_env": key_env,
            "secret_env": secret_env,
            "per_vo": tuple(per_vo),
        }

    @staticmethod
    def _check_isolation(
        where: str, bucket: str, prefix: str, per_vo: list[tuple[str, str, str]], vos: Any
    ) -> None:
        """Refuse templates that promise a separation the static keys cannot enforce."""
        for key, template in (("bucket", bucket), ("prefix", prefix)):
            used = check_template(template) if template else ()
            if "username" in used:
                raise TraitPathError(
                    f"{where}.{key}",
                    "{username} cannot be used with static S3 keys: every user of the mount "
                    "gets the same key, which opens every other user's "
                    f"{'bucket' if key == 'bucket' else 'prefix'} too; per-user isolation "
                    "needs credentials.sts (the S3 service's STS), else use {vo} with "
                    "credentials.per_vo, or a fixed value",
                )
            if "vo" in used and not per_vo:
                raise TraitPathError(
                    f"{where}.{key}",
                    "{vo} needs a key per VO (credentials.per_vo): with the one site-wide key "
                    "of credentials.from_env every VO's users could open every other VO's "
                    f"{'bucket' if key == 'bucket' else 'prefix'}",
                )
        if per_vo and isinstance(vos, list):
            keyed = {vo for vo, _, _ in per_vo}
            for i, rule in enumerate(vos):
                name = parse_rule(rule).vo  # parsed (and checked) with the common keys
                if name not in keyed:
                    raise TraitPathError(
                        f"{where}.vos[{i}]",
                        f"VO {name!r} has no key in credentials.per_vo: its users would get "
                        "nothing (add its key, or drop the rule)",
                    )
