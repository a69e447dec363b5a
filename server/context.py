"""The request being served, visible to everything that runs on its behalf (log lines, upstream observers,
the access log) without passing it through every call.

It lives in a `ContextVar`: asyncio copies the context into every task a request starts (fan-out, the SSE
body), and all of them share the one `RequestContext` object, so what an upstream call records there is seen
by the middleware that answers the request. Per request, not global state.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field

__all__ = ["RequestContext", "current_request"]


@dataclass(slots=True)
class RequestContext:
    request_id: str
    started: float = field(default_factory=time.perf_counter)
    model: str = ""  # the served model's name, once the request has called its upstream
    _waiting: int = field(default=0, init=False)
    _wait_began: float = field(default=0.0, init=False)
    _waited: float = field(default=0.0, init=False)

    def upstream_wait_began(self) -> None:
        if self._waiting == 0:
            self._wait_began = time.perf_counter()
        self._waiting += 1

    def upstream_wait_ended(self) -> None:
        self._waiting -= 1
        if self._waiting == 0:
            self._waited += time.perf_counter() - self._wait_began

    def upstream_waited(self, now: float) -> float:
        """Seconds during which at least one upstream call was pending: `n` concurrent choices wait once."""
        return self._waited + (now - self._wait_began if self._waiting else 0.0)


current_request: ContextVar[RequestContext | None] = ContextVar("current_request", default=None)
