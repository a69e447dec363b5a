"""Run the upstream calls of `n > 1` choices (and of several prompts) concurrently.

Streams are merged into one sequence of `(job, batch of events)` in arrival order, which is what interleaves
choice indexes on the wire. Closing the merge (the client left) cancels every upstream call at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from server.upstream.tgi_wire import GenerateParameters

__all__ = ["Job", "Keyed", "MergedStreams", "Ready", "gather_or_cancel"]

T = TypeVar("T")
E = TypeVar("E")  # an upstream event: TGI's StreamResponse, or an OpenAI-style chunk


class Keyed(Protocol):
    """One upstream call of a merge, told apart by its index."""

    @property
    def index(self) -> int: ...


J = TypeVar("J", bound=Keyed)


@dataclass(frozen=True, slots=True)
class Job:
    """One upstream generation: choice `index` of the OpenAI answer."""

    index: int
    prompt: str
    prompt_index: int  # usage counts each prompt once, however many choices it has
    parameters: GenerateParameters
    prefix: str = ""  # completions `echo`


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


_DONE = object()

Ready = list[tuple[J, list[E]]]
_Item = tuple[J, list[E] | BaseException | object]  # a batch of events, a failure, or `_DONE`


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
        self.closed = False  # set by the owner once it has started closing
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

    async def events(self) -> AsyncGenerator[Ready[J, E], None]:
        """What has arrived since the last step, in arrival order: `(job, batch)` pairs, at least one per
        step. `arrived` first; `aclose` when done, also after an early exit."""
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
                if item is _DONE:
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

    async def aclose(self) -> None:
        for task in self._tasks.values():
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)

    async def _pump(self, job: J) -> None:
        try:
            async for event in self._open(job):
                self._queue.put_nowait((job, event))
        except asyncio.CancelledError:
            self._queue.put_nowait((job, _DONE))
            raise
        except Exception as exc:  # handed to the consumer, which renders it
            self._queue.put_nowait((job, exc))
            return
        self._queue.put_nowait((job, _DONE))
