"""The chart's hub on an external database: a real PostgreSQL, the hub run as rendered.

Why: ``hub.db.type: postgres`` only works if the hub image has a driver (the ``hub``
extra: psycopg2) and the chart hands the hub the URL and the password the way libpq
reads them. So: a throw-away PostgreSQL (`tests.pgserver`, Debian's binaries), the
chart rendered by the real helm with ``hub.db.type: postgres``, the URL in the site's
own Secret (``hub.db.urlSecret``, no password in it) and ``hub.db.password`` (the
chart's Secret -> ``PGPASSWORD``); then the rendered proxy and hub run on loopback as
in tests/integration/test_helm_equivalence.py (`tests.chartpod`). Proved: the hub
answers its API, its tables and the user made through the API are in PostgreSQL, no
SQLite file appears, and the Kubernetes API is never called.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import httpx
import pytest
import yaml

from tests.chartpod import KubeApiTrap, hub_pod, loopback, run_hub, run_proxy
from tests.integration.test_helm_chart import render, secret_data
from tests.pgserver import postgres_bin, start_postgres
from tests.stackrunner import free_port, stop_process

NAMESPACE = "hub"
DATABASE = "egihub"
#: The site's own Secret with the database URL (made with kubectl, not by the chart).
DB_SECRET = "site-db"

pytestmark = pytest.mark.skipif(
    postgres_bin() is None, reason="PostgreSQL is not installed: run 'make postgres'"
)


def site(api_token: str) -> dict:
    return {
        "JupyterHub": {
            "authenticator_class": "egi-dev",
            "services": [{"name": "egi-test", "api_token": api_token}],
            "load_roles": [{"name": "admin", "services": ["egi-test"]}],
        },
    }


def test_the_charts_hub_runs_on_a_real_postgresql(helm: Path, tmp_path: Path) -> None:
    pg = start_postgres(secrets.token_hex(12))
    trap = KubeApiTrap()
    proxy = stack = None
    try:
        pg.create_database(DATABASE)
        api_token = secrets.token_hex(16)
        db = {
            "type": "postgres",
            "urlSecret": {"name": DB_SECRET, "key": "url"},
            "password": pg.password,
            "upgrade": True,
        }
        values = tmp_path / "values.yaml"
        values.write_text(yaml.safe_dump({"hub": {"config": site(api_token), "db": db}}))
        docs = render(helm, "-f", str(values))
        assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
        by_name = {d["metadata"]["name"]: secret_data(d) for d in docs if d["kind"] == "Secret"}
        by_name[DB_SECRET] = {"url": pg.url(DATABASE)}  # the URL holds no password

        public = free_port()
        url = f"http://127.0.0.1:{public}"
        net = loopback(docs, NAMESPACE, {("proxy", 8000): public})
        pod = hub_pod(docs, tmp_path / "pod", net, by_name, trap)
        assert pod.env["EGI_HUB_DB_URL"] == pg.url(DATABASE)
        assert pod.env["PGPASSWORD"] == pg.password  # from the chart's hub Secret
        assert pod.env["EGI_HUB_DB_UPGRADE"] == "true"
        proxy = run_proxy(docs, net, by_name, tmp_path / "proxy.log")
        stack = run_hub(pod, url, api_token, tmp_path / "hub.log")

        assert httpx.get(f"{url}/hub/api/", timeout=10).json()["version"]
        made = stack.api.post("/users/carol")
        assert made.status_code == 201, made.text
        assert stack.api.get("/users/carol").json()["name"] == "carol"

        conn = pg.connect(DATABASE)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
                tables = {row[0] for row in cur.fetchall()}
                cur.execute("SELECT name FROM users")
                users = {row[0] for row in cur.fetchall()}
                cur.execute("SELECT name FROM services")
                services = {row[0] for row in cur.fetchall()}
        finally:
            conn.close()
        assert {"users", "services", "alembic_version", "api_tokens"} <= tables
        assert users == {"carol"}
        assert "egi-test" in services
        assert not list((tmp_path / "pod").rglob("*.sqlite"))  # the database is PostgreSQL
        assert trap.connections == []
    finally:
        if stack is not None:
            stack.stop()
        if proxy is not None:
            stop_process(proxy)
        trap.close()
        pg.stop()
