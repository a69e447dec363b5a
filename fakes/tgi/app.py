"""``FakeTGI``: the ASGI application serving TGI's routes, recording requests and streaming generations.

A receive-listener runs next to the token loop and the fake stops generating as soon as the client
disconnects, like TGI.  404/405 have empty bodies like axum.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from fakes.tgi.asgi import (
    DISCONNECTED,
    ASGIApp,
    Headers,
    Receive,
    Scope,
    Send,
    _Exchange,
    _send_simple,
    read_body,
)
from fakes.tgi.errors import Rejection, TGIError, generation_error, incomplete_generation_error, overloaded_error
from fakes.tgi.fixtures import split_sse_events
from fakes.tgi.model import Generation, run_model, tokenize
from fakes.tgi.records import RecordedRequest, StreamRecord
from fakes.tgi.request import GenerateRequest, parse_generate_request
from fakes.tgi.settings import FakeTGISettings
from fakes.tgi.validation import ValidRequest, check_endpoint_rules, validate
from fakes.tgi.wire import JSON_HEADERS, TEXT_HEADERS, default_fail_body, generate_response, stream_event

_ROUTES: dict[str, str] = {
    "/generate_stream": "POST",
    "/generate": "POST",
    "/tokenize": "POST",
    "/info": "GET",
    "/health": "GET",
}


@dataclass(eq=False, repr=False)
class FakeTGI(FakeTGISettings):
    """The fake upstream.  ``FakeTGI(token_delay=0.1)``; ``fake.app`` (or ``fake``) is the ASGI app."""

    requests: list[RecordedRequest] = field(default_factory=list, init=False)
    streams: list[StreamRecord] = field(default_factory=list, init=False)
    _disconnect_seen: threading.Event = field(default_factory=threading.Event, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)
    _in_flight: int = field(default=0, init=False, repr=False)
    _failures_sent: int = field(default=0, init=False, repr=False)
    _rng: random.Random = field(default_factory=lambda: random.Random(0), init=False, repr=False)

    # -- public helpers -----------------------------------------------------------------------------

    def __repr__(self) -> str:
        return (
            f"FakeTGI(model_id={self.model_id!r}, requests={len(self.requests)}, "
            f"streams={[record.outcome for record in self.streams]}, in_flight={self._in_flight})"
        )

    @property
    def app(self) -> ASGIApp:
        return self  # the instance itself, so servers detect an ASGI 3 app via its async __call__

    @property
    def in_flight(self) -> int:
        """Generations currently admitted (counted against ``max_concurrent_requests``)."""
        return self._in_flight

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [request for request in self.requests if request.path == path]

    def wait_for_disconnect(self, timeout: float) -> bool:
        """Block (any thread) until some client disconnected during a generation."""
        return self._disconnect_seen.wait(timeout)

    async def await_disconnect(self, timeout: float) -> bool:
        """``wait_for_disconnect`` for async tests (waits in a worker thread)."""
        return await asyncio.to_thread(self._disconnect_seen.wait, timeout)

    def reset(self) -> None:
        """Forget recorded requests, streams and disconnects (settings are kept)."""
        self.requests.clear()
        self.streams.clear()
        self._disconnect_seen.clear()

    def info(self) -> dict[str, Any]:
        return {
            "model_id": self.model_id,
            "max_input_tokens": self.max_input_tokens,
            "max_total_tokens": self.max_total_tokens,
            "max_stop_sequences": self.max_stop_sequences,
            "max_top_n_tokens": self.max_top_n_tokens,
            "max_best_of": self.max_best_of,
            "max_concurrent_requests": self.max_concurrent_requests,
            "max_client_batch_size": self.max_client_batch_size,
            "validation_workers": self.validation_workers,
            "router": "text-generation-router",
            "version": self.version,
        }

    # -- ASGI entry point ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        method: str = scope["method"]
        body = await read_body(receive)
        if body is None:
            return
        request = self._record(scope, body)
        allowed = _ROUTES.get(path)
        if allowed is None:
            await _send_simple(send, 404)
        elif method != allowed:
            await _send_simple(send, 405, headers=[(b"allow", allowed.encode())])
        elif path in ("/generate_stream", "/generate"):
            await self._serve_generation(request, receive, send, stream=path == "/generate_stream")
        elif path == "/tokenize":
            await self._serve_tokenize(request, send)
        elif path == "/info":
            await _send_simple(send, 200, orjson.dumps(self.info()), JSON_HEADERS)
        elif self.healthy:
            await _send_simple(send, 200)
        else:
            body = orjson.dumps({"error": "unhealthy", "error_type": "healthcheck"})
            await _send_simple(send, 503, body, JSON_HEADERS)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return

    def _record(self, scope: Scope, body: bytes) -> RecordedRequest:
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope["headers"]}
        try:
            parsed = orjson.loads(body) if body else None
        except orjson.JSONDecodeError:
            parsed = None
        request = RecordedRequest(scope["method"], scope["path"], headers, parsed, body, time.monotonic())
        self.requests.append(request)
        return request

    async def _serve_tokenize(self, request: RecordedRequest, send: Send) -> None:
        try:
            parsed = parse_generate_request(request.headers.get("content-type"), request.raw_body)
        except Rejection as err:
            await _send_simple(send, err.status, err.message.encode(), TEXT_HEADERS)
            return
        pieces = [piece.to_json() for piece in tokenize(parsed.inputs)]
        await _send_simple(send, 200, orjson.dumps(pieces), JSON_HEADERS)

    # -- generation endpoints -----------------------------------------------------------------------

    async def _serve_generation(self, request: RecordedRequest, receive: Receive, send: Send, *, stream: bool) -> None:
        record = StreamRecord(request.path, stream, request, started_at=time.monotonic())
        self.streams.append(record)

        def on_disconnect() -> None:
            record.disconnected_at = time.monotonic()
            self._disconnect_seen.set()

        exchange = _Exchange(receive, send, on_disconnect)
        outcome = "crashed"
        try:
            outcome = await self._generation_outcome(exchange, request, record, stream=stream)
        finally:
            await exchange.stop_listening()
            record._finish(DISCONNECTED if record.disconnected else outcome)

    async def _generation_outcome(
        self, exchange: _Exchange, request: RecordedRequest, record: StreamRecord, *, stream: bool
    ) -> str:
        if not await exchange.pause(self.headers_delay):
            return DISCONNECTED
        if self.fail_status is not None and (self.fail_times is None or self._failures_sent < self.fail_times):
            self._failures_sent += 1
            await self._send_failure(exchange, self.fail_status)
            return "failed"
        if stream and self.replay_sse is not None:
            return await self._replay(exchange, record, self.replay_sse)
        try:
            parsed = parse_generate_request(request.headers.get("content-type"), request.raw_body)
        except Rejection as err:
            await exchange.respond(err.status, err.message.encode(), TEXT_HEADERS)
            return "rejected"
        if stream:
            return await self._stream(exchange, parsed, record)
        return await self._generate(exchange, parsed, record)

    @contextlib.contextmanager
    def _admitted(self, request: GenerateRequest, *, stream: bool) -> Iterator[ValidRequest]:
        """Endpoint checks, then a concurrency permit (overloaded), then validation - TGI's order."""
        check_endpoint_rules(self, request.parameters, stream=stream)
        with self._lock:
            if self._in_flight >= self.max_concurrent_requests:
                raise overloaded_error()
            self._in_flight += 1
        try:
            yield validate(self, request, self._rng)
        finally:
            with self._lock:
                self._in_flight -= 1

    async def _stream(self, exchange: _Exchange, request: GenerateRequest, record: StreamRecord) -> str:
        if not await exchange.start(200, self._stream_headers(request.inputs)):
            return DISCONNECTED
        try:
            with self._admitted(request, stream=True) as valid:
                generation = run_model(self, valid)
                for position in range(len(generation.tokens)):
                    if not await exchange.pause(self.token_delay):
                        return DISCONNECTED
                    if self.error_event_after is not None and position >= self.error_event_after:
                        raise generation_error()
                    if self.eof_after is not None and position >= self.eof_after:
                        await exchange.finish()
                        return "eof"
                    if self.stall_after is not None and position >= self.stall_after:
                        await exchange.pause(3600)  # returns when the client disconnects
                        return DISCONNECTED
                    event = stream_event(valid, generation, position, legacy=self.framing == "legacy")
                    if not await self._send_event(exchange, record, orjson.dumps(event)):
                        return DISCONNECTED
                    record.tokens_generated += 1
        except TGIError as err:
            await self._send_event(exchange, record, err.payload())
            await exchange.finish()
            return err.outcome
        await exchange.finish()
        return "complete"

    async def _generate(self, exchange: _Exchange, request: GenerateRequest, record: StreamRecord) -> str:
        started = time.monotonic()
        try:
            with self._admitted(request, stream=False) as valid:
                seeds = [valid.seed] + [self._rng.getrandbits(64) for _ in range(valid.best_of - 1)]
                generations = [run_model(self, valid, seed) for seed in seeds]
                for position in range(len(generations[0].tokens)):
                    if not await exchange.pause(self.token_delay):
                        return DISCONNECTED
                    if self.error_event_after is not None and position >= self.error_event_after:
                        raise generation_error()
                    if self.eof_after is not None and position >= self.eof_after:
                        raise incomplete_generation_error()
                    record.tokens_generated += 1
        except TGIError as err:
            await exchange.respond(err.status, err.payload(), JSON_HEADERS)
            return err.outcome
        body = orjson.dumps(generate_response(valid, generations))
        headers = self._generate_headers(valid, generations[0], time.monotonic() - started)
        return "complete" if await exchange.respond(200, body, headers) else DISCONNECTED

    async def _replay(self, exchange: _Exchange, record: StreamRecord, body: bytes) -> str:
        if not await exchange.start(200, self._stream_headers("")):
            return DISCONNECTED
        for chunk in split_sse_events(body):
            if not await exchange.pause(self.token_delay) or not await exchange.write(chunk):
                return DISCONNECTED
            record.events_sent += 1
        await exchange.finish()
        return "replayed"

    async def _send_event(self, exchange: _Exchange, record: StreamRecord, payload: bytes) -> bool:
        eol = self.line_ending.encode()
        chunk = (b"data:" if self.framing == "legacy" else b"data: ") + payload + eol + eol
        if self.keepalive_every > 0 and (record.events_sent + 1) % self.keepalive_every == 0:
            chunk = b":" + eol + eol + chunk
        if not await exchange.write(chunk):
            return False
        record.events_sent += 1
        return True

    async def _send_failure(self, exchange: _Exchange, status: int) -> None:
        body = self.fail_body if self.fail_body is not None else default_fail_body(status, self.model_id)
        payload = body if isinstance(body, bytes) else orjson.dumps(body)
        extra = [(name.lower().encode(), value.encode()) for name, value in self.fail_headers.items()]
        headers = extra if any(name == b"content-type" for name, _ in extra) else [*JSON_HEADERS, *extra]
        await exchange.respond(status, payload, headers)

    @staticmethod
    def _stream_headers(inputs: str) -> Headers:
        return [
            (b"content-type", b"text/event-stream"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            (b"x-compute-type", b"gpu+optimized"),
            (b"x-compute-characters", str(len(inputs)).encode()),
        ]

    @staticmethod
    def _generate_headers(request: ValidRequest, generation: Generation, elapsed: float) -> Headers:
        total_ms = int(elapsed * 1000)
        per_token_ms = total_ms // max(1, len(generation.tokens))
        values = {
            "content-type": "application/json",
            "x-compute-type": "gpu+optimized",
            "x-compute-time": f"{elapsed:.9f}",
            "x-compute-characters": str(len(request.inputs)),
            "x-total-time": str(total_ms),
            "x-validation-time": "0",
            "x-queue-time": "0",
            "x-inference-time": str(total_ms),
            "x-time-per-token": str(per_token_ms),
            "x-prompt-tokens": str(request.input_length),
            "x-generated-tokens": str(len(generation.tokens)),
        }
        return [(name.encode(), value.encode()) for name, value in values.items()]
