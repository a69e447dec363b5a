"""SSEResponse: OpenAI framing, and nothing after `data: [DONE]` even when a keep-alive is due."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import anyio
import httpx
import pytest
from starlette.types import Receive, Scope, Send

from server.edge.sse import SSEResponse
from server.generation.framing import DONE
from server.generation.run import StreamEnd


async def slow_tail(ending: StreamEnd) -> AsyncIterator[bytes]:
    yield b'data: {"a":1}\n\n'
    await asyncio.sleep(0.25)  # a keep-alive comment (every 0.1 s) belongs here...
    ending.final = DONE
    yield DONE
    await asyncio.sleep(0.25)  # ...but not here, after the end of the stream


async def test_keepalive_never_follows_done() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        ending = StreamEnd()
        await SSEResponse(slow_tail(ending), ending=ending, ping_seconds=0.1)(scope, receive, send)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sse.test") as client:
        response = await client.get("/")
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache" and response.headers["x-accel-buffering"] == "no"
    body = response.content
    assert body.startswith(b'data: {"a":1}\n\n') and b": ping" in body  # pings do flow mid-stream
    assert body.endswith(b"\n\n" + DONE)


async def test_chunks_are_sent_without_a_cancel_scope_each(monkeypatch: pytest.MonkeyPatch) -> None:
    """The per-send timeout scope sse-starlette opens is skipped (it cost a quarter of a token's CPU); the
    hook that does it must keep existing in the sse-starlette we install, or this fails."""
    scopes = 0
    real_move_on_after = anyio.move_on_after

    def counting_move_on_after(*args: Any, **kwargs: Any) -> anyio.CancelScope:
        nonlocal scopes
        scopes += 1
        return real_move_on_after(*args, **kwargs)

    monkeypatch.setattr(anyio, "move_on_after", counting_move_on_after)  # as sse-starlette calls it

    ending = StreamEnd()

    async def many() -> AsyncIterator[bytes]:
        for index in range(50):
            yield b'data: {"i":%d}\n\n' % index
        ending.final = DONE
        yield DONE

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await SSEResponse(many(), ending=ending, ping_seconds=15)(scope, receive, send)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sse.test") as client:
        response = await client.get("/")
    assert response.content.count(b"data: ") == 51
    assert scopes < 5
