"""The bytes the fake TGI sends, built once per answer length from the recorded TGI 3 stream in the fixtures.

TGI writes each SSE event as one HTTP chunk (hyper's chunked encoding), so every event here is framed as a chunk;
the token texts, ids and logprobs cycle through those of the recorded answer (docs/tgi-wire.md §2). The last
event carries `generated_text` and `details` as TGI >= 2.3 sends them with `details: true`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import orjson

__all__ = ["Answers", "Stream", "chunk", "recorded_tokens"]

K = TypeVar("K")
T = TypeVar("T")
Stream = tuple[bytes, list[bytes]]
"""An SSE answer: the HTTP head, then its chunks (one per event, then the last, empty one)."""

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "tgi"
TAPE = "hfjs_tape_generate_stream_llama32_3b_tgi3.sse"
MODEL = "bench/fake-tgi"
PROMPT_TOKENS = 12
# Used when the fixtures are not beside the repository (a copy of the project on its own): TGI 3's shape.
_FALLBACK = [{"id": 220 + n, "text": f" t{n}", "logprob": -0.5, "special": False} for n in range(50)]


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def recorded_tokens(fixtures: Path = FIXTURES) -> list[dict[str, Any]]:
    tape = fixtures / TAPE
    if not tape.is_file():
        return _FALLBACK
    events = [orjson.loads(line[5:]) for line in tape.read_bytes().splitlines() if line.startswith(b"data:")]
    return [event["token"] for event in events]


class Answers:
    """Pre-encoded answers of `n` tokens: HTTP head plus body, for each route the fake serves."""

    def __init__(self, tokens: list[dict[str, Any]]) -> None:
        self._tokens = tokens
        self._created = int(time.time())
        self._streams: dict[tuple[bool, int], Stream] = {}
        self._wholes: dict[tuple[bool, int], bytes] = {}

    def native_stream(self, n: int) -> Stream:
        """`/generate_stream`: the head and one chunk per event."""
        return _once(self._streams, (False, n), lambda: self._native_stream(n))

    def native_whole(self, n: int) -> bytes:
        """`/generate` with `details: true`."""
        return _once(self._wholes, (False, n), lambda: self._native_whole(n))

    def chat_stream(self, n: int) -> Stream:
        """TGI's `/v1/chat/completions` stream (the recorded TGI 3.0.1 shape), for OpenAI-style clients."""
        return _once(self._streams, (True, n), lambda: self._chat_stream(n))

    def chat_whole(self, n: int) -> bytes:
        return _once(self._wholes, (True, n), lambda: self._chat_whole(n))

    def token(self, index: int) -> dict[str, Any]:
        return self._tokens[index % len(self._tokens)]

    def _native_stream(self, n: int) -> Stream:
        events = []
        for index in range(n):
            last = index == n - 1
            event: dict[str, Any] = {
                "index": index + 1,
                "token": self.token(index),
                "generated_text": self._text(n) if last else None,
                "details": {
                    "finish_reason": "length",
                    "generated_tokens": n,
                    "seed": None,
                    "input_length": PROMPT_TOKENS,
                }
                if last
                else None,
            }
            events.append(chunk(b"data: " + orjson.dumps(event) + b"\n\n"))
        return _stream_head(), events + [b"0\r\n\r\n"]

    def _native_whole(self, n: int) -> bytes:
        body = orjson.dumps(
            {
                "generated_text": self._text(n),
                "details": {
                    "finish_reason": "length",
                    "generated_tokens": n,
                    "seed": None,
                    "prefill": [],
                    "tokens": [self.token(index) for index in range(n)],
                    "top_tokens": None,
                    "best_of_sequences": None,
                },
            }
        )
        return _json_head(len(body), f"x-prompt-tokens: {PROMPT_TOKENS}\r\nx-generated-tokens: {n}\r\n") + body

    def _chat_stream(self, n: int) -> Stream:
        events = []
        for index in range(n):
            last = index == n - 1
            event = {
                **self._chat_fields("chat.completion.chunk"),
                "choices": [
                    {
                        "index": 0,
                        "delta": {"role": "assistant", "content": self.token(index)["text"]},
                        "logprobs": None,
                        "finish_reason": "length" if last else None,
                    }
                ],
                "usage": None,
            }
            events.append(chunk(b"data: " + orjson.dumps(event) + b"\n\n"))
        events.append(chunk(b"data: [DONE]\n\n"))
        return _stream_head(), events + [b"0\r\n\r\n"]

    def _chat_whole(self, n: int) -> bytes:
        body = orjson.dumps(
            {
                **self._chat_fields("chat.completion"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": self._text(n)},
                        "logprobs": None,
                        "finish_reason": "length",
                    }
                ],
                "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": n, "total_tokens": PROMPT_TOKENS + n},
            }
        )
        return _json_head(len(body)) + body

    def _chat_fields(self, object_name: str) -> dict[str, Any]:
        """What TGI 3 puts before `choices` in its OpenAI-style answers (its `id` is empty)."""
        return {
            "object": object_name,
            "id": "",
            "created": self._created,
            "model": MODEL,
            "system_fingerprint": "3.0.1-native",
        }

    def _text(self, n: int) -> str:
        return "".join(self.token(index)["text"] for index in range(n))


def _once(built: dict[K, T], key: K, build: Callable[[], T]) -> T:
    if key not in built:
        built[key] = build()
    return built[key]


def _stream_head() -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
    )


def _json_head(length: int, extra: str = "") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n%scontent-length: %d\r\n\r\n" % (
        extra.encode(),
        length,
    )
