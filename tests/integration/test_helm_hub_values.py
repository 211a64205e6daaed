"""The chart's hub, database and proxy values, rendered by the real helm: z2jh's forms
(image names, imagePullSecrets items, a list of EnvVars, proxy.service.nodePorts,
hub.db's types, password, upgrade and storageClassName), the restart checksums over
the given secrets, secrets kept out of the Deployment, and tini left in place."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from egi_hub.helm.config import kube_defaults
from tests.chartpod import container_env, deployment
from tests.integration.test_helm_chart import find, refusal, render, secret_data

P = "r-egi-hub"
KEY = "0123456789abcdef" * 4
CHECKSUM = "checksum/secret"


def values_file(tmp_path: Path, values: dict[str, Any], name: str = "values.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(values))
    return str(path)


def rendered(helm: Path, tmp_path: Path, values: dict[str, Any]) -> list[dict[str, Any]]:
    return render(helm, "-f", values_file(tmp_path, values))


def annotations(docs: list[dict[str, Any]], name: str) -> dict[str, str]:
    return find(docs, "Deployment", name)["spec"]["template"]["metadata"]["annotations"]


def hub_box(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return deployment(docs, "hub")["containers"][0]


def hub_env(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The hub's environment as the kubelet makes it from the rendered Secrets."""
    secrets = {d["metadata"]["name"]: secret_data(d) for d in docs if d["kind"] == "Secret"}
    return container_env(hub_box(docs), secrets, "hub")


# -- restarts: a checksum over the given secrets, keyed with the crypt key


def test_a_changed_given_secret_restarts_the_hub(helm: Path, tmp_path: Path) -> None:
    def hub(secret: str, token: str = "") -> tuple[str, str]:
        base = {"hub": {"cryptKey": KEY, "checkin": {"clientSecret": secret}}}
        docs = rendered(helm, tmp_path, {**base, "proxy": {"secretToken": token}})
        return annotations(docs, f"{P}-hub")[CHECKSUM], annotations(docs, f"{P}-proxy")[CHECKSUM]

    first, proxy = hub("client-secret-one")
    assert hub("client-secret-one") == (first, proxy)  # the same values: the same pods
    second, proxy2 = hub("client-secret-two")
    assert second != first
    assert proxy2 == proxy  # the proxy holds no client secret
    third, proxy3 = hub("client-secret-two", "ab" * 32)
    assert third != second and proxy3 != proxy2  # a new proxy token restarts both


def test_the_checksum_is_keyed_with_the_secrets_crypt_key(helm: Path, tmp_path: Path) -> None:
    """No guess of a given secret can be tested against the annotation without the crypt
    key; the key is the one in the hub Secret, in the same render (generated here)."""
    docs = rendered(helm, tmp_path, {"hub": {"checkin": {"clientSecret": "guessable"}}})
    key = secret_data(find(docs, "Secret", f"{P}-hub"))["crypt-key"]
    given = json.dumps(["", "", "guessable", "", None, "", []], separators=(",", ":"))
    expected = hashlib.sha256(f"{key}\n{given}".encode()).hexdigest()
    assert annotations(docs, f"{P}-hub")[CHECKSUM] == expected
    assert hashlib.sha256(f"\n{given}".encode()).hexdigest() != expected


# -- tini stays: args, not command


def test_the_hub_and_binder_keep_the_images_entrypoint(helm: Path, tmp_path: Path) -> None:
    binder = {"enabled": True, "build": {"imagePrefix": "b/"}}
    ingress = {"enabled": True, "hosts": ["h.example.org"]}
    docs = rendered(helm, tmp_path, {"binder": binder, "ingress": ingress})
    for component in ("hub", "binder"):
        box = deployment(docs, component)["containers"][0]
        assert "command" not in box, component
        assert box["args"], component
    assert hub_box(docs)["args"][0] == "jupyterhub"


# -- the public URL and Check-in's redirect


def test_the_checkin_callback_comes_from_the_ingress_host(helm: Path, tmp_path: Path) -> None:
    ingress = {"enabled": True, "hosts": ["notebooks.example.org"], "tls": [
        {"hosts": ["notebooks.example.org"], "secretName": "tls"}]}  # fmt: skip
    for values, expected in [
        ({"ingress": ingress}, "https://notebooks.example.org/hub/oauth_callback"),
        ({}, None),
    ]:
        docs = rendered(helm, tmp_path, values)
        env = hub_env(docs) if values else {}
        if not values:
            names = [e["name"] for e in hub_box(docs)["env"]]
            assert "EGI_HUB_PUBLIC_URL" not in names
        config = kube_defaults(env)
        assert config.CheckinAuthenticator.get("oauth_callback_url") == expected


# -- hub.extraEnv: the map and z2jh's list; string values only in the Secret


def test_extra_env_in_both_forms_keeps_strings_in_the_secret(helm: Path, tmp_path: Path) -> None:
    ref = {"secretKeyRef": {"name": "s3-keys", "key": "access"}}
    as_map = {"API_KEY": "very-secret-value", "S3_KEY": {"valueFrom": ref}, "WORKERS": 5}
    as_list = [
        {"name": "API_KEY", "value": "very-secret-value"},
        {"name": "S3_KEY", "valueFrom": ref},
        {"name": "WORKERS", "value": 5},
    ]
    envs = []
    for form in (as_map, as_list):
        docs = rendered(helm, tmp_path, {"hub": {"extraEnv": form}})
        env = {e["name"]: e for e in hub_box(docs)["env"]}
        assert env["S3_KEY"] == {"name": "S3_KEY", "valueFrom": ref}
        for name in ("API_KEY", "WORKERS"):
            assert "value" not in env[name]
            assert env[name]["valueFrom"]["secretKeyRef"] == {
                "name": f"{P}-hub",
                "key": f"env-{name}",
            }
        data = secret_data(find(docs, "Secret", f"{P}-hub"))
        assert data["env-API_KEY"] == "very-secret-value" and data["env-WORKERS"] == "5"
        text = yaml.safe_dump(find(docs, "Deployment", f"{P}-hub"))
        assert "very-secret-value" not in text
        envs.append(sorted((e["name"], json.dumps(e, sort_keys=True)) for e in env.values()))
    assert envs[0] == envs[1]


@pytest.mark.parametrize(
    ("extra_env", "says"),
    [
        ([{"name": "A"}], "extraEnv"),
        ([{"name": "A", "value": "x", "valueFrom": {}}], "extraEnv"),
        ([{"name": "1A", "value": "x"}], "extraEnv"),
    ],
)
def test_a_bad_env_var_is_refused(helm: Path, tmp_path: Path, extra_env: Any, says: str) -> None:
    assert says in refusal(helm, "-f", values_file(tmp_path, {"hub": {"extraEnv": extra_env}}))


# -- imagePullSecrets: names or {name: x}


def test_pull_secrets_in_either_form(helm: Path, tmp_path: Path) -> None:
    docs = rendered(helm, tmp_path, {"imagePullSecrets": ["plain", {"name": "z2jh"}]})
    pods = [d["spec"]["template"]["spec"] for d in docs if d["kind"] == "Deployment"]
    pods += [d["spec"] for d in docs if d["kind"] == "Pod"]
    assert pods
    for pod in pods:
        assert pod["imagePullSecrets"] == [{"name": "plain"}, {"name": "z2jh"}]
    assert "imagePullSecrets" in refusal(
        helm, "-f", values_file(tmp_path, {"imagePullSecrets": [{"nam": "typo"}]})
    )


# -- z2jh's names: image.name, proxy.service.nodePorts


def test_z2jh_image_and_node_port_names(helm: Path, tmp_path: Path) -> None:
    values = {
        "hub": {"image": {"name": "reg.example.org/hub", "tag": "1"}},
        "proxy": {
            "chp": {"image": {"name": "reg.example.org/chp", "tag": "5.3.0"}},
            "service": {"type": "NodePort", "nodePorts": {"http": 30080}},
        },
    }
    docs = rendered(helm, tmp_path, values)
    assert hub_box(docs)["image"] == "reg.example.org/hub:1"
    assert deployment(docs, "proxy")["containers"][0]["image"] == "reg.example.org/chp:5.3.0"
    service = find(docs, "Service", f"{P}-proxy-public")
    assert service["spec"]["ports"][0]["nodePort"] == 30080
    for old in ({"hub": {"image": {"repository": "x"}}},
                {"proxy": {"service": {"nodePort": 30080}}}):  # fmt: skip
        assert "Additional property" in refusal(helm, "-f", values_file(tmp_path, old))


# -- hub.db


def test_db_types_password_and_upgrade(helm: Path, tmp_path: Path) -> None:
    docs = rendered(helm, tmp_path, {"hub": {"db": {"type": "sqlite-memory", "upgrade": False}}})
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    env = hub_env(docs)
    assert env["EGI_HUB_DB_URL"] == "sqlite://"
    assert env["EGI_HUB_DB_UPGRADE"] == "false"

    db = {"type": "mysql", "url": "mysql://hub@db/hub", "password": "hunter2-db"}
    docs = rendered(helm, tmp_path, {"hub": {"db": db}})
    env = hub_env(docs)
    assert env["MYSQL_PWD"] == "hunter2-db" and "PGPASSWORD" not in env
    assert env["EGI_HUB_DB_URL"] == "mysql://hub@db/hub"
    assert "EGI_HUB_DB_UPGRADE" not in env  # null: JupyterHub's default
    assert "hunter2-db" not in yaml.safe_dump(find(docs, "Deployment", f"{P}-hub"))


@pytest.mark.parametrize(
    ("db", "says"),
    [
        ({"type": "other", "url": "x://", "password": "p"}, "hub.db.password is set"),
        ({"type": "sqlite-memory", "url": "postgresql://db/x"}, "hub.db.url is set"),
        ({"type": "mysql"}, 'hub.db.type is "mysql": set hub.db.url'),
        ({"type": "postgres", "urlSecret": {"name": "db"}, "url": "x"}, "both set"),
    ],
)
def test_db_refusals(helm: Path, tmp_path: Path, db: dict[str, Any], says: str) -> None:
    assert says in refusal(helm, "-f", values_file(tmp_path, {"hub": {"db": db}}))


@pytest.mark.parametrize(
    ("storage_class", "expected"),
    [(None, "absent"), ("", ""), ("fast", "fast")],
)
def test_storage_class_name_means_what_it_means_in_kubernetes(
    helm: Path, tmp_path: Path, storage_class: str | None, expected: str
) -> None:
    """null: the cluster's default class (no field); "": no class; a name: that class."""
    docs = rendered(helm, tmp_path, {"hub": {"db": {"pvc": {"storageClassName": storage_class}}}})
    spec = find(docs, "PersistentVolumeClaim", f"{P}-hub-db")["spec"]
    assert spec.get("storageClassName", "absent") == expected


# -- ingress.pathSuffix


def test_the_path_suffix_is_quoted_and_checked(helm: Path, tmp_path: Path) -> None:
    ingress = {"enabled": True, "hosts": ["h.example.org"], "pathSuffix": "*"}
    docs = rendered(helm, tmp_path, {"ingress": ingress})
    ingress_doc = next(d for d in docs if d["kind"] == "Ingress")
    assert ingress_doc["spec"]["rules"][0]["http"]["paths"][0]["path"] == "/*"
    for bad in ("x\n  evil: 1", "a b", '"', "{{"):
        bad_values = {"ingress": {**ingress, "pathSuffix": bad}}
        assert "pathSuffix" in refusal(helm, "-f", values_file(tmp_path, bad_values))
