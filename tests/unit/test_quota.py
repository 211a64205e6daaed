"""The quota policy and resource quantities."""

from __future__ import annotations

import pytest
from egi_hub.spawner.quota import Charge, Limits, QuotaExceededError, QuotaPolicy
from hypothesis import given
from hypothesis import strategies as st

from egi_hub.config import SiteConfigError, TraitPathError
from egi_hub.quantities import QuantityError, format_bytes, parse_cpu, parse_memory
from egi_hub.stack import validate_site

G = 2**30  # JupyterHub's convention, as mem_limit


@pytest.mark.parametrize(
    ("text", "cpu"), [(2, 2.0), ("2", 2.0), ("0.5", 0.5), ("500m", 0.5), (1.5, 1.5)]
)
def test_cpu(text, cpu):
    assert parse_cpu(text) == cpu


@pytest.mark.parametrize(
    ("text", "size"),
    [("1G", G), ("1.5G", 3 * 2**29), ("512Mi", 512 * 2**20), (1024, 1024), ("2Gi", 2 * 2**30)],
)
def test_memory(text, size):
    assert parse_memory(text) == size


@pytest.mark.parametrize("text", ["1.5X", "-2", -2, "G", "", "1 G B", True, None, [1]])
def test_malformed_quantities(text):
    with pytest.raises(QuantityError):
        parse_memory(text)


def test_format_bytes():
    assert format_bytes(G) == "1G"
    assert format_bytes(3 * 2**29) == "1.5G"
    assert format_bytes(0) == "0"


def policy(**limits) -> QuotaPolicy:
    QuotaPolicy.clear_instance()
    return QuotaPolicy(**limits)


ACCESS = {
    "vo.access.egi.eu": {
        "max_servers": 3,
        "max_memory": "3G",
        "per_user": {"max_servers": 2, "max_memory": "1G"},
    }
}


def charge(user: str, server: str = "", vo: str | None = "vo.access.egi.eu", **res) -> Charge:
    return Charge(user=user, server=server, vo=vo, **res)


def test_vo_server_limit_names_limit_usage_and_servers():
    p = policy(vo_limits=ACCESS)
    p.admit(charge("a"))
    p.admit(charge("b"))
    p.admit(charge("c"))
    with pytest.raises(QuotaExceededError) as info:
        p.admit(charge("c", "two"))
    message = info.value.message
    assert "max_servers = 3 (limit of vo.access.egi.eu); 3 running" in message
    assert "Your running servers: c/." in message
    assert info.value.status_code == 403


def test_per_user_memory_limit():
    p = policy(vo_limits=ACCESS)
    p.admit(charge("a", "", memory=G))
    with pytest.raises(QuotaExceededError, match="max_memory = 1G \\(per-user limit"):
        p.admit(charge("a", "x", memory=1))
    p.admit(charge("b", "", memory=G))  # another user still fits


def test_release_gives_capacity_back_and_restore_recharges():
    p = policy(vo_limits=ACCESS)
    for user in "abc":
        p.admit(charge(user))
    assert p.release("a", "") is not None
    assert p.release("a", "") is None
    p.admit(charge("d"))
    assert p.usage("vo.access.egi.eu").servers == 3
    QuotaPolicy.clear_instance()
    fresh = QuotaPolicy(vo_limits=ACCESS)
    fresh.restore(charge("x"))
    assert fresh.usage("vo.access.egi.eu", "x").servers == 1


def test_default_limits_for_users_in_no_listed_vo():
    p = policy(vo_limits=ACCESS, default_limits={"max_servers": 0})
    with pytest.raises(QuotaExceededError, match=r"limit of \(no VO\)"):
        p.admit(charge("e", vo=None))
    with pytest.raises(QuotaExceededError, match=r"limit of vo\.other"):
        p.admit(charge("e", vo="vo.other"))


def test_admins_are_counted_not_refused():
    p = policy(vo_limits={"vo.x": {"max_servers": 0}})
    p.admit(charge("root", vo="vo.x"), admin=True)
    assert p.usage("vo.x").servers == 1


@given(
    st.lists(
        st.tuples(st.sampled_from("abcde"), st.sampled_from(["", "1", "2"]), st.booleans()),
        max_size=60,
    )
)
def test_never_overbooked(ops):
    p = policy(vo_limits=ACCESS)
    for user, server, start in ops:
        if start:
            try:
                p.admit(charge(user, server, memory=G // 2))
            except QuotaExceededError:
                pass
        else:
            p.release(user, server)
        usage = p.usage("vo.access.egi.eu")
        assert usage.servers <= 3 and usage.memory <= 3 * G
        for u in "abcde":
            mine = p.usage("vo.access.egi.eu", u)
            assert mine.servers <= 2 and mine.memory <= G


def test_limits_parse_names_bad_keys():
    with pytest.raises(TraitPathError) as info:
        Limits.parse({"per_user": {"max_memory": "1.5X"}}, "vo.a")
    assert info.value.path == "vo.a.per_user.max_memory"
    with pytest.raises(TraitPathError, match="unknown limit"):
        Limits.parse({"max_ram": 1})


def test_site_file_check_names_bad_quota_keys():
    with pytest.raises(Exception) as info:
        validate_site(
            {
                "QuotaPolicy": {
                    "vo_limits": {"vo.a": {"max_servers": -2, "per_user": {"max_cpu": "2x"}}},
                    "default_limits": {"max_memory": "1.5X"},
                }
            }
        )
    lines = [str(i) for i in info.value.issues]
    assert lines[0].startswith("QuotaPolicy.vo_limits.vo.a.max_servers: expected a whole")
    assert lines[1].startswith("QuotaPolicy.default_limits.max_memory: '1.5X'")


def test_usage_records_and_metrics(tmp_path):
    from prometheus_client import REGISTRY

    log = tmp_path / "usage.jsonl"
    p = policy(vo_limits=ACCESS, usage_log=str(log))
    c = charge("a", "", memory=G, cpu=1.0)
    p.admit(c)
    p.started(c)
    assert REGISTRY.get_sample_value("egi_hub_vo_servers", {"vo": "vo.access.egi.eu"}) == 1
    assert REGISTRY.get_sample_value("egi_hub_vo_memory_bytes", {"vo": "vo.access.egi.eu"}) == G
    p.release("a", "")
    assert REGISTRY.get_sample_value("egi_hub_vo_servers", {"vo": "vo.access.egi.eu"}) == 0
    p._writer.shutdown(wait=True)
    import json

    start, stop = (json.loads(line) for line in log.read_text().splitlines())
    assert start["event"] == "start" and start["stop"] is None
    assert stop["event"] == "stop" and stop["start"] == start["start"] and stop["stop"]
    assert stop["user"] == "a" and stop["vo"] == "vo.access.egi.eu" and stop["memory"] == G


def test_a_refused_or_failed_spawn_leaves_no_usage_record(tmp_path):
    log = tmp_path / "usage.jsonl"
    p = policy(vo_limits=ACCESS, usage_log=str(log))
    p.admit(charge("a"))
    p.release("a", "")  # failed before it ran: no record
    p._writer.shutdown(wait=True)
    assert not log.exists()


def test_profile_that_no_vo_can_admit_is_rejected_at_start():
    site = {
        "QuotaPolicy": {
            "vo_limits": {"vo.access.egi.eu": {"max_cpu": 2, "per_user": {"max_memory": "1G"}}},
            "default_limits": {"max_servers": 0},
        },
        "DevAuthenticator": {
            "users": {"a": {"entitlements": ["urn:mace:egi.eu:group:vo.access.egi.eu#aai.egi.eu"]}}
        },
        "EGILocalSpawner": {
            "profile_list": [
                {"display_name": "ok", "kubespawner_override": {"cpu_limit": 1, "mem_limit": "1G"}},
                {
                    "display_name": "big",
                    "allowed_vos": ["vo.access.egi.eu"],
                    "kubespawner_override": {"cpu_limit": 8},
                },
                {"display_name": "fat", "kubespawner_override": {"mem_limit": "2G"}},
            ]
        },
    }
    with pytest.raises(SiteConfigError) as info:
        validate_site(site)
    assert [str(i) for i in info.value.issues] == [
        "EGILocalSpawner.profile_list[1]: asks for more than any VO it can be charged to "
        "allows (vo.access.egi.eu: max_cpu = 2)",
        "EGILocalSpawner.profile_list[2]: asks for more than any VO it can be charged to "
        "allows (vo.access.egi.eu: max_memory = 1G; (no VO): max_servers = 0)",
    ]


def test_limits_for_a_vo_nobody_mentions_is_a_warning():
    site = {
        "QuotaPolicy": {"vo_limits": {"vo.typo.eu": {"max_servers": 1}}},
        "DevAuthenticator": {
            "users": {"a": {"entitlements": ["urn:mace:egi.eu:group:vo.access.egi.eu#aai.egi.eu"]}}
        },
    }
    assert validate_site(site) == [
        "QuotaPolicy.vo_limits.vo.typo.eu: no user, login rule or profile mentions this VO"
    ]
