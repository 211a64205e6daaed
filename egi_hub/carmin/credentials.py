"""Where the platform URL and the user's credentials come from.

Why a module of its own: the order of the sources is part of the user's contract and the
key file is a secret on a shared disk. The URL: the argument, else ``$CARMIN_URL``, else
VIP's. The API key: the ``api_key`` argument, else the ``api_key_file`` argument, else
``$CARMIN_API_KEY``, else ``$VIP_API_KEY``, else the file ``$CARMIN_API_KEY_FILE`` or
``~/.egi/carmin_api_key`` when it exists. A key file must belong to the user and be
readable by nobody else (``chmod 600``): a group- or world-readable one is refused, the
key it holds is considered leaked. The key never appears in a message or a ``repr``.

A bearer token is sent only when asked (``token=`` a string, a callable returning one, or
``True`` for the user's Check-in token from `egi_hub.token.access_token`, read afresh for
each request since it rotates; ``$CARMIN_TOKEN=checkin`` asks the same): the Check-in
token must not go to a platform that has not said it accepts it.

Where credentials may go (`check_destination`): a key, a password or a token crosses plain
``http://`` only to this computer (loopback: a stand-in, a tunnel); the Check-in token,
which opens every EGI service to whoever holds it, goes only to ``https://`` origins on an
allow-list: VIP's, plus those a site or the user lists in ``$CARMIN_TOKEN_ORIGINS``
(comma- or space-separated ``https://host[:port]``). Anything else is refused in one line
before any request is made.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from egi_hub.carmin.errors import KEY_HINT, CarminError
from egi_hub.names import CONTROL

__all__ = [
    "DEFAULT_KEY_FILE",
    "TOKEN_ORIGINS_VARIABLE",
    "VIP_URL",
    "Credentials",
    "check_destination",
    "is_loopback",
    "origin_of",
    "platform_url",
    "read_key_file",
    "resolve_credentials",
]

VIP_URL = "https://vip.creatis.insa-lyon.fr/rest"
DEFAULT_KEY_FILE = "~/.egi/carmin_api_key"
MAX_KEY = 4096
TOKEN_ORIGINS_VARIABLE = "CARMIN_TOKEN_ORIGINS"

Origin = tuple[str, str, int | None]

TokenSource = str | Callable[[], str] | bool | None


def platform_url(url: str | None = None, environ: Mapping[str, str] = os.environ) -> str:
    """The platform's base URL (no trailing slash): argument, ``$CARMIN_URL``, VIP's."""
    chosen = (url or environ.get("CARMIN_URL") or VIP_URL).strip()
    if not chosen.startswith(("https://", "http://")) or CONTROL.search(chosen):
        raise CarminError(
            None, None, f"not a platform URL: {chosen[:100]!r}", "give an http(s):// URL"
        )
    return chosen.rstrip("/")


def _check_key(key: str, source: str) -> str:
    key = key.strip()
    if not key:
        raise CarminError(None, None, f"the API key from {source} is empty", KEY_HINT)
    if len(key) > MAX_KEY or CONTROL.search(key) or not key.isascii():
        raise CarminError(
            None, None, f"the API key from {source} is not a valid key (one line of ASCII)", ""
        )
    return key


def read_key_file(path: str | os.PathLike[str]) -> str:
    """The API key kept in ``path``; refused when others may read or change the file.

    The checks and the read are on one descriptor (opened ``O_NOFOLLOW|O_NONBLOCK``, so
    neither a link swapped in nor a FIFO can redirect or hang it), and at most
    `MAX_KEY` + 1 bytes are read."""
    where = Path(path).expanduser()
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(where, flags)
    except FileNotFoundError:
        raise CarminError(None, None, f"no API key file at {where}", KEY_HINT) from None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise CarminError(
                None, None, f"the API key file {where} is a link; refusing it"
            ) from None
        raise CarminError(
            None, None, f"cannot read the API key file {where}: {e.strerror}"
        ) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise CarminError(None, None, f"the API key file {where} is not a regular file")
    with os.fdopen(fd, "rb") as f:
        if hasattr(os, "getuid") and info.st_uid != os.getuid():
            raise CarminError(
                None,
                None,
                f"the API key file {where} belongs to another user",
                "use a file of your own",
            )
        if info.st_mode & 0o077:
            raise CarminError(
                None,
                None,
                f"the API key file {where} is readable or writable by others "
                f"(mode {stat.S_IMODE(info.st_mode):o}); refusing it",
                f"run: chmod 600 {where} (and get a new key if others could read it)",
            )
        try:
            data = f.read(MAX_KEY + 1)
            text = data.decode("utf-8")
        except (OSError, UnicodeDecodeError):
            raise CarminError(None, None, f"cannot read the API key file {where}") from None
    if len(data) > MAX_KEY:
        raise CarminError(
            None, None, f"the API key from the file {where} is not a valid key (too long)"
        )
    return _check_key(text, f"the file {where}")


@dataclass(frozen=True)
class Credentials:
    """An API key (and where it came from) and a bearer-token source; ``repr`` safe."""

    api_key: str | None = None
    source: str = ""
    token: TokenSource = None

    def __repr__(self) -> str:
        key = f"set (from {self.source})" if self.api_key else "none"
        bearer = (
            "none" if self.token in (None, False) else "checkin" if self.token is True else "set"
        )
        return f"Credentials(api_key={key}, token={bearer})"

    def bearer(self) -> str | None:
        """The bearer token to send now, or None (never raises: outside a notebook the
        Check-in token is simply absent and the platform's 401 says the rest)."""
        if self.token is None or self.token is False:
            return None
        if isinstance(self.token, str):
            return self.token or None
        try:
            if self.token is True:
                from egi_hub.token import access_token

                value = access_token()
            else:
                value = self.token()
        except Exception:  # not in a notebook, no token file, a failing callable
            return None
        value = (value or "").strip()
        return value if value and value.isascii() and not CONTROL.search(value) else None


def resolve_credentials(
    api_key: str | None = None,
    api_key_file: str | os.PathLike[str] | None = None,
    token: TokenSource = None,
    environ: Mapping[str, str] = os.environ,
) -> Credentials:
    """Find the API key and token source in the documented order (module docstring)."""
    if token is None and environ.get("CARMIN_TOKEN", "").strip().lower() == "checkin":
        token = True
    if api_key is not None:
        return Credentials(_check_key(api_key, "the api_key argument"), "argument", token)
    if api_key_file is not None:
        return Credentials(read_key_file(api_key_file), "api_key_file", token)
    for name in ("CARMIN_API_KEY", "VIP_API_KEY"):
        if environ.get(name, "").strip():
            return Credentials(_check_key(environ[name], f"${name}"), name, token)
    default = environ.get("CARMIN_API_KEY_FILE") or DEFAULT_KEY_FILE
    if environ.get("CARMIN_API_KEY_FILE") or Path(default).expanduser().exists():
        return Credentials(read_key_file(default), str(Path(default).expanduser()), token)
    return Credentials(None, "", token)


def origin_of(url: str) -> Origin:
    """(scheme, lower-case host, port) of ``url``, the default port filled in; a URL
    whose port cannot be read has the port None, one that cannot be read at all no
    scheme nor host (neither matches a real origin)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # "Invalid IPv6 URL"
        return "", "", None
    try:
        port = parts.port or {"http": 80, "https": 443}.get(parts.scheme)
    except ValueError:
        port = None
    return parts.scheme.lower(), (parts.hostname or "").lower(), port


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this computer (``localhost``, 127.0.0.0/8, ``::1``)."""
    host = host.lower().strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def token_origins(environ: Mapping[str, str] = os.environ) -> set[Origin]:
    """The https origins the Check-in token may go to: VIP's and
    ``$CARMIN_TOKEN_ORIGINS`` (entries not ``https://`` are ignored)."""
    listed = re.split(r"[\s,]+", environ.get(TOKEN_ORIGINS_VARIABLE, "").strip())
    return {origin_of(u) for u in (VIP_URL, *listed) if u.lower().startswith("https://")}


def check_destination(
    url: str,
    *,
    secret: bool,
    checkin: bool,
    environ: Mapping[str, str] = os.environ,
) -> None:
    """`CarminError` (one line) unless credentials may go to ``url``: a ``secret`` (a key,
    a password, any token) over http only to loopback, the ``checkin`` token only to an
    allowed https origin (see the module docstring)."""
    scheme, host, port = origin_of(url)
    if (secret or checkin) and scheme != "https" and not is_loopback(host):
        raise CarminError(
            None,
            None,
            f"not sending credentials over plain http to {host or url[:80]!r}",
            "use the platform's https:// address in CARMIN_URL",
        )
    if checkin and (scheme, host, port) not in token_origins(environ):
        where = f"{scheme}://{host}" + (f":{port}" if port not in (80, 443, None) else "")
        raise CarminError(
            None,
            None,
            f"not sending your Check-in token to {where}: not a platform known to accept it",
            f"if it does, add it to ${TOKEN_ORIGINS_VARIABLE} (https only)",
        )
