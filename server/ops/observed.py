"""An `Upstream` watched from outside: every call of a served model goes through here (`build_registry`).

It records, per model: upstream latency, time to first token, tokens in and out as the upstream reports them,
upstream calls in flight, and failed calls by error code; it tells the current request how long it waited on
the upstream (for the proxy's overhead figure) and which model it reached; and with `server.log_prompts` it
logs prompts and outputs. It delegates everything else, so it works over any upstream kind.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

import orjson

from server.context import RequestContext, current_request
from server.errors import ProxyError
from server.ops.logs import fields
from server.ops.metrics import Metrics
from server.upstream.base import Generated, Limits, Relay, Upstream
from server.upstream.kinds import Backend, Relayed, Translated
from server.upstream.openai_wire import Chunk, choices_of, content_of, usage_counts
from server.upstream.tgi_wire import GenerateParameters, StreamDetails, StreamResponse

__all__ = ["ObservedRelay", "ObservedUpstream", "observer"]

logger = logging.getLogger("server.observed")  # a name in the log interface (README, "Logs")

T = TypeVar("T")
E = TypeVar("E")
E_in = TypeVar("E_in", contravariant=True)


class _StreamCount(Protocol[E_in]):
    """What a watched stream adds up to: its token counts, and its text when prompts are logged."""

    def add(self, batch: Sequence[E_in]) -> None: ...

    def counts(self) -> tuple[int | None, int]: ...

    def text(self) -> str: ...


class _Observer:
    """What both watched kinds share: request labelling and waits, metrics, prompt logs."""

    def __init__(self, model: str, *, metrics: Metrics, log_prompts: bool) -> None:
        self._model = model
        self._metrics = metrics
        self._log_prompts = log_prompts
        self._in_flight = metrics.upstream_in_flight.labels(model)

    async def _whole(self, call: Awaitable[T]) -> T:
        request = self._began()
        self._in_flight.inc()
        started = time.perf_counter()
        try:
            return await call
        except Exception as exc:
            self._failed(exc)
            raise
        finally:
            self._ended(request)
            self._in_flight.dec()
            self._metrics.upstream_duration.labels(self._model, "generate").observe(time.perf_counter() - started)

    async def _stream(self, events: AsyncIterator[list[E]], tally: _StreamCount[E]) -> AsyncIterator[list[E]]:
        request = self._began()
        self._in_flight.inc()
        started = time.perf_counter()
        waiting = True
        try:
            async for batch in events:
                if waiting:  # the first token: the request stops waiting on this call
                    waiting = False
                    self._ended(request)
                    self._metrics.first_token.labels(self._model).observe(time.perf_counter() - started)
                tally.add(batch)
                yield batch
        except Exception as exc:
            self._failed(exc)
            raise
        finally:
            try:
                await _close(events)  # closing this iterator must close the upstream request
            finally:  # the call counts as in flight until its connection is closed
                if waiting:
                    self._ended(request)
                self._in_flight.dec()
                self._metrics.upstream_duration.labels(self._model, "stream").observe(time.perf_counter() - started)
                self._count(*tally.counts())
                self._log("output", tally.text())

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


class ObservedUpstream(_Observer):
    def __init__(self, model: str, inner: Upstream, *, metrics: Metrics, log_prompts: bool) -> None:
        super().__init__(model, metrics=metrics, log_prompts=log_prompts)
        self._inner = inner

    async def generate(self, prompt: str, parameters: GenerateParameters) -> Generated:
        self._log("prompt", prompt)
        generated = await self._whole(self._inner.generate(prompt, parameters))
        details = generated.response.get("details")
        self._count(generated.prompt_tokens, details["generated_tokens"] if details is not None else 0)
        self._log("output", generated.response["generated_text"])
        return generated

    def stream(self, prompt: str, parameters: GenerateParameters) -> AsyncIterator[list[StreamResponse]]:
        self._log("prompt", prompt)
        return self._stream(self._inner.stream(prompt, parameters), _TokenTally(keep_text=self._log_prompts))

    async def limits(self) -> Limits:
        return await self._waited_on(self._inner.limits())

    async def count_tokens(self, prompt: str) -> int | None:
        return await self._waited_on(self._inner.count_tokens(prompt))

    async def healthy(self) -> bool:
        # `/ready` asks every model: that request is about none of them, so it is not labelled with this one.
        return await self._waited_on(self._inner.healthy(), labels_request=False)

    async def aclose(self) -> None:
        await self._inner.aclose()


class ObservedRelay(_Observer):
    """The same watch over an OpenAI-style upstream (kind `openai`); counts are the upstream's `usage`."""

    def __init__(self, model: str, inner: Relay, *, metrics: Metrics, log_prompts: bool) -> None:
        super().__init__(model, metrics=metrics, log_prompts=log_prompts)
        self._inner = inner

    async def complete(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        self._log("prompt", _request_text(body))
        answer = await self._whole(self._inner.complete(path, body))
        tally = _UsageTally(keep_text=self._log_prompts)
        tally.add([answer])
        self._count(*tally.counts())
        self._log("output", tally.text())
        return answer

    def stream(self, path: str, body: dict[str, Any]) -> AsyncIterator[list[dict[str, Any]]]:
        self._log("prompt", _request_text(body))
        return self._stream(self._inner.stream(path, body), _UsageTally(keep_text=self._log_prompts))

    async def healthy(self) -> bool:
        return await self._waited_on(self._inner.healthy(), labels_request=False)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _TokenTally:
    """TGI events: one per token; the final one's details carry the prompt length."""

    def __init__(self, *, keep_text: bool) -> None:
        self._tokens = 0
        self._final: StreamDetails | None = None
        self._text: list[str] | None = [] if keep_text else None

    def add(self, batch: Sequence[StreamResponse]) -> None:
        self._tokens += len(batch)
        self._final = batch[-1]["details"] or self._final
        if self._text is not None:
            self._text.extend(event["token"]["text"] for event in batch)

    def counts(self) -> tuple[int | None, int]:
        # A stream the proxy closes early (a stop string, a client gone) never sees TGI's final details.
        return (self._final.get("input_length") if self._final is not None else None), self._tokens

    def text(self) -> str:
        return "".join(self._text or ())


class _UsageTally:
    """OpenAI-style chunks or answers: counts from `usage`, when the upstream sends it."""

    def __init__(self, *, keep_text: bool) -> None:
        self._prompt: int | None = None
        self._completion = 0
        self._text: list[str] | None = [] if keep_text else None

    def add(self, batch: Sequence[Chunk]) -> None:
        for chunk in batch:
            counts = usage_counts(chunk)
            if counts is not None:
                self._prompt, self._completion = counts
            if self._text is not None:
                for choice in choices_of(chunk):
                    piece = content_of(choice)
                    if piece:
                        self._text.append(piece)

    def counts(self) -> tuple[int | None, int]:
        return self._prompt, self._completion

    def text(self) -> str:
        return "".join(self._text or ())


def _request_text(body: dict[str, Any]) -> str:
    return orjson.dumps(body.get("messages", body.get("prompt"))).decode()


async def _close(events: AsyncIterator[Any]) -> None:
    aclose = getattr(events, "aclose", None)
    if aclose is not None:
        await aclose()


def observer(metrics: Metrics, *, log_prompts: bool) -> Callable[[str, Backend], Backend]:
    """What `build_registry` wraps every model's backend with."""

    def observe(model: str, backend: Backend) -> Backend:
        match backend:
            case Translated(upstream=upstream, in_process=in_process):
                watched = ObservedUpstream(model, upstream, metrics=metrics, log_prompts=log_prompts)
                return Translated(watched, in_process=in_process)
            case Relayed(relay=relay):
                return Relayed(ObservedRelay(model, relay, metrics=metrics, log_prompts=log_prompts))

    return observe
