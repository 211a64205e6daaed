"""The chart's Binder service (helm/egi-hub/templates/binder/), rendered by the real helm.

Its Deployment, Service, Secret and Ingress host; its secrets (generated, kept across
upgrades, given to the service and the hub by secretKeyRef, and nowhere else); the hub's
config made from the rendered values (the service, its role, the same ticket secret on
both sides); the schema refusing bad binder.config keys by name; and the service itself,
started as its pod starts it (`python -m egi_hub.binder_service`) with the rendered config
file and environment: it loads the config, serves its pages on the hub's host, and sends
the Binder host's requests there.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from egi_hub.helm.config import hub_config
from egi_hub.procs import free_port
from tests.integration.test_helm_chart import (
    HEX64,
    VALUES,
    find,
    refusal,
    render,
    secret_data,
)
from tests.integration.test_helm_upgrade import Cluster, cluster  # noqa: F401 (fixture)
from tests.stackrunner import stop_process, wait_for

P = "egi-notebooks"  # the full values' fullnameOverride
HUB_HOST = "notebooks.example.org"
BINDER_HOST = "binder.example.org"
MINIMAL = ["--set", "binder.enabled=true", "--set", "binder.build.imagePrefix=binder-env-"]


@pytest.fixture(scope="module")
def full(helm: Path) -> list[dict[str, Any]]:
    return render(helm, *VALUES["full"])


def container(docs: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return find(docs, "Deployment", name)["spec"]["template"]["spec"]["containers"][0]


def env_of(docs: list[dict[str, Any]], name: str) -> dict[str, dict[str, Any]]:
    return {e["name"]: e for e in container(docs, name)["env"]}


def test_the_deployment_runs_the_service_from_the_hub_image(full: list) -> None:
    deployment = find(full, "Deployment", f"{P}-binder")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector == {
        "app.kubernetes.io/name": "notebooks",  # the full values' nameOverride
        "app.kubernetes.io/instance": "r",
        "app.kubernetes.io/component": "binder",
    }
    assert selector.items() <= labels.items() and labels["tier"] == "binder"
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    spec = deployment["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == f"{P}-binder"
    assert find(full, "ServiceAccount", f"{P}-binder")
    box = spec["containers"][0]
    assert box["image"] == container(full, f"{P}-hub")["image"]
    # args: the image's ENTRYPOINT (tini) runs them and reaps the fetch workers
    assert box["args"] == ["python", "-m", "egi_hub.binder_service"]
    assert "command" not in box
    assert box["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsUser"] == 1001  # binder.podSecurityContext
    assert spec["priorityClassName"] == "egi-core"
    assert spec["tolerations"][0]["value"] == "binder"
    # What it writes: BinderService.data_dir on an emptyDir, and /tmp.
    config = json.loads(secret_data(find(full, "Secret", f"{P}-binder"))["config.json"])
    mounts = {m["mountPath"]: m["name"] for m in box["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    data = volumes[mounts[config["BinderService"]["data_dir"]]]
    assert data["emptyDir"] == {"sizeLimit": "20Gi"}
    assert "emptyDir" in volumes[mounts["/tmp"]]
    config_file = env_of(full, f"{P}-binder")["EGI_BINDER_CONFIG"]["value"]
    assert volumes[mounts[str(Path(config_file).parent)]]["secret"] == {
        "secretName": f"{P}-binder",
        "items": [{"key": "config.json", "path": "config.json"}],  # not the secrets
        "defaultMode": 0o440,
    }
    probe = box["readinessProbe"]["httpGet"]
    assert probe["path"] == "/services/binder/badge.svg"
    assert probe["httpHeaders"] == [{"name": "Host", "value": HUB_HOST}]


def test_the_service_and_its_own_host(full: list) -> None:
    service = find(full, "Service", f"{P}-binder")
    selector = find(full, "Deployment", f"{P}-binder")["spec"]["selector"]["matchLabels"]
    assert service["spec"]["selector"] == selector
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8890, "targetPort": "http", "protocol": "TCP"}
    ]
    ingress = find(full, "Ingress", f"{P}-binder")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": [BINDER_HOST], "secretName": "binder-tls"}]
    (rule,) = ingress["spec"]["rules"]
    assert rule["host"] == BINDER_HOST
    assert rule["http"]["paths"] == [
        {
            "path": "/",
            "pathType": "Prefix",
            "backend": {"service": {"name": f"{P}-binder", "port": {"name": "http"}}},
        }
    ]
    env = env_of(full, f"{P}-binder")
    assert env["JUPYTERHUB_PUBLIC_URL"]["value"] == f"https://{HUB_HOST}/services/binder/"
    assert env["JUPYTERHUB_API_URL"]["value"] == f"http://{P}-hub:8081/hub/api"


def test_the_build_settings_become_the_builders_traits(full: list) -> None:
    config = json.loads(secret_data(find(full, "Secret", f"{P}-binder"))["config.json"])
    assert config["BinderService"]["builder"] == "kubernetes"
    assert config["BinderService"]["build_concurrency"] == 4
    assert config["BinderService"]["site_name"] == "Example"  # binder.config as given
    kube = config["KubernetesBuilder"]
    assert kube["image_prefix"] == "registry.example.org/binder/env-"
    assert kube["push_secret"] == "binder-push"
    assert kube["image"] == "quay.io/jupyterhub/repo2docker:2025.08.0"
    assert kube["namespace"] == "notebooks-builds"  # where the service's Role lets it make pods
    assert kube["docker_socket"] == "/run/egi-dind/hub_egi-notebooks/docker.sock"  # dind's
    assert kube["push_secret_key"] == ".dockerconfigjson"


def test_secrets_are_generated_and_given_by_reference_only(full: list) -> None:
    data = secret_data(find(full, "Secret", f"{P}-binder"))
    token, ticket = data["api-token"], data["ticket-secret"]
    assert HEX64.match(token) and HEX64.match(ticket) and token != ticket
    ref = {"name": f"{P}-binder"}
    service_env, hub_env = env_of(full, f"{P}-binder"), env_of(full, f"{P}-hub")
    assert service_env["JUPYTERHUB_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        **ref,
        "key": "api-token",
    }
    assert service_env["EGI_BINDER_TICKET_SECRET"]["valueFrom"]["secretKeyRef"] == {
        **ref,
        "key": "ticket-secret",
    }
    assert hub_env["EGI_BINDER_API_TOKEN"]["valueFrom"]["secretKeyRef"] == {
        **ref,
        "key": "api-token",
    }
    assert hub_env["EGI_BINDER_TICKET_SECRET"]["valueFrom"]["secretKeyRef"] == {
        **ref,
        "key": "ticket-secret",
    }
    # Adversarial: neither secret anywhere else, in any spelling the chart could use.
    spellings = [
        s for value in (token, ticket) for s in (value, base64.b64encode(value.encode()).decode())
    ]
    binder_secret = find(full, "Secret", f"{P}-binder")
    for doc in full:
        if doc is binder_secret:
            continue
        text = json.dumps(doc)
        if doc["kind"] == "Secret":  # site.json, values.json: decoded too
            text += json.dumps(secret_data(doc))
        for spelling in spellings:
            assert spelling not in text, f"{doc['kind']}/{doc['metadata']['name']}"
        assert doc["kind"] != "ConfigMap" or "binder" not in text.lower()
    assert token not in data["config.json"] and ticket not in data["config.json"]
    for name in (f"{P}-binder", f"{P}-hub"):
        box = container(full, name)
        for e in box["env"]:
            assert all(s not in e.get("value", "") for s in spellings), e["name"]
        line = " ".join(box.get("args", []) + box.get("command", []))
        assert all(s not in line for s in spellings)
    values = json.loads(secret_data(find(full, "Secret", f"{P}-hub-config"))["values.json"])
    assert values["binder"] == {
        "enabled": True,
        "url": f"http://{P}-binder:8890",
        # trusted_proxies: the Ingress controller and CHP (each appends to X-Forwarded-For)
        "BinderGuests": {"enabled": True, "max_guests": 10, "trusted_proxies": 2},
    }


def test_the_hubs_config_from_the_rendered_values(full: list) -> None:
    """hub_config of what the hub's pod gets: the service, its role, and the ticket
    secret the spawners check equal to the one the service signs with."""
    from egi_hub.binder_service.ticket import sign_ticket, verify_ticket

    hub_files = secret_data(find(full, "Secret", f"{P}-hub-config"))
    binder = secret_data(find(full, "Secret", f"{P}-binder"))
    hub_env = {"POD_NAMESPACE": "hub", "EGI_HUB_DB_URL": "sqlite://"}
    for name, e in env_of(full, f"{P}-hub").items():
        ref = e.get("valueFrom", {}).get("secretKeyRef", {})
        if ref.get("name") == f"{P}-binder":
            hub_env[name] = binder[ref["key"]]
    config = hub_config(
        json.loads(hub_files["site.json"]), hub_env, json.loads(hub_files["values.json"])
    )
    service = {s["name"]: s for s in config.JupyterHub.services}["binder"]
    assert service["url"] == f"http://{P}-binder:8890"
    assert service["api_token"] == binder["api-token"]
    roles = {r["name"]: r for r in config.JupyterHub.load_roles}
    assert "delete:users!group=binder-guests" in roles["egi-binder"]["scopes"]  # guests on
    assert config.BinderGuests.enabled is True
    assert config.JupyterHub.allow_named_servers is True
    launch = {"key": "k"}
    signed = sign_ticket(binder["ticket-secret"], user="u", server="s", launch=launch, ttl=60)
    spawner_secret = config.EGIKubeSpawner.binder_ticket_secret
    assert verify_ticket(spawner_secret, signed, user="u", server="s") == launch


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set-json", 'binder.config={"BinderService":{"max_log_byts":1}}'],
            "binder.config.BinderService: Additional property max_log_byts is not allowed",
        ),
        (
            ["--set-json", 'binder.config={"BinderService":{"repo_quota":"many"}}'],
            "binder.config.BinderService.repo_quota: Invalid type. Expected: integer",
        ),
        (
            ["--set-json", 'binder.config={"BinderService":{"max_log_bytes":5}}'],
            "binder.config.BinderService.max_log_bytes: Must be greater than or equal to 1024",
        ),
        (
            ["--set-json", 'binder.config={"BinderService":{"builder":"venv"}}'],
            "binder.config.BinderService: Additional property builder is not allowed",
        ),
        (
            ["--set-json", 'binder.config={"BinderService":{"ticket_secret":"x"}}'],
            "binder.config.BinderService: Additional property ticket_secret is not allowed",
        ),
        (
            ["--set-json", 'binder.config={"VenvBuilder":{"timeout":5}}'],
            "binder.config: Additional property VenvBuilder is not allowed",
        ),
        (
            ["--set-json", 'binder.config={"KubernetesBuilder":{"private_image_prefix":"A B"}}'],
            "binder.config.KubernetesBuilder.private_image_prefix: Does not match pattern",
        ),
        (["--set", "binder.build.imagePrefix=Binder/Env"], "binder.build.imagePrefix: Does not"),
        (["--set", "binder.build.concurrency=0"], "binder.build.concurrency: Must be greater"),
        (["--set", "binder.build.registry=https://r.example.org"], "binder.build.registry: Does"),
        (["--set", "binder.ingress.hostz[0]=b"], "binder.ingress: Additional property hostz"),
    ],
)
def test_the_schema_refuses_bad_binder_values_by_name(helm: Path, args, message) -> None:
    assert message in refusal(helm, *MINIMAL, *args)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "binder.enabled=true"], "binder.build.imagePrefix is empty"),
        (
            [*MINIMAL, "--set", "binder.ingress.enabled=true"],
            "binder.ingress.enabled is true but binder.ingress.hosts is empty",
        ),
        (
            [
                *MINIMAL,
                "--set",
                "binder.ingress.enabled=true",
                "--set",
                "binder.ingress.hosts={b.org}",
            ],
            "binder.ingress.enabled needs the hub's own host (ingress.enabled and ingress.hosts)",
        ),
    ],
)
def test_templates_refuse(helm: Path, args, message) -> None:
    assert message in refusal(helm, *args)


def test_minimal_values_and_a_base_url(helm: Path) -> None:
    docs = render(helm, *MINIMAL, "--set", "hub.config.JupyterHub.base_url=/jh")
    env = env_of(docs, "r-egi-hub-binder")
    assert env["JUPYTERHUB_SERVICE_PREFIX"]["value"] == "/jh/services/binder/"
    assert env["JUPYTERHUB_API_URL"]["value"] == "http://r-egi-hub-hub:8081/jh/hub/api"
    assert env["JUPYTERHUB_OAUTH_CALLBACK_URL"]["value"] == "/jh/services/binder/oauth_callback"
    assert "JUPYTERHUB_PUBLIC_URL" not in env  # no hub Ingress: served on any host
    assert not [d for d in docs if d["kind"] == "Ingress"]
    config = json.loads(secret_data(find(docs, "Secret", "r-egi-hub-binder"))["config.json"])
    assert config["KubernetesBuilder"] == {
        "image_prefix": "binder-env-",
        "namespace": "hub-r-egi-hub-build",
        "docker_socket": "/var/run/dind/hub_r-egi-hub/docker.sock",
    }
    spec = find(docs, "Deployment", "r-egi-hub-binder")["spec"]["template"]["spec"]
    assert {"name": "data", "emptyDir": {}} in spec["volumes"]


async def test_an_upgrade_keeps_the_binder_secrets(cluster: Cluster) -> None:  # noqa: F811
    first = await cluster.render(*MINIMAL)
    secret = find(first, "Secret", "r-egi-hub-binder")
    url = f"{cluster.base}/api/v1/namespaces/hub/secrets"
    async with aiohttp.ClientSession() as session, session.post(url, json=secret) as response:
        assert response.status in (200, 201), await response.text()
    again = secret_data(find(await cluster.render(*MINIMAL), "Secret", "r-egi-hub-binder"))
    kept = secret_data(secret)
    assert again["api-token"] == kept["api-token"]
    assert again["ticket-secret"] == kept["ticket-secret"]


# -- the service itself, as its pod starts it ----------------------------------------


def _service_env(docs: list[dict[str, Any]], tmp_path: Path, config_file: Path, port: int):
    """The container's environment: its literal values, its secretKeyRefs read from the
    rendered Secret; only where it listens, finds its config and the hub differ here."""
    data = secret_data(find(docs, "Secret", f"{P}-binder"))
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "VIRTUAL_ENV")}
    for name, e in env_of(docs, f"{P}-binder").items():
        if "value" in e:
            env[name] = e["value"]
        ref = e.get("valueFrom", {}).get("secretKeyRef", {})
        if ref.get("name") == f"{P}-binder":
            env[name] = data[ref["key"]]
        elif ref:  # extraEnv from the site's own Secret (binder-github)
            env[name] = "not-a-real-token"
    env.update(
        JUPYTERHUB_SERVICE_URL=f"http://127.0.0.1:{port}",
        EGI_BINDER_CONFIG=str(config_file),
        HOME=str(tmp_path),
        JUPYTERHUB_API_URL=f"http://127.0.0.1:{free_port()}/hub/api",  # nothing there
    )
    return env


def _config_file(docs: list[dict[str, Any]], tmp_path: Path, **changes: Any) -> Path:
    """The rendered config file, its data_dir (the pod's emptyDir) under tmp_path."""
    config = json.loads(secret_data(find(docs, "Secret", f"{P}-binder"))["config.json"])
    assert config["BinderService"]["data_dir"] == "/srv/binder"
    config["BinderService"]["data_dir"] = str(tmp_path / "data")
    config["BinderService"].update(changes)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    return path


def test_the_service_starts_with_the_rendered_config(full: list, tmp_path: Path) -> None:
    port = free_port()
    env = _service_env(full, tmp_path, _config_file(full, tmp_path), port)
    proc = subprocess.Popen(
        [sys.executable, "-m", "egi_hub.binder_service"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(timeout=5) as client:

            def landing() -> httpx.Response | None:
                assert proc.poll() is None, proc.communicate()[0]
                try:
                    return client.get(f"{base}/services/binder/", headers={"Host": HUB_HOST})
                except httpx.TransportError:
                    return None  # not listening yet

            landing = wait_for(landing, 60, "the Binder service to answer")
            assert landing.status_code == 200
            assert "Example Binder" in landing.text  # binder.config's site_name
            badge = client.get(f"{base}/services/binder/badge.svg", headers={"Host": HUB_HOST})
            assert badge.status_code == 200
            # The Binder host: each request sent to the same page on the hub's host.
            hub = f"https://{HUB_HOST}/services/binder/"
            for path, where in [
                ("/", hub),
                ("/v2/gh/egi-examples/repo/HEAD?labpath=a.ipynb",
                 f"{hub}v2/gh/egi-examples/repo/HEAD?labpath=a.ipynb"),
                ("/badge_logo.svg", f"{hub}badge_logo.svg"),
                ("/services/binder/v2/zenodo/10.5281/zenodo.1", f"{hub}v2/zenodo/10.5281/zenodo.1"),
                ("/services/binder", hub),
                ("//evil.example.org/x", f"{hub}evil.example.org/x"),
            ]:  # fmt: skip
                answer = client.get(base + path, headers={"Host": BINDER_HOST})
                assert answer.status_code == 302, path
                assert answer.headers["location"] == where, path
    finally:
        stop_process(proc)
        out = proc.communicate(timeout=30)[0]
    assert "builder: kubernetes" in out, out
    for secret in ("api-token", "ticket-secret"):
        assert secret_data(find(full, "Secret", f"{P}-binder"))[secret] not in out


def test_the_service_refuses_a_bad_config_at_start_in_one_line(full: list, tmp_path) -> None:
    """What the schema cannot see (or a config file changed by hand): one line, exit 2."""
    config = _config_file(full, tmp_path, max_queued_per_user=0)
    env = _service_env(full, tmp_path, config, free_port())
    done = subprocess.run(
        [sys.executable, "-m", "egi_hub.binder_service"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("egi-hub binder: "), done.stderr
    assert "max_queued_per_user" in lines[0]
