"""What the release's notes (NOTES.txt) ask a site to do, rendered by the real helm.

The Check-in step appears only while the hub has no Check-in client: never a
cluster-internal redirect URI (Check-in takes only a public https one), and never again
after an upgrade that kept the client secret given at install (the notes look the hub
Secret up, as the chart's keptSecret does: the kmock API stand-in holds it here, and
``--dry-run=server`` renders with ``lookup`` as ``helm upgrade`` does).
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.integration.test_helm_chart import CHART, notes, notes_chart, run_helm
from tests.integration.test_helm_upgrade import Cluster, cluster  # noqa: F401 (fixture)

STEP3 = "\n3. "
TLS = [
    *("--set", "ingress.enabled=true", "--set", "ingress.hosts={notebooks.example.org}"),
    *("--set", "ingress.tls[0].hosts={notebooks.example.org}"),
    *("--set", "ingress.tls[0].secretName=notebooks-tls"),
]
CLIENT_ID = ["--set", "hub.config.CheckinAuthenticator.client_id=my-client"]
CLIENT_SECRET = ["--set", "hub.checkin.clientSecret=the-client-secret"]


def test_without_an_ingress_no_internal_callback_is_to_be_registered(
    helm: Path, tmp_path: Path
) -> None:
    text = notes(helm, tmp_path)
    assert ".svc/hub/oauth_callback" not in text and "http://" not in text.split(STEP3)[1]
    step = text.split(STEP3)[1]
    assert "set ingress.enabled, ingress.hosts and ingress.tls" in step
    assert "https://<host>/hub/oauth_callback" in step
    assert "docs/admin/checkin.md" in step


def test_a_host_without_tls_is_sent_to_add_tls_first(helm: Path, tmp_path: Path) -> None:
    plain = ["--set", "ingress.enabled=true", "--set", "ingress.hosts={notebooks.example.org}"]
    step = notes(helm, tmp_path, *plain).split(STEP3)[1]
    assert "ingress.tls" in step
    assert "https://notebooks.example.org/hub/oauth_callback" in step


def test_with_tls_the_public_redirect_uri_is_named(helm: Path, tmp_path: Path) -> None:
    text = notes(helm, tmp_path, *TLS)
    step = text.split(STEP3)[1]
    assert step.startswith("Register the hub as a Check-in client with every field")
    assert "https://notebooks.example.org/hub/oauth_callback" in step


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([*TLS, *CLIENT_ID, *CLIENT_SECRET], None),
        ([*TLS, *CLIENT_SECRET], "Set hub.config.CheckinAuthenticator.client_id"),
        ([*TLS, *CLIENT_ID], "Register the hub"),  # the id alone: no client secret yet
        (["--set", "hub.config.JupyterHub.authenticator_class=dummy"], None),
    ],
)
def test_the_step_follows_what_the_hub_lacks(
    helm: Path, tmp_path: Path, args: list[str], expected: str | None
) -> None:
    text = notes(helm, tmp_path, *args)
    if expected is None:
        assert STEP3 not in text and "Check-in" not in text
    else:
        assert text.split(STEP3)[1].startswith(expected)


def test_helm_test_comes_after_the_hub_is_ready(helm: Path, tmp_path: Path) -> None:
    text = notes(helm, tmp_path)
    rollout = "kubectl --namespace default rollout status deployment/r-egi-hub-hub"
    assert text.index(rollout) < text.index("helm test r --namespace default")


def test_the_backup_names_the_secret_the_chart_made(helm: Path, tmp_path: Path) -> None:
    """A release whose name holds the chart's drops the repetition: egi-hub-hub."""
    text = notes_of(helm, tmp_path / "chart", "egi-hub")
    made = run_helm(helm, "template", "egi-hub", str(CHART), "-s", "templates/hub/secret.yaml")
    assert yaml.safe_load(made.stdout)["metadata"]["name"] == "egi-hub-hub"
    assert "Back up the Secret egi-hub-hub " in text
    assert "egi-hub-egi-hub" not in text


async def test_an_upgrade_that_kept_the_client_secret_asks_nothing(
    cluster: Cluster,  # noqa: F811
    tmp_path: Path,
) -> None:
    chart = tmp_path / "chart"
    # Installed with the client id only: the hub Secret holds no client secret.
    await cluster.install(await cluster.render(*TLS, *CLIENT_ID))
    asked = await asyncio.to_thread(notes_of, cluster.helm, chart, "r", cluster, *TLS, *CLIENT_ID)
    assert asked.split(STEP3)[1].startswith("Register the hub as a Check-in client")
    # The upgrade that gives it (secrets.yaml), then one without secrets.yaml: kept, and
    # the notes ask nothing more.
    await cluster.install(await cluster.render(*TLS, *CLIENT_ID, *CLIENT_SECRET))
    kept = await asyncio.to_thread(notes_of, cluster.helm, chart, "r", cluster, *TLS, *CLIENT_ID)
    assert STEP3 not in kept, kept


def notes_of(helm: Path, chart: Path, release: str, on: Cluster | None = None, *args: str) -> str:
    """NOTES.txt of ``release`` in namespace hub, through a copy of the chart
    (test_helm_chart.notes_chart); rendered against the cluster ``on`` (with lookup) if given."""
    notes_chart(chart)
    command = [str(helm), "template", release, str(chart), "--namespace", "hub", *args]
    if on is not None:
        command += ["--dry-run=server", "--kubeconfig", str(on.kubeconfig)]
    command += ["--show-only", "templates/zz-notes.yaml"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)["notes"]
