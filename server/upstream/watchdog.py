"""A moving deadline for a stream's reads, with one timer per stream rather than one per read.

`asyncio.timeout_at` around every read would cost a timer handle and a scope per chunk (about 7 us here, on
the per-token hot path). The watchdog keeps a single handle: moving the deadline is an attribute write, and
when the handle fires early it re-arms itself for the new deadline. When the deadline has really passed, the
task blocked in `wait` is cancelled and sees `TimeoutError`, the way `asyncio.timeout` does it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

__all__ = ["Watchdog"]

T = TypeVar("T")


class Watchdog:
    __slots__ = ("_handle", "_loop", "_waiting", "deadline", "expired")

    def __init__(self, deadline: float) -> None:
        self._loop = asyncio.get_running_loop()
        self.deadline = deadline  # loop time; move it freely
        self.expired = False
        self._waiting: asyncio.Task[object] | None = None
        self._handle = self._loop.call_at(deadline, self._check)

    async def wait(self, awaitable: Awaitable[T]) -> T:
        """Await `awaitable`, raising `TimeoutError` if the deadline passes first."""
        if self.expired:
            raise TimeoutError
        task = asyncio.current_task()
        self._waiting = task
        try:
            return await awaitable
        except asyncio.CancelledError:
            # Ours only if nobody else cancelled the task too; then the cancellation is undone and reported
            # as a timeout.
            if self.expired and task is not None and task.uncancel() == 0:
                raise TimeoutError from None
            raise
        finally:
            self._waiting = None

    def close(self) -> None:
        self._handle.cancel()

    def _check(self) -> None:
        if self._loop.time() < self.deadline:
            self._handle = self._loop.call_at(self.deadline, self._check)
            return
        self.expired = True
        if self._waiting is not None:
            self._waiting.cancel()
