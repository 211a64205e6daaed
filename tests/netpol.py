"""A small NetworkPolicy evaluator for the chart's tests: may X reach Y on port P?

`helm template` shows what the policies say, not what they mean; a rule can look right
and still let a notebook reach the metadata server, or block the hub from its API. This
answers the question Kubernetes' networking.k8s.io/v1 semantics answer, for a modelled
set of pods and addresses, so the tests assert a reachability matrix instead of YAML.

What it follows (the API reference's NetworkPolicy, NetworkPolicySpec, NetworkPolicyPeer):
- a pod selected by no policy of a direction's type is open in that direction; once
  selected, only what some rule of some selecting policy allows gets through, and a
  connection needs the sender's egress and the receiver's ingress both to allow it;
- ``policyTypes`` missing: Ingress, plus Egress if the spec has ``egress``;
- a rule's missing or empty ``from``/``to`` matches every peer, missing or empty
  ``ports`` every port; ``ingress: []`` allows nothing;
- a peer: ``podSelector`` alone is the policy's own namespace, ``namespaceSelector``
  alone every pod of the matching namespaces, both together their conjunction,
  ``ipBlock`` an address range minus ``except``; every namespace carries
  ``kubernetes.io/metadata.name``;
- a port by number (with ``endPort``) or by name (the receiving pod's container port of
  that name); ``protocol`` defaults to TCP.

Where Kubernetes leaves it to the network plugin whether an ``ipBlock`` also matches
pod addresses, this evaluator lets it match (the more permissive reading), so a "no"
here is a "no" under every plugin. Service addresses are not modelled: a policy sees
the pod behind a Service (after its address is translated), and so does this.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Address", "Cluster", "Pod", "selects"]

NAME_LABEL = "kubernetes.io/metadata.name"


@dataclass(frozen=True)
class Pod:
    """A pod: where it runs, its labels, its address and its named container ports."""

    name: str
    namespace: str
    labels: Mapping[str, str]
    ip: str
    ports: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Address:
    """Anything outside the cluster's pods: the internet, a node, the API server."""

    ip: str


Endpoint = Pod | Address


def selects(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether a LabelSelector matches ``labels`` (an empty selector matches all)."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            raise ValueError(f"unknown selector operator {op!r}")
    return True


def _in_block(ip: str, block: Mapping[str, Any]) -> bool:
    address = ipaddress.ip_address(ip)
    if address not in ipaddress.ip_network(block["cidr"]):
        return False
    return not any(address in ipaddress.ip_network(e) for e in block.get("except") or [])


class Cluster:
    """Rendered NetworkPolicies (dicts, as `helm template` prints them) over namespaces.

    ``namespace`` is where a policy without ``metadata.namespace`` lives (helm's
    ``--namespace``); ``namespace_labels`` adds labels to namespaces beyond their name.
    """

    def __init__(
        self,
        policies: Iterable[Mapping[str, Any]],
        namespace: str,
        namespace_labels: Mapping[str, Mapping[str, str]] | None = None,
    ) -> None:
        self.policies = [
            (p["metadata"].get("namespace") or namespace, p["spec"])
            for p in policies
            if p["kind"] == "NetworkPolicy"
        ]
        self.namespace_labels = dict(namespace_labels or {})

    def _ns_labels(self, namespace: str) -> dict[str, str]:
        return {**self.namespace_labels.get(namespace, {}), NAME_LABEL: namespace}

    def selecting(self, pod: Pod, kind: str) -> list[tuple[str, Mapping[str, Any]]]:
        """The specs of the policies of type ``kind`` (Ingress, Egress) selecting ``pod``."""
        found = []
        for namespace, spec in self.policies:
            types = spec.get("policyTypes") or (
                ["Ingress", "Egress"] if "egress" in spec else ["Ingress"]
            )
            if kind in types and namespace == pod.namespace:
                if selects(spec.get("podSelector"), pod.labels):
                    found.append((namespace, spec))
        return found

    def _peer(self, peer: Mapping[str, Any], home: str, other: Endpoint) -> bool:
        if "ipBlock" in peer:
            return _in_block(other.ip, peer["ipBlock"])
        if not isinstance(other, Pod):
            return False
        if "namespaceSelector" in peer:
            if not selects(peer["namespaceSelector"], self._ns_labels(other.namespace)):
                return False
        elif other.namespace != home:
            return False
        return selects(peer.get("podSelector"), other.labels)

    @staticmethod
    def _port(rule: Mapping[str, Any], target: Endpoint, port: int, protocol: str) -> bool:
        specs = rule.get("ports") or []
        if not specs:
            return True
        for spec in specs:
            if spec.get("protocol", "TCP") != protocol:
                continue
            want = spec.get("port")
            if want is None:
                return True
            if isinstance(want, str):
                if isinstance(target, Pod) and target.ports.get(want) == port:
                    return True
                continue
            if want <= port <= spec.get("endPort", want):
                return True
        return False

    def _allowed(self, pod: Pod, kind: str, other: Endpoint, target: Endpoint, port: int,
                 protocol: str) -> bool:  # fmt: skip
        policies = self.selecting(pod, kind)
        if not policies:
            return True
        direction, peers = ("ingress", "from") if kind == "Ingress" else ("egress", "to")
        for home, spec in policies:
            for rule in spec.get(direction) or []:
                if not self._port(rule, target, port, protocol):
                    continue
                if not rule.get(peers) or any(self._peer(p, home, other) for p in rule[peers]):
                    return True
        return False

    def allows(self, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
        """Whether ``src`` may open a connection to ``dst`` on ``port``."""
        if isinstance(src, Pod) and not self._allowed(src, "Egress", dst, dst, port, protocol):
            return False
        if isinstance(dst, Pod) and not self._allowed(dst, "Ingress", src, dst, port, protocol):
            return False
        return True
