"""Real git for Binder tests: bare repositories served on 127.0.0.1 by ``git daemon``
(``git://``) and by ``git http-backend`` behind a small HTTP server (``http://``).

Nothing here is a stand-in: ``git daemon`` and ``git http-backend`` are git's own
servers, the ones sites run. Repositories are made with real commits (`GitServer.commit`)
so a test can move a branch, add a commit that changes only a notebook, or tag a
release, and then see the service resolve and fetch exactly that.

    server = start_git_server(tmp_path)
    sha = server.commit("demo", {"requirements.txt": "six\\n", "index.ipynb": "{}"})
    server.git_url("demo")    # git://127.0.0.1:<port>/demo.git
    server.http_url("demo")   # http://127.0.0.1:<port>/demo.git
    server.stop()
"""

from __future__ import annotations

import http.server
import os
import shutil
import socketserver
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from egi_hub.procs import free_port
from tests.stackrunner import stop_process, wait_for

__all__ = ["GitServer", "git_env", "start_git_server"]

AUTHOR = {
    "GIT_AUTHOR_NAME": "Binder Test",
    "GIT_AUTHOR_EMAIL": "binder-test@example.org",
    "GIT_COMMITTER_NAME": "Binder Test",
    "GIT_COMMITTER_EMAIL": "binder-test@example.org",
}


def git_env(home: Path) -> dict[str, str]:
    """An environment for git that reads no user or system config (a developer's
    ``~/.gitconfig`` never changes what a test sees)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(AUTHOR, HOME=str(home), GIT_CONFIG_NOSYSTEM="1", GIT_TERMINAL_PROMPT="0")
    return env


def _git(*args: str, cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


@dataclass
class GitServer:
    """Bare repositories under ``root`` served by ``git daemon`` and ``http-backend``."""

    root: Path
    work: Path
    daemon: subprocess.Popen
    daemon_port: int
    http_port: int
    _httpd: socketserver.TCPServer = field(repr=False)
    env: dict[str, str] = field(repr=False)

    def git_url(self, name: str) -> str:
        return f"git://127.0.0.1:{self.daemon_port}/{name}.git"

    def http_url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.http_port}/{name}.git"

    def commit(
        self, name: str, files: dict[str, str | bytes | None], *, branch: str = "main",
        message: str = "update", tag: str | None = None,
    ) -> str:  # fmt: skip
        """Commit ``files`` (path -> content; None deletes) on ``branch`` of repository
        ``name`` (made on first use) and push it; the new commit's full SHA."""
        bare = self.root / f"{name}.git"
        clone = self.work / name
        if not bare.exists():
            _git("init", "--bare", "-q", "-b", branch, str(bare), cwd=self.root, env=self.env)
            (bare / "git-daemon-export-ok").touch()
            _git("config", "http.receivepack", "false", cwd=bare, env=self.env)
        if not clone.exists():
            _git("clone", "-q", str(bare), str(clone), cwd=self.work, env=self.env)
        remote_branches = _git("branch", "-r", cwd=clone, env=self.env)
        if f"origin/{branch}" in remote_branches.split():
            _git("checkout", "-q", "-B", branch, f"origin/{branch}", cwd=clone, env=self.env)
        else:
            _git("checkout", "-q", "--orphan", branch, cwd=clone, env=self.env)
        for path, content in files.items():
            target = clone / path
            if content is None:
                target.unlink(missing_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        _git("add", "-A", cwd=clone, env=self.env)
        _git("commit", "-q", "--allow-empty", "-m", message, cwd=clone, env=self.env)
        if tag:
            _git("tag", tag, cwd=clone, env=self.env)
        _git("push", "-q", "--tags", "origin", f"HEAD:refs/heads/{branch}", cwd=clone, env=self.env)
        _git("fetch", "-q", "origin", cwd=clone, env=self.env)
        return _git("rev-parse", "HEAD", cwd=clone, env=self.env)

    def stop(self) -> None:
        stop_process(self.daemon)
        self._httpd.shutdown()
        self._httpd.server_close()


def _http_handler(root: Path, env: dict[str, str]) -> type[http.server.BaseHTTPRequestHandler]:
    """A smart-HTTP git server: each request goes to ``git http-backend`` (CGI)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

        def _cgi(self) -> None:
            path, _, query = self.path.partition("?")
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            cgi_env = dict(
                env,
                GIT_PROJECT_ROOT=str(root),
                GIT_HTTP_EXPORT_ALL="1",
                REQUEST_METHOD=self.command,
                PATH_INFO=path,
                QUERY_STRING=query,
                CONTENT_TYPE=self.headers.get("Content-Type", ""),
                CONTENT_LENGTH=str(len(body)),
                REMOTE_ADDR=self.client_address[0],
                GIT_PROTOCOL=self.headers.get("Git-Protocol", ""),
            )
            done = subprocess.run(
                ["git", "http-backend"], input=body, env=cgi_env, capture_output=True,
                timeout=60,
            )  # fmt: skip
            head, _, payload = done.stdout.partition(b"\r\n\r\n")
            status = 200
            headers = []
            for line in head.decode("latin-1").split("\r\n"):
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.strip().split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = _cgi
        do_POST = _cgi

    return Handler


def start_git_server(tmp: Path) -> GitServer:
    """Serve bare repositories from ``tmp/repos`` over git:// and http:// on 127.0.0.1."""
    if not shutil.which("git"):
        raise RuntimeError("git is not installed (Debian: apt-get install -y git)")
    root, work, home = tmp / "repos", tmp / "work", tmp / "home"
    for d in (root, work, home):
        d.mkdir(parents=True, exist_ok=True)
    env = git_env(home)
    port = free_port()
    daemon = subprocess.Popen(
        ["git", "daemon", "--reuseaddr", "--listen=127.0.0.1", f"--port={port}",
         f"--base-path={root}", "--informative-errors", str(root)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    httpd = Server(("127.0.0.1", 0), _http_handler(root, env))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    server = GitServer(root, work, daemon, port, httpd.server_address[1], httpd, env)
    server.commit("probe", {"README.md": "probe\n"})

    def answers() -> bool:
        if daemon.poll() is not None:
            raise RuntimeError(f"git daemon exited with {daemon.returncode}")
        done = subprocess.run(
            ["git", "ls-remote", server.git_url("probe")], env=env, capture_output=True,
            timeout=30,
        )  # fmt: skip
        return done.returncode == 0

    wait_for(answers, 30, "git daemon to serve")
    return server
