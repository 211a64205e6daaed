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

`serve_private_https` adds an HTTPS front for the same repositories, with a certificate
of a CA made for the test (`make_test_ca`) and HTTP basic auth: repositories whose name
starts with ``private-`` answer only a request whose password is one of the server's
tokens (any user name, as GitHub and GitLab take tokens), the others everyone; it
records every ``Authorization`` header it gets, per repository.
"""

from __future__ import annotations

import base64
import http.server
import os
import shutil
import socketserver
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path

from egi_hub.procs import free_port
from tests.stackrunner import stop_process, wait_for

__all__ = [
    "GitServer",
    "PrivateHttps",
    "git_env",
    "make_test_ca",
    "serve_private_https",
    "start_git_server",
]

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


# -- HTTPS with basic auth: private repositories ------------------------------------------


def make_test_ca(folder: Path) -> tuple[Path, Path, Path]:
    """A CA made for one test and a certificate it signed for 127.0.0.1 and localhost:
    ``(ca.pem, server.pem, server.key)`` in ``folder`` (``openssl``; EC keys, 2 days)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    ca_key, ca, key, csr, cert = (folder / n for n in names)
    ext = folder / "server.ext"
    ext.write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "extendedKeyUsage=serverAuth\n"
    )
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for args in (
        ["req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=egi-hub test CA", "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        ["req", *ec, "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "2", "-extfile", ext],
    ):  # fmt: skip
        done = subprocess.run(
            ["openssl", *map(str, args)], capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0:
            raise RuntimeError(f"openssl {args[0]} failed: {done.stderr.strip()}")
    return ca, cert, key


@dataclass
class PrivateHttps:
    """`serve_private_https`'s server: ``tokens`` it accepts (a test may change them),
    the ``Authorization`` headers it got per repository name, the CA to trust."""

    port: int
    ca_file: Path
    tokens: set[str]
    seen: dict[str, list[str]]
    _httpd: socketserver.TCPServer = field(repr=False)

    def url(self, name: str) -> str:
        return f"https://127.0.0.1:{self.port}/{name}.git"

    def headers_for(self, name: str) -> list[str]:
        return list(self.seen.get(name, []))

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def serve_private_https(server: GitServer, folder: Path, tokens: set[str]) -> PrivateHttps:
    """Serve ``server``'s repositories over HTTPS on 127.0.0.1 (see the module): those
    named ``private-*`` only to a request with one of ``tokens`` as its password."""
    ca, cert, key = make_test_ca(folder)
    seen: dict[str, list[str]] = {}
    base = _http_handler(server.root, server.env)

    class Private(base):  # type: ignore[valid-type, misc]
        def _cgi(self) -> None:
            name = self.path.lstrip("/").split("/", 1)[0].removesuffix(".git")
            auth = self.headers.get("Authorization", "")
            seen.setdefault(name, []).append(auth)
            if name.startswith("private-") and not self._allowed(auth):
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="private"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            super()._cgi()

        @staticmethod
        def _allowed(auth: str) -> bool:
            scheme, _, encoded = auth.partition(" ")
            if scheme != "Basic":
                return False
            try:
                _, _, password = base64.b64decode(encoded).decode().partition(":")
            except ValueError:
                return False
            return password in tokens

        do_GET = _cgi
        do_POST = _cgi

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

        def get_request(self):  # type: ignore[no-untyped-def]
            sock, address = super().get_request()
            # (the handshake in the request's thread: a slow client holds no other)
            return context.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            ), address

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd = Server(("127.0.0.1", 0), Private)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    return PrivateHttps(httpd.server_address[1], ca, tokens, seen, httpd)
