"""`GET /ready`: whether this instance can serve, from each model's upstream health checked in the background.

A load balancer polls `/ready` often and expects an instant answer; checking upstreams inline would make it
as slow as the slowest upstream, and a dead one would hold every probe for its connect timeout. Instead a task
checks every model's upstream each `server.ready_interval` seconds (TGI `/health` on every replica, which also
rests or wakes replicas for the balancer) and `/ready` reports the last result at once. A model held in this
process (kind `local`) reports its own state (`loading`, `loaded`, `unavailable`) as it is now. The server starts
accepting requests once the first round has finished (or after 2 s). `/health` stays liveness only.

Which models must be able to serve is `server.ready_when`: `any` (the default: one model serving is an instance
that can serve; the others are shown as `unavailable` in the body, for monitoring), `all`, or a list of names."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from server.config import ReadyWhen
from server.registry import ModelRegistry

__all__ = ["Readiness"]

logger = logging.getLogger(__name__)

_SERVING = frozenset({"ok", "loaded"})  # the states in which a model answers requests


class Readiness:
    def __init__(self, registry: ModelRegistry, *, interval: float, ready_when: ReadyWhen = "any") -> None:
        self._registry = registry
        # `any` over every model, or `all` over every model or over the named ones (aliases resolved here, once).
        self._rule = "any" if ready_when == "any" else "all"
        names = [model.name for model in registry] if isinstance(ready_when, str) else ready_when
        self._required = list(dict.fromkeys(registry.get(name).name for name in names))
        self._interval = interval
        self._healthy: dict[str, bool] | None = None
        self._task: asyncio.Task[None] | None = None
        self._first_round = asyncio.Event()

    def start(self) -> None:
        """Start checking, if not started yet (the app's lifespan does it)."""
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
        """(ready, body): every model's state, and whether the models `server.ready_when` asks for can serve."""
        models: dict[str, str] = {}
        for model in self._registry:
            if model.status is not None:
                models[model.name] = model.status
            else:
                healthy = None if self._healthy is None else self._healthy.get(model.name)
                models[model.name] = {None: "unknown", True: "ok", False: "unavailable"}[healthy]
        serving = [models[name] in _SERVING for name in self._required]
        ready = any(serving) if self._rule == "any" else all(serving)
        if ready:
            return True, {"status": "ready", "models": models}
        return False, {"status": "starting" if self._healthy is None else "unavailable", "models": models}

    async def check(self) -> None:
        """One round: every model's upstream, concurrently."""
        models = list(self._registry)
        results = await asyncio.gather(*(model.backend.healthy() for model in models), return_exceptions=True)
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
