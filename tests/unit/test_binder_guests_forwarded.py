"""The guest page's per-address cap behind the chart's hops (Ingress, then CHP: each
appends its peer to X-Forwarded-For, so BinderGuests.trusted_proxies is 2 there), and a
notebook that reaches the hub's port directly and writes its own X-Forwarded-For."""

from __future__ import annotations

from types import SimpleNamespace

from egi_hub.binder_service.guests import server_addresses, visitor_address

INGRESS_POD = "10.244.0.7"
PROXY_POD = "10.244.0.9"
NOTEBOOK_POD = "10.244.1.23"


def user(*ips: str) -> SimpleNamespace:
    spawners = {
        str(n): SimpleNamespace(server=SimpleNamespace(ip=ip) if ip else None)
        for n, ip in enumerate(ips)
    }
    return SimpleNamespace(spawners=spawners)


def test_the_running_servers_addresses() -> None:
    users = [user(NOTEBOOK_POD, ""), user(), user("10.244.1.24"), SimpleNamespace()]
    assert server_addresses(users) == {NOTEBOOK_POD, "10.244.1.24"}
    # One machine: the servers and the proxy are all 127.0.0.1; a Service's name is no IP.
    local = [user("127.0.0.1"), user("::1"), user("0.0.0.0"), user("jupyter-a.hub.svc")]
    assert server_addresses(local) == set()


def test_a_visitor_behind_the_ingress_and_chp_is_told_apart() -> None:
    servers = {NOTEBOOK_POD}
    # what the visitor wrote, then the controller's view of them, then CHP's of the controller
    forwarded = f"1.2.3.4, 203.0.113.7, {INGRESS_POD}"
    assert visitor_address(forwarded, PROXY_POD, 2, servers) == "203.0.113.7"
    other = f"198.51.100.1, {INGRESS_POD}"
    assert visitor_address(other, PROXY_POD, 2, servers) == "198.51.100.1"


def test_a_notebook_cannot_forge_its_address() -> None:
    servers = {NOTEBOOK_POD, "10.244.1.24"}
    for forged in ("203.0.113.1, 203.0.113.2", "203.0.113.9", "a, b, c, d"):
        assert visitor_address(forged, NOTEBOOK_POD, 2, servers) == NOTEBOOK_POD
    # ... however many requests it makes with different headers: one address, one cap
    made = {visitor_address(f"203.0.113.{n}, 10.0.0.{n}", NOTEBOOK_POD, 2, servers)
            for n in range(20)}  # fmt: skip
    assert made == {NOTEBOOK_POD}


def test_a_notebook_cannot_forge_its_address_through_the_proxy() -> None:
    # Review 12c L2: a pod (a guest's own notebook too) reaches CHP's port; CHP appends
    # the pod's IP, and the two entries before it were the notebook's invention.
    servers = {NOTEBOOK_POD}
    made = {visitor_address(f"6.6.6.1, 6.6.6.{n}, {NOTEBOOK_POD}", PROXY_POD, 2, servers)
            for n in range(2, 20)}  # fmt: skip
    assert made == {NOTEBOOK_POD}
    assert visitor_address(f"::ffff:{NOTEBOOK_POD}", PROXY_POD, 2, servers) == NOTEBOOK_POD
    # through the Ingress first (the notebook's entry is then the controller's view of it)
    via_ingress = f"6.6.6.1, {NOTEBOOK_POD}, {INGRESS_POD}"
    assert visitor_address(via_ingress, PROXY_POD, 2, servers) == NOTEBOOK_POD
    # a server's address the visitor wrote before the trusted hops counts for nothing
    forwarded = f"{NOTEBOOK_POD}, 203.0.113.7, {INGRESS_POD}"
    assert visitor_address(forwarded, PROXY_POD, 2, servers) == "203.0.113.7"
