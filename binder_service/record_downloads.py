"""Archived records in the fetch worker: repo2docker's ``Zenodo``, ``Figshare`` and
``Dataverse`` content providers, each subclassed with safe requests and a safe
``fetch_file`` (used only inside `binder_service.fetch_worker`'s process).

repo2docker's own ``fetch_file`` joins a record's file names into paths unchecked (a name
``../../x`` writes outside the content), streams without any size limit, never checks a
checksum, and extracts a single zip with ``ZipFile.extractall``, without limits; its
requests follow redirects anywhere. What replaces them here:

- requests go only to the record's own site (its API for JSON, read up to a cap; its
  download hosts for bytes); redirects are followed only within the site, and for
  downloads to the download host or to ``https`` storage (Figshare and Dataverse hand
  files out from S3-like stores); nothing of the service's is ever sent along;
- each file is checked against the list the service resolved (name, size, checksum):
  a name is refused as archive entries are (`binder_service.archives`), the bytes are
  counted while streaming (no more than the resolved size, no more than the fetch's
  byte limit), the checksum is verified, and a file the record did not have when it was
  resolved, or one it no longer has, fails the fetch (relaunch to resolve again);
- a single ``.zip`` is extracted through `binder_service.archives` (names, types, sizes,
  counts), its top folder unwrapped.

The sites come from the service's settings (`RecordProvider.fetch_settings`), else
from the job the service made; ``Dataverse``'s installation list is never downloaded
(its ``hosts`` are set here, and ``detect`` is never called).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import requests
from repo2docker.contentproviders import Dataverse, Figshare, Zenodo
from repo2docker.utils import deep_get

from egi_hub.names import CONTROL as _CONTROL

from .archives import ArchiveError, check_member_name, extract_zip

__all__ = [
    "SafeDataverse",
    "SafeFigshare",
    "SafeZenodo",
    "WorkerError",
    "clean_line",
    "fetch_record",
]

MAX_JSON = 8 << 20
MAX_LINE = 1000
CHUNK = 1 << 16
TIMEOUT = (15, 120)  # connect, read (seconds); the whole fetch has the service's deadline
_ALGORITHMS = ("md5", "sha1", "sha256", "sha512")


class WorkerError(Exception):
    """The fetch cannot be done; ``str()`` is the one-line reason the user sees."""


def clean_line(text: str) -> str:
    """A progress line fit for a build log: no control characters, not too long."""
    return _CONTROL.sub("", text.rstrip("\r\n"))[:MAX_LINE]


class _Response:
    """What repo2docker's providers use of a response (``json()``, ``status_code``)."""

    def __init__(self, status_code: int, body: bytes) -> None:
        self.status_code, self.body = status_code, body

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            raise WorkerError("the record's site answered something that is not JSON") from None

    def raise_for_status(self) -> None:
        pass  # only 200s are ever made into a _Response


class SafeRecordFiles:
    """The safe requests and ``fetch_file`` (see the module), for a repo2docker
    ``DoiProvider`` subclass: set ``json_urls`` and ``download_urls`` (prefixes)."""

    session: requests.Session
    json_urls: tuple[str, ...] = ()
    download_urls: tuple[str, ...] = ()

    def setup(
        self, *, files: list[dict[str, Any]], scratch: Path, max_bytes: int, max_files: int
    ) -> None:
        self.expected = {f["key"]: f for f in files}
        self.fetched: set[str] = set()
        self.scratch = scratch
        self.max_bytes, self.max_files = max_bytes, max_files
        self.used = 0  # bytes downloaded so far

    @staticmethod
    def _clean_url(url: Any) -> str:
        if not isinstance(url, str) or _CONTROL.search(url) or "/../" in urlsplit(url).path:
            raise WorkerError("the record points to an odd URL (refused)")
        return url

    def _get(self, url: str, prefixes: tuple[str, ...], **kwargs: Any) -> requests.Response:
        """A GET on ``prefixes``; redirects followed within them, or (downloads) to https."""
        url = self._clean_url(url)
        if not url.startswith(prefixes):
            raise WorkerError("the record points to a URL outside its site (refused)")
        for _ in range(5):
            response = self.session.get(url, timeout=TIMEOUT, allow_redirects=False, **kwargs)
            if response.status_code not in (301, 302, 303, 307, 308):
                break
            response.close()
            url = self._clean_url(urljoin(url, response.headers.get("Location", "")))
            if not (url.startswith(prefixes) or self._storage(url, prefixes)):
                raise WorkerError("the record's site redirected outside itself (refused)")
        else:
            raise WorkerError("the record's site redirected too many times")
        if response.status_code != 200:
            response.close()
            where = urlsplit(url)
            raise WorkerError(
                f"the record's site answered HTTP {response.status_code} for "
                f"{where.scheme}://{where.netloc}{where.path}"
            )
        return response

    def _storage(self, url: str, prefixes: tuple[str, ...]) -> bool:
        """Whether a download may be redirected to ``url``: https storage anywhere, or
        the download host itself (scheme, host and port)."""
        if prefixes != self.download_urls:
            return False
        target = urlsplit(url)
        origins = {(urlsplit(p).scheme, urlsplit(p).netloc) for p in prefixes}
        return target.scheme == "https" or (target.scheme, target.netloc) in origins

    def _request(self, url: str, **kwargs: Any) -> _Response:
        """repo2docker's request: here only JSON from the record's site, capped."""
        headers = kwargs.get("headers")
        with self._get(url, self.json_urls, stream=True, headers=headers) as response:
            body = bytearray()
            for chunk in response.iter_content(CHUNK):
                body += chunk
                if len(body) > MAX_JSON:
                    raise WorkerError(f"the record's site answered more than {MAX_JSON} bytes")
        return _Response(200, bytes(body))

    urlopen = _request  # repo2docker's providers call either name

    def fetch_file(
        self, file_ref: dict[str, Any], host: dict[str, Any], output_dir: str, unzip: bool = False
    ) -> Iterator[str]:
        """Download one file of the record into ``output_dir`` (a single ``.zip``:
        extracted there), checked against the resolved list (see the module)."""
        try:
            key = deep_get(file_ref, host["filename"])
            url = deep_get(file_ref, host["download"])
        except (KeyError, IndexError, TypeError):
            raise WorkerError("the record lists a file without a name or link") from None
        if not isinstance(key, str):
            raise WorkerError("the record lists a file without a name")
        try:
            segments = check_member_name(key, "record file")
        except ArchiveError as e:
            raise WorkerError(f"refused: {e}") from None
        expected = self.expected.get(key)
        if expected is None or key in self.fetched:
            raise WorkerError(
                f"the record lists the file {key[:80]!r}, which it did not have when it was "
                "resolved: relaunch to resolve it again"
            )
        self.fetched.add(key)
        size = expected["size"]
        if self.used + size > self.max_bytes:
            raise WorkerError(f"the record holds more than the limit of {self.max_bytes} bytes")
        zipped = unzip and key.lower().endswith(".zip")
        if zipped:
            self.scratch.mkdir(mode=0o700, exist_ok=True)
            target = self.scratch / f"{secrets.token_hex(8)}.zip"
        else:
            target = Path(output_dir).joinpath(*segments)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise WorkerError(f"the record uses a file as a folder in {key[:80]!r}") from None
        yield f"Fetching {key} ({size} bytes)"
        self._download(url, target, key, expected)
        self.used += size
        if zipped:
            yield f"Extracting {key}"
            try:
                done = extract_zip(
                    target, output_dir, max_bytes=self.max_bytes, max_files=self.max_files
                )
            except ArchiveError as e:
                raise WorkerError(f"refused {key[:80]!r}: {e}") from None
            finally:
                target.unlink(missing_ok=True)
            yield f"Extracted {done.files} files ({done.bytes} bytes)" + (
                f" from the folder {done.unwrapped}" if done.unwrapped else ""
            )

    def _download(self, url: Any, target: Path, key: str, expected: dict[str, Any]) -> None:
        size = expected["size"]
        algorithm, _, hexdigest = str(expected["checksum"]).partition(":")
        if algorithm not in _ALGORITHMS:
            raise WorkerError(f"the file {key[:80]!r} has no checksum this worker knows")
        digest = hashlib.new(algorithm, usedforsecurity=False)
        got = 0
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        try:
            fd = os.open(target, flags, 0o644)
        except FileExistsError:
            raise WorkerError(f"the record has the file {key[:80]!r} twice") from None
        with os.fdopen(fd, "wb") as out, self._get(url, self.download_urls, stream=True) as r:
            for chunk in r.iter_content(CHUNK):
                got += len(chunk)
                if got > size:
                    raise WorkerError(f"the file {key[:80]!r} is larger than the record says")
                digest.update(chunk)
                out.write(chunk)
        if got != size:
            raise WorkerError(f"the file {key[:80]!r} is smaller than the record says")
        if digest.hexdigest() != hexdigest:
            raise WorkerError(
                f"the file {key[:80]!r} does not match its checksum: the download was "
                "corrupted or altered"
            )

    def check_complete(self) -> None:
        missing = sorted(set(self.expected) - self.fetched)
        if missing:
            raise WorkerError(
                f"the record no longer lists the file {missing[0][:80]!r} it had when it was "
                "resolved: relaunch to resolve it again"
            )


def _site(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def zenodo_host(site: str) -> dict[str, Any]:
    """repo2docker's description of an Invenio/Zenodo site (its ``Zenodo.hosts`` entry)."""
    site = _site(site)
    return {
        "hostname": [site + "record/", site + "records/"],
        "api": site + "api/records/",
        "files": "links.files",
        "filepath": "entries",
        "filename": "key",
        "download": "links.content",
        "type": "metadata.upload_type",
    }


class SafeZenodo(SafeRecordFiles, Zenodo):
    """repo2docker's Zenodo provider for the sites given, with the safe parts above."""

    def __init__(self, sites: list[str]) -> None:
        super().__init__()
        self.hosts = [zenodo_host(site) for site in sites]
        self.json_urls = self.download_urls = tuple(h["api"] for h in self.hosts)


class SafeFigshare(SafeRecordFiles, Figshare):
    """repo2docker's Figshare provider for one API and its download hosts."""

    def __init__(self, api: str, downloads: list[str]) -> None:
        super().__init__()
        self.hosts = [
            {
                "hostname": [],  # detect() is never called: the service resolved the article
                "api": _site(api) + "articles/",
                "filepath": "files",
                "filename": "name",
                "download": "download_url",
            }
        ]
        self.json_urls = (self.hosts[0]["api"],)
        self.download_urls = tuple(_site(d) for d in downloads)


class SafeDataverse(SafeRecordFiles, Dataverse):
    """repo2docker's Dataverse provider for one listed installation, fetching the version
    the service resolved (repo2docker's own reads whatever version is latest now)."""

    def __init__(self, site: str, dataset: str, version: str) -> None:
        super().__init__()
        site = _site(site)
        self.hosts = [{"name": site, "hostname": urlsplit(site).netloc}]
        self.site, self.dataset, self.version = site, dataset, version
        self.json_urls = (site + "api/datasets/",)
        self.download_urls = (site + "api/access/datafile/",)

    def get_datafiles(self, url: str) -> list[dict[str, Any]]:
        quoted = quote(self.dataset, safe=":/")
        answer = self.urlopen(
            f"{self.site}api/datasets/:persistentId/versions/{self.version}?persistentId={quoted}",
            headers={"accept": "application/json"},
        ).json()
        self.persistent_id = self.dataset
        files = answer.get("data", {}).get("files") if isinstance(answer, dict) else None
        if not isinstance(files, list):
            raise WorkerError("Dataverse answered a dataset version without its files")
        return [f for f in files if isinstance(f, dict) and f.get("restricted") is not True]


def fetch_record(
    job: dict[str, Any],
    work: Path,
    scratch: Path,
    limits: dict[str, Any],
    settings: dict[str, Any],
) -> Iterator[str]:
    """Fetch a ``zenodo``, ``figshare`` or ``dataverse`` job (made by
    `binder_service.providers`) into ``work``, yielding progress lines."""
    kind, files = job.get("provider"), job.get("files")
    if not isinstance(files, list) or not all(
        isinstance(f, dict) and isinstance(f.get("key"), str) for f in files
    ):
        raise WorkerError("the fetch job lists no files")
    provider: SafeRecordFiles
    if kind == "zenodo":
        api, record = job.get("api"), job.get("record")
        if not isinstance(api, str) or not isinstance(record, str) or not record.isdigit():
            raise WorkerError("the fetch job names no Zenodo record")
        provider = SafeZenodo(settings.get("zenodo_urls") or [api.removesuffix("api/records/")])
        host = next((h for h in provider.hosts if h["api"] == api), None)
        spec: Any = {"record": record, "host": host}
    elif kind == "figshare":
        api, article, version = job.get("api"), job.get("article"), job.get("version")
        if not all(isinstance(x, str) for x in (api, article, version)):
            raise WorkerError("the fetch job names no Figshare article")
        given = settings.get("figshare_api_url")
        downloads = settings.get("figshare_download_urls") or job.get("downloads") or []
        provider = SafeFigshare(given or api.removesuffix("articles/"), downloads)
        host = provider.hosts[0] if provider.hosts[0]["api"] == api else None
        spec = {"article": article, "version": version, "host": host}
    elif kind == "dataverse":
        site, dataset, version = job.get("site"), job.get("dataset"), job.get("version")
        if not all(isinstance(x, str) for x in (site, dataset, version)):
            raise WorkerError("the fetch job names no Dataverse dataset")
        listed = settings.get("dataverse_urls")
        host = site if listed is None or site in listed else None
        provider = SafeDataverse(site, dataset, version)
        spec = f"{_site(site)}dataset.xhtml?persistentId={quote(dataset, safe=':/')}"
    else:
        raise WorkerError(f"fetching {str(kind)[:40]!r} content is not supported")
    if host is None:
        raise WorkerError("the record's site is not one this service launches records from")
    provider.setup(
        files=files, scratch=scratch, max_bytes=limits["max_bytes"], max_files=limits["max_files"]
    )
    try:
        for line in provider.fetch(spec, str(work), yield_output=True):  # type: ignore[attr-defined]
            yield clean_line(line)
    except requests.RequestException as e:
        raise WorkerError(f"the record's site could not be reached ({type(e).__name__})") from None
    except (KeyError, IndexError, TypeError, AttributeError):
        raise WorkerError("the record's site answered a record without its file list") from None
    provider.check_complete()
