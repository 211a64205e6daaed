"""A stand-in for Figshare (its public API v2 and its file downloads), on 127.0.0.1.

Figshare cannot be reached from the test machines, so this follows Figshare's
documented public API (docs.figshare.com, "Public articles") and what repo2docker's
Figshare provider and its tests rely on:

- article pages: ``<site>articles/<type>/<slug>/<id>`` and, for a version,
  ``.../<id>/<version>``: what the DOIs point to (``10.6084/m9.figshare.<id>`` and
  ``10.6084/m9.figshare.<id>.v<version>``, registered at the DOI proxy stand-in);
- ``GET /v2/articles/<id>/versions`` -> ``[{"version": n, "url": ...}]``;
  ``GET /v2/articles/<id>/versions/<n>`` and ``GET /v2/articles/<id>`` (the latest) ->
  the article (``id``, ``title``, ``doi``, ``version``, ``url_public_html``,
  ``defined_type_name``, ``files``: ``[{"id", "name", "size", "is_link_only",
  "download_url", "supplied_md5", "computed_md5", "mimetype"}]``); unknown -> 404
  ``{"message": "Entity not found: article", "code": "EntityNotFound"}``;
- ``download_url`` is ``<downloads>files/<file id>``, which redirects (302) to a signed
  storage URL (on figshare.com: S3), served here by the same server.

`FigshareStandin.tamper` serves other bytes than a file's ``computed_md5`` says.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from tests.zenodo_standin import ZenodoStandin, json_answer, serve

__all__ = ["FigshareStandin", "start_figshare_standin"]


@dataclass
class FigshareStandin:
    server: ThreadingHTTPServer
    dois: ZenodoStandin  # the DOI proxy stand-in where the articles' DOIs are registered
    articles: dict[int, list[dict[str, bytes]]] = field(default_factory=dict)  # versions
    links: dict[int, dict[str, str]] = field(default_factory=dict)  # link-only files
    blobs: dict[int, bytes] = field(default_factory=dict)  # file id -> bytes
    tamper: dict[int, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    _next: int = 9_700_000

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    @property
    def api(self) -> str:
        return self.url + "v2/"

    @property
    def downloads(self) -> str:
        return self.url + "ndownloader/"

    def doi(self, article: int, version: int | None = None) -> str:
        return f"10.6084/m9.figshare.{article}" + (f".v{version}" if version else "")

    def publish(
        self, files: dict[str, bytes], *, article: int | None = None, links: dict | None = None
    ) -> tuple[int, int]:
        """A new version of ``article`` (else a new article) with ``files`` (and
        link-only ``links``: name -> URL); ``(article id, version)``."""
        if article is None:
            article, self._next = self._next, self._next + 1
            self.articles[article] = []
        self.articles[article].append(dict(files))
        self.links[article] = dict(links or {})
        version = len(self.articles[article])
        page = f"{self.url}articles/dataset/stand-in_article/{article}"
        self.dois.register_doi(self.doi(article), page)
        self.dois.register_doi(self.doi(article, version), f"{page}/{version}")
        return article, version

    def file_id(self, article: int, version: int, name: str) -> int:
        digest = hashlib.sha256(f"{article}/{version}/{name}".encode()).digest()
        return 10_000_000 + int.from_bytes(digest[:3], "big")

    def article_json(self, article: int, version: int) -> dict[str, Any]:
        files = []
        for name, data in self.articles[article][version - 1].items():
            fid = self.file_id(article, version, name)
            self.blobs[fid] = data
            md5 = hashlib.md5(data).hexdigest()
            files.append({"id": fid, "name": name, "size": len(data), "is_link_only": False,
                          "download_url": f"{self.downloads}files/{fid}", "supplied_md5": md5,
                          "computed_md5": md5, "mimetype": "application/octet-stream"})  # fmt: skip
        for name, link in self.links.get(article, {}).items():
            files.append({"id": self.file_id(article, version, name), "name": name, "size": 0,
                          "is_link_only": True, "download_url": link, "supplied_md5": "",
                          "computed_md5": ""})  # fmt: skip
        return {
            "id": article,
            "title": "A stand-in article",
            "doi": self.doi(article, version),
            "version": version,
            "url": f"{self.api}articles/{article}",
            "url_public_api": f"{self.api}articles/{article}",
            "url_public_html": f"{self.url}articles/dataset/stand-in_article/{article}",
            "defined_type": 3,
            "defined_type_name": "dataset",
            "published_date": "2024-05-01T10:00:00Z",
            "files": files,
        }

    def route(self, path: str, query: str) -> tuple[int, dict[str, str], bytes]:
        parts = [p for p in path.split("/") if p]
        missing = json_answer(404, {"message": "Entity not found: article",
                                    "code": "EntityNotFound"})  # fmt: skip
        if parts[:2] == ["ndownloader", "files"] and len(parts) == 3 and parts[2].isdigit():
            if int(parts[2]) not in self.blobs:
                return missing
            signed = f"{self.url}storage/{parts[2]}?X-Amz-Signature={secrets.token_hex(8)}"
            return 302, {"Location": signed}, b""
        if parts[:1] == ["storage"] and len(parts) == 2 and parts[1].isdigit():
            if "X-Amz-Signature" not in parse_qs(query):
                return 403, {"Content-Type": "text/plain"}, b"AccessDenied"
            fid = int(parts[1])
            data = self.tamper.get(fid, self.blobs.get(fid))
            if data is None:
                return 404, {"Content-Type": "text/plain"}, b"NoSuchKey"
            return 200, {"Content-Type": "application/octet-stream"}, data
        if parts[:2] != ["v2", "articles"] or len(parts) < 3 or not parts[2].isdigit():
            return missing
        article = int(parts[2])
        versions = self.articles.get(article)
        if not versions:
            return missing
        rest = parts[3:]
        if not rest:
            return json_answer(200, self.article_json(article, len(versions)))
        if rest == ["versions"]:
            base = f"{self.api}articles/{article}/versions/"
            numbers = range(1, len(versions) + 1)
            return json_answer(200, [{"version": n, "url": f"{base}{n}"} for n in numbers])
        if len(rest) == 2 and rest[0] == "versions" and rest[1].isdigit():
            if not 1 <= int(rest[1]) <= len(versions):
                return missing
            return json_answer(200, self.article_json(article, int(rest[1])))
        return missing

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_figshare_standin(dois: ZenodoStandin) -> FigshareStandin:
    """Serve the Figshare stand-in (site, API and downloads on one port of 127.0.0.1);
    the articles' DOIs are registered at ``dois``' DOI proxy."""
    standin = FigshareStandin(server=None, dois=dois)  # type: ignore[arg-type]
    standin.server = serve(standin.route, standin.requests, "figshare")
    return standin
