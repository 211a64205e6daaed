"""``datahub://<space>/<path>``: EGI DataHub (Onedata) spaces as an fsspec filesystem.

Why our own and not ``onedatarestfsspec``: that one creates files without
``update_existing`` and then writes with ``offset=0``, so a notebook cannot be saved a
second time (no truncation), and its ``ls`` reads one page of 1,000 entries. Here a write
is "create if missing, then ``PUT`` content without ``offset``", which Onedata documents
as truncate-and-write, and listings follow ``nextPageToken`` until ``isLast``.

The token is a Onedata REST access token. The notebook side gets it from a file that
the hub keeps current (``token_file``): the file is checked before every request, so a
renewed token is used without restarting anything. Spaces and the providers serving them
come from Onezone's ``infer_access_token_scope`` (no auth header; offline providers, ones
older than 21.02.1, and read-only supports for writes are skipped); without a Onezone
URL, a single ``provider_url`` is used for everything. Paths are checked before any
request: ``..``, ``.`` and control characters are refused, so a path never leaves the
space named in it.

What Onezone and the provider answer is hostile input too:

- ``spaces`` (a mount's filter, from the mounts document) keeps only the spaces named
  there, by the hub's one rule (`egi_hub.spaces`: an id, ``name@id``, or a name one
  space carries; a name several spaces carry shows none of them); with or without
  it, a space whose name could not be one folder (``/``, control characters, ``.``,
  ``..``, empty) is left out. Whatever is left out
  lists nowhere and every path into it (``name``, ``name@id``, as a ``mv``/``cp``
  destination) is ``ENOENT``;
- a provider's ``domain`` must be a DNS host name or an IP address, with an optional
  port, before the token is sent to ``https://<domain>``: anything with a scheme,
  userinfo, a path, query, fragment, whitespace or control characters would make the
  URL point elsewhere. Such a provider is skipped; if none is left the error names the
  space. (IP literals: a provider registered without a domain is reached by its
  address, and the test stand-in listens on 127.0.0.1. A literal is no riskier than a
  name, which may resolve to any address.) Redirects are never followed;
- a listing stops with an error after `MAX_ENTRIES` entries or `MAX_PAGES` pages, or
  when a provider sends a page token it sent before: a provider answering
  ``isLast: false`` for ever would otherwise keep ``ls`` (and the file browser) paging
  and growing without end;
- a child name in a listing with ``/``, NUL or other control characters, or one that is
  ``.``, ``..`` or empty, is skipped with a warning: it could otherwise be joined into a
  path that means another file (the rest of the listing still shows).

Notebook side only: this imports no hub code (tests/layering.py).
"""

from __future__ import annotations

import errno
import ipaddress
import json
import logging
import os
import re
import ssl
import threading
import time
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from egi_hub.names import CONTROL, CONTROL_CHARS
from egi_hub.spaces import AmbiguousSpaceName, match_spaces

SCOPE_TTL = 60.0  # seconds a scope answer is reused (Onedata's own client: 2 s)
PAGE = 1000  # Onedata's largest children page
MAX_ENTRIES = 100_000  # entries of one listing: a bigger folder is an error, not a hang
MAX_PAGES = 1_000  # pages of one listing (a provider may send short or empty pages)
MIN_PROVIDER = (21, 2, 1)
ATTRS = ["fileId", "name", "type", "size", "mtime", "posixPermissions"]
NAME_ONLY = ["name"]  # the attributes of a names-only listing (``ls(detail=False)``)

ERRNOS = {
    "enoent": (FileNotFoundError, errno.ENOENT),
    "eexist": (FileExistsError, errno.EEXIST),
    "eacces": (PermissionError, errno.EACCES),
    "eperm": (PermissionError, errno.EPERM),
    "enotdir": (NotADirectoryError, errno.ENOTDIR),
    "eisdir": (IsADirectoryError, errno.EISDIR),
    "enotempty": (OSError, errno.ENOTEMPTY),
    "exdev": (OSError, errno.EXDEV),
    "einval": (OSError, errno.EINVAL),
    "erofs": (OSError, errno.EROFS),
}


log = logging.getLogger(__name__)

_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
# '/' and the control characters (Unicode category Cc: C0, DEL, C1): one regex search,
# as `plain_name` runs for every entry of every listing (10,000 entries: 2 ms, not 13).
_NOT_IN_NAME = re.compile(f"[/{CONTROL_CHARS}]")
_KINDS = {"DIR": "directory", "REG": "file"}
_PORT = re.compile(r"[0-9]{1,5}")


class DatahubError(OSError):
    """DataHub answered something other than a POSIX error (auth, bad request, outage)."""


def plain_name(name: Any) -> bool:
    """Whether ``name`` (a space's or a child's, from the server) can be one folder or
    file: 1..255 characters, not ``.``/``..``, no ``/`` and no control characters
    (C0, DEL, C1), so joining it into a path can never mean another path."""
    if not isinstance(name, str) or not 0 < len(name) <= 255 or name in (".", ".."):
        return False
    return _NOT_IN_NAME.search(name) is None


_ODD_NAMES = frozenset({"", ".", ".."})
_CONTROL_CHAR = CONTROL  # `_NOT_IN_NAME` without the '/'


def _all_plain_names(children: list[Any]) -> list[str] | None:
    """The names of a page of children if every one is a `plain_name`, else None (then
    each is checked on its own). One pass in C over the joined names instead of a test
    per entry: the check was a fifth of a 10,000-entry listing's time."""
    try:
        names = [child["name"] for child in children]
    except (TypeError, KeyError):
        return None
    if not all(type(name) is str for name in names):
        return None
    joined = "/".join(names)
    if (
        joined.count("/") != max(len(names) - 1, 0)  # a '/' inside a name
        or _CONTROL_CHAR.search(joined)
        or not _ODD_NAMES.isdisjoint(names)
        or (names and max(map(len, names)) > 255)
    ):
        return None
    return names


def check_host(host: Any) -> str | None:
    """``host`` if it is a DNS host name or an IP address, with an optional ``:port``
    (IPv6 in brackets); else None. ASCII only (IDNs in their ``xn--`` form), so nothing
    is rewritten by IDNA on the way to the socket."""
    if not isinstance(host, str) or not host or len(host) > 261 or not host.isascii():
        return None
    name, port = host, None
    if host.startswith("["):
        name, sep, rest = host[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        port = rest[1:] if rest else None
        try:
            ipaddress.IPv6Address(name)
        except ValueError:
            return None
    else:
        if host.count(":") == 1:
            name, port = host.split(":")
        labels = name.removesuffix(".").split(".")
        if len(name) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
            return None
        if labels[-1].isdigit():  # 1.2.3.4, never 1.2.3 or 99999
            try:
                ipaddress.IPv4Address(name)
            except ValueError:
                return None
    if port is not None and not (_PORT.fullmatch(port) and 0 < int(port) < 65536):
        return None
    return host


def check_base_url(url: str, what: str) -> str:
    """An ``https://host[:port]`` base URL (optionally with a path) without userinfo,
    query or fragment; ValueError naming ``what`` otherwise."""
    parts = urlsplit(url)
    if (
        parts.scheme != "https"
        or "@" in parts.netloc
        or parts.query
        or parts.fragment
        or "?" in url
        or "#" in url
        or check_host(parts.netloc) is None
        or any(ord(ch) <= 32 or ord(ch) == 127 for ch in url)
    ):
        raise ValueError(f"DataHub {what} must be https://<host>[:port] (got {url[:200]!r})")
    return url.rstrip("/")


def _version(text: str) -> tuple[int, ...]:
    nums = []
    for part in text.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        nums.append(int(digits or 0))
    return tuple(nums)


def check_part(part: str, path: str) -> None:
    """Refuse a path element that could escape or confuse: ``..``, ``.``, control chars."""
    if part in ("..", "."):
        raise ValueError(f"DataHub path {path!r}: '{part}' elements are not allowed")
    if any(unicodedata.category(ch) == "Cc" for ch in part):
        raise ValueError(f"DataHub path {path!r}: control characters are not allowed")


class _Token:
    """The current token: a fixed string, or a file re-read whenever it changes."""

    def __init__(self, token: str | None, token_file: str | os.PathLike[str] | None) -> None:
        if (token is None) == (token_file is None):
            raise ValueError("DatahubFileSystem needs exactly one of token= or token_file=")
        self._fixed = token.strip() if token else None
        self._file = Path(token_file) if token_file is not None else None
        self._stamp: tuple[int, int] | None = None
        self._value: str | None = self._fixed
        self._lock = threading.Lock()

    def get(self) -> str:
        if self._file is None:
            assert self._value is not None
            return self._value
        with self._lock:
            try:
                st = self._file.stat()
            except OSError as e:
                raise PermissionError(
                    f"DataHub token file {self._file} cannot be read ({e.strerror}): "
                    "is the DataHub mount enabled for this server?"
                ) from None
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp != self._stamp:
                value = self._file.read_text().strip()
                if not value:
                    raise PermissionError(f"DataHub token file {self._file} is empty")
                self._value, self._stamp = value, stamp
            assert self._value is not None
            return self._value


#: This server's DataHub mount, for ``datahub://`` with no options (JSON: onezone_url,
#: token_file, spaces), exported by the mounts keeper (`egi_hub.singleuser.mounts`).
DEFAULTS_ENV = "EGI_DATAHUB_DEFAULTS"


def _server_defaults() -> dict[str, Any]:
    """`DEFAULTS_ENV`'s settings (only the keys it may hold), or nothing."""
    try:
        found = json.loads(os.environ.get(DEFAULTS_ENV) or "{}")
    except ValueError:
        return {}
    keys = ("onezone_url", "token_file", "spaces")
    return {k: found[k] for k in keys if isinstance(found, dict) and found.get(k)}


class DatahubFileSystem(AbstractFileSystem):
    """Onedata spaces over the Oneprovider REST API: ``datahub://<space>/<path>``.

    ``onezone_url`` (e.g. ``https://datahub.egi.eu``) or ``provider_url``; ``token`` or
    ``token_file``; ``verify``: True, False, or a CA bundle path; ``spaces``: only these
    spaces (names or ids; None: every space the token reaches). A space is named as
    ``<name>`` or, when two shown spaces share a name, ``<name>@<spaceId>``.

    With none of the addresses and tokens given (``fsspec.open("datahub://space/f")`` in a
    notebook), this server's DataHub mount is used (`DEFAULTS_ENV`): its Onezone, its
    token file (renewed by the hub) and its spaces. Given options never mix with it.
    """

    protocol = "datahub"
    root_marker = ""

    def __init__(
        self,
        onezone_url: str | None = None,
        token: str | None = None,
        token_file: str | os.PathLike[str] | None = None,
        provider_url: str | None = None,
        verify: bool | str = True,
        timeout: float = 60.0,
        spaces: Iterable[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not (onezone_url or provider_url or token or token_file):
            defaults = _server_defaults()
            onezone_url, token_file = defaults.get("onezone_url"), defaults.get("token_file")
            spaces = defaults.get("spaces") if spaces is None else spaces
        if not onezone_url and not provider_url:
            raise ValueError(
                "DatahubFileSystem needs onezone_url= or provider_url= "
                "(this server has no DataHub mount to take them from)"
            )
        self.onezone_url = check_base_url(onezone_url, "onezone_url") if onezone_url else None
        self.provider_url = check_base_url(provider_url, "provider_url") if provider_url else None
        if isinstance(spaces, str) or (
            spaces is not None and not all(isinstance(x, str) for x in spaces)
        ):
            raise ValueError("DatahubFileSystem: spaces= is a list of space names or ids")
        self.allowed = tuple(dict.fromkeys(spaces)) if spaces is not None else None
        self._token = _Token(token, token_file)
        tls: bool | ssl.SSLContext = verify
        if isinstance(verify, str):
            tls = ssl.create_default_context(cafile=verify)
        self._http = httpx.Client(verify=tls, timeout=timeout)
        self._scope: tuple[str, float, dict[str, Any]] | None = None
        self._scope_lock = threading.Lock()

    def __repr__(self) -> str:  # never the token
        return f"<DatahubFileSystem {self.onezone_url or self.provider_url}>"

    # --- HTTP and errors ------------------------------------------------------------------
    def _request(self, method: str, url: str, **kw: Any) -> httpx.Response:
        path = kw.pop("_path", url)
        headers = {"X-Auth-Token": self._token.get(), **kw.pop("headers", {})}
        try:
            r = self._http.request(method, url, headers=headers, **kw)
        except httpx.HTTPError as e:
            raise DatahubError(
                errno.EIO, f"DataHub {url.split('/api/')[0]} unreachable: {e}"
            ) from e
        if r.status_code >= 400:
            self._raise(r, path)
        return r

    @staticmethod
    def _raise(r: httpx.Response, path: str) -> None:
        try:
            error = r.json().get("error", {})
        except ValueError:
            error = {}
        details = error.get("details") if isinstance(error, dict) else None
        description = error.get("description", "") if isinstance(error, dict) else ""
        if isinstance(error, dict) and error.get("id") == "posix" and isinstance(details, dict):
            name = str(details.get("errno", ""))
            cls, code = ERRNOS.get(name, (OSError, errno.EIO))
            raise cls(code, f"DataHub: {os.strerror(code)} ({name})", path)
        if r.status_code == 401:
            raise PermissionError(
                errno.EACCES,
                "DataHub refused the access token (401: expired, revoked or not a REST "
                "token); a renewed token is picked up from the token file automatically",
                path,
            )
        if r.status_code == 403:
            raise PermissionError(errno.EACCES, f"DataHub: forbidden. {description}", path)
        what = error.get("id") if isinstance(error, dict) else None
        raise DatahubError(
            errno.EIO, f"DataHub answered {r.status_code} ({what or 'no error id'}) {description}"
        )

    # --- spaces and providers ---------------------------------------------------------
    def _scope_answer(self) -> dict[str, Any]:
        token = self._token.get()
        with self._scope_lock:
            if self._scope and self._scope[0] == token and self._scope[1] > time.monotonic():
                return self._scope[2]
        if self.onezone_url:
            url = f"{self.onezone_url}/api/v3/onezone/tokens/infer_access_token_scope"
            try:
                r = self._http.post(url, json={"token": token})
            except httpx.HTTPError as e:
                raise DatahubError(errno.EIO, f"Onezone {self.onezone_url} unreachable: {e}") from e
            if r.status_code >= 400:
                self._raise(r, "datahub://")
            scope = r.json()["dataAccessScope"]
        else:
            r = self._request("GET", f"{self.provider_url}/api/v3/oneprovider/spaces")
            spaces = {
                s["spaceId"]: {"name": s["name"], "supports": {"p": {"readonly": False}}}
                for s in r.json()
            }
            domain = self.provider_url.removeprefix("https://")  # type: ignore[union-attr]
            scope = {
                "readonly": False,
                "spaces": spaces,
                "providers": {"p": {"domain": domain, "version": "99", "online": True}},
            }
        with self._scope_lock:
            self._scope = (token, time.monotonic() + SCOPE_TTL, scope)
        return scope

    def _visible(self) -> dict[str, str]:
        """``{space id: name}`` of the spaces this filesystem shows: plain names only
        (see `plain_name`), and only those ``spaces`` names when it is set."""
        return self._filtered()[0]

    def _filtered(self) -> tuple[dict[str, str], list[str]]:
        """The shown spaces (`_visible`), and the bare names of the ``spaces`` filter
        that several spaces carry.

        The filter is matched by `egi_hub.spaces.match_spaces`, the rule the hub's token
        narrowing uses: an id names that space only, ``name@id`` that exact pair, a bare
        name the one space carrying it. A bare name several spaces carry shows *none* of
        them (a lookalike space could otherwise be read or written in place of the real
        one); a path naming it is ENOENT saying to write the id or ``name@id`` in the
        mount's filter. The other items of the filter still show their spaces.
        """
        names: dict[str, str | None] = {}
        for space_id, details in self._scope_answer()["spaces"].items():
            if isinstance(space_id, str):
                name = details.get("name") if isinstance(details, dict) else None
                names[space_id] = name if isinstance(name, str) else None
        ambiguous: list[str] = []
        if self.allowed is None:
            ids: Iterable[str] = names
        else:
            chosen: set[str] = set()
            for item in self.allowed:
                try:
                    chosen.update(match_spaces([item], names))
                except AmbiguousSpaceName:
                    ambiguous.append(item)
            ids = [i for i in names if i in chosen]
        shown = {}
        for space_id in ids:
            name = names[space_id]
            if plain_name(name):
                shown[space_id] = name
        return shown, ambiguous

    def _spaces(self) -> dict[str, str]:
        """``{name or name@id: space id}`` as users write them (of the shown spaces)."""
        shown = self._visible()
        counts: dict[str, int] = {}
        for name in shown.values():
            counts[name] = counts.get(name, 0) + 1
        return {
            (name if counts[name] == 1 else f"{name}@{space_id}"): space_id
            for space_id, name in shown.items()
        }

    def _space(self, spec: str, path: str) -> tuple[str, str]:
        """(space id, canonical ``name@id``) for the first element of a path; an unknown
        name asks Onezone again once (the user may have joined a space meanwhile)."""
        try:
            return self._find_space(spec, path)
        except FileNotFoundError:
            with self._scope_lock:
                self._scope = None
            return self._find_space(spec, path)

    def _find_space(self, spec: str, path: str) -> tuple[str, str]:
        """Only a shown space is found: a filtered-out or oddly named one is ENOENT, by
        its name and by ``name@id`` alike."""
        shown = self._visible()
        named = self._spaces()
        if spec in named:
            return named[spec], f"{shown[named[spec]]}@{named[spec]}"
        name, _, wanted = spec.rpartition("@")
        if name and shown.get(wanted) == name:
            return wanted, spec
        if any(n == spec for n in shown.values()):
            raise FileNotFoundError(
                errno.ENOENT,
                f"DataHub: several spaces are named '{spec}', "
                f"write <name>@<spaceId>: {sorted(named)}",
                path,
            )
        base = spec.rpartition("@")[0] or spec
        if self.allowed is not None and any(a in (spec, base) for a in self._filtered()[1]):
            raise FileNotFoundError(
                errno.ENOENT,
                f"DataHub: several of your spaces are named '{base}', so this mount shows "
                "none of them: its 'spaces' filter must name the space by id or as "
                "<name>@<spaceId> (ask the site admin)",
                path,
            )
        where = "in this mount" if self.allowed is not None else "for this token"
        raise FileNotFoundError(errno.ENOENT, f"DataHub: no space '{spec}' {where}", path)

    def _provider(self, space_id: str, write: bool, path: str) -> str:
        """Base URL of a provider for the space: online, new enough, writable if needed."""
        if self.provider_url and not self.onezone_url:
            return self.provider_url
        scope = self._scope_answer()
        if write and scope.get("readonly"):
            raise PermissionError(errno.EACCES, "DataHub: this token is read-only", path)
        supports = scope["spaces"][space_id]["supports"]
        usable = [
            (pid, ro)
            for pid, ro in ((p, s["readonly"]) for p, s in supports.items())
            if scope["providers"].get(pid, {}).get("online")
            and _version(scope["providers"][pid].get("version", "0")) >= MIN_PROVIDER
        ]
        valid = [
            (pid, ro) for pid, ro in usable if check_host(scope["providers"][pid].get("domain"))
        ]
        if len(valid) < len(usable):
            name = scope["spaces"][space_id].get("name")
            log.warning(
                "DataHub: skipped %d provider(s) of space %r with an invalid address",
                len(usable) - len(valid),
                name if plain_name(name) else space_id,
            )
            if not valid:
                raise DatahubError(
                    errno.EIO,
                    f"DataHub: the provider address Onezone gives for space "
                    f"'{name if plain_name(name) else space_id}' is invalid (not a host "
                    "name); nothing was sent to it",
                )
            usable = valid
        if write:
            if usable and all(ro for _, ro in usable):
                raise PermissionError(
                    errno.EACCES, "DataHub: every provider supports this space read-only", path
                )
            usable = [(pid, ro) for pid, ro in usable if not ro]
        if not usable:
            raise DatahubError(
                errno.EIO, f"DataHub: no online provider (>= 21.02.1) serves the space of {path}"
            )
        usable.sort(key=lambda x: _version(scope["providers"][x[0]]["version"]), reverse=True)
        if self.provider_url:  # a configured provider wins when it serves the space
            for pid, _ in usable:
                if f"https://{scope['providers'][pid]['domain']}" == self.provider_url:
                    return self.provider_url
        return f"https://{scope['providers'][usable[0][0]]['domain']}"

    # --- paths --------------------------------------------------------------------------
    @classmethod
    def _strip_protocol(cls, path: Any) -> str:
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]  # type: ignore[return-value]
        path = str(path)
        if path.startswith("datahub://"):
            path = path[len("datahub://") :]
        elif path.startswith("datahub:"):
            path = path[len("datahub:") :]
        return "/".join(p for p in path.split("/") if p)

    def _parts(self, path: str) -> list[str]:
        stripped = self._strip_protocol(path)
        parts = stripped.split("/") if stripped else []
        for part in parts:
            check_part(part, path)
        return parts

    def _locate(self, path: str, write: bool = False) -> tuple[str, str, str, list[str]]:
        """(provider base, space id, space ``name@id``, path elements in the space)."""
        parts = self._parts(path)
        if not parts:
            raise IsADirectoryError(errno.EISDIR, "DataHub: the root lists spaces only", path)
        space_id, fqn = self._space(parts[0], path)
        return self._provider(space_id, write, path), space_id, fqn, parts[1:]

    def _file_id(self, base: str, space_id: str, fqn: str, rel: list[str], path: str) -> str:
        if not rel:
            return space_id  # a space's id is its root directory's file id
        url = f"{base}/api/v3/oneprovider/lookup-file-id/{quote(fqn)}/{quote('/'.join(rel))}"
        return self._request("POST", url, _path=path).json()["fileId"]

    def _entry(self, prefix: str, attrs: dict[str, Any]) -> dict[str, Any]:
        kind = _KINDS.get(attrs.get("type", ""), "other")
        return {
            "name": f"{prefix}/{attrs['name']}" if prefix else attrs["name"],
            "size": attrs.get("size") or 0,
            "type": kind,
            "mtime": attrs.get("mtime"),
            "mode": attrs.get("posixPermissions"),
            "file_id": attrs.get("fileId"),
        }

    def _children(
        self, prefix: str, children: list[Any], path: str, detail: bool = True
    ) -> list[Any]:
        """The entries (or, without ``detail``, the paths) of a page of children; a name
        that is not `plain_name` is skipped (logged, never joined into a path)."""
        pfx = f"{prefix}/" if prefix else ""
        names = _all_plain_names(children)
        if names is not None:  # the usual page: checked at once, no per-entry test
            if not detail:
                return [pfx + name for name in names]
            return [self._entry(prefix, child) for child in children]
        out: list[Any] = []
        skipped = 0
        for child in children:
            if not (isinstance(child, dict) and plain_name(child.get("name"))):
                skipped += 1
            elif detail:
                out.append(self._entry(prefix, child))
            else:
                out.append(f"{prefix}/{child['name']}" if prefix else child["name"])
        if skipped:
            log.warning(
                "DataHub: skipped %d entr%s with an unusable name in %s",
                skipped,
                "y" if skipped == 1 else "ies",
                str(path)[:300].encode("unicode_escape").decode("ascii"),
            )
        return out

    # --- reading ------------------------------------------------------------------------
    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> list[Any]:
        parts = self._parts(path)
        if not parts:
            entries = [
                {"name": n, "size": 0, "type": "directory", "file_id": i}
                for n, i in sorted(self._spaces().items())
            ]
            return entries if detail else [e["name"] for e in entries]
        base, space_id, fqn, rel = self._locate(path)
        file_id = self._file_id(base, space_id, fqn, rel, path)
        prefix = "/".join(parts)
        entries: list[Any] = []
        params: dict[str, Any] = {"limit": PAGE}
        seen: set[str] = set()
        pages = listed = 0
        while True:
            url = f"{base}/api/v3/oneprovider/data/{quote(file_id)}/children"
            try:
                # Names only: the provider sends (and we parse) a sixth of the JSON, and
                # no entry dicts are built (most of a 10,000-entry listing's cost here).
                wanted = ATTRS if detail else NAME_ONLY
                r = self._request(
                    "GET", url, params=params, json={"attributes": wanted}, _path=path
                )
            except NotADirectoryError:
                info = self.info(path)
                return [info] if detail else [info["name"]]
            page = r.json()
            children = page.get("children") or []
            pages, listed = pages + 1, listed + len(children)
            if listed > MAX_ENTRIES or pages > MAX_PAGES:
                raise DatahubError(
                    errno.EFBIG,
                    f"DataHub: '{path}' lists more than {MAX_ENTRIES:,} entries or "
                    f"{MAX_PAGES:,} pages; listing stopped (open its files by path, or "
                    f"split the folder)",
                )
            entries.extend(self._children(prefix, children, path, detail))
            if page.get("isLast", True) or not page.get("nextPageToken"):
                break
            next_token = str(page["nextPageToken"])
            if next_token in seen:
                raise DatahubError(
                    errno.EIO,
                    f"DataHub: the provider repeated a page token while listing '{path}' "
                    f"(it would list for ever); listing stopped",
                )
            seen.add(next_token)
            params = {"limit": PAGE, "token": next_token}
        return entries

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        parts = self._parts(path)
        if not parts:
            return {"name": "", "size": 0, "type": "directory"}
        base, space_id, fqn, rel = self._locate(path)
        file_id = self._file_id(base, space_id, fqn, rel, path)
        url = f"{base}/api/v3/oneprovider/data/{quote(file_id)}"
        attrs = self._request("GET", url, json={"attributes": ATTRS}, _path=path).json()
        entry = self._entry("/".join(parts[:-1]), {**attrs, "name": parts[-1]})
        return entry

    def cat_file(
        self, path: str, start: int | None = None, end: int | None = None, **kwargs: Any
    ) -> bytes:
        base, space_id, fqn, rel = self._locate(path)
        if (start is not None and start < 0) or (end is not None and end < 0):
            size = self.info(path)["size"]
            start = max(0, size + start) if start is not None and start < 0 else start
            end = max(0, size + end) if end is not None and end < 0 else end
        if start is not None and end is not None and end <= start:
            return b""
        file_id = self._file_id(base, space_id, fqn, rel, path)
        headers = {}
        if start or end is not None:
            headers["Range"] = f"bytes={start or 0}-{'' if end is None else end - 1}"
        url = f"{base}/api/v3/oneprovider/data/{quote(file_id)}/content"
        try:
            r = self._request("GET", url, headers=headers, _path=path)
        except DatahubError:
            if headers and self.info(path)["size"] <= (start or 0):
                return b""  # 416: a range past the end is empty, as for local files
            raise
        return r.content

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: Any = None,
        autocommit: bool = True,
        cache_options: Any = None,
        **kwargs: Any,
    ) -> DatahubFile:
        if mode == "xb" and self.exists(path):
            raise FileExistsError(errno.EEXIST, "DataHub: file exists", path)
        return DatahubFile(
            self,
            path,
            mode,
            block_size or "default",
            autocommit,
            cache_options=cache_options,
            **kwargs,
        )

    # --- writing ------------------------------------------------------------------------
    def _create(self, path: str, kind: str, parents: bool, update: bool) -> str:
        base, space_id, _fqn, rel = self._locate(path, write=True)
        if not rel:
            raise FileExistsError(errno.EEXIST, "DataHub: spaces are made in Onezone", path)
        query = {
            "type": kind,
            "create_parents": str(parents).lower(),
            "update_existing": str(update).lower(),
        }
        url = f"{base}/api/v3/oneprovider/data/{quote(space_id)}/path/{quote('/'.join(rel))}"
        return self._request("PUT", url, params=query, content=b"", _path=path).json()["fileId"]

    def _put(self, path: str, file_id: str, data: bytes, offset: int | None) -> None:
        base, _, _, _ = self._locate(path, write=True)
        url = f"{base}/api/v3/oneprovider/data/{quote(file_id)}/content"
        params = {} if offset is None else {"offset": offset}
        self._request(
            "PUT",
            url,
            params=params,
            content=data,
            _path=path,
            headers={"Content-Type": "application/octet-stream"},
        )

    def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kwargs: Any) -> None:
        file_id = self._create(path, "REG", True, update=(mode != "create"))
        self._put(path, file_id, bytes(value), None)  # no offset: truncate, then write

    def mkdir(self, path: str, create_parents: bool = True, **kwargs: Any) -> None:
        self._create(path, "DIR", create_parents, update=False)

    def makedirs(self, path: str, exist_ok: bool = False) -> None:
        try:
            self._create(path, "DIR", True, update=False)
        except FileExistsError:
            if not exist_ok or not self.isdir(path):
                raise

    def _delete(self, path: str) -> None:
        base, space_id, fqn, rel = self._locate(path, write=True)
        if not rel:
            raise PermissionError(errno.EPERM, "DataHub: spaces are removed in Onezone", path)
        file_id = self._file_id(base, space_id, fqn, rel, path)
        self._request("DELETE", f"{base}/api/v3/oneprovider/data/{quote(file_id)}", _path=path)

    def rm_file(self, path: str) -> None:
        if self.isdir(path):
            raise IsADirectoryError(errno.EISDIR, "DataHub: a directory (use rmdir/rm -r)", path)
        self._delete(path)

    def rmdir(self, path: str) -> None:
        if not self.isdir(path):
            raise NotADirectoryError(errno.ENOTDIR, "DataHub: not a directory", path)
        if self.ls(path, detail=False):
            raise OSError(errno.ENOTEMPTY, "DataHub: directory not empty", path)
        self._delete(path)

    def rm(self, path: Any, recursive: bool = False, maxdepth: int | None = None) -> None:
        """Onedata deletes a directory with its contents in one call: ``recursive`` does
        that; without it a non-empty directory is an ``ENOTEMPTY`` error."""
        if maxdepth is not None:
            return super().rm(path, recursive=recursive, maxdepth=maxdepth)
        paths = (
            self.expand_path(path)
            if isinstance(path, str) and self._has_glob(path)
            else (path if isinstance(path, list) else [path])
        )
        for p in sorted(paths, reverse=True):
            if self.isdir(p):
                if not recursive and self.ls(p, detail=False):
                    raise OSError(errno.ENOTEMPTY, "DataHub: directory not empty", p)
                self._delete(p)
            else:
                self._delete(p)
        return None

    @staticmethod
    def _has_glob(path: str) -> bool:
        return any(ch in path for ch in "*?[")

    def cp_file(self, path1: str, path2: str, **kwargs: Any) -> None:
        """No server-side copy in Onedata's REST API: stream it through in blocks."""
        if self.isdir(path1):
            self.makedirs(path2, exist_ok=True)
            return
        with self.open(path1, "rb") as src, self.open(path2, "wb") as dst:
            while block := src.read(8 * 2**20):
                dst.write(block)

    def mv(
        self,
        path1: str,
        path2: str,
        recursive: bool = False,
        maxdepth: int | None = None,
        **kwargs: Any,
    ) -> None:
        """A rename within one space (CDMI ``move``); across spaces is refused."""
        if self._has_glob(str(path1)) or isinstance(path1, list):
            return super().mv(path1, path2, recursive=recursive, maxdepth=maxdepth, **kwargs)
        base, _, src_fqn, src = self._locate(path1, write=True)
        _, _, dst_fqn, dst = self._locate(path2, write=True)
        if src_fqn != dst_fqn:
            raise OSError(
                errno.EXDEV,
                f"DataHub: moving between spaces is not supported ({path1} -> {path2}); "
                "copy, then remove",
            )
        if not src or not dst:
            raise PermissionError(errno.EPERM, "DataHub: a space itself cannot be moved", path1)
        if self.isdir(path2):  # into an existing directory, as mv does
            dst = [*dst, src[-1]]
        is_dir = self.isdir(path1)
        kind = "application/cdmi-container" if is_dir else "application/cdmi-object"
        target = "/".join(dst) + ("/" if is_dir else "")
        url = f"{base}/cdmi/{quote(dst_fqn)}/{quote(target)}"
        self._request(
            "PUT",
            url,
            json={"move": f"{src_fqn}/{'/'.join(src)}"},
            _path=path1,
            headers={"X-CDMI-Specification-Version": "1.1.1", "Content-Type": kind},
        )
        return None

    def created(self, path: str) -> Any:
        return self.modified(path)

    def modified(self, path: str) -> Any:
        import datetime

        mtime = self.info(path).get("mtime")
        return datetime.datetime.fromtimestamp(mtime or 0, tz=datetime.UTC)


class DatahubFile(AbstractBufferedFile):
    """Range reads through ``cat_file``; writes create the file, then ``PUT`` the first
    block without ``offset`` (truncating what was there) and later blocks at their offset."""

    fs: DatahubFileSystem

    def _fetch_range(self, start: int, end: int) -> bytes:
        return self.fs.cat_file(self.path, start=start, end=end)

    def _initiate_upload(self) -> None:
        exclusive = self.mode == "xb"
        self._file_id = self.fs._create(self.path, "REG", True, update=not exclusive)
        self._base = 0
        if self.mode == "ab":
            self._base = self.fs.info(self.path)["size"]

    def write(self, data: Any) -> int:
        """A block of ``blocksize`` bytes or more, written while nothing is buffered, goes
        to the server as it is: copying it into the buffer (and faulting in a fresh
        block-sized buffer each time) cost ~20% of write throughput at 8 MiB blocks
        (tests/benchmarks/bench_storage.py). Anything else is buffered as usual."""
        if (
            type(data) is bytes
            and len(data) >= self.blocksize
            and self.buffer.tell() == 0
            and self.writable()
            and not self.closed
            and not self.forced
        ):
            if self.offset is None:
                self.offset = 0
                try:
                    self._initiate_upload()
                except Exception:
                    self.closed = True
                    raise
            self._send(data)
            self.offset += len(data)
            self.loc += len(data)
            return len(data)
        return super().write(data)

    def _upload_chunk(self, final: bool = False) -> bool:
        self._send(self.buffer.getvalue())
        return True

    def _send(self, data: bytes) -> None:
        """``data`` at ``self.offset``: the first block without ``offset`` (truncating)."""
        if self.mode != "ab" and self.offset == 0:
            self.fs._put(self.path, self._file_id, data, None)
        elif data:
            self.fs._put(self.path, self._file_id, data, self._base + self.offset)
