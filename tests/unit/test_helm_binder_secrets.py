"""The values that give the Binder service's secrets (binder.apiToken, binder.ticketSecret).

A tool that renders the chart without a cluster (Argo CD, Flux) gives them, since it
cannot look the generated ones up; the schema takes what the hub and the service accept
(`egi_hub.helm.binder.MIN_SECRET` characters or more) and refuses the rest at
``helm install``, before the hub would refuse it at start. Read from the schema and
values.yaml as text: the real helm renders them in tests/integration/test_helm_upgrade.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from egi_hub.helm.binder import MIN_SECRET

CHART = Path(__file__).resolve().parents[2] / "helm" / "egi-hub"
KEYS = ("apiToken", "ticketSecret")


def schema_of(key: str) -> dict:
    schema = json.loads((CHART / "values.schema.json").read_text())
    return schema["properties"]["binder"]["properties"][key]


@pytest.mark.parametrize("key", KEYS)
def test_the_schema_takes_what_the_hub_takes(key: str) -> None:
    node = schema_of(key)
    assert node["type"] == "string" and node["description"]
    assert node["pattern"].endswith("$")
    pattern = re.compile(node["pattern"][:-1] + r"\Z")  # Go's $: the very end
    assert pattern.search("")  # empty: generated and kept
    assert pattern.search("a" * MIN_SECRET) and pattern.search("0123abcd" * 8)
    for bad in ("a" * (MIN_SECRET - 1), " " + "a" * MIN_SECRET, "a" * MIN_SECRET + "\n"):
        assert not pattern.search(bad), repr(bad)


@pytest.mark.parametrize("key", KEYS)
def test_values_yaml_leaves_them_empty_and_says_so(key: str) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["binder"][key] == ""
    text = (CHART / "values.yaml").read_text()
    comment = text.split(f"\n  {key}:")[0].rsplit("# --", 1)[1]
    assert "Empty: generated" in " ".join(comment.replace("#", " ").split())
