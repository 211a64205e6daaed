"""A repository's git submodules, fetched one by one, each URL checked first.

repo2docker's ``Git`` provider ends with ``git submodule update --init --recursive``: it
follows whatever URLs a repository's ``.gitmodules`` names, to any host. In the Binder
service that clone runs in the service's own process tree (the fetch worker), so a
public repository could name ``http://<an internal service>/x`` or ``git://10.0.0.5:6379/``
as a submodule and make the service connect there, and the error line would tell the
visitor what answered. `update_submodules` replaces that step (the fetch worker's
`CheckedGit` calls it after the checkout):

- ``git submodule init`` (no network: it writes each submodule's URL, a relative one
  resolved against its parent's, into the parent's config), then every URL of that level
  is read back (``git config -z``: NUL-separated records, so a submodule *name* holding
  spaces cannot pass for another one's key; such names, and names with control
  characters, are refused) and checked before the first one connects:
- only ``https``, ``http`` and ``git`` URLs (no local path, ``file://``, ``ssh`` or
  ``ext::``; ``GIT_ALLOW_PROTOCOL`` says the same to git itself);
- a host other than the top repository's must resolve to public addresses only (the
  same test as `GitProvider`'s for ``git`` links, `providers.git.is_public_address`),
  unless the site allows private hosts (`GitProvider.allow_private_hosts`, given to
  the worker as the setting ``git_private_hosts``). The top repository's host is the one
  the service was told to fetch from (a checked public host, or the site's own GitHub
  or GitLab), so submodules there are fetched as it was, on its port only (the same
  host on another port, e.g. ``:8081``, may be another service: checked as any host);
- for ``https``/``http``, git then connects to exactly the addresses that were checked
  (``http.curloptResolve``): a name that resolves elsewhere a second later (DNS
  rebinding) changes nothing. ``git://`` cannot be pinned: the NetworkPolicy of the
  service's pod (no private egress but the API server's and the hub's) is the wall there;
- then ``git submodule update --init -- <path>`` for that one submodule, and the same
  again inside it, at most `MAX_DEPTH` levels and `MAX_SUBMODULES` in all.
"""

from __future__ import annotations

import ipaddress
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from repo2docker.utils import execute_cmd

from .providers.git import GIT_SCHEMES, is_public_address
from .record_downloads import WorkerError

__all__ = ["MAX_DEPTH", "MAX_SUBMODULES", "check_submodule_url", "update_submodules"]

MAX_DEPTH = 8
MAX_SUBMODULES = 64
_PORTS = {"https": 443, "http": 80, "git": 9418}


def _shown(url: str) -> str:
    """A submodule URL as a reason may show it: no credentials, at most 120 characters."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        url = parts._replace(netloc=parts.hostname or "").geturl()
    return url[:120]


def check_submodule_url(url: str, top: str, *, private_hosts: bool = False) -> list[str]:
    """The ``http.curloptResolve`` entries that pin ``url``'s host to the addresses just
    checked (none for the host of ``top``, the top repository's URL, for ``git://``, or
    with ``private_hosts``);
    `WorkerError` for a URL that may not be fetched (see the module)."""
    parts = urlsplit(url)
    if parts.scheme not in GIT_SCHEMES or not parts.hostname:
        raise WorkerError(
            f"refused: {_shown(url)!r} is not an https, http or git URL "
            "(no local file, ssh or other transport)"
        )
    host = parts.hostname.lower()
    try:
        port = parts.port or _PORTS[parts.scheme]
    except ValueError:
        raise WorkerError(f"refused: {_shown(url)!r} has no valid port") from None
    if private_hosts or (host, port) == _host_port(top):
        return []
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, ValueError):
        raise WorkerError(f"refused: the host {host[:80]!r} does not resolve") from None
    addresses = sorted({info[4][0].split("%", 1)[0] for info in infos})
    for address in addresses:
        if not is_public_address(ipaddress.ip_address(address)):
            raise WorkerError(
                f"refused: {host[:80]} is an internal address: this site fetches "
                "submodules from public hosts only"
            )
    if parts.scheme == "git" or not addresses:
        return []
    pinned = ",".join(f"[{a}]" if ":" in a else a for a in addresses)
    return [f"{host}:{port}:{pinned}"]


def _host_port(url: str) -> tuple[str, int]:
    """The host and port of the top repository's URL: submodules there are exempt on that
    port only (not, say, ``http://<same host>:8081/``, which may be another service)."""
    parts = urlsplit(url)
    try:
        port = parts.port or _PORTS.get(parts.scheme, 0)
    except ValueError:
        port = 0
    return (parts.hostname or "").lower(), port


def _git(args: list[str], cwd: Path) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode not in (0, 1):  # 1: `git config --get-regexp` found nothing
        raise subprocess.CalledProcessError(done.returncode, ["git", *args], done.stdout)
    return done.stdout


def _records(folder: Path) -> list[tuple[str, str]]:
    """The ``(name, url)`` of each submodule ``git submodule init`` registered, read as
    NUL-separated records (``git config -z``: ``key`` newline ``value`` NUL), so a name
    holding spaces cannot pass for another submodule's key."""
    out = _git(["config", "-z", "--local", "--get-regexp", r"^submodule\..*\.url$"], folder)
    found = []
    for record in out.split("\0"):
        if not record:
            continue
        key, _, url = record.partition("\n")
        found.append((key[len("submodule.") : -len(".url")], url))
    return found


def _check_name(name: str) -> None:
    if not name or any(c.isspace() or not c.isprintable() for c in name):
        raise WorkerError(
            f"refused: the submodule name {name[:80]!r} holds whitespace or control characters"
        )


def update_submodules(
    folder: Path,
    top: str,
    *,
    private_hosts: bool = False,
    capture: bool = True,
    depth: int = 0,
    count: list[int] | None = None,
) -> Iterator[str]:
    """Fetch the submodules of the checkout in ``folder`` and theirs, each URL checked
    (see the module; ``top``: the top repository's URL); git's output lines. Every
    submodule of one level is checked before the first one is fetched."""
    count = [0] if count is None else count
    if not (folder / ".gitmodules").is_file():
        return
    if depth >= MAX_DEPTH:
        raise WorkerError(f"refused: submodules nest deeper than {MAX_DEPTH} levels")
    yield from execute_cmd(["git", "submodule", "init"], cwd=str(folder), capture=capture)
    checked: list[tuple[str, list[str]]] = []
    for name, url in _records(folder):
        _check_name(name)
        path = _git(["config", "-z", "-f", ".gitmodules", "--get", f"submodule.{name}.path"],
                    folder).rstrip("\0")  # fmt: skip
        if not path:
            continue  # registered, but not in this commit's .gitmodules
        count[0] += 1
        if count[0] > MAX_SUBMODULES:
            raise WorkerError(f"refused: more than {MAX_SUBMODULES} submodules")
        inside = (folder / path).resolve()
        if not inside.is_relative_to(folder.resolve()) or inside == folder.resolve():
            raise WorkerError(f"refused: the submodule path {path[:80]!r} is outside")
        pins = check_submodule_url(url, top, private_hosts=private_hosts)
        checked.append(
            (path, [arg for pin in pins for arg in ("-c", f"http.curloptResolve={pin}")])
        )
    for path, pin_args in checked:
        yield from execute_cmd(
            ["git", *pin_args, "submodule", "update", "--init", "--", path],
            cwd=str(folder),
            capture=capture,
        )
        yield from update_submodules(
            (folder / path).resolve(), top, private_hosts=private_hosts, capture=capture,
            depth=depth + 1, count=count,
        )  # fmt: skip
