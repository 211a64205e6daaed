"""The Helm chart (helm/egi-hub), rendered by the real helm binary (the `helm` fixture).

`helm lint --strict` and `helm template` with the default values and with
tests/helm_values_full.yaml (nearly every key); every rendered manifest validated with
kubernetes-validate --strict for Kubernetes 1.29 and 1.33; the schema refusing a typo, a
wrong type and a negative quota, each by its key; every container's resources and
securityContext; the hub's secrets; the site file the hub is given, and the hub itself
refusing a bad one before it starts.

`lookup` answers nothing to plain `helm template`: that an upgrade keeps the generated
secrets is tested in test_helm_upgrade.py, against a Kubernetes API stand-in.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from egi_hub.config import check_site, configurable_classes
from egi_hub.helm.config import hub_config

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "egi-hub"
FULL = ROOT / "tests" / "helm_values_full.yaml"
VALUES = {"default": [], "full": ["-f", str(FULL)]}
KUBERNETES_VERSIONS = ("1.29.0", "1.33.0")
HEX64 = re.compile(r"^[0-9a-f]{64}$")


def run_helm(helm: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm), *args], capture_output=True, text=True, timeout=60, check=False
    )


def render(helm: Path, *args: str, chart: Path = CHART) -> list[dict[str, Any]]:
    done = run_helm(helm, "template", "r", str(chart), "--namespace", "hub", *args)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def refusal(helm: Path, *args: str) -> str:
    """helm template's error for these values (it must fail)."""
    done = run_helm(helm, "template", "r", str(CHART), *args)
    assert done.returncode != 0, f"helm template accepted {args}"
    return done.stderr


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


def secret_data(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}


def pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    specs = []
    for doc in docs:
        where = f"{doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] == "Pod":
            specs.append((where, doc["spec"]))
        elif doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            specs.append((where, doc["spec"]["template"]["spec"]))
    return specs


@pytest.fixture(scope="module", params=sorted(VALUES))
def rendered(request: pytest.FixtureRequest, helm: Path) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(helm, *VALUES[request.param])


@pytest.mark.parametrize("values", sorted(VALUES))
def test_lint_strict(helm: Path, values: str) -> None:
    done = run_helm(helm, "lint", "--strict", str(CHART), *VALUES[values])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 chart(s) failed" in done.stdout


def test_chart_app_version_is_the_package_version() -> None:
    from egi_hub import __version__

    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["appVersion"] == __version__


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_manifests_validate_strict(rendered: tuple[str, list], version: str) -> None:
    _, docs = rendered
    for doc in docs:
        kubernetes_validate.validate(doc, version, strict=True)


def test_what_is_rendered(rendered: tuple[str, list]) -> None:
    values, docs = rendered
    kinds = sorted(f"{d['kind']}/{d['metadata']['name']}" for d in docs)
    prefix = "r-egi-hub" if values == "default" else "egi-notebooks"
    expected = {
        f"Deployment/{prefix}-hub",
        f"Deployment/{prefix}-proxy",
        f"Service/{prefix}-hub",
        f"Service/{prefix}-proxy-api",
        f"Service/{prefix}-proxy-public",
        f"ServiceAccount/{prefix}-hub",
        f"Role/{prefix}-hub",
        f"RoleBinding/{prefix}-hub",
        f"Secret/{prefix}-hub",
        f"Secret/{prefix}-hub-config",
        f"Pod/{prefix}-test-hub-api",
        f"NetworkPolicy/{prefix}-hub",
        f"NetworkPolicy/{prefix}-proxy",
        f"NetworkPolicy/{prefix}-singleuser",
        f"NetworkPolicy/{prefix}-test",
        f"PodDisruptionBudget/{prefix}-hub",
        f"PodDisruptionBudget/{prefix}-proxy",
    }
    if values == "default":  # SQLite on a claim, no Ingress, no Binder
        expected |= {f"PersistentVolumeClaim/{prefix}-hub-db"}
    else:  # an external database, an Ingress, the Binder service's account
        expected |= {
            f"Ingress/{prefix}",
            f"ServiceAccount/{prefix}-binder",
            f"Role/{prefix}-binder",
            f"RoleBinding/{prefix}-binder",
            f"Deployment/{prefix}-binder",
            f"Service/{prefix}-binder",
            f"Secret/{prefix}-binder",
            f"Ingress/{prefix}-binder",
            f"NetworkPolicy/{prefix}-binder",
            f"NetworkPolicy/{prefix}-binder-build",
            # the build namespace, the Binder Role there, and the chart's dind engine
            "Namespace/notebooks-builds",
            f"DaemonSet/{prefix}-binder-dind",
            # per-VO namespaces (one made by the chart, one not): the hub's Role in each
            "Namespace/vo-access",
            f"ResourceQuota/{prefix}-singleuser",
            f"Role/{prefix}-hub-spawner",
            f"RoleBinding/{prefix}-hub-spawner",
        }
    assert set(kinds) == expected
    hub = find(docs, "Deployment", f"{prefix}-hub")
    assert hub["spec"]["replicas"] == 1
    assert hub["spec"]["strategy"] == {"type": "Recreate"}
    test_pod = find(docs, "Pod", f"{prefix}-test-hub-api")
    assert test_pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert f"http://{prefix}-hub:8081/hub/api/" in test_pod["spec"]["containers"][0]["command"]


def test_every_container_has_resources_and_a_security_context(rendered: tuple) -> None:
    values, docs = rendered
    specs = pod_specs(docs)
    # The one privileged pod: the Binder build engine (binder.dind), in the build
    # namespace (its checks: test_helm_binder_build.py).
    dind = "DaemonSet/egi-notebooks-binder-dind"
    specs = [(where, spec) for where, spec in specs if where != dind]
    assert len(specs) == (3 if values == "default" else 4)  # full: the Binder service's
    for where, spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True, where
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, where
        for container in spec["containers"] + spec.get("initContainers", []):
            name = f"{where} container {container['name']}"
            resources = container["resources"]
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(resources[kind]), f"{name}: {kind}"
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert not context.get("privileged"), name


def test_rbac_is_namespaced_and_least_privilege(rendered: tuple) -> None:
    values, docs = rendered
    assert not [d for d in docs if d["kind"].startswith("Cluster")]
    prefix = "r-egi-hub" if values == "default" else "egi-notebooks"
    rules = {
        tuple(r["resources"]): set(r["verbs"]) for r in find(docs, "Role", f"{prefix}-hub")["rules"]
    }
    assert rules == {
        ("pods",): {"get", "list", "watch", "create", "delete"},
        ("events",): {"get", "list", "watch"},
        ("persistentvolumeclaims",): {"get", "create", "delete"},
        ("services",): {"get", "create", "delete"},
        ("secrets",): {"get", "create", "patch", "delete"},
    }
    if values == "full":  # private repositories on: the build Secrets too
        binder = find(docs, "Role", f"{prefix}-binder")["rules"]
        assert {tuple(r["resources"]): set(r["verbs"]) for r in binder} == {
            ("pods",): {"get", "create", "delete"},
            ("pods/log",): {"get"},
            ("secrets",): {"get", "create", "delete"},
        }


def test_the_hub_gets_its_site_file_exactly(rendered: tuple) -> None:
    values, docs = rendered
    prefix = "r-egi-hub" if values == "default" else "egi-notebooks"
    data = secret_data(find(docs, "Secret", f"{prefix}-hub-config"))
    given = yaml.safe_load(FULL.read_text()) if values == "full" else {}
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    site = json.loads(data["site.json"])
    assert site == given.get("hub", {}).get("config", defaults["hub"]["config"])
    assert data["jupyterhub_config.py"] == (CHART / "files/jupyterhub_config.py").read_text()
    # The same checks as `egi-hub config check`, and the hub's config made from it.
    assert check_site(site, configurable_classes()) == []
    config = hub_config(site, {"EGI_HUB_DB_URL": "sqlite://", "POD_NAMESPACE": "hub"})
    assert config.JupyterHub.spawner_class == "egi-kube"
    assert config.ConfigurableHTTPProxy.should_start is False


def test_secrets(helm: Path) -> None:
    full = yaml.safe_load(FULL.read_text())
    docs = render(helm, *VALUES["full"])
    given = secret_data(find(docs, "Secret", "egi-notebooks-hub"))
    assert given == {
        "crypt-key": full["hub"]["cryptKey"],
        "cookie-secret": full["hub"]["cookieSecret"],
        "proxy-token": full["proxy"]["secretToken"],
        "checkin-client-secret": full["hub"]["checkin"]["clientSecret"],
        "db-password": full["hub"]["db"]["password"],  # PGPASSWORD
        "env-SITE_LABEL": full["hub"]["extraEnv"]["SITE_LABEL"],  # a string
    }  # the database URL comes from the site's own Secret (hub.db.urlSecret)
    env = {
        e["name"]: e
        for e in find(docs, "Deployment", "egi-notebooks-hub")["spec"]["template"]["spec"][
            "containers"
        ][0]["env"]
    }
    assert env["EGI_HUB_DB_URL"]["valueFrom"]["secretKeyRef"] == {"name": "hub-db", "key": "url"}
    assert env["S3_KEY_ACCESS"]["valueFrom"]["secretKeyRef"] == {"name": "s3-keys", "key": "access"}
    assert all("value" not in env[n] for n in ("JUPYTERHUB_CRYPT_KEY", "JPY_COOKIE_SECRET"))

    first = secret_data(find(render(helm), "Secret", "r-egi-hub-hub"))
    second = secret_data(find(render(helm), "Secret", "r-egi-hub-hub"))
    assert set(first) == {"crypt-key", "cookie-secret", "proxy-token"}  # no client secret
    for key, value in first.items():
        assert HEX64.match(value), key
        assert value != second[key], f"{key}: generated, so new without a cluster to look up"
    assert len({first["crypt-key"], first["cookie-secret"], first["proxy-token"]}) == 3
    from jupyterhub.crypto import _validate_key

    assert len(_validate_key(first["crypt-key"].encode())) == 32
    assert len(bytes.fromhex(first["cookie-secret"])) == 32

    url = "postgresql://hub:pw@db/hub"
    docs = render(helm, "--set", "hub.db.type=postgres", "--set", f"hub.db.url={url}")
    assert secret_data(find(docs, "Secret", "r-egi-hub-hub"))["db-url"] == url
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "hub.confg.JupyterHub.port=1"], "hub: Additional property confg is not allowed"),
        (["--set", "proxy.chp.resources.limitz.cpu=1"], "Additional property limitz"),
        (["--set", "ingress.enabeld=true"], "ingress: Additional property enabeld"),
        (["--set", "hub.service.port=abc"], "hub.service.port: Invalid type. Expected: integer"),
        (["--set", "hub.db.type=mssql"], "hub.db.type: hub.db.type must be one of"),
        (["--set", "hub.cryptKey=short"], "hub.cryptKey: Does not match pattern"),
        (
            ["--set-json", 'hub.config.QuotaPolicy={"vo_limits":{"vo.a":{"max_servers":-1}}}'],
            "hub.config.QuotaPolicy.vo_limits.vo.a.max_servers: Must be greater than or equal to 0",
        ),
        (
            ["--set-json", 'hub.config.QuotaPolicy={"default_limits":{"per_user":{"max_gpu":-2}}}'],
            "hub.config.QuotaPolicy.default_limits.per_user.max_gpu: Must be greater than",
        ),
        (
            ["--set-json", 'hub.config.QuotaPolicy={"total_limits":{"max_srevers":1}}'],
            "hub.config.QuotaPolicy.total_limits: Additional property max_srevers",
        ),
        (["--set-json", 'hub.config={"JupyterHub":5}'], "hub.config.JupyterHub: Invalid type"),
    ],
)
def test_schema_refuses(helm: Path, args: list[str], message: str) -> None:
    assert message in refusal(helm, *args)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "hub.db.type=postgres"],
            'hub.db.type is "postgres": set hub.db.url or hub.db.urlSecret.name',
        ),
        (["--set", "hub.db.url=sqlite://"], "hub.db.url is set but hub.db.type is sqlite-pvc"),
        (["--set", "ingress.enabled=true"], "ingress.enabled is true but ingress.hosts is empty"),
    ],
)
def test_templates_refuse(helm: Path, args: list[str], message: str) -> None:
    assert message in refusal(helm, *args)


def notes_chart(chart: Path) -> Path:
    """A copy of the chart at ``chart`` that renders NOTES.txt as a document
    (``templates/zz-notes.yaml``: helm template skips NOTES.txt itself)."""
    if not chart.exists():
        shutil.copytree(CHART, chart)
        source = (chart / "templates" / "NOTES.txt").read_text()
        (chart / "templates" / "_notes.tpl").write_text(
            '{{- define "test.notes" -}}' + source + "{{- end -}}"
        )
        (chart / "templates" / "zz-notes.yaml").write_text(
            'notes: {{ include "test.notes" . | toJson }}'
        )
    return chart


def notes(helm: Path, tmp_path: Path, *args: str) -> str:
    """NOTES.txt, rendered through a copy of the chart (`notes_chart`)."""
    chart = notes_chart(tmp_path / "egi-hub")
    out = run_helm(
        helm, "template", "r", str(chart), *args, "--show-only", "templates/zz-notes.yaml"
    )
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)["notes"]


@pytest.mark.parametrize("values", sorted(VALUES))
def test_notes(helm: Path, values: str, tmp_path: Path) -> None:
    text = notes(helm, tmp_path, *VALUES[values])
    assert "helm test r" in text
    if values == "full":
        assert "The hub: https://notebooks.example.org/" in text
        assert "Register the hub" not in text
        assert "Binder: https://notebooks.example.org/services/binder/\n" in text
        assert "The Binder host: https://binder.example.org/\n" in text
        assert "https://binder.example.org/v2/gh/<owner>/<repo>/<ref>" in text
    else:
        assert "port-forward service/r-egi-hub-proxy-public" in text
        assert "Register the hub as a Check-in client" in text
        assert "Binder" not in text


def test_notes_binder_without_ingress(helm: Path, tmp_path: Path) -> None:
    binder = ["--set", "binder.enabled=true", "--set", "binder.build.imagePrefix=binder/env-"]
    text = notes(helm, tmp_path, *binder)
    assert "Binder: http://127.0.0.1:8080/services/binder/ (through the port-forward" in text
    assert "Binder host" not in text


def test_the_hub_refuses_a_bad_site_file_before_it_starts(helm: Path, tmp_path: Path) -> None:
    """The chart's jupyterhub_config.py, in a real JupyterHub: a bad hub.config exits 2
    with each key named as in the values, before the hub makes its database."""
    # Keys the schema cannot see: hub.config's classes are checked by the hub itself.
    config = {"JupyterHub": {"prot": 8000}, "Spawner": {"start_timeout": "soon"}}
    docs = render(helm, "--set-json", f"hub.config={json.dumps(config)}")
    data = secret_data(find(docs, "Secret", "r-egi-hub-hub-config"))
    (tmp_path / "site.json").write_text(data["site.json"])
    (tmp_path / "jupyterhub_config.py").write_text(data["jupyterhub_config.py"])
    env = {**os.environ, "EGI_HUB_SITE_FILE": str(tmp_path / "site.json")}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "jupyterhub"), "--config", "jupyterhub_config.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert "egi-hub: hub.config.JupyterHub.prot: unknown setting (did you mean 'port'?)" in lines
    assert any(line.startswith("egi-hub: hub.config.Spawner.start_timeout: ") for line in lines)
    assert "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jupyterhub_config.py", "site.json"]


def test_the_usage_log_is_kept_beside_sqlite_on_the_claim(rendered: tuple) -> None:
    values, docs = rendered
    prefix = "r-egi-hub" if values == "default" else "egi-notebooks"
    (hub,) = find(docs, "Deployment", f"{prefix}-hub")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in hub["env"]}
    if values == "default":  # SQLite on the claim mounted at /srv/jupyterhub
        assert env["EGI_HUB_USAGE_LOG"] == "/srv/jupyterhub/usage.jsonl"
    else:  # an external database: /srv/jupyterhub is an emptyDir, no log kept there
        assert "EGI_HUB_USAGE_LOG" not in env
