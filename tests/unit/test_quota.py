"""The quota policy and resource quantities."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from egi_hub.config import SiteConfigError, TraitPathError
from egi_hub.quantities import QuantityError, format_bytes, parse_cpu, parse_memory
from egi_hub.spawner.quota import Charge, Limits, QuotaExceededError, QuotaPolicy
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
    assert message.startswith("vo.access.egi.eu allows 3 servers and 3 are running.")
    assert "Running now: your default server. Stop one on your home page" in message
    assert info.value.status_code == 403
    # Plain text for JupyterHub to show as it is (no "HTTP 403: error (" wrapper).
    assert info.value.jupyterhub_message == message == str(info.value)
    breach = info.value.breach
    assert (breach.scope, breach.resource, breach.limit, breach.used) == ("vo", "servers", 3, 3)


def test_per_user_memory_limit():
    p = policy(vo_limits=ACCESS)
    p.admit(charge("a", "", memory=G))
    per_user = r"vo\.access\.egi\.eu allows each member 1 GiB of memory: you use 1"
    with pytest.raises(QuotaExceededError, match=per_user):
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
    # A user in no VO is told to join one: for them the quota is not the problem.
    with pytest.raises(QuotaExceededError) as info:
        p.admit(charge("e", vo=None))
    assert info.value.message.startswith("You are not a member of any VO")
    assert "Join a VO" in info.value.message and "Quota" not in info.value.message
    assert info.value.reason == "no-vo"
    with pytest.raises(QuotaExceededError) as info:
        p.admit(charge("e", vo="vo.other"))
    assert info.value.message.startswith(
        "vo.other, under the hub's limits for VOs without their own, allows no servers at all."
    )


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


# --- Non-finite numbers (issue 7, item 13) ----------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_quantities_refuse_non_finite_numbers(value):
    with pytest.raises(QuantityError, match="must be a finite number"):
        parse_cpu(value)
    with pytest.raises(QuantityError, match="must be a finite number"):
        parse_memory(value)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"vo_limits": {"vo.a": {"max_cpu": float("nan")}}}, "vo_limits.vo.a.max_cpu"),
        ({"vo_limits": {"vo.a": {"max_memory": float("inf")}}}, "vo_limits.vo.a.max_memory"),
        (
            {"vo_limits": {"vo.a": {"per_user": {"max_cpu": float("nan")}}}},
            "vo_limits.vo.a.per_user.max_cpu",
        ),
        ({"default_limits": {"max_cpu": float("nan")}}, "default_limits.max_cpu"),
        ({"total_limits": {"max_memory": float("nan")}}, "total_limits.max_memory"),
    ],
)
def test_site_check_refuses_nan_and_inf_limits_naming_the_key(section, key):
    """``max_cpu: .nan`` passed the check and then admitted anything (nan compares false)."""
    with pytest.raises(SiteConfigError) as info:
        validate_site({"QuotaPolicy": section})
    (issue,) = info.value.issues
    assert issue.path == f"QuotaPolicy.{key}"
    assert "must be a finite number" in issue.message


def test_whole_number_limits_refuse_nan_too():
    with pytest.raises(SiteConfigError) as info:
        validate_site({"QuotaPolicy": {"vo_limits": {"vo.a": {"max_servers": float("nan")}}}})
    assert str(info.value.issues[0]).startswith(
        "QuotaPolicy.vo_limits.vo.a.max_servers: expected a whole number >= 0, got float nan"
    )


# --- default_limits: one bucket per unlisted VO -------------------------------------------


def test_default_limits_give_each_unlisted_vo_its_own_bucket():
    """Two VOs that vo_limits does not list each get the default ceilings: they do not
    share one pool (users in no VO share the "(no VO)" one)."""
    p = policy(vo_limits=ACCESS, default_limits={"max_servers": 1, "max_cpu": 2})
    p.admit(charge("a", vo="vo.one", cpu=2.0))
    p.admit(charge("b", vo="vo.two", cpu=2.0))  # its own bucket: admitted
    p.admit(charge("c", vo=None, cpu=2.0))
    with pytest.raises(QuotaExceededError) as info:
        p.admit(charge("d", vo="vo.one"))
    assert str(info.value).startswith(
        "vo.one, under the hub's limits for VOs without their own, allows 1 server and 1 is "
        "running."
    )
    with pytest.raises(QuotaExceededError, match="You are not a member of any VO"):
        p.admit(charge("e", vo=None))
    assert p.usage("vo.one").servers == p.usage("vo.two").servers == 1


# --- total_limits: a hub-wide cap ---------------------------------------------------------

TWO_VOS = {"vo.a": {"max_cpu": 8}, "vo.b": {"max_cpu": 8}}


def test_total_limits_cap_the_whole_hub_across_vos():
    p = policy(vo_limits=TWO_VOS, total_limits={"max_cpu": 4, "max_servers": 3})
    p.admit(charge("a", vo="vo.a", cpu=3.0))
    with pytest.raises(QuotaExceededError) as info:
        p.admit(charge("b", vo="vo.b", cpu=2.0))
    assert str(info.value) == (
        "This hub (all VOs together) allows 4 CPUs: 3 CPUs in use, and this server asks "
        "for 2 CPUs. You have no server running: try again when other servers stop."
    )
    p.admit(charge("b", vo="vo.b", cpu=1.0))
    p.admit(charge("c", vo=None))
    all_vos = r"This hub \(all VOs together\) allows 3 servers and 3 are running"
    with pytest.raises(QuotaExceededError, match=all_vos):
        p.admit(charge("d", vo="vo.b"))
    p.release("a", "")
    p.admit(charge("d", vo="vo.b", cpu=3.0))
    assert p.total_usage().cpu == 4.0 and p.total_usage().servers == 3


def test_total_limits_count_admins_without_refusing_them():
    p = policy(total_limits={"max_gpu": 1})
    p.admit(charge("root", vo="vo.a", gpu=1), admin=True)
    p.admit(charge("root", "two", vo="vo.a", gpu=1), admin=True)
    gpus = r"allows 1 GPU: 2 GPUs in use, and this server asks for 1 GPU"
    with pytest.raises(QuotaExceededError, match=gpus):
        p.admit(charge("a", vo="vo.b", gpu=1))


def test_total_limits_have_no_per_user():
    with pytest.raises(SiteConfigError) as info:
        validate_site({"QuotaPolicy": {"total_limits": {"per_user": {"max_servers": 1}}}})
    assert str(info.value.issues[0]) == (
        "QuotaPolicy.total_limits.per_user: unknown limit "
        "(known: max_servers, max_cpu, max_memory, max_gpu)"
    )


def test_a_profile_larger_than_the_hub_is_rejected_at_start():
    site = {
        "QuotaPolicy": {"vo_limits": {"vo.a": {"max_cpu": 100}}, "total_limits": {"max_cpu": 64}},
        "EGILocalSpawner": {
            "profile_list": [
                {"display_name": "ok", "kubespawner_override": {"cpu_limit": 64}},
                {"display_name": "huge", "kubespawner_override": {"cpu_limit": 65}},
            ]
        },
    }
    with pytest.raises(SiteConfigError) as info:
        validate_site(site)
    assert [str(i) for i in info.value.issues] == [
        "EGILocalSpawner.profile_list[1]: asks for more than the hub-wide limit allows "
        "(max_cpu = 64)"
    ]


def test_hub_wide_usage_is_on_the_metrics():
    from prometheus_client import REGISTRY

    p = policy(total_limits={"max_servers": 10})
    p.admit(charge("a", vo="vo.a", cpu=1.5, memory=G))
    p.admit(charge("b", vo="vo.b", cpu=1.0))
    assert REGISTRY.get_sample_value("egi_hub_servers") == 2
    assert REGISTRY.get_sample_value("egi_hub_cpu") == 2.5
    assert REGISTRY.get_sample_value("egi_hub_memory_bytes") == G
    p.release("a", "")
    assert REGISTRY.get_sample_value("egi_hub_servers") == 1


@given(
    st.lists(
        st.tuples(st.sampled_from("abcd"), st.sampled_from(["vo.a", "vo.b", None]), st.booleans()),
        max_size=60,
    )
)
def test_hub_never_overbooked(ops):
    p = policy(
        vo_limits={"vo.a": {"max_servers": 3}, "vo.b": {"max_servers": 3}},
        default_limits={"max_servers": 2},
        total_limits={"max_servers": 4, "max_memory": "2G"},
    )
    for user, vo, start in ops:
        if start:
            try:
                p.admit(charge(user, vo or "none", vo=vo, memory=G // 2))
            except QuotaExceededError:
                pass
        else:
            p.release(user, vo or "none")
        total = p.total_usage()
        assert total.servers <= 4 and total.memory <= 2 * G
        assert total.servers == sum(p.usage(v).servers for v in ["vo.a", "vo.b", None])


# --- Parse once ---------------------------------------------------------------------------


def test_limits_are_parsed_when_set_not_when_admitting(monkeypatch):
    p = policy(
        vo_limits=ACCESS, default_limits={"max_servers": 1}, total_limits={"max_cpu": "500m"}
    )
    assert p.vo_limits["vo.access.egi.eu"] == Limits(
        max_servers=3, max_memory=3 * G, per_user=Limits(max_servers=2, max_memory=G)
    )
    assert p.default_limits == Limits(max_servers=1)
    assert p.total_limits == Limits(max_cpu=0.5)

    def no_parsing(*args, **kwargs):
        raise AssertionError("limits parsed again")

    monkeypatch.setattr(Limits, "parse", no_parsing)
    p.admit(charge("a", cpu=0.5))
    with pytest.raises(QuotaExceededError, match="This hub"):
        p.admit(charge("b", cpu=0.5))
