"""S3 buckets: per-VO (or per-user) buckets with keys the site keeps in its secrets.

    - {name: scratch, kind: s3, endpoint_url: https://s3.example.org,
       bucket: "{vo}-scratch", prefix: "{username}/",
       credentials: {from_env: {key: S3_KEY, secret: S3_SECRET}}, path: /s3/scratch}

``credentials.from_env`` names the hub's environment variables holding the access key
and secret (on Kubernetes, filled from a Secret); the values are read when the hub
starts and a missing one stops it, naming the variable. ``bucket`` and ``prefix`` may
use ``{vo}``/``{username}``: in ``bucket`` each is escaped into S3's bucket-name
characters; in ``prefix`` into one path component.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from egi_hub.config import TraitPathError, expect

from .mounts import Mount, check_https_url, check_template_value, register_kind

__all__ = ["S3Mount"]

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_BUCKET = re.compile(r"[a-z0-9{][a-z0-9.{}_-]*[a-z0-9}]")
_REGION = re.compile(r"[a-z0-9-]{1,40}")


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
    key_env: str = ""
    secret_env: str = ""

    @classmethod
    def own_keys(cls) -> tuple[str, ...]:
        return ("endpoint_url", "bucket", "prefix", "region", "credentials")

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
        creds = expect(data.get("credentials"), dict, f"{where}.credentials", "{from_env: {...}}")
        if set(creds) != {"from_env"}:
            raise TraitPathError(f"{where}.credentials", "expected exactly one key: from_env")
        env = expect(creds["from_env"], dict, f"{where}.credentials.from_env", "{key, secret}")
        names = {}
        for part in ("key", "secret"):
            value = env.get(part)
            if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
                raise TraitPathError(
                    f"{where}.credentials.from_env.{part}",
                    f"expected the name of an environment variable, got {value!r}",
                )
            names[part] = value
        extra = set(env) - {"key", "secret"}
        if extra:
            raise TraitPathError(
                f"{where}.credentials.from_env.{sorted(extra)[0]}", "unknown key (key, secret)"
            )
        return {
            "endpoint_url": endpoint,
            "bucket": bucket,
            "prefix": prefix,
            "region": region,
            "key_env": names["key"],
            "secret_env": names["secret"],
        }
