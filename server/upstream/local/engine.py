"""The worker thread that owns an in-process model: it loads it, then runs every queued generation.

Concurrency: a queue and one thread, not a lock around the model. Requests are queued in arrival order; the
thread advances every active generation by one token in turn (round robin), so concurrent streams all make
progress and a new request's first token waits for at most one token of each other request, not for whole
answers. Only this thread touches the model and its KV caches, so nothing in them needs to be thread-safe,
and the event loop never runs a forward pass. A generation whose client left is dropped before its next
token: its `cancelled` event is checked on every turn.
"""

from __future__ import annotations

import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

from server.config import LocalModelConfig
from server.upstream.local.loader import LoadedModel, load_model
from server.upstream.tgi_wire import StreamResponse

__all__ = ["END", "Engine", "Decoding"]

logger = logging.getLogger(__name__)

END = object()  # delivered after a job's last event

Delivery = StreamResponse | BaseException | object


@dataclass(eq=False)
class Decoding:
    """One sequence the worker thread decodes, a step at a time, and where its events go."""

    steps: Generator[StreamResponse, None, None]
    deliver: Callable[[Delivery], None]  # called on the worker thread; must not block
    cancelled: threading.Event = field(default_factory=threading.Event)


class Engine:
    def __init__(self, config: LocalModelConfig, name: str) -> None:
        self._config = config
        self.loaded: concurrent.futures.Future[LoadedModel] = concurrent.futures.Future()
        # Running from the start, so that no waiter can cancel the one shared load by giving up on it.
        self.loaded.set_running_or_notify_cancel()
        self._inbox: queue.SimpleQueue[Decoding | None] = queue.SimpleQueue()
        # Written by the worker only, read by anyone: generations in progress, and tokens made since start.
        self.active = 0
        self.tokens = 0
        self._thread = threading.Thread(target=self._run, name=f"local-model-{name}", daemon=True)
        self._thread.start()

    def submit(self, job: Decoding) -> None:
        self._inbox.put(job)

    def close(self, timeout: float) -> None:
        """Stop after the current token and wait for the thread; jobs still queued are dropped (their clients
        are gone too). Waiting matters: a process that exits while torch runs on another thread aborts."""
        self._inbox.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            loaded = load_model(self._config)
        except BaseException as exc:
            logger.exception("the local model could not be loaded")
            self.loaded.set_exception(exc)
            return
        self.loaded.set_result(loaded)
        import torch

        with torch.inference_mode():
            self._serve()

    def _serve(self) -> None:
        active: list[Decoding] = []
        while True:
            try:
                # Wait only when idle; otherwise take what has arrived and keep generating.
                while True:
                    job = self._inbox.get(block=not active)
                    if job is None:
                        return
                    active.append(job)
            except queue.Empty:
                pass
            active = [job for job in active if self._advance(job)]
            self.active = len(active)

    def _advance(self, job: Decoding) -> bool:
        """One token of `job`; False once it is finished, failed or cancelled."""
        if job.cancelled.is_set():
            job.steps.close()
            return False
        try:
            event = next(job.steps)
        except StopIteration:
            job.deliver(END)
            return False
        except Exception as exc:
            job.deliver(exc)
            return False
        self.tokens += 1
        job.deliver(event)
        return True
