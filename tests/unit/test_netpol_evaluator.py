"""tests/netpol.py, the NetworkPolicy evaluator the chart's tests rely on, on the cases
the Kubernetes documentation spells out (so its "no" and "yes" can be trusted)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.netpol import Address, Cluster, Pod, selects

WEB = Pod("web", "app", {"role": "web"}, "10.0.1.1", {"http": 8080})
DB = Pod("db", "app", {"role": "db"}, "10.0.1.2", {"pg": 5432})
OTHER = Pod("x", "other", {"role": "web"}, "10.0.2.1")
OUT = Address("198.51.100.1")


def policy(spec: dict[str, Any], namespace: str = "app") -> dict[str, Any]:
    return {"kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": namespace},
            "spec": spec}  # fmt: skip


def test_no_policy_allows_everything() -> None:
    net = Cluster([], "app")
    assert net.allows(WEB, DB, 1) and net.allows(OUT, WEB, 2) and net.allows(OTHER, OUT, 3)


def test_selected_pods_are_closed_and_others_open() -> None:
    net = Cluster([policy({"podSelector": {"matchLabels": {"role": "db"}}, "ingress": []})], "app")
    assert not net.allows(WEB, DB, 5432)
    assert net.allows(DB, WEB, 8080), "egress not restricted: policyTypes is Ingress"
    assert net.allows(DB, OUT, 443)


def test_pod_selector_is_the_policys_namespace_and_ports_by_name() -> None:
    rule = {"from": [{"podSelector": {"matchLabels": {"role": "web"}}}], "ports": [{"port": "pg"}]}
    net = Cluster([policy({"podSelector": {"matchLabels": {"role": "db"}}, "ingress": [rule]})],
                  "app")  # fmt: skip
    assert net.allows(WEB, DB, 5432)
    assert not net.allows(WEB, DB, 5433) and not net.allows(WEB, DB, 5432, "UDP")
    assert not net.allows(OTHER, DB, 5432), "same labels, other namespace"


def test_namespace_and_pod_selector_together_are_and_apart_are_or() -> None:
    both = {"namespaceSelector": {"matchLabels": {"team": "a"}}, "podSelector": {}}
    spec = {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [both]}]}
    net = Cluster([policy(spec)], "app", {"other": {"team": "a"}})
    assert net.allows(OTHER, WEB, 1) and not net.allows(DB, WEB, 1)
    apart = [{"namespaceSelector": {"matchLabels": {"team": "a"}}}, {"podSelector": {}}]
    net = Cluster([policy({"podSelector": {}, "ingress": [{"from": apart}]})], "app",
                  {"other": {"team": "a"}})  # fmt: skip
    assert net.allows(OTHER, WEB, 1) and net.allows(DB, WEB, 1)


def test_ip_blocks_except_and_end_port() -> None:
    to = [{"ipBlock": {"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "169.254.169.254/32"]}}]
    spec = {"podSelector": {}, "policyTypes": ["Egress"],
            "egress": [{"to": to, "ports": [{"port": 8000, "endPort": 8010}]}]}  # fmt: skip
    net = Cluster([policy(spec)], "app")
    assert net.allows(WEB, OUT, 8005) and not net.allows(WEB, OUT, 8011)
    assert not net.allows(WEB, Address("169.254.169.254"), 8000)
    assert not net.allows(WEB, DB, 8000), "10/8 excepted"
    assert net.allows(OUT, WEB, 80), "ingress not restricted"


def test_both_ends_must_agree() -> None:
    deny_egress = policy(
        {"podSelector": {"matchLabels": {"role": "web"}}, "policyTypes": ["Egress"]}
    )
    allow_in = policy({"podSelector": {"matchLabels": {"role": "db"}}, "ingress": [{}]})
    net = Cluster([deny_egress, allow_in], "app")
    assert not net.allows(WEB, DB, 5432) and net.allows(OTHER, DB, 5432)


def test_policy_types_default_from_the_spec() -> None:
    spec = {"podSelector": {}, "egress": []}
    net = Cluster([policy(spec)], "app")
    assert not net.allows(OUT, WEB, 80) and not net.allows(WEB, OUT, 80)


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ({}, {"a": "1"}, True),
        ({"matchExpressions": [{"key": "a", "operator": "In", "values": ["1", "2"]}]}, {"a": "2"},
         True),
        ({"matchExpressions": [{"key": "a", "operator": "NotIn", "values": ["1"]}]}, {}, True),
        ({"matchExpressions": [{"key": "a", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "a", "operator": "DoesNotExist"}]}, {"a": ""}, False),
        ({"matchLabels": {"a": "1"}, "matchExpressions": [{"key": "b", "operator": "Exists"}]},
         {"a": "1"}, False),
    ],
)  # fmt: skip
def test_selectors(selector: dict[str, Any], labels: dict[str, str], expected: bool) -> None:
    assert selects(selector, labels) is expected
