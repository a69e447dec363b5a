"""MergedStreams: arrival order, coalescing of what arrived together, failures after the tokens before them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from server.generation.fanout import MergedStreams
from server.generation.plan import Job


def job(index: int) -> Job:
    return Job(index=index, prompt="p", prompt_index=0, parameters={})


async def test_batches_that_arrive_together_are_taken_together() -> None:
    gate = asyncio.Event()

    async def stream(_: Job) -> AsyncIterator[list[str]]:
        for token in "abc":  # one upstream read that held three events: no await in between
            yield [token]
        await gate.wait()
        yield ["d"]

    merged = MergedStreams([job(0)], stream)
    assert await merged.arrived(5)
    events = merged.events()
    first = await anext(events)
    assert [batch for _, batch in first] == [["a"], ["b"], ["c"]]
    gate.set()
    assert [batch for _, batch in await anext(events)] == [["d"]]
    assert await anext(events, None) is None
    await merged.aclose()


async def test_streams_interleave_in_arrival_order_and_end_when_all_end() -> None:
    async def stream(this: Job) -> AsyncIterator[list[str]]:
        for step in range(2):
            await asyncio.sleep(0.01 * (this.index + 1))
            yield [f"{this.index}.{step}"]

    merged = MergedStreams([job(0), job(1)], stream)
    assert await merged.arrived(5)
    seen = [batch[0] async for ready in merged.events() for _, batch in ready]
    assert sorted(seen) == ["0.0", "0.1", "1.0", "1.1"] and seen[0] == "0.0"
    await merged.aclose()


async def test_a_failure_comes_after_the_batches_read_before_it() -> None:
    async def stream(_: Job) -> AsyncIterator[list[str]]:
        yield ["a"]
        raise RuntimeError("cut")

    merged = MergedStreams([job(0)], stream)
    assert await merged.arrived(5)
    events = merged.events()
    assert [batch for _, batch in await anext(events)] == [["a"]]
    with pytest.raises(RuntimeError, match="cut"):
        await anext(events)
    await merged.aclose()


async def test_closing_cancels_every_upstream_call() -> None:
    cancelled: list[int] = []

    async def stream(this: Job) -> AsyncIterator[list[str]]:
        try:
            yield ["first"]
            await asyncio.sleep(60)
            yield ["never"]
        except asyncio.CancelledError:
            cancelled.append(this.index)
            raise

    merged = MergedStreams([job(0), job(1)], stream)
    assert await merged.arrived(5)
    events = merged.events()
    await anext(events)
    await events.aclose()
    await merged.aclose()
    assert sorted(cancelled) == [0, 1]


async def test_arrived_says_when_nothing_came_in_time_and_the_events_still_follow() -> None:
    async def slow(_: Job) -> AsyncIterator[list[str]]:
        await asyncio.sleep(0.2)
        yield ["late"]

    merged = MergedStreams([job(0)], slow)
    assert not await merged.arrived(0.01)
    assert [batch async for ready in merged.events() for _, batch in ready] == [["late"]]
    await merged.aclose()
