"""Dataverse datasets behind ``v2/doi/<doi>`` links (for sites that list Dataverse
installations in `RecordProvider.dataverse_urls`: explicitly, never from Dataverse's list
of all installations, which repo2docker would download at every start).

A dataset's DOI points to ``<site>citation?persistentId=doi:...`` or
``<site>dataset.xhtml?persistentId=...``. A dataset DOI names every version, so it is
pinned to the latest published one at resolution (Dataverse's native API:
``GET <site>api/datasets/:persistentId/versions/:latest-published?persistentId=<pid>``,
``{"status": "OK", "data": {"datasetId", "versionNumber", "versionMinorNumber",
"versionState", "files": [...]}}``) and never called immutable. Each file is
``{"label", "directoryLabel", "restricted", "dataFile": {"id", "filesize", "md5" or
"checksum": {"type", "value"}, "originalFileName", "originalFileSize"}}``; it is fetched
as its original upload (``<site>api/access/datafile/<id>?format=original``, as
repo2docker does), named and sized as the original. Restricted files cannot be
downloaded without an account and are left out. A DOI of a single file
(``file.xhtml``) is refused: its dataset's DOI is what to launch.
"""

from __future__ import annotations

import posixpath
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlsplit

from ..specs import RepoSpec
from .base import Resolved, ResolveError
from .records import MAX_JSON, RecordFile, check_files

if TYPE_CHECKING:
    from .records import RecordProvider

__all__ = ["dataverse_dataset", "parse_dataverse_files", "resolve_dataverse"]

_PID = re.compile(r"(doi:10\.[0-9]{4,9}|hdl:[0-9][0-9.]{0,20})/[-._;()/:A-Za-z0-9]{1,200}")
_ALGORITHMS = {"MD5": "md5", "SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512"}


def dataverse_dataset(path: str, query: str) -> str:
    """The dataset's persistent id in a Dataverse page (``path`` below the site, and
    its ``query``); `ResolveError` when the page is not a dataset's."""
    values = parse_qs(query).get("persistentId", [])
    page = path.strip("/")
    if page == "file.xhtml":
        raise ResolveError(
            "the DOI names a single Dataverse file: launch the DOI of its dataset", 404
        )
    if page not in ("citation", "dataset.xhtml") or len(values) != 1:
        raise ResolveError("the DOI points to a Dataverse page that is not a dataset", 404)
    if not _PID.fullmatch(values[0]):
        raise ResolveError("the DOI points to a Dataverse dataset with an odd identifier", 404)
    return values[0]


def _checksum(data_file: dict[str, Any]) -> str | None:
    checksum = data_file.get("checksum")
    if isinstance(checksum, dict):
        algorithm = _ALGORITHMS.get(str(checksum.get("type")))
        value = checksum.get("value")
        return f"{algorithm}:{value.lower()}" if algorithm and isinstance(value, str) else None
    md5 = data_file.get("md5")
    return f"md5:{md5.lower()}" if isinstance(md5, str) else None


def parse_dataverse_files(
    files: Any, *, site: str, max_files: int, max_bytes: int
) -> tuple[RecordFile, ...]:
    """A dataset version's files (see the module), checked by `check_files`."""
    if not isinstance(files, list):
        raise ResolveError("Dataverse answered a dataset version without a file list", 502)
    found = []
    for entry in files:
        data_file = entry.get("dataFile") if isinstance(entry, dict) else None
        if not isinstance(data_file, dict):
            raise ResolveError("Dataverse answered a file entry without its dataFile", 502)
        if entry.get("restricted") is True:
            continue
        file_id = data_file.get("id")
        if type(file_id) is not int or file_id <= 0:
            raise ResolveError("Dataverse answered a file without an id", 502)
        name, size = entry.get("label"), data_file.get("filesize")
        if data_file.get("originalFileName"):
            name, size = data_file["originalFileName"], data_file.get("originalFileSize")
        folder = entry.get("directoryLabel") or ""
        key = (
            posixpath.join(folder, name)
            if isinstance(folder, str) and isinstance(name, str)
            else None
        )
        url = f"{site}api/access/datafile/{file_id}?format=original"
        found.append((key, size, _checksum(data_file), url))
    return check_files(
        found, who="Dataverse", sites=(site,), max_files=max_files, max_bytes=max_bytes
    )


async def resolve_dataverse(
    provider: RecordProvider, spec: RepoSpec, site: str, target: str
) -> Resolved:
    """The latest published version of the dataset ``spec``'s DOI points to (``target``,
    a page of the listed installation ``site``)."""
    parts = urlsplit(target)
    pid = dataverse_dataset(parts.path[len(urlsplit(site).path) :], parts.query)
    quoted = quote(pid, safe=":/")
    url = f"{site}api/datasets/:persistentId/versions/:latest-published?persistentId={quoted}"
    status, answer, _ = await provider.get_json(url, "Dataverse", MAX_JSON)
    if status in (401, 403):
        raise ResolveError(f"the Dataverse dataset {pid} is not public", 403)
    if status == 404:
        raise ResolveError(f"Dataverse has no published dataset {pid}", 404)
    version = answer.get("data") if isinstance(answer, dict) else None
    if status != 200 or answer.get("status") != "OK" or not isinstance(version, dict):
        raise ResolveError(f"Dataverse answered HTTP {status} for {pid}", 502)
    major, minor, dataset = (
        version.get("versionNumber"),
        version.get("versionMinorNumber"),
        version.get("datasetId"),
    )
    if not all(type(n) is int and n >= 0 for n in (major, minor, dataset)):
        raise ResolveError(f"Dataverse answered a version of {pid} without its numbers", 502)
    if version.get("versionState") != "RELEASED":
        raise ResolveError(f"Dataverse has no published version of {pid}", 404)
    files = parse_dataverse_files(
        version.get("files"),
        site=site,
        max_files=provider.max_record_files,
        max_bytes=provider.max_record_bytes,
    )
    if not files:
        raise ResolveError(f"the Dataverse dataset {pid} has no public files", 404)
    provider.remember(spec.repo, False)
    number = f"{major}.{minor}"
    return Resolved(
        spec=spec,
        provider="dataverse",
        source=f"{site}api/datasets/{dataset}/versions/{number}",
        ref=f"{dataset}.v{number}",
        label=f"{pid} (v{number})",
        fetch={
            "provider": "dataverse",
            "site": site,
            "dataset": pid,
            "version": number,
            "files": [f.job() for f in files],
        },
    )
