"""S3 buckets: per-VO buckets with keys the site keeps in its secrets.

    - {name: scratch, kind: s3, endpoint_url: https://s3.example.org,
       bucket: "{vo}-scratch", path: /s3/scratch,
       credentials: {per_vo: {vo.access.egi.eu: {key: S3_KEY_ACCESS, secret: S3_SECRET_ACCESS},
                              vo.notebooks.egi.eu: {key: S3_KEY_NB, secret: S3_SECRET_NB}}}}
    - {name: public, kind: s3, endpoint_url: https://s3.example.org, bucket: public-data,
       read_only: true, credentials: {from_env: {key: S3_KEY, secret: S3_SECRET}},
       vos: [vo.access.egi.eu], path: /s3/public}

The keys are *static*: the S3 server, not the hub, decides what a key may touch. So a
mount's isolation is exactly what its keys give, and the check refuses templates that
would promise more:

- ``credentials.from_env`` names one site-wide pair of the hub's environment variables
  (on Kubernetes, filled from a Secret): everyone who gets the mount gets that key. Its
  ``bucket`` and ``prefix`` cannot use ``{vo}`` or ``{username}`` (each VO, or user,
  would see its own folder in the file browser yet hold a key that opens all the others').
- ``credentials.per_vo`` maps each VO to its own pair of variables: a user gets the key
  of the VO their server is charged to (or the first of their VOs that has one), and
  nothing without one. ``bucket``/``prefix`` may use ``{vo}``; the site gives each VO's
  key access to that VO's bucket or prefix only.
- ``{username}`` is refused with either: no static key can keep one user out of another
  user's prefix. Per-user isolation needs STS (``AssumeRoleWithWebIdentity``), not built
  yet.

The values are read when the hub starts and a missing one stops it, naming the variable.
In ``bucket`` ``{vo}`` is escaped into S3's bucket-name characters, in ``prefix`` into one
path component (`egi_hub.storage_mounts.templates`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from egi_hub.config import TraitPathError, expect
from egi_hub.context import UserContext
from egi_hub.vo import parse_rule

from .mounts import Mount, check_https_url, check_template_value, register_kind
from .templates import check_template

__all__ = ["S3Mount"]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BUCKET = re.compile(r"[a-z0-9{][a-z0-9.{}_-]*[a-z0-9}]")
_REGION = re.compile(r"[a-z0-9-]{1,40}")
# A VO name as entitlements carry it (the per_vo map's keys).
_VO_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}")


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
            "{from_env: ...} or {per_vo: ...}",
        )
        if len(creds) != 1 or next(iter(creds)) not in ("from_env", "per_vo"):
            raise TraitPathError(
                f"{where}.credentials",
                "expected exactly one key: from_env (one site-wide key) or per_vo (a key per VO)",
            )
        key_env = secret_env = ""
        per_vo: list[tuple[str, str, str]] = []
        if "from_env" in creds:
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
        cls._check_isolation(where, bucket, prefix, per_vo, data.get("vos", []))
        return {
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
                    f"{'bucket' if key == 'bucket' else 'prefix'} too (per-user isolation "
                    "needs STS, not available yet); use {vo} with credentials.per_vo, or a "
                    "fixed value",
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
