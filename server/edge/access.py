"""The outermost layer: each request's id, context, overhead header, access-log line and request metrics;
and the last line of defence, where an exception nothing else handled becomes a 500 envelope.

`x-request-id` is the client's own when it sends a sane one, else a new one; it is on every response,
streams included, and on every log line written while serving the request (`server.ops.logs`).

`x-proxy-overhead-ms` is the time from the request's arrival here to its response headers, minus the time
during which at least one upstream call of the request was pending (`RequestContext.upstream_waited`). For a
non-streamed answer that is everything the proxy did: reading and validating the body, templating, and
serialising the answer. For a stream the headers leave once the first token has arrived, so it covers the
work before the first token; per-token work comes later and shows in the upstream and request durations.

Plain ASGI rather than `BaseHTTPMiddleware`, which would buffer streams and hide disconnects.
"""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Collection

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.context import RequestContext, current_request
from server.edge.errors import error_response
from server.errors import ProxyError
from server.ops.logs import fields
from server.ops.metrics import Metrics

__all__ = ["AccessMiddleware"]

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("server.access")

_CLIENT_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# Paths that match no route (scanners, typos) share one label, so they cannot grow the metric series.
_OTHER_ENDPOINT = "other"


class AccessMiddleware:
    def __init__(self, app: ASGIApp, *, metrics: Metrics, access_log: bool, known_paths: Collection[str]) -> None:
        self.app = app
        self._metrics = metrics
        self._access_log = access_log
        self._known_paths = frozenset(known_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = Headers(scope=scope).get("x-request-id", "")
        if not _CLIENT_REQUEST_ID.match(request_id):
            request_id = f"req_{secrets.token_hex(12)}"
        scope.setdefault("state", {})["request_id"] = request_id
        context = RequestContext(request_id)
        token = current_request.set(context)
        status = 0
        overhead: float | None = None

        async def send_with_headers(message: Message) -> None:
            nonlocal status, overhead
            if message["type"] == "http.response.start":
                now = time.perf_counter()
                overhead = max(0.0, now - context.started - context.upstream_waited(now))
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", ()),
                    (b"x-request-id", request_id.encode()),
                    (b"x-proxy-overhead-ms", f"{overhead * 1000:.3f}".encode()),
                ]
            await send(message)

        self._metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            logger.exception("unexpected error serving %s %s", scope["method"], scope["path"])
            if status:
                raise
            failure = ProxyError("The server had an error while processing your request.")
            await error_response(failure)(scope, receive, send_with_headers)
        finally:
            self._metrics.in_flight.dec()
            self._record(scope, context, status, overhead)
            current_request.reset(token)

    def _record(self, scope: Scope, context: RequestContext, status: int, overhead: float | None) -> None:
        duration = time.perf_counter() - context.started
        route = scope.get("route")
        path: str = scope["path"]
        endpoint = route.path if route is not None else path if path in self._known_paths else _OTHER_ENDPOINT
        self._metrics.requests.labels(context.model, endpoint, str(status)).inc()
        self._metrics.request_duration.labels(endpoint).observe(duration)
        if overhead is not None:
            self._metrics.overhead.labels(endpoint).observe(overhead)
        if self._access_log:
            client = scope.get("client")
            access_logger.info(
                "request",
                extra=fields(
                    method=scope["method"],
                    path=path,
                    status=status,
                    duration_ms=round(duration * 1000, 3),
                    overhead_ms=round(overhead * 1000, 3) if overhead is not None else None,
                    model=context.model,
                    client=f"{client[0]}:{client[1]}" if client else None,
                ),
            )
