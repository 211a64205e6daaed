"""A real PostgreSQL server for a test: Debian's binaries, its own cluster in a tmp dir.

Why: the chart's ``hub.db.type: postgres`` must be proved against the database it
names, not a stand-in (a driver missing from the hub's install only shows there). The
server is made for the test and thrown away: ``initdb`` in a fresh folder, ``postgres``
on a free loopback port with its socket in that folder, a password-protected user
(so the hub's ``PGPASSWORD`` is really used), stopped by its own pid.

PostgreSQL refuses to run as root: as root (CI), the server runs as the ``postgres``
user the Debian package makes, in a folder that user owns.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from tests.stackrunner import free_port, wait_for

__all__ = ["PgServer", "postgres_bin", "start_postgres"]

USER = "egi"


def postgres_bin() -> Path | None:
    """The folder of Debian's PostgreSQL binaries (the newest major), or of ``initdb`` on
    the PATH; None when PostgreSQL is not installed (``make postgres`` installs it)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=_major)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _major(path: str) -> int:
    version = Path(path).parts[-3]
    return int(version) if version.isdigit() else 0


@dataclass
class PgServer:
    proc: subprocess.Popen
    root: Path
    port: int
    password: str

    def url(self, database: str, password: bool = False) -> str:
        """The SQLAlchemy URL of ``database`` (with the password in it, or not)."""
        secret = f":{self.password}" if password else ""
        return f"postgresql://{USER}{secret}@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres"):  # psycopg2's connection
        import psycopg2

        return psycopg2.connect(
            host="127.0.0.1", port=self.port, user=USER, password=self.password, dbname=database
        )

    def create_database(self, name: str) -> None:
        conn = self.connect()
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # PostgreSQL's fast shutdown
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(password: str) -> PgServer:
    """A fresh cluster with the superuser ``egi`` (``password``), serving on loopback."""
    bindir = postgres_bin()
    if bindir is None:
        raise RuntimeError("PostgreSQL is not installed: run 'make postgres'")
    # Outside pytest's tmp dirs: their parents are private to root, and the server's
    # user must reach its folder.
    root = Path(tempfile.mkdtemp(prefix="egi-hub-pg-"))
    as_user: dict = {}
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(root, account.pw_uid, account.pw_gid)
        as_user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    (root / "pw").write_text(password + "\n")
    if as_user:
        os.chown(root / "pw", as_user["user"], as_user["group"])
    port = free_port()
    env = {"PATH": f"{bindir}:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(root)}
    try:
        subprocess.run(
            [str(bindir / "initdb"), "-D", str(root / "data"), "-U", USER,
             f"--pwfile={root / 'pw'}", "--auth=scram-sha-256", "-E", "UTF8", "--no-sync"],
            env=env, cwd=root, capture_output=True, text=True, timeout=120, check=True,
            **as_user,
        )  # fmt: skip
        with open(root / "postgres.log", "wb") as log:
            proc = subprocess.Popen(
                [str(bindir / "postgres"), "-D", str(root / "data"), "-p", str(port),
                 "-k", str(root), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"],
                env=env, cwd=root, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, **as_user,
            )  # fmt: skip
    except subprocess.CalledProcessError as e:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {e.stderr}") from None
    server = PgServer(proc, root, port, password)

    def accepting() -> bool:
        if proc.poll() is not None:
            log = (root / "postgres.log").read_text(errors="replace")
            raise RuntimeError(f"postgres exited with {proc.returncode}:\n{log}")
        try:
            server.connect().close()
        except Exception:
            return False
        return True

    try:
        wait_for(accepting, 30, "PostgreSQL to accept connections")
    except BaseException:
        server.stop()
        raise
    return server
