"""The chart's proxy is the configurable-http-proxy release the local stack runs and tests
(proxy/package.json): one version, so what the suite proves of the proxy holds in the chart."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_the_chart_runs_the_tested_proxy_release() -> None:
    pinned = json.loads((ROOT / "proxy/package.json").read_text())["dependencies"]
    values = yaml.safe_load((ROOT / "helm/egi-hub/values.yaml").read_text())
    image = values["proxy"]["chp"]["image"]
    assert image["name"] == "quay.io/jupyterhub/configurable-http-proxy"
    assert image["tag"] == pinned["configurable-http-proxy"]
