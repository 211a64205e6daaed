"""The site's allow and ban lists and per-user caps: one spelling per repository."""

from __future__ import annotations

import asyncio

import pytest

from egi_hub.binder_service.jobs import Job
from egi_hub.binder_service.service import BinderService, LaunchUser, canonical_source


@pytest.mark.parametrize(
    ("source", "canonical"),
    [
        ("https://github.com/org/repo", "github.com/org/repo"),
        ("https://GitHub.com.:443//org/repo.git/", "github.com/org/repo"),
        ("git://example.org:9418/r.git", "example.org/r"),
        ("http://example.org:8080/r", "example.org:8080/r"),
        ("https://zenodo.org/api/records/123", "zenodo.org/api/records/123"),
    ],
)
def test_every_spelling_of_a_repository_has_one_canonical_form(source, canonical):
    assert canonical_source(source) == canonical


def service(tmp_path, **traits) -> BinderService:
    return BinderService(data_dir=str(tmp_path), ticket_secret="s" * 40, **traits)


def test_the_allow_list_matches_the_start_of_the_canonical_source(tmp_path):
    binder = service(tmp_path, allowed_specs=[r"github\.com/my-org/"])
    assert binder.list_refusal("https://github.com/my-org/repo") is None
    assert binder.list_refusal("https://GITHUB.com:443/My-Org/repo.git") is None
    for other in (
        "https://github.com/attacker/github.com/my-org/x",  # the org's name further on
        "https://evil.org/github.com/my-org/x",
    ):
        assert "not on its allowed list" in binder.list_refusal(other), other


def test_the_ban_list_catches_every_spelling(tmp_path):
    binder = service(tmp_path, banned_specs=[r"github\.com/banned-org/"])
    for spelling in (
        "https://github.com/banned-org/x",
        "https://github.com:443/banned-org/x",
        "https://github.com./banned-org/x",
        "https://github.com//banned-org/x",
        "https://GitHub.com/Banned-Org/x.git",
    ):
        assert "ban list" in binder.list_refusal(spelling), spelling
    assert binder.list_refusal("https://github.com/other/banned-org") is None


async def test_the_per_user_launch_cap_counts_that_user_only(tmp_path):
    binder = service(tmp_path, max_launches_per_user=2)
    forever = asyncio.Event()
    for key in ("launch-bob-x-" + "a" * 24, "launch-bob-x-" + "b" * 24):  # user "bob-x"
        job = Job(key, "launch")
        job.task = asyncio.ensure_future(forever.wait())
        binder.jobs.running[key] = job
    job = binder.launch_job("v2/gh/o/r/main", {}, LaunchUser("bob", "t"))
    first = await anext(job.follow())
    assert "already have" not in first.get("message", "")  # bob-x's launches are not bob's
    job.cancel()
    job = binder.launch_job("v2/gh/o/other/main", {}, LaunchUser("bob-x", "t"))
    events = [e async for e in job.follow()]
    assert events[-1]["phase"] == "failed" and "2 launches under way" in events[-1]["message"]
    forever.set()
