"""Where the chart's Binder builds run, rendered by the real helm: the build namespace
(binder.build.namespace) with the Binder Role in it and nowhere else, the chart's dind
engine (binder.dind) or the site's own (binder.build.dockerSocket), the build pod the
service then makes (KubernetesBuilder with the rendered config) mounting that very
socket, the Binder service's narrowed egress, binder.extraEnv values kept in the Secret,
the guests' trusted_proxies for the chart's hops, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from egi_hub.binder_service.builders.kubernetes import KubernetesBuilder
from egi_hub.binder_service.providers.base import Resolved
from egi_hub.binder_service.specs import RepoSpec
from egi_hub.helm.config import hub_config
from tests.integration.test_helm_chart import (
    CHART,
    KUBERNETES_VERSIONS,
    VALUES,
    find,
    notes,
    refusal,
    render,
    run_helm,
    secret_data,
)
from tests.netpol import Address, Cluster, Pod

MINIMAL = ["--set", "binder.enabled=true", "--set", "binder.build.imagePrefix=binder-env-"]
INGRESS = ["--set", "ingress.enabled=true", "--set", "ingress.hosts={hub.example.org}"]
SHA = "a" * 40


def config_of(docs: list[dict[str, Any]], name: str = "r-egi-hub-binder") -> dict[str, Any]:
    return json.loads(secret_data(find(docs, "Secret", name))["config.json"])


def namespaced(docs: list[dict[str, Any]], kind: str) -> dict[str, str]:
    """``name: namespace`` of the documents of ``kind`` (helm's --namespace: hub)."""
    return {
        d["metadata"]["name"]: d["metadata"].get("namespace", "hub")
        for d in docs
        if d["kind"] == kind
    }


def test_the_notes_warn_when_builds_may_run_on_every_node(helm: Path, tmp_path: Path) -> None:
    warning = "WARNING: binder.dind.nodeSelector is empty"
    assert warning in notes(helm, tmp_path, *MINIMAL)
    assert warning not in notes(helm, tmp_path, *MINIMAL, "--set", "binder.dind.nodeSelector.a=b")
    assert warning not in notes(helm, tmp_path, *VALUES["full"])


def test_the_build_namespace_holds_the_role_the_builds_and_dind(helm: Path) -> None:
    docs = render(helm, *MINIMAL)
    build_ns = "hub-r-egi-hub-build"  # <namespace>-<fullname>-build: one per release
    (namespace,) = [d for d in docs if d["kind"] == "Namespace"]
    assert namespace["metadata"]["name"] == build_ns
    labels = namespace["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    assert labels["pod-security.kubernetes.io/audit"] == "baseline"
    # The Binder service's Role and binding: in the build namespace only.
    assert namespaced(docs, "Role") == {"r-egi-hub-hub": "hub", "r-egi-hub-binder": build_ns}
    binding = find(docs, "RoleBinding", "r-egi-hub-binder")
    assert binding["metadata"]["namespace"] == build_ns
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "r-egi-hub-binder", "namespace": "hub"}
    ]
    assert binding["roleRef"]["name"] == "r-egi-hub-binder"
    assert not [d for d in docs if d["kind"].startswith("Cluster")]
    # The service makes its build pods there, with dind's socket.
    kube = config_of(docs)["KubernetesBuilder"]
    assert kube["namespace"] == build_ns
    dind = find(docs, "DaemonSet", "r-egi-hub-binder-dind")
    assert dind["metadata"]["namespace"] == build_ns
    spec = dind["spec"]["template"]["spec"]
    (box,) = spec["containers"]
    assert box["securityContext"]["privileged"] is True  # said so in values and docs
    assert spec["automountServiceAccountToken"] is False
    assert not box.get("ports") and not spec.get("hostNetwork")
    # dockerd first (the image's entrypoint then adds no TCP host of its own), one host:
    # its socket, never a port the build steps beside it could reach
    assert box["args"][:2] == ["dockerd", "--host=unix:///var/run/dind/docker.sock"]
    assert not [a for a in box["args"] if "tcp://" in a or a.startswith("-H")]
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in box["volumeMounts"]}
    assert mounts["socket"] == "/var/run/dind"
    folder = volumes["socket"]["hostPath"]["path"]
    assert volumes["socket"]["hostPath"]["type"] == "DirectoryOrCreate"
    assert (
        kube["docker_socket"]
        == f"{folder}/docker.sock"
        == ("/var/run/dind/hub_r-egi-hub/docker.sock")
    )  # one folder per release: two releases on a node never share an engine
    assert volumes["data"] == {"name": "data", "emptyDir": {"sizeLimit": "50Gi"}}
    # no build nodes given: the build pods go anywhere, and the NOTES say so
    assert "node_selector" not in kube and "tolerations" not in kube
    for version in KUBERNETES_VERSIONS:
        for doc in docs:
            kubernetes_validate.validate(doc, version, strict=True)


def test_the_build_pod_the_service_makes_mounts_that_socket(full_docs: list) -> None:
    kube = config_of(full_docs, "egi-notebooks-binder")["KubernetesBuilder"]
    builder = KubernetesBuilder(**{k: v for k, v in kube.items()})
    spec = RepoSpec("gh", "org/repo", "HEAD")
    url = "https://github.com/org/repo"
    job = {"provider": "git", "repo": url, "ref": SHA}
    source = Resolved(spec, "git", url, SHA, "org/repo", job)
    pod = builder.pod_manifest("gh-org-repo-abc", source)
    (socket,) = [v for v in pod["spec"]["volumes"] if v["name"] == "docker-socket"]
    assert socket["hostPath"] == {
        "path": "/run/egi-dind/hub_egi-notebooks/docker.sock",
        "type": "Socket",
    }
    dind = find(full_docs, "DaemonSet", "egi-notebooks-binder-dind")
    folder = {v["name"]: v for v in dind["spec"]["template"]["spec"]["volumes"]}["socket"]
    assert socket["hostPath"]["path"] == folder["hostPath"]["path"] + "/docker.sock"
    assert builder.namespace == dind["metadata"]["namespace"] == "notebooks-builds"
    assert pod["metadata"]["labels"]["app.kubernetes.io/component"] == "binder-build"
    # the build pods go where dind runs (binder.config's node_selector wins; the
    # tolerations come from binder.dind)
    assert pod["spec"]["nodeSelector"] == {"node-role": "build"}
    assert kube["tolerations"] == [
        {"key": "dedicated", "operator": "Equal", "value": "build", "effect": "NoSchedule"}
    ]
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(pod, version, strict=True)


@pytest.fixture(scope="module")
def full_docs(helm: Path) -> list[dict[str, Any]]:
    return render(helm, *VALUES["full"])


def test_the_full_values_dind_settings(full_docs: list) -> None:
    spec = find(full_docs, "DaemonSet", "egi-notebooks-binder-dind")["spec"]["template"]["spec"]
    (box,) = spec["containers"]
    assert box["image"] == "registry.example.org/mirror/docker:27.5.1-dind"
    assert box["imagePullPolicy"] == "Always"
    assert box["args"][-1] == "--mtu=1400"
    assert box["resources"]["limits"] == {"cpu": "8", "memory": "16Gi"}
    assert spec["nodeSelector"] == {"node-role": "build"}
    assert spec["tolerations"][0]["value"] == "build"
    assert {v["name"]: v for v in spec["volumes"]}["data"]["emptyDir"] == {"sizeLimit": "100Gi"}


def test_the_sites_own_engine_and_namespace(helm: Path) -> None:
    docs = render(
        helm, *MINIMAL,
        "--set", "binder.dind.enabled=false",
        "--set", "binder.build.dockerSocket=/run/containerd-docker/docker.sock",
        "--set", "binder.build.namespace=builds",
        "--set", "binder.build.createNamespace=false",
    )  # fmt: skip
    assert not [d for d in docs if d["kind"] in ("DaemonSet", "Namespace")]
    kube = config_of(docs)["KubernetesBuilder"]
    assert kube["docker_socket"] == "/run/containerd-docker/docker.sock"
    assert kube["namespace"] == "builds"
    assert namespaced(docs, "Role")["r-egi-hub-binder"] == "builds"
    assert find(docs, "NetworkPolicy", "r-egi-hub-binder-build")["metadata"]["namespace"] == (
        "builds"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "binder.build.namespace=hub"], "binder.build.namespace is the release's own"),
        (
            ["--set", "binder.build.dockerSocket=/var/run/docker.sock"],
            "binder.build.dockerSocket is set and binder.dind.enabled is true",
        ),
        (["--set", "binder.dind.enabled=false"], "the build pods need a container engine"),
        (
            ["--set-json", 'proxy.chp.extraCommandLineFlags=["--change-origin"]'],
            "proxy.chp.extraCommandLineFlags: --change-origin with binder.enabled",
        ),
        (
            ["--set-json", 'proxy.chp.extraCommandLineFlags=["--change-origin=true"]'],
            "--change-origin with binder.enabled",
        ),
        (
            ["--set-json", 'binder.dind.extraArgs=["--host=tcp://0.0.0.0:2375"]'],
            "binder.dind.extraArgs: no --host/-H",
        ),
        (["--set-json", 'binder.dind.extraArgs=["-H", "tcp://:2375"]'], "no --host/-H"),
        # pflag's combined shorthands: -D then -H with the rest as its value
        (["--set-json", 'binder.dind.extraArgs=["-DHtcp://0.0.0.0:2375"]'], "no --host/-H"),
        (["--set-json", 'binder.dind.extraArgs=["-DH", "tcp://:2375"]'], "no --host/-H"),
        (["--set-json", 'binder.dind.extraArgs=["--host", "tcp://:2375"]'], "no --host/-H"),
        # review 12c M3: never a namespace of the cluster's, or a VO's
        (["--set", "binder.build.namespace=default"], "a namespace of the cluster's own"),
        (["--set", "binder.build.namespace=kube-system"], "a namespace of the cluster's own"),
        (
            [
                "--set",
                "singleuser.voNamespaces.enabled=true",
                "--set",
                "singleuser.voNamespaces.namespaces.vo-a.name=vo-a",
                "--set",
                "binder.build.namespace=vo-a",
            ],
            'binder.build.namespace: "vo-a" is VO vo-a\'s namespace',
        ),
        (
            ["--set", f"fullnameOverride={'f' * 50}", "--namespace", "n" * 20],
            "is longer than 63 characters: set binder.build.namespace",
        ),
    ],
)
def test_templates_refuse(helm: Path, args: list[str], message: str) -> None:
    assert message in refusal(helm, "--namespace", "hub", *MINIMAL, *args)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "binder.build.namespace=Builds_NS"], "binder.build.namespace: Does not match"),
        (["--set", "binder.build.dockerSocket=docker.sock"], "binder.build.dockerSocket: Does"),
        (["--set", "binder.dind.enabeld=true"], "binder.dind: Additional property enabeld"),
        (["--set", "binder.dind.image.tag=a b"], "binder.dind.image.tag: Does not match"),
        (
            ["--set-json", 'binder.networkPolicy.apiServer={"cidrs":["10.0.0.1"]}'],
            "binder.networkPolicy.apiServer.cidrs.0: Does not match pattern",
        ),
        (
            ["--set-json", 'binder.config={"KubernetesBuilder":{"namespace":"hub"}}'],
            "binder.config.KubernetesBuilder: Additional property namespace is not allowed",
        ),
        (
            ["--set-json", 'binder.config={"KubernetesBuilder":{"docker_socket":"/x"}}'],
            "binder.config.KubernetesBuilder: Additional property docker_socket is not allowed",
        ),
    ],
)
def test_the_schema_refuses(helm: Path, args: list[str], message: str) -> None:
    assert message in refusal(helm, *MINIMAL, *args)


def test_no_change_origin_check_without_binder(helm: Path) -> None:
    render(helm, "--set-json", 'proxy.chp.extraCommandLineFlags=["--change-origin"]')


def test_the_services_egress_by_default(helm: Path) -> None:
    """Without apiServer: private addresses on the API server's ports only; with it, its
    endpoints only; privateIPs (the site's choice) every private address."""
    docs = render(helm, *MINIMAL)
    net = Cluster([d for d in docs if d["kind"] == "NetworkPolicy"], "hub")
    deployment = find(docs, "Deployment", "r-egi-hub-binder")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    binder = Pod("binder", "hub", labels, "10.244.0.50", {"http": 8890})
    hub_labels = find(docs, "Deployment", "r-egi-hub-hub")["spec"]["template"]["metadata"]
    hub = Pod("hub", "hub", hub_labels["labels"], "10.244.0.51", {"hub": 8081})
    assert net.allows(binder, hub, 8081)
    assert net.allows(binder, Address("10.0.0.1"), 6443)
    assert net.allows(binder, Address("192.168.5.5"), 443)
    assert not net.allows(binder, Address("10.0.0.5"), 80)
    assert not net.allows(binder, Address("10.96.0.20"), 6379), "an in-cluster Redis"
    assert not net.allows(binder, Address("169.254.169.254"), 80)
    api = '{"cidrs":["172.20.0.2/32"],"ports":[443]}'
    docs = render(helm, *MINIMAL, "--set-json", f"binder.networkPolicy.apiServer={api}")
    net = Cluster([d for d in docs if d["kind"] == "NetworkPolicy"], "hub")
    assert net.allows(binder, Address("172.20.0.2"), 443)
    assert not net.allows(binder, Address("172.20.0.3"), 443)
    assert not net.allows(binder, Address("172.20.0.2"), 6443)
    docs = render(helm, *MINIMAL, "--set", "binder.networkPolicy.egressAllowRules.privateIPs=true")
    net = Cluster([d for d in docs if d["kind"] == "NetworkPolicy"], "hub")
    assert net.allows(binder, Address("10.96.0.20"), 6379)
    build = Pod(
        "b", "hub-r-egi-hub-build", {"app.kubernetes.io/component": "binder-build"}, "10.2.3.3"
    )
    assert not net.allows(build, Address("10.96.0.20"), 6379), "never for the build namespace"


def test_plain_extra_env_values_are_kept_in_the_secret(helm: Path) -> None:
    docs = render(
        helm, *MINIMAL,
        "--set", "binder.extraEnv.EGI_BINDER_GITLAB_TOKEN=glpat-s3cret",
        "--set", "binder.extraEnv.PORTISH=8080",
        "--set-json", 'binder.extraEnv.FROM_REF={"valueFrom":{"secretKeyRef":'
                      '{"name":"x","key":"y"}}}',
    )  # fmt: skip
    deployment = find(docs, "Deployment", "r-egi-hub-binder")
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["EGI_BINDER_GITLAB_TOKEN"] == {
        "name": "EGI_BINDER_GITLAB_TOKEN",
        "valueFrom": {
            "secretKeyRef": {"name": "r-egi-hub-binder", "key": "env.EGI_BINDER_GITLAB_TOKEN"}
        },
    }
    assert env["PORTISH"]["valueFrom"]["secretKeyRef"]["key"] == "env.PORTISH"
    assert env["FROM_REF"]["valueFrom"]["secretKeyRef"] == {"name": "x", "key": "y"}
    data = secret_data(find(docs, "Secret", "r-egi-hub-binder"))
    assert data["env.EGI_BINDER_GITLAB_TOKEN"] == "glpat-s3cret"
    assert data["env.PORTISH"] == "8080"
    assert "env.FROM_REF" not in data
    for doc in docs:  # nowhere else, not even hashed into an annotation on its own
        if doc["kind"] != "Secret":
            assert "glpat-s3cret" not in json.dumps(doc), doc["kind"]
    # A changed value restarts the service; the checksum is keyed (the crypt key).
    key = ["--set", "hub.cryptKey=" + "ab" * 32]

    def checksum(token: str, crypt: list[str] = key) -> str:
        docs = render(helm, *MINIMAL, *crypt, "--set", f"binder.extraEnv.TOKEN={token}")
        template = find(docs, "Deployment", "r-egi-hub-binder")["spec"]["template"]
        return template["metadata"]["annotations"]["checksum/config"]

    assert checksum("one") == checksum("one") != checksum("two")
    assert checksum("one") != checksum("one", ["--set", "hub.cryptKey=" + "cd" * 32])


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], 1),  # CHP only (a port-forward, a load balancer Service)
        (INGRESS, 2),  # the Ingress controller, then CHP
        ([*INGRESS, "--set-json", 'proxy.chp.extraCommandLineFlags=["--no-x-forward"]'], 1),
        ([*INGRESS, "--set", "binder.config.BinderGuests.trusted_proxies=3"], 3),  # the site's
    ],
)
def test_the_guests_trusted_proxies_follow_the_charts_hops(helm, args, expected) -> None:
    docs = render(helm, *MINIMAL, "--set", "binder.config.BinderGuests.enabled=true", *args)
    files = secret_data(find(docs, "Secret", "r-egi-hub-hub-config"))
    values = json.loads(files["values.json"])
    assert values["binder"]["BinderGuests"]["trusted_proxies"] == expected
    binder = secret_data(find(docs, "Secret", "r-egi-hub-binder"))
    env = {"POD_NAMESPACE": "hub", "EGI_HUB_DB_URL": "sqlite://",
           "EGI_BINDER_API_TOKEN": binder["api-token"],
           "EGI_BINDER_TICKET_SECRET": binder["ticket-secret"]}  # fmt: skip
    config = hub_config(json.loads(files["site.json"]), env, values)
    assert config.BinderGuests.trusted_proxies == expected


def test_two_releases_never_share_a_build_namespace_or_an_engine(helm: Path) -> None:
    """Review 12c M3/L6: two releases in one namespace get build namespaces of their own;
    release b-c in namespace a and release c in namespace a-b get dind folders of their
    own (their default build namespaces coincide: with createNamespace helm refuses the
    second install, the Namespace being the first release's; without, the docs say the
    namespace must be the release's own)."""
    seen: dict[str, tuple[str, str]] = {}
    for release, namespace in (("b-c", "a"), ("c", "a-b"), ("d", "a")):
        done = run_helm(helm, "template", release, str(CHART), "--namespace", namespace, *MINIMAL)
        assert done.returncode == 0, done.stderr
        docs = [doc for doc in yaml.safe_load_all(done.stdout) if doc]
        kube = config_of(docs, f"{release}-egi-hub-binder")["KubernetesBuilder"]
        seen[release] = (kube["namespace"], kube["docker_socket"])
    assert seen["b-c"][0] != seen["d"][0]
    assert len({socket for _, socket in seen.values()}) == 3
    assert seen["b-c"] == ("a-b-c-egi-hub-build", "/var/run/dind/a_b-c-egi-hub/docker.sock")
    assert seen["c"][1] == "/var/run/dind/a-b_c-egi-hub/docker.sock"
