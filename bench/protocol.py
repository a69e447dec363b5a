"""The asyncio protocol under the fake TGI and the load generator: HTTP/1.1 parsed by httptools as it arrives."""

from __future__ import annotations

import asyncio
from typing import Generic, TypeVar, cast

import httptools

__all__ = ["HTTPProtocol"]

P = TypeVar("P", httptools.HttpRequestParser, httptools.HttpResponseParser)


class HTTPProtocol(asyncio.Protocol, Generic[P]):
    """Feeds what arrives to `self.parser`, which calls the subclass's `on_*` methods; bytes that are not HTTP
    go to `malformed`."""

    def __init__(self, parser: P) -> None:
        self.parser: P = parser
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's are not subclasses, but are as good

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.malformed()

    def malformed(self) -> None:
        if self.transport is not None:
            self.transport.close()
