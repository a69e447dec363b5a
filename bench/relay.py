"""The floor: a bare asyncio byte relay, `python -m bench.relay --port P --upstream-port Q`.

For each client connection it opens one connection to the upstream and copies bytes both ways, nothing else:
no parsing, no HTTP. What a proxy costs beyond this is what its features cost. When one side cannot keep up,
reading from the other pauses (asyncio's flow control), so nothing queues without bound.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Sequence
from typing import cast

from bench.runner import run

__all__ = ["main"]


class _Side(asyncio.Protocol):
    """One end of a relayed pair; what it receives is written to `peer`."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self._early: list[bytes] = []  # received before the peer was connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)
        else:
            self._early.append(data)

    def connection_lost(self, exc: Exception | None) -> None:
        del exc
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()

    def join(self, peer: _Side) -> None:
        self.peer, peer.peer = peer, self
        for data in self._early:
            self.data_received(data)
        self._early.clear()


class _Client(_Side):
    def __init__(self, upstream_port: int) -> None:
        super().__init__()
        self._upstream_port = upstream_port

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._connecting = asyncio.ensure_future(self._connect())  # held: the loop keeps only a weak one

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, upstream = await loop.create_connection(_Side, "127.0.0.1", self._upstream_port)
        except OSError:
            if self.transport is not None:
                self.transport.close()
            return
        self.join(upstream)


async def serve(port: int, upstream_port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Client(upstream_port), "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="A bare TCP byte relay (the benchmark's floor).")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream-port", type=int, required=True)
    args = parser.parse_args(argv)
    run(serve(args.port, args.upstream_port))


if __name__ == "__main__":
    main()
