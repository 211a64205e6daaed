"""The chart's NetworkPolicies and PodDisruptionBudgets, rendered by the real helm.

Rendered per values (default, full, off), validated strict for Kubernetes 1.29 and
1.33, and then *evaluated* (tests/netpol.py): who may reach whom on which port, for the
pods the chart renders and the pods the hub and the Binder service make (single-user
servers with KubeSpawner's labels, build pods with KubernetesBuilder's), asserted as a
matrix. Also: every pod is under a policy in both directions, and no container the
chart renders is privileged (the oneclient sidecar is the spawner's, not the chart's).
"""

from __future__ import annotations

import json
import shutil
import zlib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from egi_hub.binder_service.builders.kubernetes import KubernetesBuilder
from tests.integration.test_helm_chart import (
    CHART,
    FULL,
    KUBERNETES_VERSIONS,
    find,
    pod_specs,
    refusal,
    render,
)
from tests.netpol import Address, Cluster, Pod

NS = "hub"
OFF = [
    arg
    for key in ("hub", "proxy.chp", "singleuser", "binder")
    for arg in ("--set", f"{key}.networkPolicy.enabled=false")
]
VALUES = {"default": [], "full": ["-f", str(FULL)], "off": OFF}
VO_NAMESPACES = {
    "enabled": True,
    "namespaces": {
        "vo.access.egi.eu": {"name": "vo-access"},
        "biomed": {"name": "vo-biomed"},
    },
}

# Addresses outside the pods (after a Service's address is translated).
INTERNET = Address("8.8.8.8")
CLIENT = Address("203.0.113.7")  # someone on the internet (or an Ingress controller)
METADATA = Address("169.254.169.254")
KUBE_API = Address("10.0.0.1")  # the API server's endpoint: a control-plane node
PRIVATE = Address("10.0.0.5")  # e.g. an unauthenticated service on the site's LAN
SITE_S3 = Address("10.1.2.3")  # the full values' own S3 endpoint (singleuser.egress)
DB = Address("10.20.0.10")  # the full values' database (hub.networkPolicy.egress)
KUBE_DNS = Pod("coredns", "kube-system", {"k8s-app": "kube-dns"}, "10.96.5.5", {"dns": 53})


def policies(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        f"{d['metadata'].get('namespace', NS)}/{d['metadata']['name']}": d
        for d in docs
        if d["kind"] == "NetworkPolicy"
    }


def rendered_pods(docs: list[dict[str, Any]]) -> dict[str, Pod]:
    """The pods the chart renders (one per Deployment, and the test Pod), by component."""
    pods = {}
    for n, doc in enumerate(d for d in docs if d["kind"] in ("Deployment", "Pod")):
        meta = doc["metadata"] if doc["kind"] == "Pod" else doc["spec"]["template"]["metadata"]
        spec = doc["spec"] if doc["kind"] == "Pod" else doc["spec"]["template"]["spec"]
        ports = {
            p["name"]: p["containerPort"]
            for c in spec["containers"]
            for p in c.get("ports", [])
            if "name" in p
        }
        labels = meta["labels"]
        pods[labels["app.kubernetes.io/component"]] = Pod(
            doc["metadata"]["name"], NS, labels, f"10.244.0.{10 + n}", ports
        )
    return pods


def singleuser(name: str, namespace: str = NS, release: str = "r", ip: str = "") -> Pod:
    """A single-user server's pod as KubeSpawner labels it (plus the release label)."""
    labels = {
        "app": "jupyterhub",
        "heritage": "jupyterhub",
        "component": "singleuser-server",
        "app.kubernetes.io/name": "jupyterhub",
        "app.kubernetes.io/managed-by": "kubespawner",
        "app.kubernetes.io/component": "singleuser-server",
        "app.kubernetes.io/instance": release,
        "hub.jupyter.org/username": name,
        "hub.jupyter.org/servername": "",
    }
    address = ip or f"10.244.1.{zlib.crc32(f'{namespace}/{name}'.encode()) % 200 + 10}"
    return Pod(f"jupyter-{name}", namespace, labels, address, {"notebook-port": 8888})


BUILD_NS = "notebooks-builds"  # the full values' binder.build.namespace


def build_pod(namespace: str = BUILD_NS) -> Pod:
    labels = KubernetesBuilder().labels("gh-org-repo-abc123")
    return Pod("binder-build-gh-org-repo-abc123", namespace, labels, "10.244.2.10")


def dind_pod(docs: list[dict[str, Any]]) -> Pod:
    """A pod of the chart's dind DaemonSet, where it runs (the images' RUN steps use its
    network namespace, so this is also what a repository's postBuild reaches)."""
    (daemonset,) = [d for d in docs if d["kind"] == "DaemonSet"]
    labels = daemonset["spec"]["template"]["metadata"]["labels"]
    return Pod("dind-x", daemonset["metadata"]["namespace"], labels, "10.244.2.20")


def binder_pod(pods: dict[str, Pod], name: str) -> Pod:
    """The Binder service's pod: the rendered one, or (until its Deployment is in the
    chart) one with the labels that Deployment selects on."""
    if "binder" in pods:
        return pods["binder"]
    base = dict(pods["hub"].labels)
    base["app.kubernetes.io/component"] = "binder"
    return Pod(f"{name}-binder", NS, base, "10.244.0.99", {"http": 8890})


def world(docs: list[dict[str, Any]]) -> tuple[Cluster, dict[str, Pod]]:
    pods = rendered_pods(docs)
    return Cluster(list(policies(docs).values()), NS), pods


@pytest.fixture(scope="module")
def default(helm: Path) -> list[dict[str, Any]]:
    return render(helm)


@pytest.fixture(scope="module")
def full(helm: Path) -> list[dict[str, Any]]:
    return render(helm, *VALUES["full"])


def render_vo(helm: Path, tmp_path: Path, *args: str) -> list[dict[str, Any]]:
    """The chart with per-VO namespaces (rendered from a copy without the schema while
    singleuser.voNamespaces is not yet in it)."""
    schema = json.loads((CHART / "values.schema.json").read_text())
    chart = CHART
    if "voNamespaces" not in schema["properties"]["singleuser"].get("properties", {}):
        chart = tmp_path / "egi-hub"
        shutil.copytree(CHART, chart)
        (chart / "values.schema.json").unlink()
    vo = json.dumps(VO_NAMESPACES)
    return render(helm, "--set-json", f"singleuser.voNamespaces={vo}", *args, chart=chart)


@pytest.mark.parametrize("values", sorted(VALUES))
def test_what_is_rendered(helm: Path, values: str) -> None:
    docs = render(helm, *VALUES[values])
    prefix = "egi-notebooks" if values == "full" else "r-egi-hub"
    names = {name.split("/", 1)[1] for name in policies(docs)}
    expected = {f"{prefix}-{c}" for c in ("hub", "proxy", "singleuser", "test")}
    if values == "full":  # Binder on: its service and its build pods
        expected |= {f"{prefix}-binder", f"{prefix}-binder-build"}
    assert names == (set() if values == "off" else expected)
    for policy in policies(docs).values():
        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    budgets = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "PodDisruptionBudget"}
    assert set(budgets) == {f"{prefix}-hub", f"{prefix}-proxy"}
    hub = {"maxUnavailable": 1}
    proxy = {"maxUnavailable": "100%"} if values == "full" else {"maxUnavailable": 1}
    assert {k: v for k, v in budgets[f"{prefix}-hub"].items() if k != "selector"} == hub
    assert {k: v for k, v in budgets[f"{prefix}-proxy"].items() if k != "selector"} == proxy
    pods = rendered_pods(docs)
    for component in ("hub", "proxy"):
        selector = budgets[f"{prefix}-{component}"]["selector"]["matchLabels"]
        assert selector.items() <= pods[component].labels.items(), component


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_validate_strict(helm: Path, tmp_path: Path, version: str) -> None:
    for docs in (render(helm), render(helm, *VALUES["full"]), render_vo(helm, tmp_path)):
        for doc in docs:
            if doc["kind"] in ("NetworkPolicy", "PodDisruptionBudget"):
                kubernetes_validate.validate(doc, version, strict=True)


def test_who_reaches_whom_by_default(default: list[dict[str, Any]]) -> None:
    net, pods = world(default)
    hub, proxy, test = pods["hub"], pods["proxy"], pods["test"]
    alice, bob = singleuser("alice"), singleuser("bob")
    other_release = singleuser("carol", release="other")
    ok = net.allows
    # Single-user servers: the hub's API and the proxy's public port, nothing private.
    assert ok(alice, hub, 8081)
    assert ok(alice, proxy, 8000)
    assert not ok(alice, proxy, 8001), "the proxy's API is the hub's alone"
    assert not ok(alice, bob, 8888), "another user's server"
    assert not ok(alice, hub, 8888) and not ok(alice, hub, 22)
    assert not ok(alice, KUBE_API, 443) and not ok(alice, KUBE_API, 6443)
    assert not ok(alice, METADATA, 80) and not ok(alice, METADATA, 443)
    assert not ok(alice, PRIVATE, 80) and not ok(alice, SITE_S3, 443)
    # Nor the rest of link-local (EKS Pod Identity's agent) nor the shared address
    # space (pods on some clouds, Alibaba's metadata server).
    for internal in ("169.254.170.23", "169.254.0.1", "100.100.100.200", "100.64.0.1",
                     "100.127.255.254"):  # fmt: skip
        assert not ok(alice, Address(internal), 80), internal
        assert not ok(hub, Address(internal), 80), internal
    assert ok(alice, Address("100.63.255.255"), 443) and ok(alice, Address("100.128.0.1"), 443)
    assert ok(alice, INTERNET, 443) and ok(alice, INTERNET, 80)
    assert ok(alice, KUBE_DNS, 53, "UDP") and ok(alice, KUBE_DNS, 53, "TCP")
    assert ok(alice, Address("10.96.0.10"), 53, "UDP")  # a node-local DNS cache
    assert not ok(alice, KUBE_DNS, 9153), "only DNS in kube-system"
    # Into single-user servers: the proxy and the hub only.
    assert ok(proxy, alice, 8888) and ok(hub, alice, 8888)
    assert not ok(test, alice, 8888) and not ok(CLIENT, alice, 8888)
    assert not ok(proxy, alice, 22)
    assert not ok(proxy, other_release, 8888), "another release's servers"
    # The hub: the proxy's API, the servers, the API server, the issuer; not the metadata.
    assert ok(hub, proxy, 8001)
    assert ok(hub, KUBE_API, 443) and ok(hub, KUBE_API, 6443)
    assert ok(hub, INTERNET, 443)
    assert not ok(hub, METADATA, 80)
    assert ok(proxy, hub, 8081) and ok(test, hub, 8081)
    assert not ok(CLIENT, hub, 8081), "the hub is reached through the proxy"
    assert not ok(other_release, hub, 8081)
    # The proxy: public on its HTTP port, its API the hub's; it reaches nothing outside.
    assert ok(CLIENT, proxy, 8000)
    assert not ok(CLIENT, proxy, 8001) and not ok(alice, proxy, 8001)
    assert not ok(proxy, INTERNET, 443) and not ok(proxy, KUBE_API, 443)
    assert not ok(proxy, METADATA, 80)
    assert ok(proxy, KUBE_DNS, 53, "UDP")
    # The test pod asks the hub's API, and nothing else.
    assert not ok(test, INTERNET, 443) and not ok(test, proxy, 8000)
    assert not ok(CLIENT, test, 80)


def test_who_reaches_whom_with_binder_and_full_values(full: list[dict[str, Any]]) -> None:
    net, pods = world(full)
    hub, proxy = pods["hub"], pods["proxy"]
    binder, build = binder_pod(pods, "egi-notebooks"), build_pod()
    alice = singleuser("alice")
    ok = net.allows
    # The Binder service: the proxy routes to it, it launches through the hub's API and
    # makes build pods through the API server; anyone may reach its own Ingress port.
    assert ok(proxy, binder, 8890) and ok(hub, binder, 8890) and ok(CLIENT, binder, 8890)
    assert ok(binder, hub, 8081)
    assert ok(binder, KUBE_API, 6443) and ok(binder, INTERNET, 443)
    assert not ok(binder, METADATA, 80)
    # ... and no other private address (apiServer: the API server's endpoint and port).
    assert not ok(binder, KUBE_API, 443) and not ok(binder, KUBE_API, 10250)
    assert not ok(binder, PRIVATE, 80) and not ok(binder, PRIVATE, 6443)
    assert not ok(binder, DB, 5432) and not ok(binder, Address("10.96.0.10"), 443)
    assert not ok(binder, Address("100.100.100.200"), 80)
    assert not ok(binder, alice, 8888) and not ok(alice, binder, 8890 + 1)
    assert not ok(binder, proxy, 8001)
    # Build pods: nothing reaches them; they fetch from the internet and the site's git
    # server (binder.networkPolicy.egress), never the API server nor the metadata server.
    assert not ok(binder, build, 8080) and not ok(alice, build, 8888)
    assert ok(build, INTERNET, 443) and ok(build, Address("10.30.0.7"), 443)
    assert not ok(build, KUBE_API, 6443) and not ok(build, METADATA, 80)
    assert not ok(build, hub, 8081) and not ok(build, PRIVATE, 443)
    # dind (the images' RUN steps: a repository's postBuild) likewise; nothing reaches it,
    # and any other pod made in the build namespace is under the same policy.
    dind = dind_pod(full)
    assert dind.namespace == BUILD_NS
    rogue = Pod("rogue", BUILD_NS, {"app": "anything"}, "10.244.2.30")
    for pod in (dind, rogue):
        assert ok(pod, INTERNET, 443) and ok(pod, Address("10.30.0.7"), 443)
        assert ok(pod, KUBE_DNS, 53, "UDP")
        for target, port in [(KUBE_API, 6443), (KUBE_API, 443), (METADATA, 80),
                             (PRIVATE, 443), (Address("169.254.170.23"), 80),
                             (Address("100.100.100.200"), 80), (hub, 8081), (binder, 8890),
                             (alice, 8888), (proxy, 8001)]:  # fmt: skip
            assert not ok(pod, target, port), (pod.name, target, port)
        assert not ok(alice, pod, 2375) and not ok(binder, pod, 2375)
        assert not ok(CLIENT, pod, 2375) and not ok(build, pod, 2375)
    # A build pod made in the release's namespace (a service whose builder namespace
    # was changed by hand) would be under no Binder rule: the Role does not allow it.
    assert not [d for d in full if d["kind"] == "Role" and d["metadata"]["name"] ==
                "egi-notebooks-binder" and d["metadata"].get("namespace", NS) == NS]  # fmt: skip
    # Rules the full values add: the servers' S3 endpoint, the hub's database, a
    # monitoring namespace's scraper on the hub; the proxy's API still closed.
    assert ok(alice, SITE_S3, 443) and not ok(alice, SITE_S3, 80)
    assert not ok(alice, PRIVATE, 443)
    assert ok(hub, DB, 5432)
    scraper = Pod("prometheus", "monitoring", {"app": "prometheus"}, "10.244.9.9")
    assert ok(scraper, hub, 8081) and not ok(scraper, proxy, 8001)
    assert ok(CLIENT, proxy, 8000) and not ok(CLIENT, proxy, 8001)
    # dnsPortsPrivateIPs and dnsPortsCloudMetadataServer off for the hub: kube-system only.
    assert ok(hub, KUBE_DNS, 53, "UDP")
    assert not ok(hub, Address("169.254.169.254"), 53, "UDP")
    assert ok(hub, Address("10.96.0.10"), 53, "UDP")  # privateIPs: every port


def test_egress_allow_rules_turned_off_and_on(helm: Path) -> None:
    rules = "singleuser.networkPolicy.egressAllowRules"
    docs = render(helm, "--set", f"{rules}.nonPrivateIPs=false")
    net, pods = world(docs)
    alice = singleuser("alice")
    assert not net.allows(alice, INTERNET, 443)
    assert net.allows(alice, pods["hub"], 8081) and net.allows(alice, KUBE_DNS, 53, "UDP")
    # A site that wants notebooks to see private addresses (or the metadata server)
    # says so, each separately.
    docs = render(helm, "--set", f"{rules}.privateIPs=true")
    net, _ = world(docs)
    assert net.allows(alice, PRIVATE, 80) and not net.allows(alice, METADATA, 80)
    docs = render(helm, "--set", f"{rules}.cloudMetadataServer=true")
    net, _ = world(docs)
    assert net.allows(alice, METADATA, 80) and not net.allows(alice, PRIVATE, 80)
    # Without privateIPs the hub still reaches the proxy's API and the servers, not the
    # API server (a site that knows its address adds it in hub.networkPolicy.egress).
    docs = render(helm, "--set", "hub.networkPolicy.egressAllowRules.privateIPs=false")
    net, pods = world(docs)
    assert net.allows(pods["hub"], alice, 8888) and net.allows(pods["hub"], pods["proxy"], 8001)
    assert not net.allows(pods["hub"], KUBE_API, 6443)
    # allowedIngressPorts [] closes the proxy to the world but not to the servers.
    docs = render(helm, "--set-json", "proxy.chp.networkPolicy.allowedIngressPorts=[]")
    net, pods = world(docs)
    assert not net.allows(CLIENT, pods["proxy"], 8000)
    assert net.allows(alice, pods["proxy"], 8000)


def test_off_means_no_policy(helm: Path) -> None:
    net, pods = world(render(helm, *OFF))
    alice = singleuser("alice")
    assert net.allows(alice, METADATA, 80) and net.allows(CLIENT, pods["hub"], 8081)


def test_per_vo_namespaces(helm: Path, tmp_path: Path) -> None:
    docs = render_vo(helm, tmp_path)
    found = policies(docs)
    assert {"hub/r-egi-hub-singleuser", "vo-access/r-egi-hub-singleuser",
            "vo-biomed/r-egi-hub-singleuser"} <= set(found)  # fmt: skip
    net, pods = world(docs)
    hub, proxy = pods["hub"], pods["proxy"]
    alice = singleuser("alice", "vo-access")
    bob = singleuser("bob", "vo-biomed")
    home = singleuser("carol")
    ok = net.allows
    for server in (alice, bob, home):
        assert ok(hub, server, 8888) and ok(proxy, server, 8888), server.namespace
        assert ok(server, hub, 8081) and ok(server, proxy, 8000), server.namespace
        assert not ok(server, proxy, 8001), server.namespace
        assert ok(server, INTERNET, 443) and not ok(server, METADATA, 80)
    assert not ok(alice, bob, 8888) and not ok(bob, alice, 8888) and not ok(alice, home, 8888)
    # A pod in a VO's namespace that only looks like the hub is not the hub.
    fake_hub = Pod("fake", "vo-access", dict(hub.labels), "10.244.3.3", dict(hub.ports))
    assert not ok(fake_hub, alice, 8888) and not ok(fake_hub, bob, 8888)
    # Servers of another release in a VO namespace are not this proxy's to reach (the
    # hub's privateIPs rule reaches any private address, pods included).
    assert not ok(proxy, singleuser("dave", "vo-access", release="other"), 8888)


def test_every_pod_is_under_a_policy_and_none_is_privileged(helm: Path, tmp_path: Path) -> None:
    for docs in (render(helm, *VALUES["full"]), render_vo(helm, tmp_path)):
        net, pods = world(docs)
        spawned = [singleuser("alice")]
        spawned += [singleuser("bob", ns) for ns in ("vo-access", "vo-biomed")]
        if any(p.endswith("-binder-build") for p in policies(docs)):  # Binder on
            spawned += [build_pod(), dind_pod(docs)]
            if "binder" not in pods:
                spawned.append(binder_pod(pods, "egi-notebooks"))
        for pod in [*pods.values(), *spawned]:
            if pod.namespace != NS and not any(k.startswith(f"{pod.namespace}/") for k in
                                               policies(docs)):  # fmt: skip
                continue  # no per-VO namespaces in these values
            for kind in ("Ingress", "Egress"):
                assert net.selecting(pod, kind), f"{pod.namespace}/{pod.name}: no {kind} policy"
        for where, spec in pod_specs(docs):
            if where.endswith("-binder-dind"):  # the build engine: privileged, on purpose
                assert spec["containers"][0]["securityContext"]["privileged"] is True
                assert not spec.get("hostNetwork") and not spec.get("hostPID"), where
                continue
            assert not spec.get("hostNetwork") and not spec.get("hostPID"), where
            assert not spec.get("hostIPC"), where
            assert not [v for v in spec.get("volumes", []) if "hostPath" in v], where
            for container in spec["containers"] + spec.get("initContainers", []):
                context = container.get("securityContext", {})
                assert context.get("privileged") in (None, False), where
                assert context.get("allowPrivilegeEscalation") is False, where
                assert not context.get("capabilities", {}).get("add"), where


def test_policy_ports_are_the_pods_ports(full: list[dict[str, Any]]) -> None:
    """The ports the policies open are the ones the containers listen on."""
    pods = rendered_pods(full)
    assert pods["hub"].ports["hub"] == 8081
    assert pods["proxy"].ports == {"http": 8000, "api": 8001}
    if "binder" in pods:
        assert 8890 in pods["binder"].ports.values()
    hub = find(full, "NetworkPolicy", "egi-notebooks-hub")["spec"]
    assert hub["ingress"][0]["ports"] == [{"port": 8081, "protocol": "TCP"}]


def test_singleuser_port_follows_the_site_file(helm: Path) -> None:
    docs = render(helm, "--set", "hub.config.EGIKubeSpawner.port=9999")
    net, pods = world(docs)
    alice = Pod(
        "jupyter-alice", NS, singleuser("alice").labels, "10.244.1.5", {"notebook-port": 9999}
    )
    assert net.allows(pods["hub"], alice, 9999) and net.allows(pods["proxy"], alice, 9999)
    assert not net.allows(pods["proxy"], alice, 8888)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--set", "hub.pdb.minAvailable=1"],
            "hub.pdb: maxUnavailable and minAvailable are both set",
        ),
        (
            ["--set-json", 'proxy.chp.pdb={"maxUnavailable":null}'],
            "proxy.chp.pdb: set maxUnavailable or minAvailable",
        ),
        (["--set", "hub.pdb.maxUnavailable=-1"], "hub.pdb.maxUnavailable: Must validate one"),
        (["--set", "proxy.chp.pdb.maxUnavailable=lots"], "proxy.chp.pdb.maxUnavailable"),
        (
            ["--set", "singleuser.networkPolicy.egressAllowRules.privateIP=true"],
            "singleuser.networkPolicy.egressAllowRules: Additional property privateIP",
        ),
        (
            ["--set", "hub.networkPolicy.enabeld=false"],
            "hub.networkPolicy: Additional property enabeld",
        ),
        (
            ["--set", "binder.networkPolicy.egressAllowRules.nonPrivateIPs=maybe"],
            "binder.networkPolicy.egressAllowRules.nonPrivateIPs: Invalid type",
        ),
        (
            ["--set-json", "proxy.chp.networkPolicy.allowedIngressPorts=[70000]"],
            "proxy.chp.networkPolicy.allowedIngressPorts.0",
        ),
    ],
)
def test_refused(helm: Path, args: list[str], message: str) -> None:
    assert message in refusal(helm, *args)


def test_a_blocking_budget_is_the_sites_choice(helm: Path) -> None:
    budget = '{"maxUnavailable":null,"minAvailable":1}'
    docs = render(helm, "--set-json", f"hub.pdb={budget}", "--set", "proxy.chp.pdb.enabled=false")
    spec = find(docs, "PodDisruptionBudget", "r-egi-hub-hub")["spec"]
    assert spec["minAvailable"] == 1 and "maxUnavailable" not in spec
    assert not [d for d in docs if d["metadata"]["name"] == "r-egi-hub-proxy"
                and d["kind"] == "PodDisruptionBudget"]  # fmt: skip
