"""An `Upstream` watched from outside: every call of a served model goes through here (`build_registry`).

It records, per model: upstream latency, time to first token, tokens in and out as the upstream reports them,
upstream calls in flight, and failed calls by error code; it tells the current request how long it waited on
the upstream (for the proxy's overhead figure) and which model it reached; and with `server.log_prompts` it
logs prompts and outputs. It delegates everything else, so it works over any upstream kind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from server.context import RequestContext, current_request
from server.errors import ProxyError
from server.logs import fields
from server.metrics import Metrics
from server.schemas.tgi import GenerateParameters, StreamDetails, StreamResponse
from server.upstream.base import Generated, Limits, Upstream

__all__ = ["ObservedUpstream"]

logger = logging.getLogger(__name__)

T = TypeVar("T")


class ObservedUpstream:
    def __init__(self, model: str, inner: Upstream, *, metrics: Metrics, log_prompts: bool) -> None:
        self._model = model
        self._inner = inner
        self._metrics = metrics
        self._log_prompts = log_prompts
        self._in_flight = metrics.upstream_in_flight.labels(model)

    async def generate(self, prompt: str, parameters: GenerateParameters) -> Generated:
        self._log("prompt", prompt)
        request = self._began()
        self._in_flight.inc()
        started = time.perf_counter()
        try:
            generated = await self._inner.generate(prompt, parameters)
        except Exception as exc:
            self._failed(exc)
            raise
        finally:
            self._ended(request)
            self._in_flight.dec()
            self._metrics.upstream_duration.labels(self._model, "generate").observe(time.perf_counter() - started)
        details = generated.response.get("details")
        self._count(generated.prompt_tokens, details["generated_tokens"] if details is not None else 0)
        self._log("output", generated.response["generated_text"])
        return generated

    async def stream(self, prompt: str, parameters: GenerateParameters) -> AsyncIterator[list[StreamResponse]]:
        self._log("prompt", prompt)
        request = self._began()
        self._in_flight.inc()
        started = time.perf_counter()
        waiting = True
        tokens = 0
        final: StreamDetails | None = None
        output: list[str] | None = [] if self._log_prompts else None
        events = self._inner.stream(prompt, parameters)
        try:
            async for batch in events:
                if waiting:  # the first token: the request stops waiting on this call
                    waiting = False
                    self._ended(request)
                    self._metrics.first_token.labels(self._model).observe(time.perf_counter() - started)
                tokens += len(batch)
                final = batch[-1]["details"] or final
                if output is not None:
                    output.extend(event["token"]["text"] for event in batch)
                yield batch
        except Exception as exc:
            self._failed(exc)
            raise
        finally:
            if waiting:
                self._ended(request)
            self._in_flight.dec()
            self._metrics.upstream_duration.labels(self._model, "stream").observe(time.perf_counter() - started)
            # A stream the proxy closes early (a stop string, a client gone) never sees TGI's final details.
            self._count(final.get("input_length") if final is not None else None, tokens)
            if output is not None:
                self._log("output", "".join(output))
            await _close(events)  # closing this iterator must close the upstream request

    async def limits(self) -> Limits:
        return await self._waited_on(self._inner.limits())

    async def count_tokens(self, prompt: str) -> int | None:
        return await self._waited_on(self._inner.count_tokens(prompt))

    async def healthy(self) -> bool:
        # `/ready` asks every model: that request is about none of them, so it is not labelled with this one.
        return await self._waited_on(self._inner.healthy(), labels_request=False)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def _began(self, *, labels_request: bool = True) -> RequestContext | None:
        request = current_request.get()
        if request is not None:
            if labels_request:
                request.model = self._model
            request.upstream_wait_began()
        return request

    @staticmethod
    def _ended(request: RequestContext | None) -> None:
        if request is not None:
            request.upstream_wait_ended()

    async def _waited_on(self, call: Awaitable[T], *, labels_request: bool = True) -> T:
        request = self._began(labels_request=labels_request)
        try:
            return await call
        finally:
            self._ended(request)

    def _failed(self, exc: Exception) -> None:
        kind = (exc.code or type(exc).__name__) if isinstance(exc, ProxyError) else "unexpected"
        self._metrics.upstream_errors.labels(self._model, kind).inc()

    def _count(self, prompt_tokens: int | None, completion_tokens: int) -> None:
        if prompt_tokens:
            self._metrics.prompt_tokens.labels(self._model).inc(prompt_tokens)
        if completion_tokens:
            self._metrics.completion_tokens.labels(self._model).inc(completion_tokens)

    def _log(self, what: str, text: str) -> None:
        if self._log_prompts:
            logger.info(what, extra=fields(model=self._model, text=text))


async def _close(events: AsyncIterator[Any]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()
