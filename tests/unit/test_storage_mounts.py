"""The mount list: parsed and checked like every other key, and each user's own expansion."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from egi_hub.config import TraitPathError, check_site, configurable_classes
from egi_hub.context import UserContext
from egi_hub.storage_mounts.mounts import StorageMounts
from egi_hub.storage_mounts.templates import TemplateError, escape, expand

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
    "prefix": "{username}/",
    "credentials": {"from_env": {"key": "S3_KEY", "secret": "S3_SECRET"}},
    "path": "/s3/scratch",
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
    assert problems([DATAHUB, S3, NFS]) == []


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
    assert scratch.settings == {"bucket": "vox2enotebooksx2eegix2eeu-scratch", "prefix": "dora/"}
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
