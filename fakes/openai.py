"""A fake OpenAI-style upstream (TGI's Messages API, the HF router's `/v1`, vLLM) that replays recorded answers.

`stream_body` is served, event by event, to `"stream": true` requests (a recorded `.sse` tape, or
`sse_from_chunks` of a recorded snapshot); `answer` to the others, with `status`. Every request body is kept
in `requests`. It stops sending as soon as the client disconnects, like a real server.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import orjson

from fakes.tgi import Receive, Scope, Send, read_body, split_sse_events

JSON = [(b"content-type", b"application/json")]
SSE = [(b"content-type", b"text/event-stream")]


def sse_from_chunks(chunks: list[dict[str, Any]], *, done: bool = True) -> bytes:
    body = b"".join(b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chunks)
    return body + (b"data: [DONE]\n\n" if done else b"")


@dataclass(eq=False)
class FakeOpenAI:
    stream_body: bytes = b""
    answer: dict[str, Any] | bytes = field(default_factory=dict)
    status: int = 200
    chunk_delay: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)
    disconnects: int = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] == "GET" and scope["path"] == "/v1/models":
            await self._send(send, 200, {"object": "list", "data": [{"id": "tgi", "object": "model"}]})
            return
        if scope["path"] not in ("/v1/chat/completions", "/v1/completions"):
            await self._send(send, 404, {"error": "Not Found"})
            return
        body = await read_body(receive)
        if body is None:
            return
        request = orjson.loads(body)
        self.requests.append({"path": scope["path"], **request})
        if self.status != 200 or not request.get("stream"):
            await self._send(send, self.status, self.answer)
            return
        await send({"type": "http.response.start", "status": 200, "headers": SSE})
        gone = asyncio.ensure_future(_disconnected(receive))
        try:
            for event in split_sse_events(self.stream_body):
                if self.chunk_delay:
                    await asyncio.wait({gone}, timeout=self.chunk_delay)
                if gone.done():
                    self.disconnects += 1
                    return
                await send({"type": "http.response.body", "body": event, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            gone.cancel()

    @staticmethod
    async def _send(send: Send, status: int, body: dict[str, Any] | bytes) -> None:
        content = body if isinstance(body, bytes) else orjson.dumps(body)
        await send({"type": "http.response.start", "status": status, "headers": JSON})
        await send({"type": "http.response.body", "body": content})


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
