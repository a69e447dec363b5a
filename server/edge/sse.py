"""The SSE response: sse-starlette's `EventSourceResponse`, with OpenAI's framing and one rule added.

sse-starlette sends its keep-alive comment from a task of its own, which can win the race against the end of
the response and put `: ping` after `data: [DONE]` (seen in a soak run with a short interval). OpenAI's
stream ends with `data: [DONE]`, and some clients compare the last bytes, so once `[DONE]` is sent nothing
but the end of the body goes out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from sse_starlette import EventSourceResponse
from starlette.types import Message, Receive, Scope, Send

__all__ = ["DONE", "SSEResponse"]

DONE = b"data: [DONE]\n\n"
# Cache-Control as OpenAI sends it; X-Accel-Buffering stops nginx from buffering the stream.
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class SSEResponse(EventSourceResponse):
    def __init__(self, body: AsyncIterator[bytes], *, ping_seconds: float) -> None:
        super().__init__(body, headers=HEADERS, sep="\n", ping=ping_seconds)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        done = False

        async def send_until_done(message: Message) -> None:
            nonlocal done
            if message["type"] == "http.response.body":
                if done and message.get("more_body", False):
                    return
                done = done or message.get("body", b"").endswith(DONE)
            await send(message)

        await super().__call__(scope, receive, send_until_done)

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        # sse-starlette wraps every send in `anyio.move_on_after(send_timeout)`, a cancel scope per chunk even
        # with no timeout set (this response sets none): about 8 us of a token's 30 here (bench/RESULTS.md).
        # A client that stops reading is still noticed: uvicorn's send waits on the socket, and the
        # disconnect listener cancels the response when the client goes.
        await send(message)
