"""Quota use in words, as the spawn form and the home page show it."""

from __future__ import annotations

from egi_hub.spawner.quota import Charge, QuotaPolicy
from egi_hub.spawner.quota_view import vo_use


def policy() -> QuotaPolicy:
    return QuotaPolicy(
        vo_limits={
            "vo.access.egi.eu": {
                "max_servers": 3,
                "max_memory": "8G",
                "per_user": {"max_servers": 1},
            },
            "open.vo": {},
        },
        default_limits={"max_servers": 0},
    )


def test_a_vo_reads_as_its_limited_figures():
    quota = policy()
    quota.admit(Charge("alice", "", "vo.access.egi.eu", cpu=1, memory=2 * 2**30))
    use = vo_use(quota, "vo.access.egi.eu", "alice")
    assert use.text == "vo.access.egi.eu: 1 of 3 servers, 2 of 8 GiB; you: 1 of 1 server"
    assert [f.full for f in use.user_figures] == [True]


def test_no_limits_and_no_vo():
    quota = policy()
    assert vo_use(quota, "open.vo").text == "open.vo: no limits"
    nobody = vo_use(quota, None, "carol")
    assert nobody.text == "Servers not charged to a VO: 0 of 0 servers"
    assert nobody.name == "not charged to a VO"
    assert nobody.figures[0].full
