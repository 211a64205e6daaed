"""Entitlements (AARC-G002) and VO rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from egi_hub.vo import Entitlement, EntitlementError, RuleError, parse_entitlement, parse_rule

EXAMPLE = "urn:mace:egi.eu:group:vo.access.egi.eu:role=member#aai.egi.eu"


def test_parse_checkin_example():
    e = parse_entitlement(EXAMPLE)
    assert e == Entitlement("mace:egi.eu", ("vo.access.egi.eu",), "member", "aai.egi.eu")
    assert e.vo == "vo.access.egi.eu"
    assert e.path == "vo.access.egi.eu"
    assert str(e) == EXAMPLE


def test_parse_subgroups_without_role():
    e = parse_entitlement("urn:geant:eosc-hub.eu:group:vo.example.org:sub:deeper#aai.egi.eu")
    assert e.namespace == "geant:eosc-hub.eu"
    assert e.groups == ("vo.example.org", "sub", "deeper")
    assert e.role is None
    assert e.path == "vo.example.org/sub/deeper"


def test_urn_and_group_keywords_are_case_insensitive():
    e = parse_entitlement("URN:mace:egi.eu:GROUP:vo.access.egi.eu#aai.egi.eu")
    assert e.vo == "vo.access.egi.eu"


def test_percent_encoded_group_is_decoded():
    e = parse_entitlement("urn:mace:egi.eu:group:vo%2Eaccess.egi.eu#aai.egi.eu")
    assert e.vo == "vo.access.egi.eu"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "vo.access.egi.eu",
        "urn:mace:egi.eu:group:vo.access.egi.eu",  # no authority
        "urn:mace:egi.eu:group:vo.access.egi.eu#",  # empty authority
        "urn:mace:egi.eu:vo.access.egi.eu#aai.egi.eu",  # no :group:
        "urn::group:vo#aai.egi.eu",  # empty namespace
        "urn:mace:egi.eu:group:#aai.egi.eu",  # empty group
        "urn:mace:egi.eu:group:role=member#aai.egi.eu",  # role without group
        "urn:mace:egi.eu:group:vo::sub#aai.egi.eu",  # empty subgroup
        "urn:mace:egi.eu:group:vo with space#aai.egi.eu",
        "urn:mace:egi.eu:group:vo\n#aai.egi.eu",  # a trailing newline is no name
        "urn:mace:egi.eu:group:vo#aai#egi",
        "urx:mace:egi.eu:group:vo#aai.egi.eu",
    ],
)
def test_malformed_values_are_rejected(value):
    with pytest.raises(EntitlementError):
        parse_entitlement(value)


@pytest.mark.parametrize("value", [None, 42, b"urn:x:group:vo#a", ["x"]])
def test_non_strings_are_rejected(value):
    with pytest.raises(EntitlementError):
        parse_entitlement(value)


def ent(path: str, role: str | None = None) -> Entitlement:
    return Entitlement("mace:egi.eu", tuple(path.split("/")), role, "aai.egi.eu")


@pytest.mark.parametrize(
    ("rule", "entitlement", "expected"),
    [
        ("vo.access.egi.eu", ent("vo.access.egi.eu", "member"), True),
        ("vo.access.egi.eu", ent("vo.access.egi.eu"), True),
        ("vo.access.egi.eu", ent("vo.access.egi.eu/training", "member"), True),
        ("vo.access.egi.eu", ent("vo.other.eu", "member"), False),
        ("vo.access.egi.eu", ent("vo.access.egi.eu.evil", "member"), False),
        ("vo.access.egi.eu:role=manager", ent("vo.access.egi.eu", "manager"), True),
        ("vo.access.egi.eu:role=manager", ent("vo.access.egi.eu", "member"), False),
        # A manager of a subgroup is not a manager of the VO.
        ("vo.access.egi.eu:role=manager", ent("vo.access.egi.eu/training", "manager"), False),
        ("vo.access.egi.eu/training", ent("vo.access.egi.eu/training", "member"), True),
        ("vo.access.egi.eu/training", ent("vo.access.egi.eu/training/x"), True),
        ("vo.access.egi.eu/training", ent("vo.access.egi.eu", "member"), False),
        ("vo.access.egi.eu/training:role=owner", ent("vo.access.egi.eu/training", "owner"), True),
    ],
)
def test_rule_matching(rule, entitlement, expected):
    assert parse_rule(rule).matches(entitlement) is expected


@pytest.mark.parametrize("rule", ["", ":role=x", "vo:member", "vo:role=", "vo//sub", "vo/", 3])
def test_bad_rules_are_rejected(rule):
    with pytest.raises(RuleError):
        parse_rule(rule)


def test_rule_round_trip():
    for text in ["vo.access.egi.eu", "vo.access.egi.eu/training", "vo.x:role=manager"]:
        assert str(parse_rule(text)) == text


segment = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc")), min_size=1
).filter(lambda s: not any(c in s for c in ":#/") and not s.startswith("role="))
namespace = st.lists(
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz.-0123456789", min_size=1), min_size=1, max_size=3
).map(":".join)
authority = st.text(alphabet="abcdefghijklmnopqrstuvwxyz.-0123456789", min_size=1)


@given(
    namespace=namespace.filter(lambda n: "group" not in n.split(":")),
    groups=st.lists(segment, min_size=1, max_size=4),
    role=st.none() | segment,
    authority=authority,
)
def test_format_then_parse_is_identity(namespace, groups, role, authority):
    e = Entitlement(namespace, tuple(groups), role, authority)
    assert parse_entitlement(str(e)) == e


@given(st.text())
def test_parse_never_fails_other_than_entitlement_error(text):
    try:
        parse_entitlement(text)
    except EntitlementError:
        pass


@given(st.text())
def test_parse_rule_never_fails_other_than_rule_error(text):
    try:
        parse_rule(text)
    except RuleError:
        pass
