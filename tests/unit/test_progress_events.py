"""Spawn progress events reach a reader as each step happens, not at the end."""

from __future__ import annotations

import asyncio

from egi_hub.spawner.progress import ProgressEvents


class Base:
    def clear_state(self) -> None:
        pass


class Spawner(ProgressEvents, Base):
    pass


async def next_event(queue: asyncio.Queue) -> dict:
    return await asyncio.wait_for(queue.get(), timeout=5)


async def test_each_event_is_yielded_as_soon_as_it_is_added():
    s = Spawner()
    queue: asyncio.Queue = asyncio.Queue()

    async def read() -> None:
        async for event in s.follow_progress():
            await queue.put(event)
        await queue.put(None)

    reader = asyncio.create_task(read())
    s.progress_event(20, "admitted")
    # The reader has the first event while the start has not gone any further.
    assert await next_event(queue) == {"progress": 20, "message": "admitted"}
    assert queue.empty()
    s.progress_event(None, "waiting", "<b>waiting</b>")
    assert await next_event(queue) == {"message": "waiting", "html_message": "<b>waiting</b>"}
    s.progress_end()
    assert await next_event(queue) is None
    await reader


async def test_a_late_reader_sees_every_event_in_order_and_two_readers_both_do():
    s = Spawner()
    s.progress_event(10, "one")
    s.progress_event(20, "two")

    async def read() -> list[str]:
        return [e["message"] async for e in s.follow_progress()]

    readers = [asyncio.create_task(read()) for _ in range(2)]
    await asyncio.sleep(0)  # let both readers wait for more
    s.progress_event(30, "three")
    s.progress_end()
    assert await asyncio.wait_for(asyncio.gather(*readers), 5) == [["one", "two", "three"]] * 2


async def test_clearing_the_state_starts_a_new_list_for_waiting_readers():
    s = Spawner()
    s.progress_event(10, "old")
    s.progress_end()
    s.clear_state()  # a new start: JupyterHub clears the state first
    assert s.progress_events == []
    queue: asyncio.Queue = asyncio.Queue()

    async def read() -> None:
        async for event in s.follow_progress():
            await queue.put(event["message"])

    reader = asyncio.create_task(read())
    s.progress_event(20, "new")
    assert await next_event(queue) == "new"
    s.progress_end()
    await asyncio.wait_for(reader, 5)
