"""The SSE response: sse-starlette's `EventSourceResponse`, with one rule added: nothing after the last chunk.

sse-starlette sends its keep-alive comment from a task of its own, which can win the race against the end of
the response and put `: ping` after the stream's end (`data: [DONE]`; seen in a soak run with a short
interval). Some clients compare the last bytes, so once the body's last chunk is known (the body marks it in
`ending.final` before it yields it), only that chunk and the end of the body go out. The framing bytes
themselves are the body's (`server.generation.framing`); this module only sends them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from sse_starlette import EventSourceResponse
from starlette.types import Message, Receive, Scope, Send

__all__ = ["Ending", "SSEResponse"]

# Cache-Control as OpenAI sends it; X-Accel-Buffering stops nginx from buffering the stream.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class Ending(Protocol):
    """Where a body marks its last chunk, before it yields it."""

    @property
    def final(self) -> bytes | None: ...


class SSEResponse(EventSourceResponse):
    def __init__(self, body: AsyncIterator[bytes], *, ending: Ending, ping_seconds: float) -> None:
        super().__init__(body, headers=HEADERS, sep="\n", ping=ping_seconds)
        self._ending = ending

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        sent_final = False
        ending = self._ending

        async def send_until_done(message: Message) -> None:
            nonlocal sent_final
            if message["type"] == "http.response.body" and message.get("more_body", False):
                final = ending.final
                if final is not None:
                    if sent_final or message.get("body") != final:
                        return  # a keep-alive that raced the end
                    sent_final = True
            await send(message)

        await super().__call__(scope, receive, send_until_done)

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        # sse-starlette wraps every send in `anyio.move_on_after(send_timeout)`, a cancel scope per chunk even
        # with no timeout set (this response sets none): about 8 us of a token's 30 here (bench/RESULTS.md).
        # A client that stops reading is still noticed: uvicorn's send waits on the socket, and the
        # disconnect listener cancels the response when the client goes.
        await send(message)
