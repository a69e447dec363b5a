"""A fake TGI fast enough never to be the bottleneck: `python -m bench.fake_tgi --port P`.

Routes: `POST /generate_stream`, `POST /generate`, `POST /v1/chat/completions` (stream or not), `GET /info`,
`GET /health`. An answer has as many tokens as the request's `parameters.max_new_tokens` (native) or
`max_tokens` (chat) ask for (default 256). Answers are pre-encoded (`bench.wire`); a request costs one JSON
parse, and each token is one socket write from a loop callback (no task per stream): after the delay the prompt
asks for (`[delay 10 ms]` anywhere in it, which reaches the fake through any proxy; else `--delay-ms`), or with
no delay on the loop's next turn, so that open streams take turns as in TGI's batches. A client that leaves
stops the writing.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from collections.abc import Sequence
from typing import Any

import httptools
import orjson

from bench.protocol import HTTPProtocol
from bench.runner import run
from bench.wire import MODEL, Answers, Stream, recorded_tokens

__all__ = ["FakeTGI", "main"]

DEFAULT_TOKENS = 256
INFO = orjson.dumps(
    {
        "model_id": MODEL,
        "model_dtype": "torch.float16",
        "max_concurrent_requests": 4096,
        "max_best_of": 2,
        "max_stop_sequences": 4,
        "max_input_tokens": 4095,
        "max_total_tokens": 8192,
        "max_top_n_tokens": 5,
        "validation_workers": 2,
        "version": "3.0.1-native",
    }
)


DELAY_MARK = re.compile(rb"\[delay (\d+) ms\]")


class FakeTGI:
    def __init__(self, delay: float) -> None:
        self.delay = delay  # seconds, for prompts that ask for none
        self.answers = Answers(recorded_tokens())

    def protocol(self) -> _Connection:
        return _Connection(self)


class _Connection(HTTPProtocol[httptools.HttpRequestParser]):
    def __init__(self, fake: FakeTGI) -> None:
        super().__init__(httptools.HttpRequestParser(self))
        self._fake = fake
        self._url = b""
        self._body: list[bytes] = []
        self._timer: asyncio.Handle | None = None
        self._delay = fake.delay

    def connection_lost(self, exc: Exception | None) -> None:
        del exc  # however it ended
        if self._timer is not None:
            self._timer.cancel()  # the client left: no more tokens

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        url, self._url = self._url, b""
        body, self._body = b"".join(self._body), []
        method = self.parser.get_method()
        if method == b"GET":
            self._write(_json(INFO) if url == b"/info" else b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
            return
        try:
            request: dict[str, Any] = orjson.loads(body) if body else {}
        except orjson.JSONDecodeError:
            request = {}
        mark = DELAY_MARK.search(body)
        self._delay = int(mark.group(1)) / 1000 if mark else self._fake.delay
        answers = self._fake.answers
        if url == b"/generate_stream":
            self._stream(answers.native_stream(_tokens(request.get("parameters") or {}, "max_new_tokens")))
        elif url == b"/generate":
            self._write(answers.native_whole(_tokens(request.get("parameters") or {}, "max_new_tokens")))
        elif url == b"/v1/chat/completions":
            n = _tokens(request, "max_tokens")
            if request.get("stream"):
                self._stream(answers.chat_stream(n))
            else:
                self._write(answers.chat_whole(n))
        else:
            self._write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")

    def _stream(self, answer: Stream) -> None:
        head, chunks = answer
        self._write(head)
        self._next(chunks, 0)

    def _next(self, chunks: Sequence[bytes], position: int) -> None:
        """Schedule the write of `chunks[position]`: after the delay, or with none on the loop's next turn, so
        that every open stream gets its token written in turn, as TGI's batch steps write them."""
        loop = asyncio.get_running_loop()
        delay = self._delay
        if position == len(chunks) - 2:  # the last event and the end of the body leave together
            last = chunks[-2] + chunks[-1]
            self._timer = loop.call_later(delay, self._write, last) if delay else loop.call_soon(self._write, last)
        elif delay:
            self._timer = loop.call_later(delay, self._tick, chunks, position)
        else:
            self._timer = loop.call_soon(self._tick, chunks, position)

    def _tick(self, chunks: Sequence[bytes], position: int) -> None:
        self._write(chunks[position])
        self._next(chunks, position + 1)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


def _tokens(fields: dict[str, Any], name: str) -> int:
    value = fields.get(name)
    return value if isinstance(value, int) and value > 0 else DEFAULT_TOKENS


def _json(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)


async def serve(port: int, delay: float) -> None:
    fake = FakeTGI(delay)
    server = await asyncio.get_running_loop().create_server(fake.protocol, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="between tokens when the prompt asks for no delay")
    args = parser.parse_args(argv)
    run(serve(args.port, args.delay_ms / 1000))


if __name__ == "__main__":
    main()
