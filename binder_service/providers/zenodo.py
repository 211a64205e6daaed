"""Zenodo (and other Invenio sites) behind ``v2/zenodo/<doi>`` and ``v2/doi/<doi>``
links, for the sites `RecordProvider.zenodo_urls` lists.

The record id comes from where the DOI points (``<site>record/<id>``,
``<site>records/<id>``, or ``<site>doi/<doi>`` for concept DOIs Zenodo registers now),
and the records API (``GET <site>api/records/<id>``) answers the version: ``id``,
``conceptrecid``, ``doi``, ``conceptdoi``, ``metadata`` (``version``,
``publication_date``), ``links`` (``files``, ``latest``) and ``files`` (``key``,
``size``, ``checksum``, ``links``). A *concept* id (what a concept DOI names: all
versions) has no record of its own on Zenodo today (a 404, zenodo/zenodo#2499; older
Zenodo redirected it), so it is asked for ``api/records/<id>/versions/latest``, which
redirects to the latest version; redirects are followed only to ``<site>api/records/<id>``
and the latest version must belong to the concept asked for. A version DOI is
immutable; a concept DOI is not.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import httpx

from ..specs import RepoSpec
from .base import Resolved, ResolveError
from .records import _CONTROL, MAX_JSON, MAX_URL, RecordFile, check_files

if TYPE_CHECKING:
    from .records import RecordProvider

__all__ = ["ZenodoRecord", "parse_zenodo_files", "parse_zenodo_record", "resolve_zenodo"]

_RECORD_ID = re.compile(r"[0-9]{1,20}")
_ZENODO_SUFFIX = re.compile(r"zenodo\.([0-9]{1,20})", re.IGNORECASE)
_DATE = re.compile(r"[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?")


class _Odd(ValueError):
    """A remote answer that is not what its API documents."""


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
    """A Zenodo record's files (the record's ``files`` list or the files API's
    ``entries``: ``key``, ``size``, ``checksum``, and the bytes at ``links.content``,
    else ``links.self``), checked by `check_files` with ``api`` (the site's
    ``api/records/``) as the only place files may be."""
    if not isinstance(entries, list):
        raise ResolveError("Zenodo answered a file list that is not a list", 502)
    found = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise ResolveError("Zenodo answered a file entry that is not an object", 502)
        links = entry.get("links")
        url = (links.get("content") or links.get("self")) if isinstance(links, dict) else None
        found.append((entry.get("key"), entry.get("size"), entry.get("checksum"), url))
    return check_files(found, who="Zenodo", sites=(api,), max_files=max_files, max_bytes=max_bytes)


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


async def resolve_zenodo(
    provider: RecordProvider, spec: RepoSpec, site: str, path: str
) -> Resolved:
    """The record version ``spec``'s DOI names (its page is ``path`` below the listed
    Zenodo ``site``): see the module."""
    doi = spec.repo
    api = site + "api/records/"
    asked = _zenodo_id(path)
    if asked is None:
        raise ResolveError(f"the DOI {doi} points to a Zenodo page that is not a record", 404)
    record, via_concept = await _version(provider, api, asked)
    if via_concept and record.conceptrecid and record.conceptrecid != asked:
        raise ResolveError(
            f"Zenodo answered record {record.id} of another concept for {asked}", 502
        )
    concept = via_concept or doi.lower() == record.conceptdoi.lower()
    files = record.files
    if files is None:
        files = await _files(provider, api, record)
    if not files:
        raise ResolveError(f"record {record.id} has no files", 404)
    provider.remember(doi, not concept)
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


def _parse(provider: RecordProvider, data: Any, api: str) -> ZenodoRecord:
    return parse_zenodo_record(
        data, api=api, max_files=provider.max_record_files, max_bytes=provider.max_record_bytes
    )


async def _version(provider: RecordProvider, api: str, asked: str) -> tuple[ZenodoRecord, bool]:
    """The record ``asked`` names and whether it was a concept (then: its latest
    version). A concept id answers 404 (Zenodo today) or a redirect (older Zenodo)
    at ``api/records/<id>``; ``api/records/<id>/versions/latest`` redirects to the
    latest version of a concept or of a version's concept."""
    status, data, headers = await provider.get_json(f"{api}{asked}", "Zenodo", MAX_JSON)
    if status == 200:
        record = _parse(provider, data, api)
        if record.id != asked:
            raise ResolveError(f"Zenodo answered record {record.id} for record {asked}", 502)
        return record, False
    if status == 410:
        raise ResolveError(f"Zenodo record {asked} was removed", 404)
    if status in (301, 302, 303, 307, 308):
        return await _follow(provider, api, asked, headers), True
    if status != 404:
        raise ResolveError(f"Zenodo answered HTTP {status} for record {asked}", 502)
    status, _, headers = await provider.get_json(
        f"{api}{asked}/versions/latest", "Zenodo", MAX_JSON
    )
    if status in (404, 410):
        raise ResolveError(f"Zenodo has no record {asked}", 404)
    if status not in (301, 302, 303, 307, 308):
        raise ResolveError(f"Zenodo answered HTTP {status} for the versions of {asked}", 502)
    return await _follow(provider, api, asked, headers), True


async def _follow(
    provider: RecordProvider, api: str, asked: str, headers: httpx.Headers
) -> ZenodoRecord:
    """The record a redirect for ``asked`` points to: only ``<api><id>`` on the same
    site, read without following anything further."""
    location = urljoin(api, headers.get("location", ""))
    rest = location[len(api) :] if location.startswith(api) else ""
    if not _RECORD_ID.fullmatch(rest):
        raise ResolveError(f"Zenodo redirected record {asked} somewhere unexpected", 502)
    status, data, _ = await provider.get_json(location, "Zenodo", MAX_JSON)
    if status != 200:
        raise ResolveError(f"Zenodo answered HTTP {status} for record {rest}", 502)
    record = _parse(provider, data, api)
    if record.id != rest:
        raise ResolveError(f"Zenodo answered record {record.id} for record {rest}", 502)
    return record


async def _files(
    provider: RecordProvider, api: str, record: ZenodoRecord
) -> tuple[RecordFile, ...]:
    """The files API's ``entries`` (a record that lists no ``files`` itself)."""
    if not record.files_url:
        return ()
    if not record.files_url.startswith(f"{api}{record.id}/"):
        raise ResolveError(f"refused: record {record.id} lists its files on another site", 403)
    status, data, _ = await provider.get_json(record.files_url, "Zenodo", MAX_JSON)
    if status in (403, 404):
        return ()
    if status != 200 or not isinstance(data, dict):
        raise ResolveError(f"Zenodo answered HTTP {status} for the files of {record.id}", 502)
    return parse_zenodo_files(
        data.get("entries"),
        api=api,
        max_files=provider.max_record_files,
        max_bytes=provider.max_record_bytes,
    )


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
