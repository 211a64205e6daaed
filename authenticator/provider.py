"""An OpenID provider seen from the hub: discovery document and signing keys, cached.

Discovery (``/.well-known/openid-configuration``) and the JWKS are fetched
asynchronously and kept for ``cache_ttl`` seconds. Any failure is an `OIDCError` that
says what went wrong: there is never a fallback to guessed endpoints (while the
provider cannot be reached, the last good document and keys serve a few seconds at a
time, and requests without them fail at once rather than queue). A token signed
with a key id the cache does not know makes the keys be fetched again: once for all
the requests waiting on it (single flight), and not more often than every few seconds,
so a flood of forged tokens with made-up key ids never floods the provider.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jwt

from .errors import OIDCError, ProviderError, ProviderUnreachableError
from .http import ProviderHTTP

__all__ = ["OIDCError", "OpenIDProvider", "ProviderUnreachableError", "SigningKey"]

# Asymmetric algorithms only: never "none", never HMAC (a public key is no secret).
KEY_REFETCH_GAP = 5.0  # seconds between two key-set fetches caused by unknown key ids
SIGNING_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384")


@dataclass(frozen=True)
class SigningKey:
    """A public key from the provider's key set, and the algorithm it is published for."""

    key: jwt.PyJWK
    alg: str | None


class OpenIDProvider:
    """Discovery and keys of one issuer, fetched lazily and cached with expiry."""

    def __init__(
        self,
        issuer: str,
        http: ProviderHTTP,
        *,
        cache_ttl: float = 3600,
        overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.http = http
        self.cache_ttl = cache_ttl
        self.overrides = {k: v for k, v in (overrides or {}).items() if v}
        self._metadata: dict[str, Any] | None = None
        self._metadata_expires = 0.0
        self._metadata_failed = float("-inf")
        self._keys: dict[str, SigningKey] = {}
        self._keys_expires = 0.0
        self._keys_fetched = float("-inf")
        self._keys_failed = float("-inf")  # when a key-set fetch last failed
        self._lock = asyncio.Lock()
        self._keys_lock = asyncio.Lock()

    @property
    def discovery_url(self) -> str:
        return f"{self.issuer}/.well-known/openid-configuration"

    async def metadata(self) -> dict[str, Any]:
        """The discovery document (with configured endpoint overrides applied).

        When a fetch fails, the last good document is used for a few more seconds
        (the provider's endpoints rarely move); without one, requests within a few
        seconds of the failure fail at once instead of each waiting for a time-out.
        """
        if self._metadata is not None and time.monotonic() < self._metadata_expires:
            return self._metadata
        async with self._lock:
            now = time.monotonic()
            if self._metadata is not None and now < self._metadata_expires:
                return self._metadata
            if self._metadata is None and now - self._metadata_failed < KEY_REFETCH_GAP:
                raise ProviderUnreachableError("the provider's discovery document is unavailable")
            try:
                data = await self._fetch_metadata()
            except ProviderError:
                if self._metadata is None:
                    self._metadata_failed = time.monotonic()
                    raise
                self._metadata_expires = time.monotonic() + KEY_REFETCH_GAP  # stale, briefly
                return self._metadata
            self._metadata = data
            self._metadata_expires = time.monotonic() + self.cache_ttl
            return data

    async def _fetch_metadata(self) -> dict[str, Any]:
        data = await self.http.call("GET", self.discovery_url, "discovery document")
        if str(data.get("issuer", "")).rstrip("/") != self.issuer:
            raise ProviderError(
                f"the discovery document at {self.discovery_url} names the issuer "
                f"{data.get('issuer')!r}, not the configured {self.issuer!r}"
            )
        data.update(self.overrides)
        for required in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
            if not data.get(required):
                raise ProviderError(f"the discovery document has no {required}")
        return data

    async def endpoint(self, name: str) -> str | None:
        """An endpoint URL from discovery (``token_endpoint``...), None if not offered."""
        return (await self.metadata()).get(name)

    async def _fetch_keys(self) -> None:
        url = await self.endpoint("jwks_uri")
        data = await self.http.call("GET", url, "key set")
        keys = {}
        for entry in data.get("keys", []):
            if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
                continue
            try:
                key = jwt.PyJWK(entry)
            except (jwt.PyJWKError, jwt.InvalidKeyError):
                continue  # a key type or algorithm this hub does not use
            keys[entry.get("kid", "")] = SigningKey(key, entry.get("alg"))
        self._keys = keys
        self._keys_fetched = time.monotonic()
        self._keys_expires = self._keys_fetched + self.cache_ttl

    def _must_fetch(self, kid: str) -> bool:
        now = time.monotonic()
        if now >= self._keys_expires:
            return True
        # The provider may have rotated its keys; a few seconds apart at most.
        return kid not in self._keys and now - self._keys_fetched > KEY_REFETCH_GAP

    async def signing_key(self, kid: str | None) -> SigningKey:
        """The public key with this key id; refetch the key set once if it is unknown."""
        kid = kid or ""
        if self._must_fetch(kid):
            async with self._keys_lock:
                # Whoever waited here while another request fetched sees its result.
                if self._must_fetch(kid):
                    if time.monotonic() - self._keys_failed < KEY_REFETCH_GAP:
                        # The fetch just failed: the waiters do not each try again.
                        raise ProviderUnreachableError("the provider's key set is unavailable")
                    try:
                        await self._fetch_keys()
                    except OIDCError:
                        self._keys_failed = time.monotonic()
                        if kid not in self._keys:
                            raise
                        # The cached key set still has this key: use it a little longer.
                        self._keys_expires = time.monotonic() + KEY_REFETCH_GAP
        try:
            return self._keys[kid]
        except KeyError:
            raise OIDCError(f"no signing key with id {kid!r} in the provider's key set") from None
