"""A stand-in for GitHub's and GitLab's REST APIs: the one endpoint each that resolves a
ref to a commit, on 127.0.0.1.

GitHub and GitLab cannot run here, so this follows their documented behaviour (see
``shared/specs/remote-apis.md``), not what egi-hub's code happens to send:

- GitHub ``GET /repos/{owner}/{repo}/commits/{ref}``: a branch, a tag, a full or
  abbreviated (7+) SHA. With ``Accept: application/vnd.github.sha`` the body is the bare
  SHA (``application/vnd.github.sha``), else JSON ``{"sha": ...}``. A repository that does
  not exist, or a private one without a token that may read it, is 404 ``{"message":
  "Not Found"}``; an unknown ref is 422 ``{"message": "No commit found for SHA: ..."}``; a
  token GitHub does not know is 401 ``{"message": "Bad credentials"}``; a repository
  without commits is 409 ``{"message": "Git Repository is empty."}``. Tokens come as
  ``Authorization: Bearer <token>`` (or ``token <token>``). Every answer carries
  ``x-ratelimit-limit/-remaining/-reset``; when the budget (`github_budget`, per
  anonymous caller or per token) is used up: 403 with ``x-ratelimit-remaining: 0``.
- GitLab ``GET /api/v4/projects/{id}/repository/commits/{sha}``: ``id`` is the
  URL-encoded project path (``group%2Frepo``) or a numeric id; the answer is the commit
  as JSON (``id``, ``short_id``, ``title``, ``message``, ``parent_ids``, dates). An
  unknown or (without a token) private project is 404 ``{"message": "404 Project Not
  Found"}``, an unknown ref 404 ``{"message": "404 Commit Not Found"}``, a bad token 401
  ``{"message": "401 Unauthorized"}``. Tokens come as ``PRIVATE-TOKEN`` (or Bearer).

`forge` makes one path answer anything (a test of hostile answers), and `requests`
records what came in (method, path, headers) so tests can see which token was sent.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

__all__ = ["GitHostStandin", "Repo", "start_githost_standin"]


@dataclass
class Repo:
    """A repository: refs (branch or tag name -> SHA) and who may see it."""

    refs: dict[str, str]
    private: bool = False
    readers: set[str] = field(default_factory=set)  # tokens that may read a private repo

    def commit(self, ref: str) -> str | None:
        if ref in self.refs:
            return self.refs[ref]
        low = ref.lower()
        if len(low) >= 7 and all(c in "0123456789abcdef" for c in low):
            shas = {sha for sha in self.refs.values() if sha.startswith(low)}
            if len(shas) == 1:
                return shas.pop()
        return None


def fake_sha(text: str) -> str:
    """A 40-hex commit id made from ``text`` (stable within a test)."""
    return hashlib.sha1(text.encode()).hexdigest()


@dataclass
class GitHostStandin:
    """A running stand-in: add repositories to `github` and `gitlab` (path -> `Repo`)."""

    server: ThreadingHTTPServer
    github: dict[str, Repo] = field(default_factory=dict)
    gitlab: dict[str, Repo] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)  # tokens the host knows
    github_budget: int = 60  # calls per caller (anonymous: one budget) before 403
    reset_in: int = 1800  # seconds until a used-up budget is reset
    forge: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    used: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def github_answer(self, path: str, headers: Any) -> tuple[int, dict[str, str], bytes]:
        auth = headers.get("Authorization", "")
        scheme, _, token = auth.partition(" ")
        if auth and (scheme.lower() not in ("bearer", "token") or token not in self.tokens):
            return _json(401, {"message": "Bad credentials"})
        caller = token or "anonymous"
        limit = 5000 if token else self.github_budget
        with self.lock:
            self.used[caller] = self.used.get(caller, 0) + 1
            remaining = limit - self.used[caller]
        limits = {
            "x-ratelimit-limit": str(limit),
            "x-ratelimit-remaining": str(max(remaining, 0)),
            "x-ratelimit-reset": str(int(time.time()) + self.reset_in),
        }
        if remaining < 0:
            status, extra, body = _json(403, {"message": "API rate limit exceeded"})
            return status, {**extra, **limits}, body
        parts = path.split("/", 5)  # '', repos, owner, repo, commits, ref
        if len(parts) != 6 or parts[1] != "repos" or parts[4] != "commits" or not parts[5]:
            return _json(404, {"message": "Not Found"}, limits)
        repo = self.github.get(f"{parts[2]}/{parts[3]}")
        if repo is None or (repo.private and token not in repo.readers):
            return _json(404, {"message": "Not Found"}, limits)
        if not repo.refs:
            return _json(409, {"message": "Git Repository is empty."}, limits)
        ref = unquote(parts[5])
        sha = repo.commit(ref)
        if sha is None:
            return _json(422, {"message": f"No commit found for SHA: {ref}"}, limits)
        if headers.get("Accept", "") == "application/vnd.github.sha":
            return 200, {**limits, "Content-Type": "application/vnd.github.sha"}, sha.encode()
        return _json(200, {"sha": sha, "commit": {"message": "update"}}, limits)

    def gitlab_answer(self, path: str, headers: Any) -> tuple[int, dict[str, str], bytes]:
        token = headers.get("PRIVATE-TOKEN", "")
        if not token and headers.get("Authorization", "").lower().startswith("bearer "):
            token = headers["Authorization"][7:]
        if token and token not in self.tokens:
            return _json(401, {"message": "401 Unauthorized"})
        parts = path.split("/")  # '', api, v4, projects, <id>, repository, commits, <sha>
        route = (parts[1:4], parts[5:7]) if len(parts) == 8 else None
        if route != (["api", "v4", "projects"], ["repository", "commits"]):
            return _json(404, {"error": "404 Not Found"})
        project = unquote(parts[4])  # a raw '/' would have split the path: 404 above
        repo = self.gitlab.get(project)
        if repo is None or (repo.private and token not in repo.readers):
            return _json(404, {"message": "404 Project Not Found"})
        sha = repo.commit(unquote(parts[7]))
        if sha is None:
            return _json(404, {"message": "404 Commit Not Found"})
        stamp = "2025-01-01T00:00:00.000+00:00"
        return _json(200, {
            "id": sha, "short_id": sha[:8], "title": "update", "message": "update\n",
            "parent_ids": [], "author_name": "Binder Test", "created_at": stamp,
            "committed_date": stamp, "authored_date": stamp,
            "web_url": f"{self.url}/{project}/-/commit/{sha}",
        })  # fmt: skip


def _json(
    status: int, body: Any, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    headers = {**(headers or {}), "Content-Type": "application/json"}
    return status, headers, json.dumps(body).encode()


def _handler(standin: GitHostStandin) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out at once, no 40 ms stall

        def log_message(self, *args: Any) -> None:  # headers carry tokens: say nothing
            pass

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            standin.requests.append(("GET", path, dict(self.headers.items())))
            if path in standin.forge:
                status, headers, body = standin.forge[path]
            elif path.startswith("/api/v4/"):
                status, headers, body = standin.gitlab_answer(path, self.headers)
            else:
                status, headers, body = standin.github_answer(path, self.headers)
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def start_githost_standin() -> GitHostStandin:
    """Serve the stand-in on a free port of 127.0.0.1 (in a thread of this process)."""
    standin = GitHostStandin(server=None)  # type: ignore[arg-type]
    standin.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(standin))
    standin.server.daemon_threads = True
    threading.Thread(target=standin.server.serve_forever, args=(0.05,), daemon=True).start()
    return standin
