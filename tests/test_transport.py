"""LeanTransport on real sockets, against a raw asyncio server that writes exactly the bytes each case needs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from server.upstream.http import _lean_mounts
from server.upstream.transport import LeanTransport

pytestmark = pytest.mark.sockets

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

OK_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class Upstream:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.closed = asyncio.Event()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self.handler(reader, writer)
        except asyncio.CancelledError:
            pass  # the server is shutting down at the end of a test: not an error of the case
        finally:
            writer.close()
            self.closed.set()


@asynccontextmanager
async def upstream(handler: Handler) -> AsyncIterator[tuple[Upstream, httpx.AsyncClient]]:
    state = Upstream(handler)
    server = await asyncio.start_server(state.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    transport = LeanTransport(max_connections=4)
    async with server, httpx.AsyncClient(transport=transport, base_url=f"http://127.0.0.1:{port}") as client:
        yield state, client


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return head + await reader.readexactly(int(line.split(b":")[1]))
    return head


async def answer_forever(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while True:
        try:
            request = await read_request(reader)
        except asyncio.IncompleteReadError:
            return
        body = request.split(b"\r\n\r\n", 1)[1] or b"empty"
        writer.write(b"HTTP/1.1 200 OK\r\nx-echo: yes\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))


async def test_keep_alive_reuses_one_connection_and_sends_the_body() -> None:
    async with upstream(answer_forever) as (state, client):
        for n in range(3):
            response = await client.post("/generate", content=b'{"n":%d}' % n)
            assert response.status_code == 200 and response.headers["x-echo"] == "yes"
            assert response.content == b'{"n":%d}' % n
        assert state.connections == 1


async def test_a_burst_of_chunks_is_handed_over_in_one_piece() -> None:
    events = [b'data: {"token": %d}\n\n' % n for n in range(50)]

    async def burst(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK_HEAD + b"".join(chunk(event) for event in events) + b"0\r\n\r\n")
        await writer.drain()

    async with upstream(burst) as (_, client), client.stream("POST", "/generate_stream", content=b"{}") as response:
        pieces = [piece async for piece in response.aiter_raw()]
    assert b"".join(pieces) == b"".join(events)
    assert len(pieces) < 5  # one per socket read, not one per chunk


async def test_a_body_without_length_runs_until_the_connection_closes() -> None:
    async def until_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nall of it")
        await writer.drain()

    async with upstream(until_eof) as (state, client):
        assert (await client.get("/info")).content == b"all of it"
        assert (await client.get("/info")).content == b"all of it"
        assert state.connections == 2


async def test_an_idle_connection_closed_by_the_upstream_is_not_reused() -> None:
    async def one_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await writer.drain()

    async with upstream(one_answer) as (state, client):
        assert (await client.get("/health")).content == b"ok"
        await state.closed.wait()
        await asyncio.sleep(0.05)  # the close reaches the idle connection
        assert (await client.get("/health")).content == b"ok"
        assert state.connections == 2


async def test_a_cut_mid_body_is_an_error_for_the_reader() -> None:
    async def cut(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK_HEAD + chunk(b"data: {}\n\n") + b"20\r\npartial")
        await writer.drain()

    async with upstream(cut) as (_, client), client.stream("POST", "/generate_stream", content=b"{}") as response:
        received = b""
        with pytest.raises(httpx.RemoteProtocolError):
            async for piece in response.aiter_raw():
                received += piece
    assert received.startswith(b"data: {}\n\n")


async def test_no_answer_at_all_is_a_protocol_error() -> None:
    async def hang_up(reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> None:
        await read_request(reader)

    async with upstream(hang_up) as (_, client):
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post("/generate", content=b"{}")


async def test_garbage_is_a_protocol_error() -> None:
    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(1)

    async with upstream(garbage) as (_, client):
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post("/generate", content=b"{}")


async def test_read_timeout_and_connect_errors_are_httpx_errors() -> None:
    async def silent(reader: asyncio.StreamReader, _: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(5)

    async with upstream(silent) as (_, client):
        with pytest.raises(httpx.ReadTimeout):
            await client.get("/health", timeout=0.2)
    async with upstream(answer_forever) as (_, client):
        with pytest.raises(httpx.ConnectError):
            await client.get("http://127.0.0.1:1/health")


async def test_closing_a_stream_early_closes_its_connection() -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(OK_HEAD)
        while not reader.at_eof():
            writer.write(chunk(b"data: {}\n\n"))
            await writer.drain()
            await asyncio.sleep(0.01)

    async with upstream(endless) as (state, client):
        async with client.stream("POST", "/generate_stream", content=b"{}") as response:
            await anext(response.aiter_raw())
        await asyncio.wait_for(state.closed.wait(), 2)


async def test_a_slow_reader_gets_every_byte_of_a_large_body() -> None:
    body = bytes(range(256)) * 8192  # 2 MiB: reading pauses above the high-water mark, then resumes

    async def large(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(body) + body)
        await writer.drain()

    async with upstream(large) as (_, client), client.stream("GET", "/big") as response:
        received = []
        async for piece in response.aiter_raw():
            received.append(piece)
            await asyncio.sleep(0.001)
    assert b"".join(received) == body


async def test_requests_beyond_the_connection_limit_wait_for_a_free_one() -> None:
    release = asyncio.Event()

    async def held(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                await read_request(reader)
            except asyncio.IncompleteReadError:
                return
            await release.wait()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")

    server_state = Upstream(held)
    server = await asyncio.start_server(server_state.serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server, httpx.AsyncClient(transport=LeanTransport(max_connections=1)) as client:
        first = asyncio.create_task(client.get(f"http://127.0.0.1:{port}/a"))
        await asyncio.sleep(0.05)
        with pytest.raises(httpx.PoolTimeout):
            await client.get(f"http://127.0.0.1:{port}/b", timeout=httpx.Timeout(5, pool=0.1))
        release.set()
        assert (await first).content == b"ok"
        assert (await client.get(f"http://127.0.0.1:{port}/c")).content == b"ok"
        assert server_state.connections == 1


def test_a_proxy_in_the_environment_leaves_plain_http_to_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    assert isinstance(_lean_mounts(8)["http://"], LeanTransport)
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.internal:3128")
    assert _lean_mounts(8) == {}
