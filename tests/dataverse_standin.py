"""A stand-in for a Dataverse installation (its native API for datasets and its data
access API), on 127.0.0.1.

No Dataverse can run on the test machines, so this follows the Dataverse guides (Native
API: "Get Version of a Dataset", ``:latest-published``; Data Access API: "Basic File
Access", ``format=original``) and what repo2docker's Dataverse provider relies on:

- a dataset's DOI points to ``<site>citation?persistentId=doi:<doi>`` (registered at
  the DOI proxy stand-in);
- ``GET /api/datasets/:persistentId/versions/<version>?persistentId=<pid>`` (a
  ``<major>.<minor>`` or ``:latest-published``) -> ``{"status": "OK", "data":
  {"id", "datasetId", "datasetPersistentId", "versionNumber", "versionMinorNumber",
  "versionState": "RELEASED", "files": [{"label", "directoryLabel", "restricted",
  "dataFile": {"id", "persistentId", "filename", "filesize", "md5", "checksum":
  {"type": "MD5", "value"}, ...}}]}}``; an ingested tabular file is labelled ``.tab``
  with its original's ``originalFileName``, ``originalFileSize``, ``originalFileFormat``
  (the checksum is the original upload's); unknown -> 404 ``{"status": "ERROR",
  "message": ...}``; a dataset with only a draft has no ``:latest-published`` (404);
- ``GET /api/access/datafile/<id>?format=original`` -> the original bytes (the archival
  ``.tab`` without ``format=original``); a restricted file -> 403.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from tests.zenodo_standin import ZenodoStandin, json_answer, serve

__all__ = ["DataverseStandin", "StandinFile", "start_dataverse_standin"]


@dataclass
class StandinFile:
    path: str  # "dir/name" as uploaded
    data: bytes  # the original upload
    ingested: bool = False  # tabular: archived as <name>.tab
    restricted: bool = False


@dataclass
class DataverseStandin:
    server: ThreadingHTTPServer
    dois: ZenodoStandin
    datasets: dict[str, list[list[StandinFile]]] = field(default_factory=dict)  # pid -> versions
    drafts: set[str] = field(default_factory=set)
    ids: dict[int, StandinFile] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    _next_dataset: int = 3000

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/"

    def publish(self, doi: str, files: list[StandinFile], *, draft: bool = False) -> str:
        """A new published version (or only a draft) of dataset ``doi``; its pid."""
        pid = f"doi:{doi}"
        self.datasets.setdefault(pid, [])
        if draft:
            self.drafts.add(pid)
        else:
            self.datasets[pid].append(list(files))
        self.dois.register_doi(doi, f"{self.url}citation?persistentId={pid}")
        return pid

    def _file_id(self, pid: str, version: int, path: str) -> int:
        digest = hashlib.sha256(f"{pid}/{version}/{path}".encode()).digest()
        return 100_000 + int.from_bytes(digest[:3], "big")

    def version_json(self, pid: str, number: int) -> dict[str, Any]:
        files = []
        for f in self.datasets[pid][number - 1]:
            fid = self._file_id(pid, number, f.path)
            self.ids[fid] = f
            folder, name = posixpath.split(f.path)
            md5 = hashlib.md5(f.data).hexdigest()
            data_file: dict[str, Any] = {
                "id": fid, "persistentId": "", "filename": name, "contentType": "text/plain",
                "filesize": len(f.data), "storageIdentifier": f"file://{fid:x}",
                "rootDataFileId": -1, "md5": md5, "checksum": {"type": "MD5", "value": md5},
                "creationDate": "2024-05-01", "publicationDate": "2024-05-02",
            }  # fmt: skip
            label = name
            if f.ingested:
                label = name.rsplit(".", 1)[0] + ".tab"
                data_file.update(
                    filename=label,
                    contentType="text/tab-separated-values",
                    filesize=len(self._archival(f)),
                    originalFileFormat="text/csv",
                    originalFormatLabel="Comma Separated Values",
                    originalFileSize=len(f.data),
                    originalFileName=name,
                    tabularData=True,
                )
            entry: dict[str, Any] = {"label": label, "restricted": f.restricted, "version": 1,
                                     "datasetVersionId": number, "dataFile": data_file}  # fmt: skip
            if folder:
                entry["directoryLabel"] = folder
            files.append(entry)
        dataset = 100 + list(self.datasets).index(pid)
        return {
            "id": dataset * 10 + number,
            "datasetId": dataset,
            "datasetPersistentId": pid,
            "storageIdentifier": f"file://{pid}",
            "versionNumber": number,
            "versionMinorNumber": 0,
            "versionState": "RELEASED",
            "latestVersionPublishingState": "RELEASED",
            "lastUpdateTime": "2024-05-02T10:00:00Z",
            "releaseTime": "2024-05-02T10:00:00Z",
            "files": files,
        }

    @staticmethod
    def _archival(f: StandinFile) -> bytes:
        return f.data.replace(b",", b"\t")

    def route(self, path: str, query: str) -> tuple[int, dict[str, str], bytes]:
        args = {k: v[0] for k, v in parse_qs(query).items()}
        parts = [p for p in path.split("/") if p]
        if parts[:3] == ["api", "access", "datafile"] and len(parts) == 4 and parts[3].isdigit():
            f = self.ids.get(int(parts[3]))
            if f is None:
                return json_answer(404, {"status": "ERROR", "message": "File not found"})
            if f.restricted:
                return json_answer(403, {"status": "ERROR", "message": "Not authorized"})
            data = f.data if (args.get("format") == "original" or not f.ingested) else (
                self._archival(f))  # fmt: skip
            return 200, {"Content-Type": "application/octet-stream"}, data
        if parts[:3] == ["api", "datasets", ":persistentId"] and len(parts) == 5:
            pid, wanted = args.get("persistentId", ""), parts[4]
            versions = self.datasets.get(pid) or []
            number = len(versions) if wanted in (":latest-published", ":latest") else 0
            if wanted.replace(".", "").isdigit() and wanted.endswith(".0"):
                number = int(wanted.split(".")[0])
            if parts[3] == "versions" and 1 <= number <= len(versions):
                return json_answer(200, {"status": "OK", "data": self.version_json(pid, number)})
            missing = f"Dataset version {wanted} of {pid} not found"
            return json_answer(404, {"status": "ERROR", "message": missing})
        return json_answer(404, {"status": "ERROR", "message": "API endpoint does not exist"})

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def start_dataverse_standin(dois: ZenodoStandin) -> DataverseStandin:
    """Serve a Dataverse stand-in at the root of a free port of 127.0.0.1; datasets'
    DOIs are registered at ``dois``' DOI proxy."""
    standin = DataverseStandin(server=None, dois=dois)  # type: ignore[arg-type]
    standin.server = serve(standin.route, standin.requests, "dataverse")
    return standin
