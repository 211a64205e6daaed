"""`UserTokens`: the access tokens users give for their private repositories, in memory.

A user who launches a private repository gives the service their own token for that
repository's git host (``github.com``, ``gitlab.com``, a site's own GitLab). The
service keeps it only as long as it must, and only where it must:

- **In memory only**, per (hub user, host), for `ttl` seconds after it was given (a
  service restart forgets every token; the user gives it again). Never written to disk,
  never logged, never put in a URL, an event, a build record or an error: `UserTokens`
  has no way to list tokens, only hosts and expiry times, and its ``repr`` holds none.
- **Checked on the way in** (`check_token`, `check_host`): a token is a short run of
  printable ASCII (what GitHub and GitLab issue), a host a plain DNS name or IPv4
  address (lower case, no port, no path), so nothing odd reaches a header, git's
  credential helper or a log line.
- **Used for its own user and host only**: `get(user, host)`; a launch of another user,
  or of another host, never sees it (`token_host` says which host a spec's content comes
  from).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from .specs import RepoSpec

__all__ = ["MAX_TOKEN", "BadToken", "UserTokens", "check_host", "check_token", "token_host"]

MAX_TOKEN = 512  # GitHub's tokens are 40-93 characters, GitLab's about 26
MAX_HOSTS_PER_USER = 20
_TOKEN = re.compile(r"[\x21-\x7e]+")  # printable ASCII, no space
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


class BadToken(ValueError):
    """A token or host refused; ``str()`` is the one-line reason (it never quotes a token)."""


def check_token(token: object) -> str:
    """``token`` if it can be an access token (see the module); else `BadToken`."""
    if not isinstance(token, str) or not token:
        raise BadToken("give the token as a non-empty string")
    if len(token) > MAX_TOKEN:
        raise BadToken(f"a token is at most {MAX_TOKEN} characters")
    if not _TOKEN.fullmatch(token):
        raise BadToken("a token holds printable ASCII characters only (no spaces)")
    return token


def check_host(host: object) -> str:
    """``host`` in lower case if it is a plain host name or IPv4 address (no port, no
    trailing dot, no ``..``); else `BadToken`."""
    bad = BadToken("not a host name (such as github.com or gitlab.example.org)")
    if not isinstance(host, str) or not 0 < len(host) <= 253 or not host.isascii():
        raise bad
    host = host.lower()
    if not all(_LABEL.fullmatch(label) for label in host.split(".")):
        raise bad
    return host


def token_host(spec: RepoSpec, *, github_url: str, gitlab_url: str) -> str | None:
    """The git host a spec's content is fetched from (``gh``: the site's GitHub, ``gl``:
    its GitLab, ``git``: the URL's host), or None (records, or no usable host)."""
    url = {"gh": github_url, "gl": gitlab_url, "git": spec.repo}.get(spec.provider)
    if url is None:
        return None
    try:
        host = (urlsplit(url).hostname or "").rstrip(".")
        return check_host(host)
    except (ValueError, BadToken):
        return None


@dataclass
class _Held:
    token: str
    expires: float  # wall-clock seconds (the API shows them)

    def __repr__(self) -> str:  # never the token
        return f"_Held(expires={self.expires})"


class UserTokens:
    """Tokens by (user, host), each for `ttl` seconds (see the module)."""

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
        """Keep ``token`` for ``user`` at ``host`` (replacing one given before); when it
        expires (wall-clock seconds). `BadToken` for a bad host or token, or too many
        hosts for one user."""
        host, token = check_host(host), check_token(token)
        self._purge()
        mine = self._held.setdefault(user, {})
        if host not in mine and len(mine) >= MAX_HOSTS_PER_USER:
            raise BadToken(f"you already keep tokens for {MAX_HOSTS_PER_USER} hosts: remove one")
        expires = self.clock() + self.ttl
        mine[host] = _Held(token, expires)
        return expires

    def get(self, user: str, host: str) -> str | None:
        """``user``'s token for ``host``, or None (none given, or expired)."""
        held = self._held.get(user, {}).get(host)
        if held is None:
            return None
        if held.expires <= self.clock():
            self._purge()
            return None
        return held.token

    def delete(self, user: str, host: str) -> bool:
        """Forget ``user``'s token for ``host``; whether there was one."""
        self._purge()
        mine = self._held.get(user, {})
        found = mine.pop(host, None) is not None
        if not mine:
            self._held.pop(user, None)
        return found

    def hosts(self, user: str) -> list[dict[str, float | str]]:
        """``user``'s hosts with a token, and when each expires: never the tokens."""
        self._purge()
        mine = self._held.get(user, {})
        return [{"host": h, "expires": mine[h].expires} for h in sorted(mine)]
