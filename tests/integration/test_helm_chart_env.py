"""hub.extraEnv and binder.extraEnv may not reuse a variable the chart sets in the hub's
or the Binder service's container (templates/_helpers.tpl ``egi-hub.refuseChartEnv``):
the later entry wins, so one would replace the chart's (POD_NAMESPACE, the database URL,
the crypt key) past its checks. The list is kept whole here, from what the chart renders.
And the hub's ``checksum/config`` is keyed, as the Secrets' checksums are."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.integration.test_helm_chart import CHART, FULL, find, refusal, render

P = "r-egi-hub"
HELPERS = (CHART / "templates" / "_helpers.tpl").read_text()


def _tpl_list(name: str) -> list[str]:
    """One of the helper's lists (``$exact``, ``$prefixes``) as the template spells it."""
    match = re.search(rf"\{{\{{- \${name} := list ([^}}]*) -\}}\}}", HELPERS)
    assert match, name
    return re.findall(r'"([^"]+)"', match.group(1))


EXACT, PREFIXES = _tpl_list("exact"), _tpl_list("prefixes")


def owned(name: str) -> bool:
    return name in EXACT or name.startswith(tuple(PREFIXES))


def _env_names(docs: list[dict[str, Any]], deployment: str) -> set[str]:
    spec = find(docs, "Deployment", deployment)["spec"]["template"]["spec"]
    return {e["name"] for c in spec["containers"] for e in c.get("env", [])}


def _values(tmp_path: Path, values: dict[str, Any]) -> str:
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


@pytest.mark.parametrize(
    "extra",
    [
        [],  # the full values: postgres with a password, Binder, the ingress
        ["--set", "hub.db.type=mysql"],  # MYSQL_PWD
        [
            "--set",
            "hub.db.type=sqlite-pvc",
            "--set",
            "hub.db.password=",
            "--set",
            "hub.db.urlSecret.name=",
        ],
    ],
)
def test_every_variable_the_chart_sets_is_refused_in_extra_env(
    helm: Path, tmp_path: Path, extra: list[str]
) -> None:
    full = yaml.safe_load(FULL.read_text())
    docs = render(helm, "-f", str(FULL), *extra)
    site = set(full["hub"]["extraEnv"]) | set(full["binder"]["extraEnv"])
    name = full["fullnameOverride"]
    chart = (_env_names(docs, f"{name}-hub") | _env_names(docs, f"{name}-binder")) - site
    assert {"POD_NAMESPACE", "JUPYTERHUB_CRYPT_KEY", "EGI_BINDER_CONFIG"} <= chart
    assert sorted(n for n in chart if not owned(n)) == []
    # the site's own variables stay allowed (the Binder's provider tokens among them)
    assert not any(owned(n) for n in site), site


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"hub": {"extraEnv": {"POD_NAMESPACE": "other"}}}, "hub.extraEnv.POD_NAMESPACE"),
        ({"hub": {"extraEnv": {"EGI_HUB_DB_URL": "sqlite://"}}}, "hub.extraEnv.EGI_HUB_DB_URL"),
        (
            {"hub": {"extraEnv": [{"name": "JUPYTERHUB_CRYPT_KEY", "value": "k"}]}},
            "hub.extraEnv.JUPYTERHUB_CRYPT_KEY",
        ),
        (
            {"hub": {"extraEnv": [{"name": "CONFIGPROXY_AUTH_TOKEN", "valueFrom": {
                "secretKeyRef": {"name": "mine", "key": "t"}}}]}},
            "hub.extraEnv.CONFIGPROXY_AUTH_TOKEN",
        ),
        ({"hub": {"extraEnv": {"EGI_HUB_SITE_FILE": "/tmp/x"}}}, "hub.extraEnv.EGI_HUB_SITE_FILE"),
        (
            {"binder": {"enabled": True, "extraEnv": {"EGI_BINDER_CONFIG": "/tmp/c.json"}}},
            "binder.extraEnv.EGI_BINDER_CONFIG",
        ),
        (
            {"binder": {"enabled": True, "extraEnv": {"JUPYTERHUB_API_URL": "http://x"}}},
            "binder.extraEnv.JUPYTERHUB_API_URL",
        ),
    ],
)  # fmt: skip
def test_a_chart_variable_in_extra_env_is_refused_by_name(
    helm: Path, tmp_path: Path, values: dict[str, Any], named: str
) -> None:
    base = ["-f", str(FULL)] if "binder" in values else []  # a Binder that renders
    message = refusal(helm, *base, "-f", _values(tmp_path, values))
    assert f"{named}: the chart sets this variable itself" in message


def test_the_binder_provider_tokens_stay_the_sites(helm: Path, tmp_path: Path) -> None:
    env = {"EGI_BINDER_GITHUB_TOKEN": "t", "EGI_BINDER_GITLAB_TOKEN": "t"}
    values = _values(tmp_path, {"binder": {"enabled": True, "extraEnv": env}})
    docs = render(helm, "-f", str(FULL), "-f", values)
    assert set(env) <= _env_names(docs, "egi-notebooks-binder")


def test_the_hub_config_checksum_is_keyed(helm: Path, tmp_path: Path) -> None:
    """The site file may hold a token: its checksum changes with it, and with the crypt
    key (so no guess can be tested against the annotation without the key)."""
    key = "0123456789abcdef" * 4

    def checksum(config: dict[str, Any], crypt_key: str = key) -> str:
        values = {"hub": {"cryptKey": crypt_key, "config": config}}
        docs = render(helm, "-f", _values(tmp_path, values))
        meta = find(docs, "Deployment", f"{P}-hub")["spec"]["template"]["metadata"]
        return meta["annotations"]["checksum/config"]

    site = {"GitProvider": {"github_token": "guessable"}}
    first = checksum(site)
    assert checksum(site) == first
    assert checksum({"GitProvider": {"github_token": "other"}}) != first
    assert checksum(site, "fedcba9876543210" * 4) != first
