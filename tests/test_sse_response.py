"""SSEResponse: OpenAI framing, and nothing after `data: [DONE]` even when a keep-alive is due."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
from starlette.types import Receive, Scope, Send

from server.sse_response import DONE, SSEResponse


async def slow_tail() -> AsyncIterator[bytes]:
    yield b'data: {"a":1}\n\n'
    await asyncio.sleep(0.25)  # a keep-alive comment (every 0.1 s) belongs here...
    yield DONE
    await asyncio.sleep(0.25)  # ...but not here, after the end of the stream


async def test_keepalive_never_follows_done() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        await SSEResponse(slow_tail(), ping_seconds=0.1)(scope, receive, send)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://sse.test") as client:
        response = await client.get("/")
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache" and response.headers["x-accel-buffering"] == "no"
    body = response.content
    assert body.startswith(b'data: {"a":1}\n\n') and b": ping" in body  # pings do flow mid-stream
    assert body.endswith(b"\n\n" + DONE)
