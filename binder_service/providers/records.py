"""Archived records: ``v2/zenodo/<doi>`` and ``v2/doi/<doi>`` links, resolved through the
DOI system to one immutable record version.

A DOI is looked up at the DOI proxy's handle API (``GET <doi_resolver_url><doi>``, the
first value of type ``URL``), not by following ``https://doi.org/<doi>`` redirects: one
JSON answer, no chain of hosts to trust. Where it points decides what happens:

- an Invenio/Zenodo site the service lists (`RecordProvider.zenodo_urls`): the record id
  comes from the URL (``/record/<id>``, ``/records/<id>``, ``/doi/<doi>``) and the
  records API (``GET <site>api/records/<id>``) answers the version. A *concept* id
  (what a concept DOI names: all versions) has no record of its own on Zenodo today (a
  404, zenodo/zenodo#2499; older Zenodo redirected), so it is asked for
  ``api/records/<id>/versions/latest``, which redirects to the latest version. A version
  DOI is immutable; a concept DOI is not (`RecordProvider.immutable`);
- a Figshare or Dataverse site the service lists explicitly (never Dataverse's
  installation list, which repo2docker would download at every start): not enabled yet,
  refused with that reason;
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
from urllib.parse import quote, unquote, urljoin, urlsplit

import httpx
from traitlets import Float, Instance, Integer, List, Unicode, validate
from traitlets.config import LoggingConfigurable

from ..archives import ArchiveError, check_member_name
from ..specs import RepoSpec
from .base import Resolved, ResolveError

__all__ = [
    "RecordFile",
    "RecordProvider",
    "ZenodoRecord",
    "parse_zenodo_files",
    "parse_zenodo_record",
]

MAX_JSON = 8 << 20  # bytes of a record's JSON (1000 files' entries are well under 1 MB)
MAX_HANDLE_JSON = 256 << 10  # bytes of a handle record
MAX_URL = 2048
MAX_REMEMBERED = 10_000  # DOIs whose mutability `immutable` remembers
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_RECORD_ID = re.compile(r"[0-9]{1,20}")
_MD5 = re.compile(r"md5:[0-9a-f]{32}")
_ZENODO_SUFFIX = re.compile(r"zenodo\.([0-9]{1,20})", re.IGNORECASE)
_DATE = re.compile(r"[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?")


class _Odd(ValueError):
    """A remote answer that is not what its API documents."""


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


@dataclass(frozen=True)
class ZenodoRecord:
    """The fields of a Zenodo record that Binder uses, checked."""

    id: str
    conceptrecid: str
    doi: str
    conceptdoi: str
    version: str
    publication_date: str
    files: tuple[RecordFile, ...] | None  # None: not in the record, see ``files_url``
    files_url: str
    latest_url: str


def _text(data: dict[str, Any], key: str, *, limit: int = 500, required: bool = False) -> str:
    value = data.get(key)
    if value is None and not required:
        return ""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or (required and not value):
        raise _Odd(f"its {key!r} is not a string")
    if len(value) > limit or _CONTROL.search(value):
        raise _Odd(f"its {key!r} is too long or has control characters")
    return value


def _record_id(data: dict[str, Any], key: str, *, required: bool) -> str:
    value = _text(data, key, limit=20, required=required)
    if value and not _RECORD_ID.fullmatch(value):
        raise _Odd(f"its {key!r} is not a record id")
    return value


def _link(data: dict[str, Any], key: str) -> str:
    value = _text(data, key, limit=MAX_URL)
    if value and urlsplit(value).scheme not in ("https", "http"):
        raise _Odd(f"its link {key!r} is not an http(s) URL")
    return value


def parse_zenodo_files(
    entries: Any, *, api: str, max_files: int, max_bytes: int
) -> tuple[RecordFile, ...]:
    """A record's files (the record's ``files`` list or the files API's ``entries``),
    checked: each a JSON object with a safe relative ``key``, an integer ``size``, an
    ``md5:`` checksum and a link (``links.content``, else ``links.self``) under ``api``
    (the site's ``api/records/``); no key twice; at most ``max_files`` files and
    ``max_bytes`` bytes. `ResolveError` (403: refused by the limits or names; 502: not
    what the API documents) with a one-line reason."""
    if not isinstance(entries, list):
        raise ResolveError("Zenodo answered a file list that is not a list", 502)
    if len(entries) > max_files:
        raise ResolveError(
            f"the record has {len(entries)} files, over this site's limit of {max_files}", 403
        )
    files: list[RecordFile] = []
    keys: set[str] = set()
    total = 0
    for entry in entries:
        if not isinstance(entry, dict):
            raise ResolveError("Zenodo answered a file entry that is not an object", 502)
        key = entry.get("key")
        if not isinstance(key, str):
            raise ResolveError("Zenodo answered a file without a name", 502)
        try:
            check_member_name(key, "record file")
        except ArchiveError as e:
            raise ResolveError(f"refused: {e}", 403) from None
        if key.endswith("/") or key in keys:
            raise ResolveError(f"refused: the record names the file {key[:80]!r} twice", 403)
        keys.add(key)
        size = entry.get("size")
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ResolveError(f"Zenodo answered no size for the file {key[:80]!r}", 502)
        checksum = entry.get("checksum")
        if not isinstance(checksum, str) or not _MD5.fullmatch(checksum):
            raise ResolveError(f"Zenodo answered no md5 checksum for the file {key[:80]!r}", 502)
        links = entry.get("links")
        url = ""
        if isinstance(links, dict):
            url = links.get("content") or links.get("self") or ""
        if not isinstance(url, str) or not url or len(url) > MAX_URL or _CONTROL.search(url):
            raise ResolveError(f"Zenodo answered no link for the file {key[:80]!r}", 502)
        if not url.startswith(api) or "/../" in url or url.endswith("/.."):
            raise ResolveError(
                f"refused: the file {key[:80]!r} links outside the record's site ({api})", 403
            )
        total += size
        if total > max_bytes:
            raise ResolveError(
                f"the record holds more than this site's limit of {max_bytes} bytes", 403
            )
        files.append(RecordFile(key, size, checksum, url))
    return tuple(files)


def parse_zenodo_record(data: Any, *, api: str, max_files: int, max_bytes: int) -> ZenodoRecord:
    """A Zenodo record's JSON (``GET <site>api/records/<id>``), checked; `ResolveError`
    with a one-line reason for anything the records API does not document, or a file
    list `parse_zenodo_files` refuses."""
    if not isinstance(data, dict):
        raise ResolveError("Zenodo answered a record that is not a JSON object", 502)
    try:
        record_id = _record_id(data, "id", required=True)
        metadata = data.get("metadata", {})
        links = data.get("links", {})
        if not isinstance(metadata, dict) or not isinstance(links, dict):
            raise _Odd("its metadata or links are not objects")
        date = _text(metadata, "publication_date", limit=40)
        if date and not _DATE.fullmatch(date):
            raise _Odd("its publication_date is not a date")
        record = ZenodoRecord(
            id=record_id,
            conceptrecid=_record_id(data, "conceptrecid", required=False),
            doi=_text(data, "doi", limit=MAX_URL),
            conceptdoi=_text(data, "conceptdoi", limit=MAX_URL),
            version=_text(metadata, "version", limit=200),
            publication_date=date,
            files=None,
            files_url=_link(links, "files"),
            latest_url=_link(links, "latest"),
        )
    except _Odd as e:
        raise ResolveError(f"Zenodo answered an odd record: {e}", 502) from None
    if "files" in data:
        files = parse_zenodo_files(data["files"], api=api, max_files=max_files, max_bytes=max_bytes)
        record = ZenodoRecord(**{**record.__dict__, "files": files})
    return record


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
        Figshare sites whose articles may be launched (listed explicitly). Not enabled
        yet: a DOI pointing to one is refused with that reason. Default: none.
        """,
    ).tag(config=True)

    dataverse_urls = List(
        Unicode(),
        [],
        help="""
        Dataverse installations whose datasets may be launched, listed explicitly (the
        service never downloads Dataverse's list of all installations). Not enabled
        yet: a DOI pointing to one is refused with that reason. Default: none.
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

    @validate("zenodo_urls", "figshare_urls", "dataverse_urls")
    def _check_urls(self, proposal: dict[str, Any]) -> list[str]:
        urls = []
        for url in proposal["value"]:
            parts = urlsplit(url)
            if parts.scheme not in ("https", "http") or not parts.hostname or parts.query:
                raise ValueError(f"{url!r} is not a site URL (https://host/ or https://host/path/)")
            urls.append(_site(url))
        return urls

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
        return {"zenodo_urls": list(self.zenodo_urls)}

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
                return await self._zenodo(spec, site, path)
        if spec.provider == "zenodo":
            raise ResolveError(
                f"the DOI {doi} points to {_host(target)}, not to a Zenodo site this service "
                "launches records from (an admin lists those in RecordProvider.zenodo_urls)",
                403,
            )
        for kind, sites in (("Figshare", self.figshare_urls), ("Dataverse", self.dataverse_urls)):
            if any(_on_site(target, site) is not None for site in sites):
                raise ResolveError(
                    f"the DOI {doi} points to {kind} ({_host(target)}): launching {kind} "
                    "records is not enabled on this service yet",
                    403,
                )
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
        status, data, _ = await self._get_json(url, "the DOI resolver", MAX_HANDLE_JSON)
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

    async def _zenodo(self, spec: RepoSpec, site: str, path: str) -> Resolved:
        doi = spec.repo
        api = site + "api/records/"
        asked = _zenodo_id(path)
        if asked is None:
            raise ResolveError(f"the DOI {doi} points to a Zenodo page that is not a record", 404)
        record, via_concept = await self._zenodo_version(api, asked)
        if via_concept and record.conceptrecid and record.conceptrecid != asked:
            raise ResolveError(
                f"Zenodo answered record {record.id} of another concept for {asked}", 502
            )
        concept = via_concept or doi.lower() == record.conceptdoi.lower()
        files = record.files
        if files is None:
            files = await self._zenodo_files(api, record)
        if not files:
            raise ResolveError(f"record {record.id} has no files", 404)
        self._remember(doi, not concept)
        when = record.version or record.publication_date or "no version"
        return Resolved(
            spec=spec,
            provider="zenodo",
            source=f"{api}{record.id}",
            ref=record.id,
            label=f"zenodo.{record.id} ({when[:60]})",
            fetch={
                "provider": "zenodo",
                "api": api,
                "record": record.id,
                "files": [f.job() for f in files],
            },
        )

    def _parse(self, data: Any, api: str) -> ZenodoRecord:
        return parse_zenodo_record(
            data, api=api, max_files=self.max_record_files, max_bytes=self.max_record_bytes
        )

    async def _zenodo_version(self, api: str, asked: str) -> tuple[ZenodoRecord, bool]:
        """The record ``asked`` names and whether it was a concept (then: its latest
        version). A concept id answers 404 (Zenodo today) or a redirect (older Zenodo)
        at ``api/records/<id>``; ``api/records/<id>/versions/latest`` redirects to the
        latest version of a concept or of a version's concept."""
        status, data, headers = await self._get_json(f"{api}{asked}", "Zenodo", MAX_JSON)
        if status == 200:
            record = self._parse(data, api)
            if record.id != asked:
                raise ResolveError(f"Zenodo answered record {record.id} for record {asked}", 502)
            return record, False
        if status == 410:
            raise ResolveError(f"Zenodo record {asked} was removed", 404)
        if status in (301, 302, 303, 307, 308):
            return await self._zenodo_follow(api, asked, headers), True
        if status != 404:
            raise ResolveError(f"Zenodo answered HTTP {status} for record {asked}", 502)
        status, _, headers = await self._get_json(
            f"{api}{asked}/versions/latest", "Zenodo", MAX_JSON
        )
        if status in (404, 410):
            raise ResolveError(f"Zenodo has no record {asked}", 404)
        if status not in (301, 302, 303, 307, 308):
            raise ResolveError(f"Zenodo answered HTTP {status} for the versions of {asked}", 502)
        return await self._zenodo_follow(api, asked, headers), True

    async def _zenodo_follow(self, api: str, asked: str, headers: httpx.Headers) -> ZenodoRecord:
        """The record a redirect for ``asked`` points to: only ``<api><id>`` on the same
        site, read without following anything further."""
        location = urljoin(api, headers.get("location", ""))
        rest = location[len(api) :] if location.startswith(api) else ""
        if not _RECORD_ID.fullmatch(rest):
            raise ResolveError(f"Zenodo redirected record {asked} somewhere unexpected", 502)
        status, data, _ = await self._get_json(location, "Zenodo", MAX_JSON)
        if status != 200:
            raise ResolveError(f"Zenodo answered HTTP {status} for record {rest}", 502)
        record = self._parse(data, api)
        if record.id != rest:
            raise ResolveError(f"Zenodo answered record {record.id} for record {rest}", 502)
        return record

    async def _zenodo_files(self, api: str, record: ZenodoRecord) -> tuple[RecordFile, ...]:
        """The files API's ``entries`` (a record that lists no ``files`` itself)."""
        if not record.files_url:
            return ()
        if not record.files_url.startswith(f"{api}{record.id}/"):
            raise ResolveError(f"refused: record {record.id} lists its files on another site", 403)
        status, data, _ = await self._get_json(record.files_url, "Zenodo", MAX_JSON)
        if status in (403, 404):
            return ()
        if status != 200 or not isinstance(data, dict):
            raise ResolveError(f"Zenodo answered HTTP {status} for the files of {record.id}", 502)
        return parse_zenodo_files(
            data.get("entries"),
            api=api,
            max_files=self.max_record_files,
            max_bytes=self.max_record_bytes,
        )

    # -- HTTP -------------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        if self.http is None:
            self.http = httpx.AsyncClient(follow_redirects=False, timeout=self.request_timeout)
        return self.http

    async def _get_json(self, url: str, who: str, cap: int) -> tuple[int, Any, httpx.Headers]:
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

    def _remember(self, doi: str, immutable: bool) -> None:
        self._immutable[doi.lower()] = immutable
        self._immutable.move_to_end(doi.lower())
        while len(self._immutable) > MAX_REMEMBERED:
            self._immutable.popitem(last=False)


def _host(url: str) -> str:
    return (urlsplit(url).hostname or "an unknown host")[:100]


def _zenodo_id(path: str) -> str | None:
    """The record id in a Zenodo URL's path below the site: ``record/<id>``,
    ``records/<id>``, ``api/records/<id>`` or ``doi/<10.x/zenodo.<id>>``."""
    parts = [p for p in path.split("/") if p]
    if len(parts) == 2 and parts[0] in ("record", "records") and _RECORD_ID.fullmatch(parts[1]):
        return parts[1]
    if len(parts) == 3 and parts[:2] == ["api", "records"] and _RECORD_ID.fullmatch(parts[2]):
        return parts[2]
    if len(parts) >= 3 and parts[0] == "doi":
        match = _ZENODO_SUFFIX.fullmatch("/".join(parts[2:]))
        if match and parts[1].startswith("10."):
            return match.group(1)
    return None
