"""The pieces of the upstream layer's resilience, on their own: replica choice, backoff, watchdog, gate."""

from __future__ import annotations

import asyncio
import random

import pytest

from server.errors import UpstreamLoading, UpstreamOverloaded
from server.upstream.admission import Gate
from server.upstream.backoff import Backoff
from server.upstream.errors import error_from_upstream
from server.upstream.replicas import ReplicaSet
from server.upstream.watchdog import Watchdog


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_replicas_least_in_flight_then_rotation() -> None:
    replicas = ReplicaSet(["a", "b", "c"], cooldown=5)
    first, second, third = (replicas.pick() for _ in range(3))
    assert {first.url, second.url, third.url} == {"a", "b", "c"}  # ties rotate, in-flight counts spread
    replicas.release(second)
    assert replicas.pick() is second  # the only one with nothing in flight


def test_replicas_rest_after_failure_and_wake_after_cool_down() -> None:
    clock = Clock()
    replicas = ReplicaSet(["a", "b"], cooldown=5, clock=clock)
    a = next(r for r in replicas.replicas if r.url == "a")
    replicas.rest(a)
    for _ in range(4):
        chosen = replicas.pick()
        assert chosen.url == "b"
        replicas.release(chosen)
    clock.now += 5
    assert "a" in {replicas.pick().url, replicas.pick().url}


def test_replicas_avoid_tried_ones_but_never_run_out() -> None:
    clock = Clock()
    replicas = ReplicaSet(["a", "b"], cooldown=5, clock=clock)
    for replica in replicas.replicas:
        replicas.rest(replica)
    clock.now += 1
    replicas.rest(replicas.replicas[1])  # b rests longer: a wakes first and is used anyway
    assert replicas.pick().url == "a"
    assert replicas.pick(avoid=[replicas.replicas[0]]).url == "b"


def test_backoff_doubles_with_jitter_up_to_its_cap_and_honours_hints() -> None:
    backoff = Backoff(base=1, cap=4, rng=random.Random(7))
    for retry, (low, high) in enumerate([(0.5, 1), (1, 2), (2, 4), (2, 4), (2, 4)]):
        delays = {backoff.delay(retry) for _ in range(50)}
        assert all(low <= delay <= high for delay in delays) and len(delays) > 1
    assert backoff.delay(0, hint=30) == 30
    assert backoff.delay(5, hint=0.1) >= 2


def test_wait_hints_come_from_retry_after_or_estimated_time() -> None:
    loading = error_from_upstream(503, {"error": "Model x is currently loading", "estimated_time": 44.2})
    assert isinstance(loading, UpstreamLoading)
    assert loading.retry_after == 44.2 and loading.headers["retry-after"] == "45"
    told = error_from_upstream(429, {"error": "slow down"}, "3")
    assert isinstance(told, UpstreamOverloaded) and told.retry_after == 3 and told.headers["retry-after"] == "3"
    silent = error_from_upstream(503, {"error": "unhealthy"})
    assert silent.retry_after is None and silent.headers["retry-after"] == "5"  # the client still gets a figure
    dated = error_from_upstream(429, "", "Wed, 21 Oct 2015 07:28:00 GMT")
    assert dated.retry_after is None
    billing = error_from_upstream(402, {"error": "You have exceeded your monthly included credits"})
    assert billing.status == 429 and billing.code == "insufficient_quota"


async def test_watchdog_times_out_a_wait_and_follows_its_moving_deadline() -> None:
    loop = asyncio.get_running_loop()
    watchdog = Watchdog(loop.time() + 10)
    watchdog.deadline = loop.time() + 0.05  # moved earlier: re-armed
    with pytest.raises(TimeoutError):
        await watchdog.wait(asyncio.sleep(1))
    watchdog.close()

    watchdog = Watchdog(loop.time() + 0.05)
    for _ in range(4):  # each step moves the deadline later before the timer fires
        watchdog.deadline = loop.time() + 0.05
        assert await watchdog.wait(asyncio.sleep(0.03, result="ok")) == "ok"
    watchdog.close()


async def test_watchdog_leaves_other_cancellations_alone() -> None:
    loop = asyncio.get_running_loop()
    watchdog = Watchdog(loop.time() + 10)
    task = asyncio.ensure_future(watchdog.wait(asyncio.sleep(1)))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    watchdog.close()


async def test_gate_queues_in_order_and_refuses_beyond_its_queue() -> None:
    gate = Gate(limit=1, queue=1, timeout=5, name="m")
    order: list[str] = []
    release = asyncio.Event()

    async def hold(name: str) -> None:
        async with gate.slot():
            order.append(name)
            await release.wait()

    first = asyncio.ensure_future(hold("first"))
    await asyncio.sleep(0)
    second = asyncio.ensure_future(hold("second"))
    await asyncio.sleep(0)
    assert gate.in_flight == 1 and gate.waiting == 1
    with pytest.raises(UpstreamOverloaded) as refused:
        async with gate.slot():
            pass
    assert refused.value.code == "model_at_capacity" and refused.value.headers == {"retry-after": "1"}
    release.set()
    await asyncio.gather(first, second)
    assert order == ["first", "second"] and gate.in_flight == 0 and gate.waiting == 0


async def test_gate_wait_is_bounded_by_its_timeout() -> None:
    gate = Gate(limit=1, queue=5, timeout=0.05, name="m")
    async with gate.slot():
        with pytest.raises(UpstreamOverloaded, match="within 0.05 s"):
            async with gate.slot():
                pass
    assert gate.waiting == 0
