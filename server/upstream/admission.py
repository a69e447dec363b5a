"""Backpressure for one model: at most `limit` upstream calls at once and a bounded, time-limited wait
queue; beyond that a call is refused at once with 429 and `Retry-After`, rather than piling up until the
upstream (or this process) falls over. TGI does the same with `max_concurrent_requests` (docs/tgi-wire.md §4).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from server.errors import UpstreamOverloaded

__all__ = ["Gate"]


class Gate:
    def __init__(self, *, limit: int, queue: int, timeout: float, name: str) -> None:
        self._slots = asyncio.Semaphore(limit)  # FIFO: waiters are served in arrival order
        self._limit = limit
        self._max_queue = queue
        self._timeout = timeout
        self._name = name
        self.waiting = 0
        self.in_flight = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._slots.locked():
            await self._wait_for_slot()
        else:
            await self._slots.acquire()  # free: returns without suspending
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1
            self._slots.release()

    async def _wait_for_slot(self) -> None:
        if self.waiting >= self._max_queue:
            raise self._refusal(f"{self.waiting} requests are already waiting")
        self.waiting += 1
        try:
            async with asyncio.timeout(self._timeout):
                await self._slots.acquire()
        except TimeoutError:
            raise self._refusal(f"no slot freed up within {self._timeout:g} s") from None
        finally:
            self.waiting -= 1

    def _refusal(self, why: str) -> UpstreamOverloaded:
        return UpstreamOverloaded(
            f"The model `{self._name}` is at capacity ({self._limit} requests in progress; {why}). Retry shortly.",
            code="model_at_capacity",
            headers={"retry-after": "1"},
        )
