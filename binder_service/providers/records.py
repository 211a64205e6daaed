"""Archived records: ``v2/zenodo/<doi>`` and ``v2/doi/<doi>`` links, resolved through the
DOI system to one immutable record version.

A DOI is looked up at the DOI proxy's handle API (``GET <doi_resolver_url><doi>``, the
first value of type ``URL``), not by following ``https://doi.org/<doi>`` redirects: one
JSON answer, no chain of hosts to trust. Where it points decides what happens:

- an Invenio/Zenodo site the service lists (`RecordProvider.zenodo_urls`): the record
  version (`providers.zenodo`); a version DOI is immutable, a concept DOI (all
  versions) resolves to the latest one and is not (`RecordProvider.immutable`);
- a Figshare site or a Dataverse installation the service lists explicitly (never
  Dataverse's installation list, which repo2docker would download at every start): see
  `providers.figshare` and `providers.dataverse`;
- anywhere else: refused, naming the host and the setting an admin would change.

Everything the remote answers is hostile input: each field is type-checked, file names
are checked as archive entry names are (no ``..``, no absolute paths, no backslashes, no
control characters), file links must stay on the record's site, sizes and counts are
capped (`max_record_files`, `max_record_bytes`), and every answer is read up to a cap
within an overall deadline (httpx's timeout restarts with each byte). The file list
goes into the fetch job, and the fetch worker checks what it downloads against it.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import httpx
from traitlets import Float, Instance, Integer, List, Unicode, validate
from traitlets.config import LoggingConfigurable

from egi_hub.names import CONTROL as _CONTROL

from ..archives import ArchiveError, check_member_name
from ..specs import RepoSpec
from .base import Resolved, ResolveError

__all__ = ["RecordFile", "RecordProvider", "check_files"]

MAX_JSON = 8 << 20  # bytes of a record's JSON (1000 files' entries are well under 1 MB)
MAX_HANDLE_JSON = 256 << 10  # bytes of a handle record
MAX_URL = 2048
MAX_REMEMBERED = 10_000  # DOIs whose mutability `immutable` remembers
# Checksums as the fetch worker verifies them: <hashlib name>:<lower-case hex digest>.
_CHECKSUM = re.compile(
    r"md5:[0-9a-f]{32}|sha1:[0-9a-f]{40}|sha256:[0-9a-f]{64}|sha512:[0-9a-f]{128}"
)


@dataclass(frozen=True)
class RecordFile:
    """One file of a record version, as checked: ``key`` (a relative path), ``size``
    (bytes), ``checksum`` (``md5:<hex>``), ``url`` (where the bytes are)."""

    key: str
    size: int
    checksum: str
    url: str

    def job(self) -> dict[str, Any]:
        return {"key": self.key, "size": self.size, "checksum": self.checksum, "url": self.url}


def check_files(
    found: list[tuple[Any, Any, Any, Any]],
    *,
    who: str,
    sites: tuple[str, ...],
    max_files: int,
    max_bytes: int,
) -> tuple[RecordFile, ...]:
    """A record's files as ``(key, size, checksum, url)`` found in ``who``'s answer,
    checked: a safe relative ``key`` (as archive entries are checked), an integer
    ``size``, a checksum (``md5:<hex>``; ``sha1:``, ``sha256:``, ``sha512:``) and a
    ``url`` starting with one of
    ``sites``; no key twice; at most ``max_files`` files and ``max_bytes`` bytes.
    `ResolveError` (403: refused by the limits or names; 502: not what the API
    documents) with a one-line reason."""
    if len(found) > max_files:
        raise ResolveError(
            f"the record has {len(found)} files, over this site's limit of {max_files}", 403
        )
    files: list[RecordFile] = []
    keys: set[str] = set()
    total = 0
    for key, size, checksum, url in found:
        if not isinstance(key, str):
            raise ResolveError(f"{who} answered a file without a name", 502)
        try:
            check_member_name(key, "record file")
        except ArchiveError as e:
            raise ResolveError(f"refused: {e}", 403) from None
        if key.endswith("/") or key in keys:
            raise ResolveError(f"refused: the record names the file {key[:80]!r} twice", 403)
        keys.add(key)
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ResolveError(f"{who} answered no size for the file {key[:80]!r}", 502)
        if not isinstance(checksum, str) or not _CHECKSUM.fullmatch(checksum):
            raise ResolveError(f"{who} answered no checksum for the file {key[:80]!r}", 502)
        if not isinstance(url, str) or not url or len(url) > MAX_URL or _CONTROL.search(url):
            raise ResolveError(f"{who} answered no link for the file {key[:80]!r}", 502)
        if not url.startswith(sites) or "/../" in url or url.endswith("/.."):
            raise ResolveError(
                f"refused: the file {key[:80]!r} links outside the record's site ({sites[0]})",
                403,
            )
        total += size
        if total > max_bytes:
            raise ResolveError(
                f"the record holds more than this site's limit of {max_bytes} bytes", 403
            )
        files.append(RecordFile(key, size, checksum, url))
    return tuple(files)


def _site(url: str) -> str:
    """A site URL as the traits hold it: with a trailing ``/``."""
    return url if url.endswith("/") else url + "/"


def _on_site(url: str, site: str) -> str | None:
    """The path of ``url`` below ``site`` (same host and port; ``http`` or ``https``:
    older DOIs were registered with either), or None."""
    target, base = urlsplit(url), urlsplit(site)
    if target.scheme not in ("http", "https"):
        return None
    if (target.hostname or "").lower() != (base.hostname or "").lower():
        return None
    try:  # default ports: either scheme; an explicit port: the same scheme and port
        if target.port != base.port or (target.port and target.scheme != base.scheme):
            return None
    except ValueError:  # not a port number
        return None
    path = unquote(target.path)
    if not path.startswith(base.path):
        return None
    return path[len(base.path) :]


class RecordProvider(LoggingConfigurable):
    """Resolves ``zenodo`` and ``doi`` specs to one record version (see the module)."""

    providers = ("zenodo", "doi")

    doi_resolver_url = Unicode(
        "https://doi.org/api/handles/",
        help="""
        The DOI proxy's handle API, where a DOI is looked up (its first value of type
        URL says where the record is). Default: https://doi.org/api/handles/.
        """,
    ).tag(config=True)

    zenodo_urls = List(
        Unicode(),
        ["https://zenodo.org/", "https://sandbox.zenodo.org/"],
        help="""
        Invenio/Zenodo sites whose records may be launched (their records API is at
        <site>api/records/). A DOI that points anywhere else is refused, unless it is a
        Figshare or Dataverse host listed below. Default: https://zenodo.org/ and
        https://sandbox.zenodo.org/.
        """,
    ).tag(config=True)

    figshare_urls = List(
        Unicode(),
        [],
        help="""
        Figshare sites whose articles may be launched, listed explicitly (e.g.
        https://figshare.com/). Default: none.
        """,
    ).tag(config=True)

    figshare_api_url = Unicode(
        "https://api.figshare.com/v2/",
        help="Figshare's API (for the sites in figshare_urls). Default: https://api.figshare.com/v2/.",
    ).tag(config=True)

    figshare_download_urls = List(
        Unicode(),
        ["https://ndownloader.figshare.com/"],
        help="""
        Where Figshare's files may be downloaded from (their download_url; it may
        redirect to storage elsewhere over https). Default: https://ndownloader.figshare.com/.
        """,
    ).tag(config=True)

    dataverse_urls = List(
        Unicode(),
        [],
        help="""
        Dataverse installations whose datasets may be launched, listed explicitly (the
        service never downloads Dataverse's list of all installations), each at the root
        of its host (e.g. https://dataverse.harvard.edu/). Default: none.
        """,
    ).tag(config=True)

    max_record_files = Integer(
        1000,
        help="The most files a record may have to be launched. Default: 1000.",
    ).tag(config=True)

    max_record_bytes = Integer(
        2 << 30,
        help="The most bytes a record's files may add up to (before unzipping). Default: 2 GiB.",
    ).tag(config=True)

    request_timeout = Float(
        15.0,
        help="""
        Seconds one request to the DOI proxy or a records API may take, whole (not per
        byte). Default: 15.
        """,
    ).tag(config=True)

    http = Instance(
        httpx.AsyncClient,
        allow_none=True,
        help="The HTTP client (set by the Resolver: TLS checked, no redirects followed).",
    )

    @validate("zenodo_urls", "figshare_urls", "figshare_download_urls", "dataverse_urls")
    def _check_urls(self, proposal: dict[str, Any]) -> list[str]:
        urls = []
        for url in proposal["value"]:
            parts = urlsplit(url)
            if parts.scheme not in ("https", "http") or not parts.hostname or parts.query:
                raise ValueError(f"{url!r} is not a site URL (https://host/ or https://host/path/)")
            if proposal["trait"].name == "dataverse_urls" and parts.path not in ("", "/"):
                raise ValueError(f"{url!r}: a Dataverse installation is at the root of its host")
            urls.append(_site(url))
        return urls

    @validate("figshare_api_url", "doi_resolver_url")
    def _check_api(self, proposal: dict[str, Any]) -> str:
        url = proposal["value"]
        if urlsplit(url).scheme not in ("https", "http") or not urlsplit(url).hostname:
            raise ValueError(f"{url!r} is not an http(s) URL")
        return _site(url)

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._immutable: OrderedDict[str, bool] = OrderedDict()

    # -- the interface ----------------------------------------------------------------

    def immutable(self, spec: RepoSpec) -> bool:
        """Whether the spec always resolves to the same record: a version DOI does, a
        concept DOI does not. Known after a `resolve` of the spec; False before (the
        safe answer: a resolution that is not cached for ever)."""
        return self._immutable.get(spec.repo.lower(), False)

    def fetch_settings(self) -> dict[str, Any]:
        """What the fetch worker needs of this configuration (`binder_service.fetch`'s
        ``settings``): the sites it may download records from."""
        return {
            "zenodo_urls": list(self.zenodo_urls),
            "figshare_api_url": self.figshare_api_url,
            "figshare_download_urls": list(self.figshare_download_urls),
            "dataverse_urls": list(self.dataverse_urls),
        }

    async def resolve(self, spec: RepoSpec, *, token: str | None = None) -> Resolved:
        """The record version ``spec`` names (see the module); `ResolveError` with a
        one-line reason otherwise. ``token`` is not used: records are public."""
        if spec.provider not in self.providers:
            raise ResolveError(f"{spec.provider!r} links are not archived records", 400)
        doi = spec.repo
        target = await self._doi_target(doi)
        for site in self.zenodo_urls:
            path = _on_site(target, site)
            if path is not None:
                from .zenodo import resolve_zenodo

                return await resolve_zenodo(self, spec, site, path)
        if spec.provider == "zenodo":
            raise ResolveError(
                f"the DOI {doi} points to {_host(target)}, not to a Zenodo site this service "
                "launches records from (an admin lists those in RecordProvider.zenodo_urls)",
                403,
            )
        for site in self.figshare_urls:
            path = _on_site(target, site)
            if path is not None:
                from .figshare import resolve_figshare

                return await resolve_figshare(self, spec, path)
        for site in self.dataverse_urls:
            if _on_site(target, site) is not None:
                from .dataverse import resolve_dataverse

                return await resolve_dataverse(self, spec, site, target)
        raise ResolveError(
            f"the DOI {doi} points to {_host(target)}, which this service does not launch "
            "records from (an admin can list it in RecordProvider.zenodo_urls, "
            "RecordProvider.figshare_urls or RecordProvider.dataverse_urls)",
            403,
        )

    # -- the DOI proxy ----------------------------------------------------------------

    async def _doi_target(self, doi: str) -> str:
        """The URL a DOI points to: the first ``URL`` value of its handle record."""
        url = self.doi_resolver_url + quote(doi, safe="/")
        status, data, _ = await self.get_json(url, "the DOI resolver", MAX_HANDLE_JSON)
        if status == 404:
            raise ResolveError(f"the DOI {doi} does not exist", 404)
        if status != 200:
            raise ResolveError(f"the DOI resolver answered HTTP {status} for {doi}", 502)
        values = data.get("values") if isinstance(data, dict) else None
        if not isinstance(values, list):
            raise ResolveError(f"the DOI resolver answered an odd record for {doi}", 502)
        for value in values:
            if not isinstance(value, dict) or value.get("type") != "URL":
                continue
            inner = value.get("data")
            target = inner.get("value") if isinstance(inner, dict) else None
            if (
                not isinstance(target, str)
                or len(target) > MAX_URL
                or _CONTROL.search(target)
                or urlsplit(target).scheme not in ("http", "https")
                or not urlsplit(target).hostname
            ):
                raise ResolveError(f"the DOI {doi} points to no web address", 404)
            return target
        raise ResolveError(f"the DOI {doi} points to no web address", 404)

    # -- Zenodo -----------------------------------------------------------------------

    # -- HTTP -------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        if self.http is None:
            self.http = httpx.AsyncClient(follow_redirects=False, timeout=self.request_timeout)
        return self.http

    async def get_json(self, url: str, who: str, cap: int) -> tuple[int, Any, httpx.Headers]:
        """``(status, JSON or None, headers)`` of a GET, read up to ``cap`` bytes within
        `request_timeout` in all; `ResolveError` (502) if ``who`` cannot be reached or
        answers more than ``cap`` or no JSON on a 200."""
        try:
            async with asyncio.timeout(self.request_timeout):
                async with self._client().stream(
                    "GET", url, headers={"Accept": "application/json"}
                ) as response:
                    body = bytearray()
                    if response.status_code == 200:
                        async for chunk in response.aiter_bytes():
                            body += chunk
                            if len(body) > cap:
                                raise ResolveError(f"{who} answered more than {cap} bytes", 502)
        except TimeoutError:
            raise ResolveError(f"{who} did not answer in {self.request_timeout:g} s", 502) from None
        except httpx.HTTPError as e:
            raise ResolveError(f"{who} could not be reached ({type(e).__name__})", 502) from None
        if response.status_code != 200:
            return response.status_code, None, response.headers
        try:
            return 200, json.loads(body), response.headers
        except ValueError:
            raise ResolveError(f"{who} answered something that is not JSON", 502) from None

    def remember(self, doi: str, immutable: bool) -> None:
        self._immutable[doi.lower()] = immutable
        self._immutable.move_to_end(doi.lower())
        while len(self._immutable) > MAX_REMEMBERED:
            self._immutable.popitem(last=False)


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "an unknown host")[:100]
