"""A lean HTTP/1.1 transport for httpx, used for plain-HTTP upstreams (TGI beside the proxy).

httpx's own transport (httpcore + h11) costs about 0.5 ms of CPU per request here, and more as its pool grows:
each request polls every idle pooled socket for readability (encode/httpx#3215). It also hands a chunked body
over one HTTP chunk at a time, and TGI sends each token in a chunk of its own, so a burst of tokens crossed
half a dozen generator layers per token. This transport parses with httptools (llhttp, which uvicorn already
uses for the client side) inside an asyncio protocol, keeps idle connections in a LIFO list that notices a
closed socket when it happens, and hands the body over one socket read at a time. Figures: bench/RESULTS.md.

It does what the upstream calls need and no more: HTTP/1.1 over TCP, request bodies in memory, keep-alive,
connect/read/pool timeouts, flow control. TLS, proxies and HTTP/2 stay with httpx's transport (`server.upstream.http`
mounts this one for `http://` only, and only when no proxy is configured for it).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import cast

import httptools
import httpx

__all__ = ["LeanTransport"]

# Stop reading the socket while this much of a body waits for its reader: a slow reader slows the upstream.
_HIGH_WATER = 256 * 1024
_Origin = tuple[str, int]


class LeanTransport(httpx.AsyncBaseTransport):
    def __init__(self, *, max_connections: int) -> None:
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: dict[_Origin, list[_Connection]] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout", {})
        if self._slots.locked():
            try:
                async with asyncio.timeout(timeouts.get("pool")):
                    await self._slots.acquire()
            except TimeoutError:
                raise httpx.PoolTimeout("no connection became free in time", request=request) from None
        else:
            await self._slots.acquire()  # free: returns at once
        connection: _Connection | None = None
        try:
            connection = await self._connection(request, timeouts.get("connect"))
            body = await request.aread()
            connection.send(_head(request, len(body)) + body)
            await connection.headers_received(timeouts.get("read"), request)
        except BaseException:
            self._slots.release()
            if connection is not None:
                connection.close()
            raise
        return httpx.Response(
            connection.status,
            headers=connection.headers,
            stream=_Body(self, connection, timeouts.get("read"), request),
            extensions={"http_version": b"HTTP/1.1"},
        )

    async def aclose(self) -> None:
        self._closed = True
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    async def _connection(self, request: httpx.Request, connect_timeout: float | None) -> _Connection:
        origin = (request.url.host, request.url.port or 80)
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()  # the most recently used: the least likely to have been closed meanwhile
            if connection.reusable:
                connection.reset()
                return connection
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(connect_timeout):
                _, connection = await loop.create_connection(_Connection, *origin)
        except TimeoutError:
            raise httpx.ConnectTimeout("connecting to the upstream timed out", request=request) from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__, request=request) from None
        connection.origin = origin
        return connection

    def _release(self, connection: _Connection) -> None:
        """The response is closed: keep its connection for the next request if it is clean, else close it."""
        self._slots.release()
        if connection.reusable and not self._closed:
            self._idle.setdefault(connection.origin, []).append(connection)
        else:
            connection.close()


class _Body(httpx.AsyncByteStream):
    def __init__(
        self, pool: LeanTransport, connection: _Connection, read_timeout: float | None, request: httpx.Request
    ) -> None:
        self._pool = pool
        self._connection = connection
        self._read_timeout = read_timeout
        self._request = request
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (piece := await self._connection.body_piece(self._read_timeout, self._request)) is not None:
            yield piece

    async def aclose(self) -> None:
        if not self._released:
            self._released = True
            self._pool._release(self._connection)


class _Connection(asyncio.Protocol):
    """One TCP connection and the response being read on it; httptools calls the `on_*` methods."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self.origin: _Origin = ("", 0)
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self._pieces: list[bytes] = []
        self._buffered = 0
        self._headers_done = False
        self._keep_alive = False
        self._complete = False
        self._lost: BaseException | None = None  # why the connection ended, while a response was expected
        self._gone = False
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses, but are as good

    def data_received(self, data: bytes) -> None:
        if self._complete:  # bytes nobody asked for, on an idle connection: it cannot be trusted again
            self.close()
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._end(httpx.RemoteProtocolError(f"the upstream sent malformed HTTP ({exc})"))
            return
        if self._pieces or self._complete:
            self._wake()
        if self._buffered > _HIGH_WATER and self._transport is not None and not self._paused:
            self._paused = True
            self._transport.pause_reading()

    def eof_received(self) -> bool:
        self._end(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc)

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))  # whole: httptools joins a header split across reads

    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()
        self._keep_alive = self._parser.should_keep_alive()  # asked now: llhttp forgets it once the message ends
        self._headers_done = True
        self._wake()

    def on_body(self, body: bytes) -> None:
        self._pieces.append(body)
        self._buffered += len(body)

    def on_message_complete(self) -> None:
        self._complete = True

    # the transport's side

    @property
    def reusable(self) -> bool:
        return self._complete and self._keep_alive and not self._gone

    def reset(self) -> None:
        """Ready for the next request on this kept-alive connection."""
        self._parser = httptools.HttpResponseParser(self)
        self.status = 0
        self.headers = []
        self._headers_done = self._complete = False
        self._pieces.clear()
        self._buffered = 0

    def send(self, data: bytes) -> None:
        assert self._transport is not None
        self._transport.write(data)

    async def headers_received(self, timeout: float | None, request: httpx.Request) -> None:
        while not self._headers_done:
            await self._wait(timeout, request)

    async def body_piece(self, timeout: float | None, request: httpx.Request) -> bytes | None:
        """What has arrived of the body since the last call, all of it in one piece; None at its end."""
        while not self._pieces:
            if self._complete:
                return None
            await self._wait(timeout, request)
        piece = self._pieces[0] if len(self._pieces) == 1 else b"".join(self._pieces)
        self._pieces.clear()
        self._buffered = 0
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return piece

    def close(self) -> None:
        self._gone = True
        if self._transport is not None:
            self._transport.close()

    async def _wait(self, timeout: float | None, request: httpx.Request) -> None:
        if self._lost is not None:  # raised afresh for this request, as httpx's own errors carry theirs
            kind = type(self._lost) if isinstance(self._lost, httpx.TransportError) else httpx.ReadError
            raise kind(str(self._lost) or type(self._lost).__name__, request=request)
        if self._gone:
            raise httpx.RemoteProtocolError("the upstream closed the connection mid-answer", request=request)
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            if timeout is None:  # streams: the caller's watchdog keeps the deadlines, no timer per read
                await self._waiter
            else:
                async with asyncio.timeout(timeout):
                    await self._waiter
        except TimeoutError:
            raise httpx.ReadTimeout("the upstream did not answer in time", request=request) from None
        finally:
            self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _end(self, exc: BaseException | None) -> None:
        """The connection is closing. A body that runs until the connection closes ends here; anything else
        still expected is lost, which the reader learns when it next waits."""
        if self._gone:
            return
        self._gone = True
        if not self._complete:
            if self._headers_done and not _has_length(self.headers) and exc is None:
                self._complete = True  # no Content-Length, not chunked: the body was everything until EOF
            else:
                self._lost = exc or httpx.RemoteProtocolError("the upstream closed the connection mid-answer")
        self._wake()
        if self._transport is not None:
            with contextlib.suppress(Exception):
                self._transport.close()


def _has_length(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(name.lower() in (b"content-length", b"transfer-encoding") for name, _ in headers)


def _head(request: httpx.Request, body_length: int) -> bytes:
    """The request line and headers, as httpx built them (Host, Content-Length and the client's own)."""
    target = request.url.raw_path
    lines = [b"%s %s HTTP/1.1\r\n" % (request.method.encode(), target)]
    has_length = False
    for name, value in request.headers.raw:
        has_length = has_length or name.lower() == b"content-length"
        lines.append(b"%s: %s\r\n" % (name, value))
    if not has_length and body_length:
        lines.append(b"content-length: %d\r\n" % body_length)
    lines.append(b"\r\n")
    return b"".join(lines)
