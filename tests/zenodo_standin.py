"""A stand-in for Zenodo's records API and for the DOI proxy's handle API, on 127.0.0.1.

Zenodo and doi.org cannot be reached from the test machines, so this follows what their
documentation and current behaviour say (`/work/shared/specs/remote-apis.md`, Zenodo's
REST API pages, the DOI proxy's REST API factsheet), not what egi-hub's code happens to
send:

- DOI proxy (its own server): ``GET /api/handles/<doi>`` -> ``{"responseCode": 1,
  "handle": <doi>, "values": [{"index": 1, "type": "URL", "data": {"format":
  "string", "value": <url>}, ...}, {"index": 100, "type": "HS_ADMIN", ...}]}``; an
  unknown DOI -> 404 ``{"responseCode": 100, "handle": <doi>}``. DOIs are matched
  case-insensitively, as the DOI system does. A version DOI points to
  ``<site>records/<id>``, a concept DOI to ``<site>doi/<concept doi>`` (what Zenodo
  registers now; ``concept_target="records"`` gives the older ``records/<concept id>``).
- Zenodo (InvenioRDM): ``GET /api/records/<id>`` -> the record JSON (``id`` as a number,
  ``recid``, ``conceptrecid``, ``doi``, ``conceptdoi``, ``metadata`` with ``title``,
  ``version``, ``publication_date``, ``creators``, ``upload_type``; ``links`` with
  ``self``, ``self_html``, ``parent``, ``files``, ``latest``, ``latest_html``,
  ``versions``; ``files``: ``[{"id", "key", "size", "checksum": "md5:<hex>", "links":
  {"self": <content URL>}}]``); a concept id -> 404, as Zenodo answers today
  (zenodo/zenodo#2499; ``concept_redirects=True`` gives the older 302 to the latest
  version); ``/api/records/<id>/versions/latest`` -> 302 to the latest version of the
  id's concept (for a concept id or a version id); ``/versions`` -> search hits;
  ``/files`` -> ``{"enabled": true, "entries": [{"key", "size", "checksum", "links":
  {"self", "content"}}, ...]}``; ``/files/<key>/content`` -> the bytes; a removed
  record -> 410. Errors are ``{"status": <code>, "message": ...}``.

Test knobs: `ZenodoStandin.tamper` serves other bytes than a file's checksum says,
`ZenodoStandin.hold` keeps file downloads waiting (to cancel a fetch mid-download),
`ZenodoStandin.requests` lists the paths asked for.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import quote, unquote, urlsplit

__all__ = [
    "StandinRecord",
    "ZenodoStandin",
    "json_answer",
    "serve",
    "start_zenodo_standin",
]


@dataclass
class StandinRecord:
    """One published version: its id, its concept's id, and its files (key -> bytes)."""

    id: int
    concept: int
    files: dict[str, bytes]
    version: str
    publication_date: str
    title: str
    removed: bool = False


@dataclass
class ZenodoStandin:
    """A running stand-in (`start_zenodo_standin`): Zenodo at `url`, DOIs at `doi_url`."""

    zenodo: ThreadingHTTPServer
    handles: ThreadingHTTPServer
    prefix: str = "10.5281"
    concept_redirects: bool = False
    concept_target: str = "doi"  # where a concept DOI points: "doi" or "records"
    records: dict[int, StandinRecord] = field(default_factory=dict)
    concepts: dict[int, list[int]] = field(default_factory=dict)  # concept -> versions
    dois: dict[str, str] = field(default_factory=dict)  # lower-case DOI -> URL
    tamper: dict[tuple[int, str], bytes] = field(default_factory=dict)
    hold: threading.Event = field(default_factory=threading.Event)  # set: downloads wait
    release: threading.Event = field(default_factory=threading.Event)
    requests: list[str] = field(default_factory=list)
    _next_id: int = 100000
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        """The Zenodo site (what `RecordProvider.zenodo_urls` lists)."""
        return f"http://127.0.0.1:{self.zenodo.server_address[1]}/"

    @property
    def api(self) -> str:
        return self.url + "api/records/"

    @property
    def doi_url(self) -> str:
        """The handle API (what `RecordProvider.doi_resolver_url` is set to)."""
        return f"http://127.0.0.1:{self.handles.server_address[1]}/api/handles/"

    def doi(self, record_id: int) -> str:
        return f"{self.prefix}/zenodo.{record_id}"

    def register_doi(self, doi: str, url: str) -> None:
        """Make ``doi`` point to ``url`` (any host: a DOI may point anywhere)."""
        self.dois[doi.lower()] = url

    def publish(
        self,
        files: dict[str, bytes],
        *,
        concept: int | None = None,
        version: str = "1.0",
        title: str = "A stand-in record",
        publication_date: str = "2024-05-01",
    ) -> StandinRecord:
        """Publish a version (of ``concept``, else of a new concept: its id is minted
        first, as Zenodo does) and register its DOIs; the new version."""
        with self._lock:
            if concept is None:
                concept = self._next_id
                self._next_id += 1
                self.concepts[concept] = []
            record = StandinRecord(
                self._next_id, concept, dict(files), version, publication_date, title
            )
            self._next_id += 1
            self.records[record.id] = record
            self.concepts[concept].append(record.id)
        self.register_doi(self.doi(record.id), f"{self.url}records/{record.id}")
        concept_doi = self.doi(concept)
        if self.concept_target == "doi":
            self.register_doi(concept_doi, f"{self.url}doi/{concept_doi}")
        else:
            self.register_doi(concept_doi, f"{self.url}records/{concept}")
        return record

    def latest(self, concept: int) -> StandinRecord:
        live = [self.records[i] for i in self.concepts[concept] if not self.records[i].removed]
        return live[-1]

    def stop(self) -> None:
        self.release.set()
        for server in (self.zenodo, self.handles):
            server.shutdown()
            server.server_close()

    # -- JSON as Zenodo serializes it ---------------------------------------------------

    def _content_url(self, record: StandinRecord, key: str) -> str:
        return f"{self.api}{record.id}/files/{quote(key, safe='')}/content"

    def file_entry(self, record: StandinRecord, key: str, *, api_entry: bool) -> dict[str, Any]:
        data = record.files[key]
        entry: dict[str, Any] = {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{record.id}/{key}")),
            "key": key,
            "size": len(data),
            "checksum": "md5:" + hashlib.md5(data).hexdigest(),
        }
        if api_entry:  # the files API: self is the entry, content the bytes
            entry.update(
                mimetype="application/octet-stream",
                status="completed",
                storage_class="L",
                metadata=None,
                links={
                    "self": f"{self.api}{record.id}/files/{quote(key, safe='')}",
                    "content": self._content_url(record, key),
                },
            )
        else:  # the record's own list: self is the bytes
            entry["links"] = {"self": self._content_url(record, key)}
        return entry

    def record_json(self, record: StandinRecord) -> dict[str, Any]:
        now = datetime.datetime.now(datetime.UTC).isoformat()
        doi, concept_doi = self.doi(record.id), self.doi(record.concept)
        return {
            "created": now,
            "modified": now,
            "updated": now,
            "id": record.id,
            "recid": str(record.id),
            "conceptrecid": str(record.concept),
            "doi": doi,
            "conceptdoi": concept_doi,
            "doi_url": f"https://doi.org/{doi}",
            "title": record.title,
            "metadata": {
                "title": record.title,
                "doi": doi,
                "publication_date": record.publication_date,
                "version": record.version,
                "upload_type": "software",
                "resource_type": {"title": "Software", "type": "software"},
                "creators": [{"name": "Stand-in, Tester"}],
                "access_right": "open",
            },
            "links": {
                "self": f"{self.api}{record.id}",
                "self_html": f"{self.url}records/{record.id}",
                "doi": f"https://doi.org/{doi}",
                "parent": f"{self.api}{record.concept}",
                "parent_html": f"{self.url}records/{record.concept}",
                "parent_doi": f"https://doi.org/{concept_doi}",
                "files": f"{self.api}{record.id}/files",
                "latest": f"{self.api}{record.id}/versions/latest",
                "latest_html": f"{self.url}records/{record.id}/latest",
                "versions": f"{self.api}{record.id}/versions",
            },
            "files": [self.file_entry(record, k, api_entry=False) for k in record.files],
            "status": "published",
            "state": "done",
            "submitted": True,
            "revision": 3,
        }

    # -- routes ----------------------------------------------------------------------

    def route(self, path: str) -> tuple[int, dict[str, str], bytes]:
        """``(status, headers, body)`` of a GET on the Zenodo site."""
        parts = path.split("/")
        if len(parts) < 4 or parts[:3] != ["", "api", "records"] or not parts[3].isdigit():
            return _error(404, "Not found.")
        rid, rest = int(parts[3]), parts[4:]
        record = self.records.get(rid)
        if record is not None and record.removed:
            return _error(410, "Record deleted.")
        if not rest:
            if record is not None:
                return json_answer(200, self.record_json(record))
            if rid in self.concepts and self.concept_redirects:
                return 302, {"Location": f"{self.api}{self.latest(rid).id}"}, b""
            return _error(404, "The persistent identifier does not exist.")
        concept = record.concept if record is not None else rid
        if rest == ["versions", "latest"]:
            if concept not in self.concepts:
                return _error(404, "The persistent identifier does not exist.")
            return 302, {"Location": f"{self.api}{self.latest(concept).id}"}, b""
        if rest == ["versions"] and concept in self.concepts:
            hits = [self.record_json(self.records[i]) for i in self.concepts[concept]]
            return json_answer(200, {"hits": {"hits": hits, "total": len(hits)}})
        if record is None:
            return _error(404, "The persistent identifier does not exist.")
        if rest == ["files"]:
            entries = [self.file_entry(record, k, api_entry=True) for k in record.files]
            return json_answer(200, {"enabled": True, "entries": entries, "order": []})
        if len(rest) == 3 and rest[0] == "files" and rest[2] == "content":
            key = unquote(rest[1])
            if key not in record.files:
                return _error(404, "File not found.")
            if self.hold.is_set():
                self.release.wait(60)
            data = self.tamper.get((record.id, key), record.files[key])
            return 200, {"Content-Type": "application/octet-stream"}, data
        return _error(404, "Not found.")

    def handle(self, path: str) -> tuple[int, dict[str, str], bytes]:
        """``(status, headers, body)`` of a GET on the DOI proxy."""
        if not path.startswith("/api/handles/"):
            return 404, {"Content-Type": "text/plain"}, b"not found"
        doi = unquote(path[len("/api/handles/") :])
        url = self.dois.get(doi.lower())
        if url is None:
            return json_answer(404, {"responseCode": 100, "handle": doi})
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        values = [
            {
                "index": 1,
                "type": "URL",
                "data": {"format": "string", "value": url},
                "ttl": 86400,
                "timestamp": now,
            },
            {
                "index": 100,
                "type": "HS_ADMIN",
                "data": {
                    "format": "admin",
                    "value": {
                        "handle": "0.na/10.5281",
                        "index": 200,
                        "permissions": "111111110010",
                    },
                },
                "ttl": 86400,
                "timestamp": now,
            },
        ]
        return json_answer(200, {"responseCode": 1, "handle": doi, "values": values})


def json_answer(status: int, data: Any) -> tuple[int, dict[str, str], bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(data).encode()


def _error(status: int, message: str) -> tuple[int, dict[str, str], bytes]:
    return json_answer(status, {"status": status, "message": message})


Route = Callable[[str, str], tuple[int, dict[str, str], bytes]]


def serve(route: Route, log: list[str], name: str) -> ThreadingHTTPServer:
    """Answer GETs with ``route(path, query)`` on a free port of 127.0.0.1 (in a thread),
    noting ``"<name> <path>"`` in ``log``; the stand-ins of records sites share it."""

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            log.append(f"{name} {parts.path}")
            status, headers, body = route(parts.path, parts.query)
            self.send_response(status)
            for header, value in headers.items():
                self.send_header(header, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def start_zenodo_standin(
    *, prefix: str = "10.5281", concept_redirects: bool = False, concept_target: str = "doi"
) -> ZenodoStandin:
    """Serve Zenodo and the DOI proxy on free ports of 127.0.0.1 (threads of this process)."""
    standin = ZenodoStandin(
        zenodo=None,  # type: ignore[arg-type]
        handles=None,  # type: ignore[arg-type]
        prefix=prefix,
        concept_redirects=concept_redirects,
        concept_target=concept_target,
    )
    standin.zenodo = serve(lambda path, _: standin.route(path), standin.requests, "zenodo")
    standin.handles = serve(lambda path, _: standin.handle(path), standin.requests, "handles")
    return standin
