"""`GET /ready`: each model's upstream health, checked in the background so the endpoint never waits.

A load balancer polls `/ready` often and expects an instant answer; checking upstreams inline would make it
as slow as the slowest upstream, and a dead one would hold every probe for its connect timeout. Instead a task
checks every model's upstream each `server.ready_interval` seconds (TGI `/health` on every replica, which also
rests or wakes replicas for the balancer) and `/ready` reports the last result. The server starts accepting
requests once the first round has finished (or after 2 s); until then the answer would be 503 `starting`.
`/health` stays liveness only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from server.models import ModelRegistry

__all__ = ["Readiness"]

logger = logging.getLogger(__name__)


class Readiness:
    def __init__(self, registry: ModelRegistry, *, interval: float) -> None:
        self._registry = registry
        self._interval = interval
        self._healthy: dict[str, bool] | None = None
        self._task: asyncio.Task[None] | None = None
        self._first_round = asyncio.Event()

    def start(self) -> None:
        """Start checking, if not started yet (the app's lifespan does it; `/ready` too, for servers that run
        no lifespan)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="readiness-checks")

    async def first_round(self, timeout: float) -> None:
        """Wait (at most `timeout` seconds) for the first round of checks, so that a server that has just
        started answers `/ready` from real checks rather than `starting`."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_round.wait(), timeout)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def report(self) -> tuple[bool, dict[str, Any]]:
        """(ready, body) from the last finished round of checks. A model held in this process (kind `local`)
        reports its own state as it is now (`loading`, `loaded`, `unavailable`): asking costs nothing."""
        models: dict[str, str] = {}
        ready = True
        for model in self._registry:
            healthy = None if self._healthy is None else self._healthy.get(model.name)
            if model.status is not None:
                models[model.name] = model.status
                ready = ready and model.status == "loaded"
            else:
                models[model.name] = {None: "unknown", True: "ok", False: "unavailable"}[healthy]
                ready = ready and healthy is True
        if self._healthy is None:
            return False, {"status": "starting", "models": models}
        return ready, {"status": "ready" if ready else "unavailable", "models": models}

    async def check(self) -> None:
        """One round: every model's upstream, concurrently."""
        models = list(self._registry)
        results = await asyncio.gather(*(model.upstream.healthy() for model in models), return_exceptions=True)
        healthy = {}
        for model, result in zip(models, results, strict=True):
            if isinstance(result, BaseException):
                logger.warning("health check of model %s failed: %s", model.name, type(result).__name__)
            healthy[model.name] = result is True
        self._healthy = healthy
        self._first_round.set()

    async def _run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self._interval)
