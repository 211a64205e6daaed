"""Keeping a Check-in session alive: refresh tokens, and the VO rules applied again.

`RefreshMixin.refresh_user` is JupyterHub's hook, called before spawns, for the token
hand-off, and every ``auth_refresh_age`` seconds for browser and API requests. It
refreshes the access token when it is about to expire, under one lock per user
(concurrent requests make one grant), and saves the answer of the token endpoint at
once: with refresh-token rotation the old refresh token is dead as soon as the
provider answered, so nothing after that (a userinfo failure, say) may lose the new
one. Each call applies the VO rules again: admin follows ``admin_vos``, and a user no
longer allowed is refused.

A user without tokens to refresh (logged out, no refresh token, known from a token
exchange only) is judged, for API tokens only, on the VOs Check-in last confirmed, for
at most ``entitlements_max_age`` seconds: after that their API tokens stop working
until they log in (or exchange a token) again, so a role lost at Check-in cannot be
kept for ever by not logging in. The same bound holds when the provider cannot be
reached: VOs confirmed longer ago than that are not trusted. `CheckinAuthenticator`
sets JupyterHub's ``auth_refresh_strict``, so a refusal here holds for API tokens too,
not only for browser sessions.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from typing import Any

from traitlets import Integer
from traitlets.config import LoggingConfigurable

from egi_hub.context import UserContext, is_guest

from .errors import InvalidGrantError, OIDCError
from .tokens import finite_number, merge_userinfo

__all__ = ["RefreshMixin"]


class RefreshMixin(LoggingConfigurable):
    """Token refresh for `CheckinAuthenticator` (needs its token and userinfo calls)."""

    token_refresh_leeway = Integer(
        60,
        min=0,
        help="""
        Refresh the access token when it expires within this many seconds (at most
        half the token's lifetime, so short-lived tokens are not refreshed on every
        request).
        """,
    ).tag(config=True)

    entitlements_max_age = Integer(
        86400,
        min=60,
        help="""
        Seconds the VOs that Check-in last confirmed are trusted for a user who has
        no tokens to refresh (logged out, no refresh token, or known from the token
        exchange only). After that, their API tokens stop working until they log in
        or exchange a token again.
        """,
    ).tag(config=True)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # One lock per user while someone holds it; gone once nobody does.
        self._refresh_locks: weakref.WeakValueDictionary[str, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def needs_refresh(self, auth_state: dict[str, Any], now: float | None = None) -> bool:
        """True when the access token expires within the leeway (or its expiry is unknown).

        The leeway is at most half the token's lifetime, so that a fresh token is
        never considered expiring.
        """
        expires_at = auth_state.get("expires_at")
        if expires_at is None:
            return True
        now = time.time() if now is None else now
        leeway = self.token_refresh_leeway
        issued_at = auth_state.get("issued_at")
        if issued_at is not None:
            leeway = min(leeway, (expires_at - issued_at) / 2)
        return expires_at - now <= leeway

    def _lock_for(self, name: str) -> asyncio.Lock:
        lock = self._refresh_locks.get(name)
        if lock is None:
            lock = asyncio.Lock()
            self._refresh_locks[name] = lock
        return lock

    async def _apply_rules(
        self, user: Any, auth_state: dict[str, Any], handler: Any = None
    ) -> bool | dict[str, Any]:
        """The VO rules on stored entitlements: refuse, update admin, or nothing to do."""
        context = UserContext.from_auth_state(user.name, auth_state)
        if not self.vo_allowed(context):
            await self._refuse(user, auth_state, handler)
            return False
        admin = self.admin_for(user.name, context)
        if admin is None or admin == bool(user.admin):
            return True
        return {"name": user.name, "admin": admin, "groups": context.hub_groups}

    async def _refuse(self, user: Any, auth_state: dict[str, Any], handler: Any) -> None:
        await self.refuse_user(user, "no longer a member of an allowed VO", handler)
        # The grant is of no use to the hub any more: end it at Check-in too.
        await self.revoke_refresh_token(auth_state.get("refresh_token"))

    def _stale(self, auth_state: dict[str, Any]) -> bool:
        """True when Check-in last confirmed the user's VOs too long ago (or never)."""
        seen = finite_number(auth_state.get("entitlements_at"))
        return seen is None or time.time() - seen > self.entitlements_max_age

    def _session_alive(self, auth_state: dict[str, Any]) -> bool:
        """An access token that has not expired (a provider that gave no refresh token)."""
        expires_at = auth_state.get("expires_at")
        if not auth_state.get("access_token"):
            return False
        return not isinstance(expires_at, int | float) or expires_at > time.time()

    async def _without_refresh(
        self, user: Any, auth_state: dict[str, Any], handler: Any
    ) -> bool | dict[str, Any]:
        """No refresh token: logged out, known from the token exchange, or a provider
        that gives none. A live access token keeps the session; otherwise API tokens
        live on the VOs last confirmed, while recent, and browsers must log in."""
        if self._stale(auth_state):
            self.log.info("%s has no recent Check-in session: login needed", user.name)
            return False
        if not self._session_alive(auth_state) and not getattr(
            handler, "_token_authenticated", False
        ):
            return False  # a browser (or an unknown caller) without tokens: log in again
        return await self._apply_rules(user, auth_state, handler)

    @staticmethod
    def _has_tokens(auth_state: dict[str, Any]) -> bool:
        """A Check-in session with tokens to refresh (and not refused)."""
        return (
            not auth_state.get("refused")
            and bool(auth_state.get("access_token"))
            and bool(auth_state.get("refresh_token"))
        )

    def _refresh_due(self, auth_state: dict[str, Any]) -> bool:
        """Tokens to refresh, and time to: expiring, or VOs confirmed too long ago."""
        return self._has_tokens(auth_state) and (
            self.needs_refresh(auth_state) or self._stale(auth_state)
        )

    async def _as_it_stands(
        self, user: Any, auth_state: dict[str, Any], handler: Any
    ) -> bool | dict[str, Any]:
        """The answer without a refresh: refused, no tokens, or the rules on the VOs."""
        if auth_state.get("refused"):
            return False
        if not self._has_tokens(auth_state):
            return await self._without_refresh(user, auth_state, handler)
        return await self._apply_rules(user, auth_state, handler)

    async def refresh_user(self, user: Any, handler: Any = None) -> bool | dict[str, Any]:
        if is_guest(user):  # a Binder guest has no Check-in session to refresh: as it is
            return True
        auth_state = await user.get_auth_state() or {}
        if not self._refresh_due(auth_state):
            return await self._as_it_stands(user, auth_state, handler)
        async with self._lock_for(user.name):
            # Another request may have refreshed while this one waited: read again.
            auth_state = await user.get_auth_state() or {}
            if not self._refresh_due(auth_state):
                return await self._as_it_stands(user, auth_state, handler)
            return await self._refresh_tokens(user, auth_state, handler)

    async def _refresh_tokens(
        self, user: Any, auth_state: dict[str, Any], handler: Any = None
    ) -> bool | dict[str, Any]:
        try:
            tokens = await self.token_request(
                {"grant_type": "refresh_token", "refresh_token": auth_state["refresh_token"]}
            )
        except InvalidGrantError as e:
            # The Check-in session is over (revoked, expired): as after a logout.
            self.log.info("Refresh for %s refused (%s): login needed", user.name, e)
            await self.end_session(user, auth_state)
            return False
        except OIDCError as e:
            # Keep the session (the next request tries again), unless the VOs were
            # last confirmed too long ago: trust is bounded even during an outage.
            self.log.warning("Could not refresh %s's tokens: %s", user.name, e)
            return not self._stale(auth_state)
        # Saved before anything else can fail: the old refresh token is dead now.
        auth_state = {**auth_state, **self.token_fields(tokens, previous=auth_state)}
        await user.save_auth_state(auth_state)
        try:
            claims = merge_userinfo(
                {"sub": auth_state.get("sub")}, await self.userinfo(tokens["access_token"])
            )
        except OIDCError as e:
            self.log.warning("Refreshed %s's tokens, but not their VOs: %s", user.name, e)
            return not self._stale(auth_state)
        model = self.user_model(tokens, claims, previous=auth_state)
        if model["name"] != user.name:
            self.log.warning("Refresh for %s named another user: login needed", user.name)
            return False
        await user.save_auth_state(model["auth_state"])
        # The VO rules on what the provider just said (a refusal ends it all here).
        if await self._apply_rules(user, model["auth_state"], handler) is False:
            return False
        return model
