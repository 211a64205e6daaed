"""Binder launch links: mybinder-compatible specs, parsed and checked, and built back.

A link is ``v2/<provider>/<spec>`` with an optional ``urlpath`` or ``labpath`` query, as
on mybinder.org, so links and badges already in READMEs work unchanged:

- ``v2/gh/<owner>/<repo>/<ref>``: GitHub; the ref is the rest of the path (a branch
  may contain ``/``), percent-decoded.
- ``v2/gl/<url-escaped namespace/repo>/<ref>``: GitLab, whose groups nest, so the
  project path is one percent-escaped segment (``group%2Fsub%2Frepo``).
- ``v2/git/<url-escaped repository URL>/<ref>``: any git server (``https``, ``http`` or
  ``git``; never ``file``, ``ssh`` or ``ext::``, which would reach the service's own
  disk or run commands).
- ``v2/zenodo/<doi>`` and ``v2/doi/<doi>``: an archived record (``10.<digits>/<suffix>``).

Everything in a link is hostile input: control characters, ``..`` and empty segments,
over-long parts, unknown providers and odd schemes are refused here with a one-line
reason (`BadSpec`), before anything is fetched or resolved. Resolving a ref to a commit
or a DOI to a record is the resolver's job, not this module's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

from egi_hub.names import CONTROL as _CONTROL

__all__ = ["PROVIDERS", "BadSpec", "LaunchRequest", "RepoSpec", "parse_launch"]

#: Provider prefixes a link may use, and what each one is.
PROVIDERS = {
    "gh": "GitHub",
    "gl": "GitLab",
    "git": "a git repository",
    "zenodo": "Zenodo",
    "doi": "a DOI",
}

MAX_PART = 255  # one name or ref (git refs and GitHub names are far shorter in practice)
MAX_URL = 2048
# GitHub owner and repository names: letters, digits, '-', '_' and '.'.
_GH_NAME = re.compile(r"[A-Za-z0-9_.-]+")
# git check-ref-format's rules that matter here: no '..', no '@{', no '\', no space,
# no '~^:?*[', no leading '-' or '/', no trailing '/' or '.lock'.
_BAD_REF = re.compile(r"\.\.|@\{|[\\ ~^:?*\[]|^[-/]|/$|//|\.lock$|^\.|/\.")
_DOI = re.compile(r"10\.[0-9]{4,9}/[-._;()/:A-Za-z0-9]+")
_GIT_SCHEMES = ("https", "http", "git")


class BadSpec(ValueError):
    """A link that cannot name a repository or record; ``str()`` is the reason."""


@dataclass(frozen=True)
class RepoSpec:
    """What a link names: ``provider`` (a `PROVIDERS` key) and, for git providers,
    ``repo`` (``owner/repo``, the GitLab project path, or the repository URL) and
    ``ref`` (unresolved: a branch, tag or commit); for DOIs, ``repo`` is the DOI and
    ``ref`` is empty."""

    provider: str
    repo: str
    ref: str = ""

    @property
    def repo_url(self) -> str:
        """Where the repository or record is (for git providers, what ``git`` clones)."""
        if self.provider == "gh":
            return f"https://github.com/{self.repo}"
        if self.provider == "gl":
            return f"https://gitlab.com/{self.repo}"
        if self.provider == "git":
            return self.repo
        return f"https://doi.org/{self.repo}"

    @property
    def label(self) -> str:
        """The spec for people: ``owner/repo @ main (GitHub)``, ``https://host/r.git @
        v1``, ``DOI 10.5281/zenodo.123``."""
        if self.provider in ("gh", "gl"):
            return f"{self.repo} @ {self.ref} ({PROVIDERS[self.provider]})"
        if self.provider == "git":
            return f"{self.repo} @ {self.ref}"
        return f"DOI {self.repo}"

    @property
    def path(self) -> str:
        """The link's ``v2/...`` path for this spec (the inverse of `parse_launch`)."""
        if self.provider == "gh":
            return f"v2/gh/{self.repo}/{quote(self.ref, safe='/')}"
        if self.provider in ("gl", "git"):
            return f"v2/{self.provider}/{quote(self.repo, safe='')}/{quote(self.ref, safe='/')}"
        return f"v2/{self.provider}/{self.repo}"


@dataclass(frozen=True)
class LaunchRequest:
    """A parsed link: the spec, and where to land in the server (``urlpath``, relative
    to the server's root, e.g. ``lab/tree/notebooks/intro.ipynb``; empty: the default)."""

    spec: RepoSpec
    urlpath: str = ""


def _check_text(value: str, what: str, limit: int = MAX_PART) -> str:
    if not value:
        raise BadSpec(f"the link has no {what}")
    if _CONTROL.search(value):
        raise BadSpec(f"the {what} contains control characters")
    if len(value) > limit:
        raise BadSpec(f"the {what} is longer than {limit} characters")
    return value


def _check_ref(ref: str) -> str:
    _check_text(ref, "ref (branch, tag or commit)")
    if _BAD_REF.search(ref):
        raise BadSpec(f"{ref!r} is not a valid git ref (branch, tag or commit)")
    return ref


def _github(spec: str) -> RepoSpec:
    parts = spec.split("/", 2)
    if len(parts) != 3:
        raise BadSpec("a GitHub link is v2/gh/<owner>/<repo>/<ref>")
    owner, repo, ref = parts
    for value, what in ((owner, "GitHub owner"), (repo, "GitHub repository")):
        _check_text(value, what, 100)
        if not _GH_NAME.fullmatch(value) or value in (".", ".."):
            raise BadSpec(f"{value!r} is not a GitHub {what.split()[-1]} name")
    return RepoSpec("gh", f"{owner}/{repo.removesuffix('.git')}", _check_ref(unquote(ref)))


def _gitlab(spec: str) -> RepoSpec:
    escaped, sep, ref = spec.partition("/")
    if not sep:
        raise BadSpec("a GitLab link is v2/gl/<url-escaped namespace/repo>/<ref>")
    project = _check_text(unquote(escaped), "GitLab project")
    segments = project.split("/")
    if len(segments) < 2 or any(not _GH_NAME.fullmatch(s) or s in (".", "..") for s in segments):
        raise BadSpec(f"{project!r} is not a GitLab project path (group/.../repo)")
    return RepoSpec("gl", project.removesuffix(".git"), _check_ref(unquote(ref)))


def _git(spec: str) -> RepoSpec:
    escaped, sep, ref = spec.partition("/")
    if not sep:
        raise BadSpec("a git link is v2/git/<url-escaped repository URL>/<ref>")
    url = _check_text(unquote(escaped), "repository URL", MAX_URL)
    parts = urlsplit(url)
    if parts.scheme not in _GIT_SCHEMES:
        raise BadSpec(
            f"the repository URL must start with {', '.join(s + '://' for s in _GIT_SCHEMES)}"
            f" (not {parts.scheme or 'no scheme'})"
        )
    if not parts.hostname or parts.username or parts.password:
        raise BadSpec("the repository URL needs a host and must not carry credentials")
    if parts.query or parts.fragment or " " in url:
        raise BadSpec("the repository URL must not carry a query, a fragment or spaces")
    if any(segment in (".", "..") for segment in parts.path.split("/")):
        raise BadSpec("the repository URL's path must not contain '.' or '..' segments")
    return RepoSpec("git", url, _check_ref(unquote(ref)))


def _doi(provider: str, spec: str) -> RepoSpec:
    doi = _check_text(unquote(spec), "DOI")
    if not _DOI.fullmatch(doi) or any(s in (".", "..") for s in doi.split("/")):
        raise BadSpec(f"{doi!r} is not a DOI (10.<registrant>/<suffix>)")
    if provider == "zenodo" and not doi.lower().startswith("10.5281/zenodo."):
        raise BadSpec(f"{doi!r} is not a Zenodo DOI (10.5281/zenodo.<record>)")
    return RepoSpec(provider, doi)


def _urlpath(query: dict[str, str]) -> str:
    """Where to land: ``urlpath`` as given, ``labpath`` as ``lab/tree/<labpath>``, or
    mybinder's older ``filepath`` (a file opened in the classic tree)."""
    if "urlpath" in query:
        value, label = query["urlpath"], "urlpath"
    elif "labpath" in query:
        value, label = "lab/tree/" + query["labpath"].lstrip("/"), "labpath"
    elif "filepath" in query:
        value, label = "tree/" + query["filepath"].lstrip("/"), "filepath"
    else:
        return ""
    if value.startswith("//"):  # a browser reads it as another host
        raise BadSpec(f"{label} must be a path inside the server, not an address")
    value = value.lstrip("/")
    if _CONTROL.search(value) or len(value) > MAX_URL:
        raise BadSpec(f"{label} contains control characters or is too long")
    if "://" in value or value.startswith(("/", "\\")) or "\\" in value:
        raise BadSpec(f"{label} must be a path inside the server, not an address")
    path = value.split("?", 1)[0].split("#", 1)[0]
    if any(segment in (".", "..") for segment in unquote(path).split("/")):
        raise BadSpec(f"{label} must not contain '.' or '..' segments")
    return value


def parse_launch(path: str, query: dict[str, str] | None = None) -> LaunchRequest:
    """The `LaunchRequest` a link names: ``path`` is what follows the service's base URL
    (``v2/gh/org/repo/main``), ``query`` its query arguments; `BadSpec` otherwise."""
    path = path.lstrip("/")
    if _CONTROL.search(path) or len(path) > MAX_URL:
        raise BadSpec("the link contains control characters or is too long")
    version, _, rest = path.partition("/")
    if version != "v2":
        raise BadSpec("a launch link starts with v2/<provider>/")
    provider, _, spec = rest.partition("/")
    if provider not in PROVIDERS:
        known = ", ".join(PROVIDERS)
        raise BadSpec(f"unknown provider {provider[:40]!r} (known: {known})")
    if not spec:
        raise BadSpec(f"the link names no {PROVIDERS[provider]}")
    if provider == "gh":
        parsed = _github(spec)
    elif provider == "gl":
        parsed = _gitlab(spec)
    elif provider == "git":
        parsed = _git(spec)
    else:
        parsed = _doi(provider, spec)
    return LaunchRequest(parsed, _urlpath(query or {}))
