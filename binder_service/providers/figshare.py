"""Figshare articles behind ``v2/doi/<doi>`` links (for sites that list Figshare in
`RecordProvider.figshare_urls`).

A Figshare DOI points to the article's page: ``<site>articles/[<type>/]<slug>/<id>``,
with ``/<version>`` for a version DOI (``10.6084/m9.figshare.<id>.v<version>``). The
version is pinned: from the URL or the DOI when they name one (immutable), else the
latest from ``GET <api>articles/<id>/versions`` (a list of ``{"version", "url"}``). The
article version (``GET <api>articles/<id>/versions/<version>``) lists its files with
``name``, ``size``, ``computed_md5``, ``download_url`` and ``is_link_only`` (links to
elsewhere, left out as repo2docker does); downloads must be on one of the site's
download hosts (`RecordProvider.figshare_download_urls`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ..specs import RepoSpec
from .base import Resolved, ResolveError
from .records import MAX_JSON, RecordFile, check_files

if TYPE_CHECKING:
    from .records import RecordProvider

__all__ = ["figshare_article", "parse_figshare_files", "resolve_figshare"]

_ID = re.compile(r"[0-9]{1,20}")
_DOI_VERSION = re.compile(r"\.v([0-9]{1,9})$", re.IGNORECASE)


def figshare_article(path: str, doi: str = "") -> tuple[str, str] | None:
    """``(article id, version or "")`` from a Figshare page's path below its site
    (``articles/[<type>/]<slug>/<id>[/<version>]``, or ``articles/<id>``), the version
    taken from ``doi`` (``....v<n>``) when the path names none; None if not an article."""
    parts = [p for p in path.split("/") if p]
    if len(parts) < 2 or parts[0] != "articles" or not _ID.fullmatch(parts[-1]):
        return None
    rest = parts[1:]
    if len(rest) >= 3 and _ID.fullmatch(rest[-2]):
        return rest[-2], rest[-1]
    match = _DOI_VERSION.search(doi)
    return rest[-1], match.group(1) if match else ""


def parse_figshare_files(
    data: Any, *, downloads: tuple[str, ...], max_files: int, max_bytes: int
) -> tuple[RecordFile, ...]:
    """An article version's files (see the module), checked by `check_files`."""
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list):
        raise ResolveError("Figshare answered an article without a file list", 502)
    found = []
    for entry in files:
        if not isinstance(entry, dict):
            raise ResolveError("Figshare answered a file entry that is not an object", 502)
        if entry.get("is_link_only") is True:
            continue
        md5 = entry.get("computed_md5")
        checksum = f"md5:{md5}" if isinstance(md5, str) else None
        found.append((entry.get("name"), entry.get("size"), checksum, entry.get("download_url")))
    return check_files(
        found, who="Figshare", sites=downloads, max_files=max_files, max_bytes=max_bytes
    )


async def resolve_figshare(provider: RecordProvider, spec: RepoSpec, path: str) -> Resolved:
    """The article version ``spec``'s DOI names (its page is ``path`` below a listed site)."""
    found = figshare_article(path, spec.repo)
    if found is None:
        raise ResolveError(f"the DOI {spec.repo} points to a Figshare page that is not an article")
    article, version = found
    api = provider.figshare_api_url + "articles/"
    pinned = bool(version)
    if not version:
        status, data, _ = await provider.get_json(f"{api}{article}/versions", "Figshare", MAX_JSON)
        if status == 404:
            raise ResolveError(f"Figshare has no article {article}", 404)
        if status != 200 or not isinstance(data, list):
            raise ResolveError(
                f"Figshare answered HTTP {status} for the versions of {article}", 502
            )
        numbers = [
            v["version"]
            for v in data
            if isinstance(v, dict) and type(v.get("version")) is int and v["version"] > 0
        ]
        if not numbers:
            raise ResolveError(f"Figshare article {article} has no public version", 404)
        version = str(max(numbers))
    source = f"{api}{article}/versions/{version}"
    status, data, _ = await provider.get_json(source, "Figshare", MAX_JSON)
    if status == 404:
        raise ResolveError(f"Figshare has no version {version} of article {article}", 404)
    if status != 200:
        raise ResolveError(f"Figshare answered HTTP {status} for article {article}", 502)
    files = parse_figshare_files(
        data,
        downloads=tuple(provider.figshare_download_urls),
        max_files=provider.max_record_files,
        max_bytes=provider.max_record_bytes,
    )
    if not files:
        raise ResolveError(f"Figshare article {article} has no files", 404)
    provider.remember(spec.repo, pinned)
    return Resolved(
        spec=spec,
        provider="figshare",
        source=source,
        ref=f"{article}.v{version}",
        label=f"figshare.{article}.v{version}",
        fetch={
            "provider": "figshare",
            "api": api,
            "article": article,
            "version": version,
            "downloads": list(provider.figshare_download_urls),
            "files": [f.job() for f in files],
        },
    )
