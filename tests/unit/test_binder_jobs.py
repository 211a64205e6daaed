"""Shared jobs: one run per key, every follower sees every event, leaving never cancels."""

from __future__ import annotations

import asyncio

import pytest

from egi_hub.binder_service.jobs import Jobs


async def test_concurrent_requests_for_one_key_share_one_run_and_see_all_events():
    jobs, runs, release = Jobs(), [], asyncio.Event()

    async def work(job):
        runs.append(job.key)
        job.emit({"phase": "building", "message": "one\n"})
        await release.wait()
        job.emit({"phase": "building", "message": "two\n"})
        return "result"

    followers = [jobs.run("k", "building", work) for _ in range(20)]
    assert len({id(j) for j in followers}) == 1

    async def collect(job):
        return [e["message"] async for e in job.follow()]

    tasks = [asyncio.ensure_future(collect(j)) for j in followers]
    await asyncio.sleep(0)
    release.set()
    logs = await asyncio.gather(*tasks)
    assert runs == ["k"]
    assert all(log == ["one\n", "two\n"] for log in logs)
    assert await followers[0].result() == "result"
    assert jobs.get("k") is None  # forgotten once done
    late = [e async for e in followers[0].follow()]  # a late follower gets the whole log
    assert [e["message"] for e in late] == ["one\n", "two\n"]


async def test_a_follower_that_leaves_does_not_cancel_the_job():
    jobs, release = Jobs(), asyncio.Event()

    async def work(job):
        await release.wait()
        return 1

    job = jobs.run("k", "fetching", work)
    waiter = asyncio.ensure_future(job.result())
    await asyncio.sleep(0)
    waiter.cancel()
    release.set()
    assert await job.result() == 1


async def test_cancel_ends_the_job_for_every_follower():
    jobs = Jobs()
    job = jobs.run("k", "building", lambda job: asyncio.Event().wait())
    await asyncio.sleep(0)
    assert job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job.result()
    assert [e async for e in job.follow()] == []
    assert not job.cancel()
