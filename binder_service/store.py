"""`BuildStore`: what every build resolved and logged, kept on disk.

One record per environment key (``<dir>/<key>.json``) and its whole log
(``<dir>/<key>.log``): the API shows both, so a user can see exactly what ran (the
venv's ``pip freeze``, the image digest), and a relaunch of the key runs the same
environment. Records are written whole to a temporary file and renamed, so a crash
never leaves half a record; a record left ``building`` by a service that stopped is
marked ``failed`` ("the service stopped during the build") when the store opens.

A build made from a private repository (a launch with a user's own token) has
``"private": true`` and its ``"owner"``: `visible_to` says who may see it (its owner
and admins): everything in it (label, source, log) is of that repository.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from typing import Any

__all__ = ["KEY_PATTERN", "BuildStore", "visible_to"]

KEY_PATTERN = re.compile(r"[0-9a-f]{16,128}")
MAX_LOG_SHOWN = 2 * 1024 * 1024  # bytes of a log the API returns (its tail)


def visible_to(record: dict[str, Any], user: str, *, admin: bool = False) -> bool:
    """Whether ``user`` may see ``record``: a public build everyone, a private one its
    owner and admins (a private record without a valid owner: admins only)."""
    if not record.get("private"):
        return True
    owner = record.get("owner")
    return admin or (isinstance(owner, str) and bool(owner) and owner == user)


class BuildStore:
    """Build records and logs under ``root`` (made 0700)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        for record in self.records():
            if record.get("state") == "building":
                record.update(state="failed", reason="the service stopped during the build")
                self.save(record)

    def _path(self, key: str, suffix: str) -> Path:
        if not KEY_PATTERN.fullmatch(key):
            raise ValueError(f"not a build key: {key[:80]!r}")
        return self.root / f"{key}{suffix}"

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._path(key, ".json").read_text())
        except (OSError, ValueError):
            return None

    def save(self, record: dict[str, Any]) -> None:
        path = self._path(record["key"], ".json")
        partial = path.with_suffix(f".json.{os.getpid()}.partial")
        partial.write_text(json.dumps(record, indent=1, sort_keys=True))
        partial.replace(path)

    def records(self) -> list[dict[str, Any]]:
        out = []
        for path in sorted(self.root.glob("*.json")):
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return sorted(out, key=lambda r: r.get("started", 0), reverse=True)

    def start_log(self, key: str) -> Any:
        """A fresh log file for a build of ``key``, open for appending lines."""
        return open(self._path(key, ".log"), "w", encoding="utf-8", errors="replace")

    def log_text(self, key: str) -> str:
        path = self._path(key, ".log")
        try:
            size = path.stat().st_size
            with open(path, encoding="utf-8", errors="replace") as f:
                if size > MAX_LOG_SHOWN:
                    f.seek(size - MAX_LOG_SHOWN)
                    f.readline()  # a whole first line
                    return f"[first {size - MAX_LOG_SHOWN} bytes left out]\n" + f.read()
                return f.read()
        except OSError:
            return ""

    @staticmethod
    def now() -> float:
        return time.time()
