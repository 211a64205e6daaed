"""The install example of README.md and helm/egi-hub/README.md, as a site would use it.

The values block that both READMEs show (after `<!-- helm-example-values -->`) is taken
out of the Markdown, given to the real helm (`helm lint --strict`, `helm template`, each
manifest validated strictly for Kubernetes 1.29), and the hub's config is made from what
the chart renders (its site.json and values.json) by `hub_config`, the function the
hub's jupyterhub_config.py calls: the one VO the README lets in has its quota there.
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from egi_hub import __version__
from egi_hub.config import check_site, configurable_classes
from egi_hub.helm.config import hub_config
from tests.integration.test_helm_chart import CHART, ROOT, find, render, run_helm, secret_data

READMES = (ROOT / "README.md", CHART / "README.md")
MARK = "<!-- helm-example-values -->"
VO = "vo.access.egi.eu"


def example_values(readme: Path) -> str:
    """The YAML block right after the marker, dedented as a site would copy it."""
    text = readme.read_text()
    assert text.count(MARK) == 1, f"{readme.name}: one {MARK}"
    after = text.split(MARK, 1)[1]
    match = re.match(r"\s*\n([ \t]*)```yaml\n(.*?)\n\1```", after, re.DOTALL)
    assert match, f"{readme.name}: a ```yaml block right after {MARK}"
    return textwrap.dedent(match[2].replace("\n" + match[1], "\n").removeprefix(match[1]))


def test_both_readmes_show_the_same_values() -> None:
    first, second = (example_values(r) for r in READMES)
    assert first == second
    assert len(first.splitlines()) <= 20, "a few lines of values"


@pytest.fixture(scope="module")
def example(helm: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("readme")
    values = folder / "values.yaml"
    values.write_text(example_values(READMES[0]))
    secrets = folder / "secrets.yaml"  # what the README says to keep apart
    secrets.write_text(yaml.safe_dump({"hub": {"checkin": {"clientSecret": "readme-secret"}}}))
    args = ["-f", str(values), "-f", str(secrets)]
    lint = run_helm(helm, "lint", "--strict", str(CHART), *args)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    return {"values": yaml.safe_load(values.read_text()), "docs": render(helm, *args)}


def test_the_example_lints_renders_and_validates(example: dict) -> None:
    for doc in example["docs"]:
        kubernetes_validate.validate(doc, "1.29.0", strict=True)
    hub = find(example["docs"], "Deployment", "r-egi-hub-hub")["spec"]["template"]["spec"]
    image = hub["containers"][0]["image"]
    assert image == f"registry.example.org/notebooks/egi-hub/hub:{__version__}"
    ingress = find(example["docs"], "Ingress", "r-egi-hub")
    assert [r["host"] for r in ingress["spec"]["rules"]] == ["notebooks.example.org"]
    secret = secret_data(find(example["docs"], "Secret", "r-egi-hub-hub"))
    assert secret["checkin-client-secret"] == "readme-secret"


def test_the_hub_config_has_the_client_and_the_vo_quota(example: dict) -> None:
    data = secret_data(find(example["docs"], "Secret", "r-egi-hub-hub-config"))
    site, values = json.loads(data["site.json"]), json.loads(data["values.json"])
    assert check_site(site, configurable_classes()) == []
    assert "readme-secret" not in data["site.json"] + data["values.json"]
    environ = hub_environ(example["docs"])  # as the hub's pod gets it
    assert environ["EGI_CHECKIN_CLIENT_SECRET"] == "readme-secret"
    config = hub_config(site, environ, values)
    checkin = config.CheckinAuthenticator
    assert checkin.client_id == "my-notebooks-client"
    assert checkin.allowed_vos == [VO]
    assert checkin.oauth_callback_url == "https://notebooks.example.org/hub/oauth_callback"
    quota = config.QuotaPolicy
    given = example["values"]["singleuser"]["quotas"]
    assert list(quota.vo_limits) == [VO]
    assert quota.vo_limits[VO] == given["vo_limits"][VO]
    assert quota.default_limits == {"max_servers": 0}
    image = example["values"]["singleuser"]["image"]["name"]
    assert config.KubeSpawner.image == f"{image}:{__version__}"  # the chart's appVersion
    assert config.JupyterHub.spawner_class == "egi-kube"
    assert config.JupyterHub.authenticator_class == "egi-checkin"


HELM_DOCS = ROOT / "docs" / "admin" / "helm.md"


def doc_value_blocks() -> list[str]:
    """The YAML blocks of docs/admin/helm.md: each is a values file on its own."""
    return re.findall(r"```yaml\n(.*?)\n```", HELM_DOCS.read_text(), re.DOTALL)


@pytest.mark.parametrize("index", range(len(doc_value_blocks())))
def test_every_values_example_in_the_docs_renders_and_configures_the_hub(
    helm: Path, tmp_path: Path, index: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the admin page shows is accepted by the schema, the templates and the hub."""
    block = doc_value_blocks()[index]
    values = tmp_path / "values.yaml"
    values.write_text(block)
    docs = render(helm, "-f", str(values))
    for doc in docs:
        kubernetes_validate.validate(doc, "1.29.0", strict=True)
    data = secret_data(find(docs, "Secret", "r-egi-hub-hub-config"))
    environ = hub_environ(docs)
    for name in ("S3_KEY_ACCESS", "S3_SECRET_ACCESS"):  # the storage example's hub.extraEnv
        assert name not in environ or environ[name] == "<external Secret>"
        monkeypatch.setenv(name, "test")
    environ["EGI_HUB_DB_URL"] = "sqlite://"
    hub_config(json.loads(data["site.json"]), environ, json.loads(data["values.json"]))


def hub_environ(docs: list[dict]) -> dict[str, str]:
    """The hub container's environment as Kubernetes would give it: literals, the
    release's own Secrets decoded, other Secrets a placeholder, the pod's namespace."""
    secrets = {d["metadata"]["name"]: secret_data(d) for d in docs if d["kind"] == "Secret"}
    hub = find(docs, "Deployment", "r-egi-hub-hub")["spec"]["template"]["spec"]
    environ = {}
    for env in hub["containers"][0]["env"]:
        source = env.get("valueFrom", {})
        if "value" in env:
            environ[env["name"]] = env["value"]
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            found = secrets.get(ref["name"], {}).get(ref["key"])
            if ref["name"] not in secrets:
                found = "<external Secret>"
            if found is not None:
                environ[env["name"]] = found
        elif "fieldRef" in source:
            environ[env["name"]] = "notebooks"
    return environ
