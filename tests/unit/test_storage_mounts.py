"""The mount list: parsed and checked like every other key, and each user's own expansion."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from egi_hub.config import TraitPathError, check_site, configurable_classes
from egi_hub.context import UserContext
from egi_hub.storage_mounts.mounts import StorageMounts
from egi_hub.storage_mounts.templates import TemplateError, check_separated, escape, expand

ACCESS = "urn:mace:egi.eu:group:vo.access.egi.eu:role=member#aai.egi.eu"
NOTEBOOKS = "urn:mace:egi.eu:group:vo.notebooks.egi.eu:role=member#aai.egi.eu"

DATAHUB = {
    "name": "datahub",
    "kind": "datahub",
    "onezone_url": "https://datahub.egi.eu",
    "vos": ["vo.access.egi.eu"],
    "path": "/datahub",
}
S3 = {
    "name": "scratch",
    "kind": "s3",
    "endpoint_url": "https://s3.example.org",
    "bucket": "{vo}-scratch",
    "prefix": "data/",
    "credentials": {
        "per_vo": {
            "vo.access.egi.eu": {"key": "S3_KEY_A", "secret": "S3_SECRET_A"},
            "vo.notebooks.egi.eu": {"key": "S3_KEY_N", "secret": "S3_SECRET_N"},
        }
    },
    "path": "/s3/scratch",
}
SITE_WIDE = {
    "name": "public",
    "kind": "s3",
    "endpoint_url": "https://s3.example.org",
    "bucket": "public-data",
    "credentials": {"from_env": {"key": "S3_KEY", "secret": "S3_SECRET"}},
    "path": "/s3/public",
    "vos": ["vo.access.egi.eu"],
}
NFS = {
    "name": "shared",
    "kind": "nfs",
    "server": "nfs.example.org",
    "export": "/exports/{vo}",
    "path": "/nfs/shared",
    "profiles": ["large"],
}


def user(name: str, *entitlements: str) -> UserContext:
    return UserContext.from_entitlements(name, list(entitlements))


def problems(mounts) -> list[str]:
    site = {"StorageMounts": {"mounts": mounts}}
    return [str(issue) for issue in check_site(site, configurable_classes())]


def test_the_issue_example_is_a_valid_site_file():
    assert problems([DATAHUB, S3, NFS, SITE_WIDE]) == []


@pytest.mark.parametrize(
    ("change", "where", "words"),
    [
        # Static keys cannot keep one user out of another's prefix or bucket.
        ({"prefix": "{username}/"}, "[0].prefix", "{username} cannot be used with static"),
        ({"bucket": "u-{username}"}, "[0].bucket", "{username} cannot be used with static"),
        (
            {"bucket": "shared", "prefix": "{username}/", "credentials": SITE_WIDE["credentials"]},
            "[0].prefix",
            "{username} cannot be used with static",
        ),
        # One site-wide key cannot keep one VO out of another's bucket.
        ({"credentials": SITE_WIDE["credentials"]}, "[0].bucket", "credentials.per_vo"),
        (
            {"bucket": "shared", "prefix": "{vo}/", "credentials": SITE_WIDE["credentials"]},
            "[0].prefix",
            "{vo} needs a key per VO",
        ),
        # A VO rule without a key would give its users nothing.
        ({"vos": ["vo.access.egi.eu", "vo.other.eu"]}, "[0].vos[1]", "no key in credentials"),
        ({"credentials": {"per_vo": {}}}, "[0].credentials.per_vo", "no VO"),
        ({"credentials": {"per_vo": {"a b": {}}}}, "[0].credentials.per_vo", "not a VO name"),
        (
            {"credentials": {"per_vo": {"vo.x": {"key": "K"}}}},
            "[0].credentials.per_vo.vo.x.secret",
            "name of an environment variable",
        ),
        (
            {"credentials": {"per_vo": {}, "from_env": {}}},
            "[0].credentials",
            "exactly one key",
        ),
    ],
)
def test_s3_templates_static_keys_cannot_enforce_are_refused(change, where, words):
    (issue,) = problems([{**S3, **change}])
    assert issue.startswith(f"StorageMounts.mounts{where}: "), issue
    assert words in issue


def test_the_username_refusal_says_why_in_words():
    (issue,) = problems([{**S3, "prefix": "{username}/"}])
    assert "every user of the mount gets the same key" in issue
    assert "STS" in issue


def test_per_vo_keys_give_each_vo_its_own_and_no_key_no_mount():
    mounts = StorageMounts(mounts=[S3, SITE_WIDE])
    (scratch,) = [m for m in mounts.for_user(user("bob", NOTEBOOKS), None) if m.name == "scratch"]
    assert scratch.vo == "vo.notebooks.egi.eu"
    assert scratch.mount.env_names("vo.notebooks.egi.eu") == ("S3_KEY_N", "S3_SECRET_N")
    assert scratch.mount.env_names("vo.other.eu") is None
    other = "urn:mace:egi.eu:group:vo.other.eu:role=member#aai.egi.eu"
    assert mounts.for_user(user("olga", other), "vo.other.eu") == []
    # In a keyed VO and another: the keyed one, even when charged to the other.
    (scratch,) = mounts.for_user(user("olga", other, NOTEBOOKS), "vo.other.eu")
    assert scratch.vo == "vo.notebooks.egi.eu"
    # The site-wide key: the same variables for everyone who gets the mount.
    (public,) = [m for m in mounts.for_user(user("al", ACCESS), None) if m.name == "public"]
    assert public.mount.env_names(public.vo) == ("S3_KEY", "S3_SECRET")


@pytest.mark.parametrize(
    ("template", "style", "ok"),
    [
        ("/exports/{vo}{username}", "path", False),
        ("/exports/{vo}-{username}", "path", False),  # '-' is in escaped path text
        ("/exports/{vo}_x.{username}", "path", False),
        ("/exports/{vo}/{username}", "path", True),
        ("/exports/{vo}/x/{username}/{vo}", "path", True),
        ("{vo}{vo}", "bucket", False),
        ("{vo}x{username}", "bucket", False),
        ("{vo}-{username}", "bucket", True),
        ("a{vo}b", "bucket", True),
    ],
)
def test_placeholders_need_a_separator_escaping_never_writes(template, style, ok):
    if ok:
        check_separated(template, style)
    else:
        with pytest.raises(TemplateError, match="separator"):
            check_separated(template, style)


def test_side_by_side_placeholders_are_refused_at_config_check():
    (issue,) = problems([{**NFS, "export": "/exports/{vo}{username}"}])
    assert issue.startswith("StorageMounts.mounts[0].export: ")
    assert "separator such as '/'" in issue


@given(
    st.text(min_size=1, max_size=12),
    st.text(min_size=1, max_size=12),
    st.text(min_size=1, max_size=12),
    st.text(min_size=1, max_size=12),
)
def test_separated_templates_expand_injectively(vo1, user1, vo2, user2):
    template = "/exports/{vo}/{username}"
    first = expand(template, username=user1, vo=vo1, style="path")
    second = expand(template, username=user2, vo=vo2, style="path")
    assert (first == second) == ((vo1, user1) == (vo2, user2))


@pytest.mark.parametrize(
    ("change", "where", "words"),
    [
        ({"path": "/datahub/../etc"}, "[0].path", "not a plain absolute path"),
        ({"path": "datahub"}, "[0].path", "not a plain absolute path"),
        ({"path": "/data hub"}, "[0].path", "not a plain absolute path"),
        ({"path": "/x;rm -rf"}, "[0].path", "not a plain absolute path"),
        ({"path": "/etc/datahub"}, "[0].path", "hide the system's /etc"),
        ({"name": "Data_Hub"}, "[0].name", "lower-case"),
        ({"kind": "ftp"}, "[0].kind", "unknown mount kind"),
        ({"vos": ["vo:role="]}, "[0].vos[0]", "not a VO rule"),
        ({"onezone_url": "http://datahub.egi.eu"}, "[0].onezone_url", "https URL"),
        ({"onezone_url": "https://u:p@datahub.egi.eu"}, "[0].onezone_url", "credentials"),
        ({"colour": "blue"}, "[0].colour", "unknown key for a datahub mount"),
        ({"read_only": "yes"}, "[0].read_only", "true or false"),
    ],
)
def test_a_bad_datahub_entry_is_named_by_its_key(change, where, words):
    (issue,) = problems([{**DATAHUB, **change}])
    assert issue.startswith(f"StorageMounts.mounts{where}: ")
    assert words in issue


@pytest.mark.parametrize(
    ("change", "where", "words"),
    [
        ({"bucket": "{user}-x"}, "[0].bucket", "only {username} and {vo}"),
        ({"bucket": "{vo!r}"}, "[0].bucket", "only {username} and {vo}"),
        ({"bucket": "Bad_Bucket"}, "[0].bucket", "not an S3 bucket name"),
        ({"prefix": "../{username}"}, "[0].prefix", "not a relative key prefix"),
        ({"prefix": "/abs"}, "[0].prefix", "not a relative key prefix"),
        ({"credentials": {"key": "x"}}, "[0].credentials", "from_env"),
        (
            {"credentials": {"from_env": {"key": "S3 KEY", "secret": "S"}}},
            "[0].credentials.from_env.key",
            "name of an environment variable",
        ),
        ({"endpoint_url": "ftp://s3"}, "[0].endpoint_url", "https or http URL"),
    ],
)
def test_a_bad_s3_entry_is_named_by_its_key(change, where, words):
    (issue,) = problems([{**S3, **change}])
    assert issue.startswith(f"StorageMounts.mounts{where}: ")
    assert words in issue


@pytest.mark.parametrize(
    ("change", "where", "words"),
    [
        ({"export": "/exports/../{vo}"}, "[0].export", "no '..'"),
        ({"export": "/exports/$(id)"}, "[0].export", "not a plain absolute path"),
        ({"server": "nfs.example.org;reboot"}, "[0].server", "not a host name"),
        ({"uid": -1}, "[0].uid", "number >= 0"),
    ],
)
def test_a_bad_nfs_entry_is_named_by_its_key(change, where, words):
    (issue,) = problems([{**NFS, **change}])
    assert issue.startswith(f"StorageMounts.mounts{where}: ")
    assert words in issue


def test_names_and_paths_are_unique_and_never_nested():
    (issue,) = problems([DATAHUB, {**S3, "name": "datahub"}])
    assert "StorageMounts.mounts[1].name" in issue
    (issue,) = problems([DATAHUB, {**S3, "path": "/datahub/s3"}])
    assert "StorageMounts.mounts[1].path" in issue
    assert "overlaps" in issue


def test_each_user_gets_the_mounts_of_their_vos_and_profile():
    mounts = StorageMounts(mounts=[DATAHUB, S3, NFS])
    alice = user("alice", ACCESS)
    assert [m.name for m in mounts.for_user(alice, "vo.access.egi.eu", "small")] == [
        "datahub",
        "scratch",
    ]
    assert [m.name for m in mounts.for_user(alice, None, "large")] == [
        "datahub",
        "scratch",
        "shared",
    ]
    bob = user("bob", NOTEBOOKS)  # not in vo.access.egi.eu: no DataHub
    names = [m.name for m in mounts.for_user(bob, "vo.notebooks.egi.eu", "small")]
    assert names == ["scratch"]
    nobody = user("carol")  # no VO: nothing with {vo}, nothing restricted to a VO
    assert mounts.for_user(nobody, None, "large") == []


def test_the_vo_is_the_charged_one_when_the_rules_admit_it():
    mounts = StorageMounts(mounts=[S3])
    both = user("dora", ACCESS, NOTEBOOKS)
    (scratch,) = mounts.for_user(both, "vo.notebooks.egi.eu")
    assert scratch.vo == "vo.notebooks.egi.eu"
    assert scratch.settings == {"bucket": "vox2enotebooksx2eegix2eeu-scratch", "prefix": "data/"}
    (scratch,) = mounts.for_user(both, None)
    assert scratch.vo == "vo.access.egi.eu"


def test_templates_escape_hostile_names():
    assert expand("/exports/{username}", username="../../etc", vo=None, style="path") == (
        "/exports/-2e.-2f..-2fetc"
    )
    assert expand("{username}-b", username="Eve/../x", vo=None, style="bucket") == (
        "x45vex2fx2ex2ex2fx78-b"
    )
    with pytest.raises(TemplateError, match="needs a VO"):
        expand("{vo}", username="a", vo=None, style="path")


@given(st.text(min_size=1, max_size=30), st.text(min_size=1, max_size=30))
def test_escaping_is_injective_and_never_leaves_a_separator(a, b):
    for style in ("path", "bucket"):
        ea, eb = escape(a, style), escape(b, style)
        assert "/" not in ea
        assert not ea.startswith(".")  # never ".", "..", or a hidden name
        if style == "bucket":
            assert (ea.isalnum() and ea.islower()) or ea.isdigit()
        if a != b:
            assert ea != eb


def test_a_parsed_list_is_kept_as_it_is():
    mounts = StorageMounts(mounts=[DATAHUB])
    again = StorageMounts(mounts=mounts.mounts)
    assert again.mounts == mounts.mounts
    with pytest.raises(TraitPathError):
        StorageMounts(mounts=[{**DATAHUB, "path": "/"}])
