"""Anonymous Binder: a visitor with no account launches a link as a temporary guest.

Hub side (the guest page is the hub's, served by egi-hub's authenticators through
`guest_handlers`). A visitor who is not logged in and opens a Binder link is sent by
the Binder service to ``/hub/binder-guest``: the page says what a guest gets, and its
button makes a new hub user (``guest--`` and 12 random hex digits), puts it in the
group ``binder-guests`` and logs the browser in as it with the hub's own cookie. From
there everything is as for any user: the service's hub OAuth login, the launch through
the hub API with the guest's own token, the quota policy (a guest is in no VO: its
session counts as a server not charged to a VO, under ``QuotaPolicy.default_limits``).

What a guest may not do, the spawner enforces (`is_guest`): start anything but a Binder
session (a launch ticket of the service), run more than one server, or get storage
mounts. A guest never gets a Check-in token (it has no ``auth_state``). When its session
has ended, the Binder service deletes the guest (``BinderService.guests``, see
`egi_hub.binder_service.guest_reaper`), and with it its files (``delete_forever``).

Why the hub's cookie and not a token in the session's URL (BinderHub's way): the guest
is then a hub user like any other, so the service, the spawner and the proxy need no
second path, and no credential ever travels in a URL. A guest account name never meets a
Check-in user's (`egi_hub.authenticator.usernames`: a name with ``--`` ends in 16 hex
digits there, in 12 here). A guest is both, its name and the group
(`egi_hub.context.is_guest`): the authenticators never give a user the guests' group
from a VO, and the service deletes no one else.
"""

from __future__ import annotations

import ipaddress
import secrets
from typing import Any

from jupyterhub import orm
from jupyterhub.handlers import BaseHandler
from tornado import web
from tornado.httputil import url_concat
from traitlets import Bool, Integer
from traitlets.config import SingletonConfigurable

from egi_hub.context import GUEST_GROUP, is_guest

__all__ = [
    "GUEST_GROUP",
    "BinderGuests",
    "GuestLoginHandler",
    "guest_handlers",
    "is_guest",
    "new_guest_name",
    "server_addresses",
    "visitor_address",
]

GUEST_PREFIX = "guest--"
GUEST_PAGE = "/binder-guest"


class BinderGuests(SingletonConfigurable):
    """Anonymous Binder: who may launch without an account, and how many at once."""

    enabled = Bool(
        False,
        help="""
        Let visitors with no account launch Binder links as temporary guests (a hub
        user made for the launch, deleted when its session has ended). A guest runs one
        Binder session, with no storage mounts and no Check-in token. Default: off
        (a Binder link asks for a login).
        """,
    ).tag(config=True)

    max_guests = Integer(
        20,
        min=1,
        help="""
        How many guest accounts may exist at once; a visitor beyond that is told to
        try again later or log in. Their sessions also count under
        ``QuotaPolicy.default_limits`` (servers not charged to a VO) and
        ``total_limits``.
        """,
    ).tag(config=True)

    max_guests_per_address = Integer(
        2,
        min=1,
        help="""
        How many guest accounts one client address may hold at once (an IPv6 address
        counts by its /64). Counted in the hub's memory: a hub restart forgets it.
        """,
    ).tag(config=True)

    trusted_proxies = Integer(
        1,
        min=0,
        help="""
        How many proxies in front of the hub add the address they saw to
        ``X-Forwarded-For``: the hub's own proxy (1, the local stack), plus one for
        each ingress or load balancer before it. The visitor's address is the entry
        that many places from the end (what a visitor writes in the header is before
        it, and ``X-Real-Ip`` is never read). 0: the address the hub's socket sees.
        """,
    ).tag(config=True)

    max_age = Integer(
        14400,
        min=60,
        help="""
        Seconds a guest may exist at most, active or not: then the Binder service
        stops its session and deletes it. Default: 4 hours.
        """,
    ).tag(config=True)

    grace = Integer(
        600,
        min=0,
        help="""
        Seconds a guest with no running server and no launch under way is kept before
        the Binder service deletes it (and its files): time to reach the launch page
        after making the account, or to come back to an ended session.
        """,
    ).tag(config=True)

    reap_interval = Integer(
        60,
        min=1,
        help="How often (seconds) the Binder service looks for guests to delete.",
    ).tag(config=True)


def new_guest_name() -> str:
    return GUEST_PREFIX + secrets.token_hex(6)


def client_address(forwarded: str, peer: str, trusted_proxies: int) -> str:
    """The visitor's address, for the per-address cap: from ``X-Forwarded-For``
    (``forwarded``, all its values joined), the entry ``trusted_proxies`` places from
    the end; ``peer`` (the socket's) when there are fewer or none. An IPv6 address
    counts by its /64 (one machine can hold a whole /64)."""
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    address = hops[-trusted_proxies] if 0 < trusted_proxies <= len(hops) else peer
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip)


def server_addresses(users: Any) -> set[str]:
    """The addresses of the hub's running servers (``spawner.server.ip``: a pod's IP
    on Kubernetes), for `visitor_address`; never a loopback or unspecified one (on one
    machine the servers and the proxy share 127.0.0.1, so it cannot tell them apart)."""
    found = set()
    for user in users:
        for spawner in getattr(user, "spawners", {}).values():
            server = getattr(spawner, "server", None)
            ip = str(getattr(server, "ip", "") or "") if server is not None else ""
            try:
                address = ipaddress.ip_address(ip)
            except ValueError:
                continue  # a name (a Service's), or none
            if not (address.is_loopback or address.is_unspecified):
                found.add(str(address))
    return found


def visitor_address(forwarded: str, peer: str, trusted_proxies: int, servers: set[str]) -> str:
    """`client_address`, except for a request whose socket comes from one of the hub's
    own servers (``servers``): a notebook reaches the hub's port directly (for its API),
    past the proxies, so what it writes in ``X-Forwarded-For`` is its own invention and
    it counts by its own address. The same for a notebook that goes through a proxy
    (CHP's port is open to the pods): an entry a trusted proxy appended that is a
    server's address counts, and whatever the header held before that hop is ignored."""
    if _normal(peer) in servers:
        return client_address("", peer, 0)
    hops = [h.strip() for h in forwarded.split(",") if h.strip()]
    for hop in reversed(hops[-trusted_proxies:] if trusted_proxies > 0 else []):
        if _normal(hop) in servers:
            return client_address("", hop, 0)
    return client_address(forwarded, peer, trusted_proxies)


def _normal(address: str) -> str:
    """An address as `server_addresses` writes it (an IPv4-mapped one as IPv4)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return str(ip)


class GuestLoginHandler(BaseHandler):
    """``/hub/binder-guest``: the page, and (POST) a new guest logged in."""

    _by_address: dict[str, set[str]] = {}  # address -> guests made for it (this process)

    @property
    def guests(self) -> BinderGuests:
        return BinderGuests.instance(config=self.settings["config"])

    def _next(self) -> str:
        return self.get_next_url(default=self.hub.base_url + "home")

    async def get(self) -> None:
        if not self.guests.enabled:
            raise web.HTTPError(404)
        if self.current_user is not None:
            self.redirect(self._next())
            return
        await self._page(self._full())

    async def _page(self, full: str | None) -> None:
        if full:
            self.set_status(503)
        login = url_concat(self.settings["login_url"], {"next": self._next()})
        html = await self.render_template(
            "binder_guest.html", next=self._next(), login_url=login, full=full
        )
        self.finish(html)

    async def post(self) -> None:
        if not self.guests.enabled:
            raise web.HTTPError(404)
        if self.current_user is not None:  # already someone: no second account
            self.redirect(self._next())
            return
        why = self._full()
        if why:
            await self._page(why)
            return
        name = new_guest_name()
        while self.find_user(name) is not None:
            name = new_guest_name()
        user = self.user_from_username(name)
        group = orm.Group.find(self.db, GUEST_GROUP)
        if group is None:
            group = orm.Group(name=GUEST_GROUP)
            self.db.add(group)
        user.orm_user.groups.append(group)
        self.db.commit()
        self._by_address.setdefault(self._address(), set()).add(name)
        self.log.info("Binder guest %s made for a visitor", name)
        self.set_login_cookie(user)
        self.redirect(self._next())

    def _address(self) -> str:
        forwarded = ",".join(self.request.headers.get_list("X-Forwarded-For"))
        # The socket's own peer: tornado's remote_ip may come from a visitor's X-Real-Ip.
        peer = getattr(self.request.connection.context, "address", None)
        peer_ip = str(peer[0] if isinstance(peer, tuple) and peer else "")
        servers = server_addresses(self.users.values())
        return visitor_address(forwarded, peer_ip, self.guests.trusted_proxies, servers)

    def _full(self) -> str | None:
        """Why no guest can be made now (None: one can)."""
        group = orm.Group.find(self.db, GUEST_GROUP)
        members = {u.name for u in group.users} if group is not None else set()
        for address in list(self._by_address):  # forget guests that are gone
            self._by_address[address] &= members
            if not self._by_address[address]:
                del self._by_address[address]
        if len(members) >= self.guests.max_guests:
            return "all guest places of this site are taken: try again later, or log in"
        mine = self._by_address.get(self._address(), set())
        if len(mine) >= self.guests.max_guests_per_address:
            return f"this address already has {len(mine)} guest sessions: end one, or log in"
        return None


def guest_handlers(app: Any) -> list[tuple[str, type]]:
    """The guest page, for an authenticator's ``get_handlers`` (none when guests are
    off: the page then does not exist)."""
    if not BinderGuests.instance(config=app.config).enabled:
        return []
    return [(GUEST_PAGE, GuestLoginHandler)]
