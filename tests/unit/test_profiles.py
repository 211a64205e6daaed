"""Profile lists: checked and parsed once, when the trait is set."""

from __future__ import annotations

import copy
import json

import pytest

from egi_hub.config import SiteConfigError
from egi_hub.context import UserContext
from egi_hub.spawner.profiles import (
    Profile,
    ProfileListTrait,
    available_profiles,
    choose_profile,
    option_overrides,
)
from egi_hub.spawner.refusals import Refusal
from egi_hub.stack import validate_site
from egi_hub.vo import parse_rule

ACCESS = "urn:mace:egi.eu:group:vo.access.egi.eu:role=member#aai.egi.eu"
PROFILES = [
    {"display_name": "Zoë's notebook", "kubespawner_override": {"cpu_limit": 1}},
    {"display_name": "GPU", "slug": "gpu", "allowed_vos": ["vo.notebooks.egi.eu"]},
    {"display_name": "Access", "slug": "access", "allowed_vos": ["vo.access.egi.eu:role=member"]},
]


def test_profiles_become_dicts_with_their_rules_parsed():
    profiles = ProfileListTrait().validate(None, PROFILES)
    assert all(isinstance(p, Profile) and isinstance(p, dict) for p in profiles)
    assert profiles[2].rules == (parse_rule("vo.access.egi.eu:role=member"),)
    # The slug is written out, so that KubeSpawner (which would make "zoes-notebook")
    # finds the profile egi-hub chose.
    assert profiles[0]["slug"] == "zo-s-notebook"
    # KubeSpawner copies profiles and its form template serialises them as JSON.
    copied = copy.deepcopy(profiles)
    assert copied[2].rules == profiles[2].rules and copied == profiles
    assert json.loads(json.dumps(profiles))[1] == {**PROFILES[1]}


def test_choosing_a_profile_parses_no_rule(monkeypatch):
    profiles = ProfileListTrait().validate(None, PROFILES)
    context = UserContext.from_entitlements("alice", [ACCESS])

    def no_parsing(text):
        raise AssertionError(f"rule {text!r} parsed again")

    monkeypatch.setattr("egi_hub.context.parse_rule", no_parsing)
    monkeypatch.setattr("egi_hub.spawner.profiles.parse_rule", no_parsing)
    assert [p.slug for p in available_profiles(profiles, context)] == ["zo-s-notebook", "access"]
    assert choose_profile(profiles, context, "access").slug == "access"


@pytest.mark.parametrize(
    ("options", "where", "message"),
    [
        ({"image": {"choices": {"a": "x"}}}, ".image.choices.a", "expected a mapping"),
        ({"image": {"choices": {}}}, ".image", "no choices, and no unlisted_choice enabled"),
        (
            {"image": {"unlisted_choice": {"enabled": True, "validation_regex": "("}}},
            ".image.unlisted_choice.validation_regex",
            "missing ), unterminated subpattern",
        ),
        ({"profile": {"choices": {"a": {}}}}, ".profile", "reserved option name"),
    ],
)
def test_bad_profile_options_are_named_by_key(options, where, message):
    site = {"EGIKubeSpawner": {"profile_list": [{"display_name": "x", "profile_options": options}]}}
    with pytest.raises(SiteConfigError) as info:
        validate_site(site)
    (issue,) = info.value.issues
    assert issue.path == f"EGIKubeSpawner.profile_list[0].profile_options{where}"
    assert message in issue.message


OTHER = ProfileListTrait().validate(
    None,
    [
        {
            "display_name": "Own image",
            "slug": "own",
            "profile_options": {
                "image": {
                    "choices": {
                        "minimal": {"kubespawner_override": {"image": "min"}},
                        "full": {"default": True, "kubespawner_override": {"image": "full"}},
                    },
                    "unlisted_choice": {
                        "enabled": True,
                        "display_name": "Image name",
                        "validation_regex": "^[a-z:/.-]+$",
                        "kubespawner_override": {"image": "{value}"},
                    },
                }
            },
        }
    ],
)[0]


@pytest.mark.parametrize(
    "options, image",
    [
        ({}, "full"),
        ({"image": "minimal"}, "min"),
        # The form's "Other…" entry (KubeSpawner's value) with its text.
        ({"image": "unlisted-choice", "image--unlisted-choice": "my/img"}, "my/img"),
        # An API caller: as KubeSpawner 7's _load_profile, a non-empty free value wins.
        ({"image": "minimal", "image--unlisted-choice": "my/img"}, "my/img"),
        ({"image--unlisted-choice": "my/img"}, "my/img"),
        # An empty free value never does.
        ({"image": "minimal", "image--unlisted-choice": ""}, "min"),
    ],
)
def test_option_overrides_follow_kubespawner(options, image):
    assert option_overrides(OTHER, options)[-1] == {"image": image}


@pytest.mark.parametrize(
    "options, message",
    [
        ({"image": "unlisted-choice"}, "enter a value for 'Image name'"),
        ({"image": "unlisted-choice", "image--unlisted-choice": ""}, "enter a value"),
        ({"image--unlisted-choice": "Bad Name"}, "'Bad Name': it must match"),
        ({"image": ["minimal"]}, "the value must be text"),
        ({"image": "huge"}, "has no choice 'huge' (choices: minimal, full)"),
    ],
)
def test_option_refusals_are_400s_in_words(options, message):
    with pytest.raises(Refusal) as info:
        option_overrides(OTHER, options)
    assert info.value.status_code == 400
    assert message in info.value.message
