"""What every Binder content provider shares: the resolved, immutable source and the
errors a resolution or a fetch ends with.

A provider turns a `RepoSpec` (what a link names: a branch, a tag, a concept DOI) into a
`Resolved` (what will be fetched: a commit, a record version). Everything after
resolution (the fetch, the environment key, the build record, the launch) works on
`Resolved` only, so a link whose branch moves launches the new commit, and a relaunch of
one `Resolved` always brings the same bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from ..specs import RepoSpec

__all__ = ["FetchError", "ResolveError", "Resolved"]


class ResolveError(Exception):
    """A spec that resolves to nothing; ``str()`` is the one-line reason a user sees, and
    ``status`` the HTTP status the API answers with (404: no such repository, ref or
    record; 403: private, or refused by the site; 502: the remote failed or answered
    what its API does not document)."""

    def __init__(self, reason: str, status: int = 404) -> None:
        super().__init__(reason)
        self.status = status


class FetchError(Exception):
    """Content that could not be brought: ``str()`` is the one-line reason."""


@dataclass(frozen=True)
class Resolved:
    """A spec pinned to immutable content.

    - ``spec``: what the link asked for.
    - ``provider``: how the content is fetched: ``"git"``, ``"zenodo"``, ``"figshare"``
      or ``"dataverse"`` (gh and gl links resolve to ``"git"``).
    - ``source``: where: the URL ``git`` clones, or the record's API URL.
    - ``ref``: what, immutably: a full commit SHA, or the record (version) id.
    - ``label``: for people: ``owner/repo@1a2b3c4``, ``zenodo.1234567 (v2.0)``.
    - ``fetch``: the job the fetch worker runs (JSON-safe; provider-specific keys, see
      `binder_service.fetch`); never holds a credential (a private repository's token
      goes to the worker separately, see `binder_service.fetch`).
    """

    spec: RepoSpec
    provider: str
    source: str
    ref: str
    label: str
    fetch: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def content_id(self) -> str:
        """A name for this exact content (safe in paths, pod and image names): the
        provider and a hash of source and ref."""
        digest = hashlib.sha256(f"{self.provider}\0{self.source}\0{self.ref}".encode())
        return f"{self.provider}-{digest.hexdigest()[:24]}"
