"""A moving deadline for a stream's reads, with one timer per stream rather than one per read.

`asyncio.timeout_at` around every read would cost a timer handle and a scope per chunk (about 7 us here, on
the per-token hot path). The watchdog keeps a single handle: moving the deadline is an attribute write, and
when the handle fires early it re-arms itself for the new deadline. When the deadline has really passed, the
task blocked in `wait` is cancelled and sees `TimeoutError`, the way `asyncio.timeout` does it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from typing import TypeVar

__all__ = ["Watchdog"]

T = TypeVar("T")


class Watchdog:
    __slots__ = ("_armed_at", "_deadline", "_handle", "_loop", "_waiting", "expired")

    def __init__(self, deadline: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._deadline = deadline
        self.expired = False
        self._waiting: asyncio.Task[object] | None = None
        self._armed_at = deadline
        self._handle = self._loop.call_at(deadline, self._check)

    @property
    def deadline(self) -> float:
        """Loop time at which `wait` gives up."""
        return self._deadline

    @deadline.setter
    def deadline(self, when: float) -> None:
        self._deadline = when
        if when < self._armed_at:  # earlier than the timer: re-arm (rare; later is the per-token case)
            self._arm(when)

    async def wait(self, awaitable: Awaitable[T]) -> T:
        """Await `awaitable`, raising `TimeoutError` if the deadline passes first."""
        if self.expired:
            if isinstance(awaitable, Coroutine):
                awaitable.close()  # never started: close it rather than leave it to warn
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

    def _arm(self, when: float) -> None:
        self._handle.cancel()
        self._armed_at = when
        self._handle = self._loop.call_at(when, self._check)

    def _check(self) -> None:
        if self._loop.time() < self._deadline:
            self._armed_at = self._deadline
            self._handle = self._loop.call_at(self._deadline, self._check)
            return
        self.expired = True
        if self._waiting is not None:
            self._waiting.cancel()
