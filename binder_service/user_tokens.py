"""`UserTokens`: the access tokens users give for their private repositories, in memory.

A user who launches a private repository gives the service their own token for that
repository's git server (``github.com``, ``gitlab.com``, a site's own GitLab). The
service keeps it only as long as it must, and only where it must:

- **Kept in memory**, per (hub user, https origin), for `ttl` seconds after it was given
  (a service restart forgets every token; the user gives it again). It is never logged,
  never put in a URL, an event, a build record or an error: `UserTokens` has no way to
  list tokens, only origins and expiry times, and its ``repr`` holds none. It touches a
  disk only while git uses it: git reads it from a 0600 file in a 0700 folder under the
  service's ``<data_dir>/tmp``, for the duration of one ``ls-remote`` or clone, removed
  right after (and, after a crash, when the service starts again); on the kubernetes
  builder it is in a Secret of the build pod while that build runs.
- **Checked on the way in** (`check_token`, `check_origin`): a token is a short run of
  printable ASCII (what GitHub and GitLab issue); an origin is a plain DNS name or IPv4
  address with an optional port (``git.example.org:8443``; 443, https' own, is left
  out), lower case, without a trailing dot, so nothing odd reaches a header, git's
  credential helper or a log line.
- **Used for its own user and origin only**: `get(user, origin)`; a launch of another
  user, or of another origin (another host, or another port of the same host), never
  sees it. `token_origin` and `origin_of_url` say which origin a spec's content, or a
  clone URL, comes from: only ``https`` URLs have one (a token never travels in clear).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from .specs import RepoSpec

__all__ = [
    "MAX_TOKEN",
    "BadToken",
    "UserTokens",
    "check_origin",
    "check_token",
    "origin_of_url",
    "token_origin",
]

MAX_TOKEN = 512  # GitHub's tokens are 40-93 characters, GitLab's about 26
MAX_HOSTS_PER_USER = 20
HTTPS_PORT = 443
_TOKEN = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")
_PORT = re.compile(r"[0-9]{1,5}")


class BadToken(ValueError):
    """A token or origin refused; ``str()`` is the one-line reason (it never quotes a token)."""


def check_token(token: object) -> str:
    """``token`` if it can be an access token (see the module); else `BadToken`."""
    if not isinstance(token, str) or not token:
        raise BadToken("give the token as a non-empty string")
    if len(token) > MAX_TOKEN:
        raise BadToken(f"a token is at most {MAX_TOKEN} characters")
    if not _TOKEN.fullmatch(token):
        raise BadToken("a token holds printable ASCII characters only (no spaces)")
    return token


def _origin(host: str, port: int | None) -> str:
    """``host[:port]`` in its one spelling (see `check_origin`); `BadToken` if it is not one."""
    bad = BadToken(
        "not a host name with an optional port (such as github.com or git.example.org:8443)"
    )
    host = host.lower()
    if host.endswith("."):
        host = host[:-1]
    if not 0 < len(host) <= 253 or not host.isascii():
        raise bad
    if not all(_LABEL.fullmatch(label) for label in host.split(".")):
        raise bad
    if port is None or port == HTTPS_PORT:
        return host
    if not 0 < port < 65536:
        raise bad
    return f"{host}:{port}"


def check_origin(origin: object) -> str:
    """The https origin ``origin`` names, as ``host`` or ``host:port``: lower case, no
    trailing dot, no port when it is 443 (``GitHub.com.:443`` -> ``github.com``); else
    `BadToken` (a path, credentials, ``..``, an IPv6 address, a port out of range)."""
    bad = BadToken(
        "not a host name with an optional port (such as github.com or git.example.org:8443)"
    )
    if not isinstance(origin, str) or not 0 < len(origin) <= 260 or not origin.isascii():
        raise bad
    host, colon, port = origin.partition(":")
    if colon and not _PORT.fullmatch(port):
        raise bad
    return _origin(host, int(port) if colon else None)


def origin_of_url(url: str) -> str | None:
    """The origin (`check_origin`'s form) of an ``https`` URL, or None: any other scheme
    (a token is never sent in clear), credentials in it, or no usable host."""
    try:
        parts = urlsplit(url)
        if parts.scheme.lower() != "https" or parts.username or parts.password:
            return None
        return _origin(parts.hostname or "", parts.port)
    except (ValueError, BadToken):
        return None


def token_origin(spec: RepoSpec, *, github_url: str, gitlab_url: str) -> str | None:
    """The https origin a spec's content is fetched from (``gh``: the site's GitHub,
    ``gl``: its GitLab, ``git``: the URL's), or None (records, or not over https)."""
    url = {"gh": github_url, "gl": gitlab_url, "git": spec.repo}.get(spec.provider)
    return None if url is None else origin_of_url(url)


@dataclass
class _Held:
    token: str
    expires: float  # wall-clock seconds (the API shows them)

    def __repr__(self) -> str:  # never the token
        return f"_Held(expires={self.expires})"


class UserTokens:
    """Tokens by (user, origin), each for `ttl` seconds (see the module). Every access
    first drops the expired tokens of all users (a handful per user: cheap)."""

    def __init__(self, ttl: float, clock: Callable[[], float] = time.time) -> None:
        self.ttl = ttl
        self.clock = clock
        self._held: dict[str, dict[str, _Held]] = {}

    def __repr__(self) -> str:
        return f"UserTokens({len(self._held)} users)"

    def _purge(self) -> None:
        now = self.clock()
        for user in list(self._held):
            hosts = self._held[user]
            for host in [h for h, held in hosts.items() if held.expires <= now]:
                del hosts[host]
            if not hosts:
                del self._held[user]

    def put(self, user: str, host: str, token: str) -> float:
        """Keep ``token`` for ``user`` at the origin ``host`` (``host[:port]``, replacing
        one given before); when it expires (wall-clock seconds). `BadToken` for a bad
        origin or token, or too many origins for one user."""
        host, token = check_origin(host), check_token(token)
        self._purge()
        mine = self._held.setdefault(user, {})
        if host not in mine and len(mine) >= MAX_HOSTS_PER_USER:
            raise BadToken(f"you already keep tokens for {MAX_HOSTS_PER_USER} hosts: remove one")
        expires = self.clock() + self.ttl
        mine[host] = _Held(token, expires)
        return expires

    def get(self, user: str, host: str) -> str | None:
        """``user``'s token for the origin ``host`` (`check_origin`'s form), or None
        (none given, or expired)."""
        self._purge()
        held = self._held.get(user, {}).get(host)
        return None if held is None else held.token

    def delete(self, user: str, host: str) -> bool:
        """Forget ``user``'s token for the origin ``host``; whether there was one."""
        self._purge()
        mine = self._held.get(user, {})
        found = mine.pop(host, None) is not None
        if not mine:
            self._held.pop(user, None)
        return found

    def hosts(self, user: str) -> list[dict[str, float | str]]:
        """``user``'s origins with a token (as ``host``), and when each expires: never
        the tokens."""
        self._purge()
        mine = self._held.get(user, {})
        return [{"host": h, "expires": mine[h].expires} for h in sorted(mine)]
