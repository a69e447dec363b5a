"""Raw ASGI plumbing: the fake controls every byte and notices client disconnects while it generates."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]


DISCONNECTED = "disconnected"


class _Exchange:
    """One HTTP exchange after its body was read: sends, sleeps, and listens for ``http.disconnect``."""

    def __init__(self, receive: Receive, send: Send, on_disconnect: Callable[[], None]) -> None:
        self._receive = receive
        self._send = send
        self._on_disconnect = on_disconnect
        self.gone = asyncio.Event()
        self._listener = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        self._mark_gone()

    def _mark_gone(self) -> None:
        if not self.gone.is_set():
            self.gone.set()
            self._on_disconnect()

    async def stop_listening(self) -> None:
        """Must precede the final body message: servers report ``http.disconnect`` once it is sent."""
        self._listener.cancel()
        await asyncio.wait([self._listener])

    async def pause(self, seconds: float) -> bool:
        """Sleep ``seconds``; False as soon as the client disconnects."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return not self.gone.is_set()
        try:
            async with asyncio.timeout(seconds):
                await self.gone.wait()
        except TimeoutError:
            return True
        return False

    async def _emit(self, message: Message) -> bool:
        if self.gone.is_set():
            return False
        try:
            await self._send(message)
        except OSError:  # some servers raise on writes to a closed connection
            self._mark_gone()
        return not self.gone.is_set()

    async def start(self, status: int, headers: Headers) -> bool:
        return await self._emit({"type": "http.response.start", "status": status, "headers": headers})

    async def write(self, chunk: bytes) -> bool:
        return await self._emit({"type": "http.response.body", "body": chunk, "more_body": True})

    async def finish(self, chunk: bytes = b"") -> bool:
        await self.stop_listening()
        return await self._emit({"type": "http.response.body", "body": chunk, "more_body": False})

    async def respond(self, status: int, body: bytes, headers: Headers) -> bool:
        headers = [*headers, (b"content-length", str(len(body)).encode())]
        return await self.start(status, headers) and await self.finish(body)


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, None if the client disconnected first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _send_simple(send: Send, status: int, body: bytes = b"", headers: Headers | None = None) -> None:
    all_headers = [*(headers or []), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})
