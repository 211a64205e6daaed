"""Who may use the hub, who administers it, and which identity owns which account.

`VOAccessMixin` holds the VO rules of `CheckinAuthenticator` and applies them the same
way on every login, token exchange and token refresh:

- only entitlements from trusted URN namespaces and authorities count (by default
  EGI Check-in's own: ``mace:egi.eu`` from ``aai.egi.eu``), so another identity
  provider cannot assert membership of an EGI VO;
- ``admin_vos`` decide admin rights both ways: losing the role loses admin (unless the
  user is in ``admin_users``);
- a hub account belongs to the (issuer, subject) of its first login (kept in
  ``user_info``): another subject that maps to the same name is refused;
- a user who is no longer allowed loses tokens, sessions, API tokens, servers, groups
  and admin at once.

`vo_model` is the one place where a login, a refresh and a token exchange turn
verified claims into the user model JupyterHub stores.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any

from traitlets import List, Unicode, observe
from traitlets.config import LoggingConfigurable

from egi_hub.config import TraitPathError, describe, expect
from egi_hub.context import UserContext
from egi_hub.pages import SitePages
from egi_hub.traits import URLMap, VORuleList

from .errors import IdentityMismatchError, VORefusedError

__all__ = ["ANY", "TrustList", "VOAccessMixin"]

ANY = "*"
BINDING_CACHE_TTL = 300.0  # seconds a confirmed (username -> iss, sub) is trusted
BINDING_CACHE_SIZE = 10_000
SNAPSHOT_KEYS = ("entitlements", "entitlements_at", "iss", "sub")


class TrustList(List):
    """A non-empty list of trusted names; ``['*']`` (alone) trusts any.

    Empty is refused rather than read as "any": a site that wants to trust every
    namespace or authority says so.
    """

    info_text = "a non-empty list of names, or ['*']"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(Unicode(), **kwargs)

    def validate(self, obj: Any, value: Any) -> list[str]:
        values = expect(value, list | tuple, "", "a list")
        if not values:
            raise TraitPathError("", "empty: list the trusted values, or ['*'] to accept any")
        for i, item in enumerate(values):
            if not isinstance(item, str) or not item.strip():
                raise TraitPathError(f"[{i}]", f"expected a name, got {describe(item)}")
        if ANY in values and len(values) > 1:
            raise TraitPathError("", "'*' accepts any value and cannot be combined with others")
        return super().validate(obj, list(values))


class VOAccessMixin(LoggingConfigurable):
    """VO rules for logins and refreshes (mixed into `CheckinAuthenticator`)."""

    allowed_vos = VORuleList(
        help="VO rules (vo, vo/subgroup, vo:role=x): matching users may log in.",
    ).tag(config=True, allow_config=True)

    admin_vos = VORuleList(
        help="""
        VO rules whose members are hub admins. When set, admin rights follow them on
        every login and refresh (a user who loses the role loses admin), except for
        users in admin_users.
        """,
    ).tag(config=True)

    entitlement_namespaces = TrustList(
        default_value=["mace:egi.eu"],
        help="""
        Only entitlements in these URN namespaces count. Sites that also accept
        other communities widen it, e.g. [mace:egi.eu, geant:eduteams.org] for
        eduTEAMS; ['*'] accepts any namespace.
        """,
    ).tag(config=True)

    trusted_authorities = TrustList(
        default_value=["aai.egi.eu"],
        help="""
        Only entitlements from these authorities (the part after '#') count: by
        default EGI Check-in's. Widen it for the authorities your issuer really
        asserts (e.g. [aai.egi.eu, eduteams.org] for eduTEAMS, or the demo and
        development instances' own); ['*'] accepts any.
        """,
    ).tag(config=True)

    enrolment_urls = URLMap(
        help="""
        Deprecated: use ``SitePages.enrolment_urls``, the one list of enrolment pages
        that the login refusal, the spawn form and the quota refusals all read. Entries
        here still count, beneath SitePages' own (``https://`` or ``http://`` links).
        """,
    ).tag(config=True)

    @observe("enrolment_urls")
    def _warn_enrolment_urls(self, change: Any) -> None:
        if change["new"]:
            self.log.warning(
                "CheckinAuthenticator.enrolment_urls is deprecated: move it to "
                "SitePages.enrolment_urls (one list for every page that links enrolment)"
            )

    def enrolment_url(self, rule: object) -> str:
        """Where to enrol for a VO rule: SitePages' page for it, else this authenticator's
        deprecated entry, else SitePages' default (empty: no link)."""
        site = SitePages.instance(config=self.config)
        text, vo = str(rule), getattr(rule, "vo", None)
        if text not in site.enrolment_urls and vo not in site.enrolment_urls:
            legacy = self.enrolment_urls.get(text) or (vo and self.enrolment_urls.get(vo))
            if legacy:
                return legacy
        return site.enrolment_url(rule)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # username -> (iss, sub) of bindings this process has checked or made: a
        # repeated login of the same identity skips the database lookup.
        self._bound: OrderedDict[str, tuple[tuple[str, str], float]] = OrderedDict()
        self._stopping: set[asyncio.Future] = set()  # servers of refused users

    # --- VOs and admin ---------------------------------------------------------------

    def user_context(self, username: str, entitlements: Any) -> UserContext:
        """The user's VOs from raw entitlement values, trusted ones only."""
        if isinstance(entitlements, str):
            entitlements = [entitlements]
        namespaces = None if ANY in self.entitlement_namespaces else self.entitlement_namespaces
        authorities = None if ANY in self.trusted_authorities else self.trusted_authorities
        return UserContext.from_entitlements(
            username,
            entitlements if isinstance(entitlements, list) else [],
            namespaces=namespaces,
            authorities=authorities,
        )

    def admin_for(self, username: str, context: UserContext) -> bool | None:
        """Admin rights for this user: decided by admin_vos when set, else left alone."""
        if username in self.admin_users:
            return True
        if not self.admin_vos:
            return None  # JupyterHub keeps what it has (admin_users, the admin panel)
        return context.matches_any(self.admin_vos)

    def vo_model(
        self,
        username: str,
        context: UserContext,
        issuer: str,
        sub: str,
        auth_state: dict[str, Any],
        confirmed_at: float,
    ) -> dict[str, Any]:
        """The JupyterHub user model for verified claims: admin and groups from the
        VOs, the VOs (and when the provider confirmed them) and the subject added to
        ``auth_state``, and the identity binding as ``user_info``."""
        return {
            "name": username,
            "admin": self.admin_for(username, context),
            "groups": context.hub_groups,
            "auth_state": {
                **auth_state,
                "iss": issuer,
                "sub": sub,
                **context.to_auth_state(),
                "entitlements_at": confirmed_at,
            },
            "user_info": {"iss": issuer, "sub": sub},
        }

    def vo_allowed(self, context: UserContext) -> bool:
        """True when this user may use the hub: allow_all, allowed_users, allowed_vos."""
        if self.allow_all or context.username in self.allowed_users:
            return True
        return bool(self.allowed_vos) and context.matches_any(self.allowed_vos)

    def check_allowed(self, username: str, authentication: dict | None = None) -> bool:
        auth_state = (authentication or {}).get("auth_state") or {}
        if self.vo_allowed(UserContext.from_auth_state(username, auth_state)):
            return True
        if not self.allowed_vos:
            return False
        raise VORefusedError(username, self.allowed_vos, self.enrolment_url)

    # --- identity binding -------------------------------------------------------------

    async def check_identity(self, handler: Any, username: str, issuer: str, sub: str) -> None:
        """Refuse a login for an account that another (issuer, subject) owns.

        An account is bound by its first Check-in login, which stores ``iss`` and
        ``sub`` in the user's ``user_info`` (plain, not encrypted: read without a
        decryption on every login, and kept across logout and refusal); accounts from
        before that keep theirs in auth_state. A binding this process confirmed in the
        last `BINDING_CACHE_TTL` seconds is trusted when it matches; anything else
        asks the database, which decides.
        """
        now = time.monotonic()
        cached = self._bound.get(username)
        if cached is not None and cached[0] == (issuer, sub) and cached[1] > now:
            return
        user = handler.find_user(username)
        bound = (user.user_info if user is not None else None) or {}
        if user is not None and bound.get("sub") is None:
            bound = await user.get_auth_state() or {}  # bound before user_info was used
        # A first login of this name still under way (no account yet) holds the name:
        # two identities racing for one new account cannot both get it.
        if user is None and cached is not None and cached[1] > now:
            bound = {"iss": cached[0][0], "sub": cached[0][1]}
        # No user yet, or one created before any Check-in login: bound by this login.
        if bound.get("sub") is not None and (
            bound["sub"] != sub or bound.get("iss", issuer) != issuer
        ):
            self.log.warning(
                "Login refused: %s is bound to another identity than the one presented",
                username,
            )
            raise IdentityMismatchError(username)
        self._bound.pop(username, None)
        self._bound[username] = ((issuer, sub), now + BINDING_CACHE_TTL)
        while len(self._bound) > BINDING_CACHE_SIZE:
            self._bound.popitem(last=False)

    def delete_user(self, user: Any) -> None:
        self._bound.pop(user.name, None)
        super().delete_user(user)

    # --- sessions ending, access lost -------------------------------------------------

    @staticmethod
    def snapshot(auth_state: dict[str, Any] | None) -> dict[str, Any] | None:
        """What outlives a Check-in session: the VOs last confirmed and when, and the
        identity (``iss``, ``sub``) of accounts bound before ``user_info`` held it."""
        state = auth_state or {}
        kept = {k: state[k] for k in SNAPSHOT_KEYS if k in state}
        return kept or None

    async def end_session(self, user: Any, auth_state: dict[str, Any] | None) -> None:
        """The Check-in session is over (logout, revoked or expired grant): drop the
        tokens and end every browser session of the user; API tokens live on the
        `snapshot` for ``entitlements_max_age``."""
        await user.save_auth_state(self.snapshot(auth_state))
        _end_browser_sessions(user)
        user.db.commit()

    async def refuse_user(self, user: Any, why: str, handler: Any = None) -> None:
        """Take away what a user no longer allowed holds, at once.

        Their auth_state keeps only the refusal (the identity binding stays in
        ``user_info``); browser sessions end (a new cookie id); every hub API token
        is deleted but those of running servers, which are stopped (in the
        background, a starting one once it is up); admin and VO groups are removed.
        """
        self.log.warning("Refusing %s from now on: %s", user.name, why)
        state = await user.get_auth_state() or {}
        identity = {k: state[k] for k in ("iss", "sub") if k in state}  # for old accounts
        await user.save_auth_state({"refused": why, **identity})
        from jupyterhub import orm, roles

        orm_user, db = user.orm_user, user.db
        running = {name: sp for name, sp in user.spawners.items() if sp.active}
        # Running servers keep their own token until they are stopped (below), when it
        # is known (after a hub restart it is not, and goes too: the strict refresh
        # refuses it anyway). Token notes are the users' own words: never trusted.
        server_tokens = set()
        for spawner in running.values():
            found = orm.APIToken.find(db, spawner.api_token) if spawner.api_token else None
            if found is not None:
                server_tokens.add(found.id)
        for token in list(orm_user.api_tokens):
            if token.id not in server_tokens:
                db.delete(token)
        _end_browser_sessions(user)
        if self.manage_groups:
            user.sync_groups([])
        if orm_user.admin and user.name not in self.admin_users:
            orm_user.admin = False
            roles.assign_default_roles(db, entity=orm_user)
        db.commit()
        user._auth_refreshed = None  # the next request asks refresh_user again
        for name, spawner in running.items():
            if handler is None:
                self.log.warning("%s's server %r keeps running (no handler)", user.name, name)
                continue
            task = asyncio.ensure_future(self._stop_server(handler, user, name, spawner, why))
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    async def _stop_server(
        self, handler: Any, user: Any, name: str, spawner: Any, why: str
    ) -> None:
        """Stop a refused user's server; one still starting is stopped once it is up
        (JupyterHub refuses to stop a pending spawn)."""
        try:
            pending = getattr(spawner, "_spawn_future", None)
            if pending is not None and not pending.done():
                await asyncio.wait([pending])
            if spawner.active:
                self.log.info("Stopping %s's server %r: %s", user.name, name, why)
                await handler.stop_single_user(user, name)
        except Exception:
            self.log.exception("Could not stop %s's server %r after a refusal", user.name, name)


def _end_browser_sessions(user: Any) -> None:
    """A new cookie id: every browser session of the user ends (commit to apply)."""
    from jupyterhub.utils import new_token

    user.orm_user.cookie_id = new_token()
