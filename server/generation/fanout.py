"""Run the upstream calls of `n > 1` choices (and of several prompts) concurrently.

Streams are merged into one sequence of `(job, batch of events)` in arrival order, which is what interleaves
choice indexes on the wire. Closing the merge (the client left) cancels every upstream call at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

__all__ = ["Keyed", "MergedStreams", "Ready", "gather_or_cancel"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
E = TypeVar("E")  # an upstream event: TGI's StreamResponse, or an OpenAI-style chunk


class Keyed(Protocol):
    """One upstream call of a merge, told apart by its index."""

    @property
    def index(self) -> int: ...


J = TypeVar("J", bound=Keyed)


async def gather_or_cancel(calls: Sequence[Awaitable[T]]) -> list[T]:
    """Like `asyncio.gather`, but the first failure cancels the other calls instead of leaving them running."""
    if len(calls) == 1:
        return [await calls[0]]
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()


_STREAM_ENDED = object()

Ready = list[tuple[J, list[E]]]
_Item = tuple[J, list[E] | BaseException | object]  # a batch of events, a failure, or `_STREAM_ENDED`


class MergedStreams(Generic[J, E]):
    """Every job's stream is read by a task of its own into one queue, also when there is a single job: events
    that arrive in one upstream read are then taken out together and leave in one write. httpx hands a
    chunked body over one HTTP chunk (one TGI event) at a time, so reading in the consumer's own task meant
    a send per token, which cost more CPU than all the rest of a token's path (bench/RESULTS.md).

    The queue has no bound: reading on while a slow client catches up holds at most one answer's events
    (`max_tokens` of them), and TGI generates at its own pace whether or not it is read."""

    def __init__(self, jobs: Sequence[J], open_stream: Callable[[J], AsyncIterator[list[E]]]) -> None:
        self._jobs = jobs
        self._open = open_stream
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._events: AsyncGenerator[Ready[J, E], None] | None = None
        self._closing = False
        self._queue: asyncio.Queue[_Item[J, E]] = asyncio.Queue()
        self._held: _Item[J, E] | None = None  # taken by `arrived`, handed on first by `events`

    async def arrived(self, timeout: float) -> bool:
        """Start every upstream call, and wait up to `timeout` for the first thing any of them hands over
        (events, its end or its failure); False if nothing came in time."""
        for job in self._jobs:
            self._tasks[job.index] = asyncio.create_task(self._pump(job))
        try:
            async with asyncio.timeout(timeout):
                self._held = await self._queue.get()  # cancelling a queue's get loses nothing
        except TimeoutError:
            return False
        return True

    def events(self) -> AsyncGenerator[Ready[J, E], None]:
        """What has arrived since the last step, in arrival order: `(job, batch)` pairs, at least one per
        step. `arrived` first; `close` (or `aclose`) when done, also after an early exit."""
        self._events = self._arrivals()
        return self._events

    async def _arrivals(self) -> AsyncGenerator[Ready[J, E], None]:
        remaining = len(self._jobs)
        queue = self._queue
        while remaining:
            if self._held is not None:
                arrived, self._held = [self._held], None
            else:
                arrived = [await queue.get()]
            while not queue.empty():
                arrived.append(queue.get_nowait())
            ready: Ready[J, E] = []
            for job, item in arrived:
                if item is _STREAM_ENDED:
                    remaining -= 1
                elif isinstance(item, BaseException):
                    if ready:  # what came before the failure still reaches the client
                        yield ready
                    raise item
                else:
                    ready.append((job, item))  # type: ignore[arg-type]
            if ready:
                yield ready

    def stop(self, job: J) -> None:
        """This choice is complete (the proxy found its stop): cancel its upstream call."""
        task = self._tasks.get(job.index)
        if task is not None:
            task.cancel()

    async def close(self) -> None:
        """Close the events and stop every upstream call, in a task of its own: sse-starlette cancels a
        departed client's stream through an anyio cancel scope, which re-cancels every await of ours, and the
        upstream connections must still be closed properly. Closing twice does nothing, without awaiting."""
        if self._closing:
            return
        self._closing = True
        await asyncio.shield(asyncio.ensure_future(self._shutdown()))

    async def _shutdown(self) -> None:
        closes = [self.aclose] if self._events is None else [self._events.aclose, self.aclose]
        for close in closes:
            try:
                await close()
            except Exception:  # a failure while closing is not news to the client: the stream already ended
                logger.debug("upstream stream failed while closing", exc_info=True)

    async def aclose(self) -> None:
        """Cancel every upstream call and wait until they have ended."""
        for task in self._tasks.values():
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _pump(self, job: J) -> None:
        try:
            async for event in self._open(job):
                self._queue.put_nowait((job, event))
        except asyncio.CancelledError:
            self._queue.put_nowait((job, _STREAM_ENDED))
            raise
        except Exception as exc:  # handed to the consumer, which renders it
            self._queue.put_nowait((job, exc))
            return
        self._queue.put_nowait((job, _STREAM_ENDED))
