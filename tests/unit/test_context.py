"""UserContext: VOs, primary VO, subgroups, roles, rules; never broken by bad values."""

from __future__ import annotations

import logging

from hypothesis import given
from hypothesis import strategies as st

from egi_hub.context import UserContext, parse_entitlements

ACCESS_MEMBER = "urn:mace:egi.eu:group:vo.access.egi.eu:role=member#aai.egi.eu"
NOTEBOOKS_MANAGER = "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=manager#aai.egi.eu"
NOTEBOOKS_MEMBER = "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu"
TRAINING = "urn:mace:egi.eu:group:vo.access.egi.eu:training:role=member#aai.egi.eu"


def test_primary_vo_is_the_first_entitlements_vo():
    ctx = UserContext.from_entitlements("bob", [NOTEBOOKS_MEMBER, ACCESS_MEMBER, NOTEBOOKS_MANAGER])
    assert ctx.primary_vo == "vo.notebooks.egi.eu"
    assert ctx.vos == ("vo.notebooks.egi.eu", "vo.access.egi.eu")


def test_no_entitlements_no_vo():
    ctx = UserContext.from_entitlements("carol", [])
    assert ctx.primary_vo is None
    assert ctx.vos == ()
    assert not ctx.matches("vo.access.egi.eu")


def test_subgroups_and_roles():
    ctx = UserContext.from_entitlements("a", [ACCESS_MEMBER, TRAINING, NOTEBOOKS_MANAGER])
    assert ctx.subgroups == ("vo.access.egi.eu/training",)
    assert ctx.roles("vo.notebooks.egi.eu") == {"manager"}
    assert ctx.roles("vo.access.egi.eu/training") == {"member"}
    assert ctx.roles("vo.unknown") == frozenset()


def test_rules():
    ctx = UserContext.from_entitlements("a", [TRAINING, NOTEBOOKS_MANAGER])
    assert ctx.matches("vo.access.egi.eu")
    assert ctx.matches("vo.access.egi.eu/training")
    assert not ctx.matches("vo.access.egi.eu:role=member")
    assert ctx.matches("vo.notebooks.egi.eu:role=manager")
    assert ctx.matches_any(["vo.none", "vo.notebooks.egi.eu"])
    assert not ctx.matches_any(["vo.none", "vo.other"])


def test_malformed_values_are_skipped_with_a_debug_log(caplog):
    with caplog.at_level(logging.DEBUG, logger="egi_hub.context"):
        ctx = UserContext.from_entitlements("a", ["garbage", None, 7, ACCESS_MEMBER])
    assert ctx.vos == ("vo.access.egi.eu",)
    assert "garbage" in caplog.text
    assert all(r.levelno == logging.DEBUG for r in caplog.records)


def test_namespace_and_authority_filters():
    other = "urn:mace:example.org:group:vo.x#idp.example.org"
    found = parse_entitlements(
        [ACCESS_MEMBER, other], namespaces={"mace:egi.eu"}, authorities={"aai.egi.eu"}
    )
    assert [e.vo for e in found] == ["vo.access.egi.eu"]
    assert parse_entitlements([other], authorities={"aai.egi.eu"}) == []


def test_auth_state_round_trip():
    ctx = UserContext.from_entitlements("a", [NOTEBOOKS_MEMBER, TRAINING])
    again = UserContext.from_auth_state("a", ctx.to_auth_state())
    assert again == ctx
    assert UserContext.from_auth_state("a", None).vos == ()


@given(st.lists(st.one_of(st.text(), st.none(), st.integers(), st.sampled_from([ACCESS_MEMBER]))))
def test_any_input_gives_a_context(values):
    ctx = UserContext.from_entitlements("u", values)
    assert len(ctx.vos) == len(set(ctx.vos))
    if ctx.entitlements:
        assert ctx.primary_vo == ctx.entitlements[0].vo
