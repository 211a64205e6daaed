"""The top-level imagePullSecrets reach the single-user servers, as in zero-to-jupyterhub:
the chart carries them in the hub's values.json, and the hub's KubeSpawner pulls with
them, then with singleuser.image.pullSecrets (rendered by the real helm binary)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from egi_hub.helm.config import hub_config
from tests.integration.test_helm_chart import find, pod_specs, render, secret_data

ENV = {"POD_NAMESPACE": "hub", "EGI_HUB_RELEASE": "r"}


def hub_values(docs: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    data = secret_data(find(docs, "Secret", "r-egi-hub-hub-config"))
    return json.loads(data["site.json"]), json.loads(data["values.json"])


def test_the_servers_pull_with_the_release_secrets_then_their_own(helm: Path) -> None:
    docs = render(
        helm,
        "--set-json", 'imagePullSecrets=["site-pull", "shared"]',
        "--set-json", 'singleuser.image.pullSecrets=["shared", "notebooks-pull"]',
    )  # fmt: skip
    site, values = hub_values(docs)
    assert values["imagePullSecrets"] == ["site-pull", "shared"]
    config = hub_config(site, ENV, values)
    assert config.KubeSpawner.image_pull_secrets == ["site-pull", "shared", "notebooks-pull"]
    # the chart's own pods: the release's secrets only
    for name, spec in pod_specs(docs):
        secrets = [s["name"] for s in spec.get("imagePullSecrets", [])]
        assert secrets == ["site-pull", "shared"], name


def test_no_pull_secrets_by_default(helm: Path) -> None:
    site, values = hub_values(render(helm))
    assert values["imagePullSecrets"] == []
    assert "image_pull_secrets" not in hub_config(site, ENV, values).KubeSpawner
