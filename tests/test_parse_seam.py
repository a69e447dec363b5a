"""The output stage: a parser plugged into the pipeline sees each choice's released text in order, and what it
emits (and holds back) is what the stream and the whole answer carry, alike."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import orjson

from server.generation.choice import Piece
from server.generation.formats.chat import ChatStream
from server.generation.parse.base import PassThrough
from server.generation.parse.pieces import OutputPiece, Text
from server.generation.plan import Job, Plan
from server.generation.run import complete, stream_jobs
from server.upstream.base import Generated, Limits
from server.upstream.tgi_wire import GenerateParameters, StreamResponse, Token

WORDS = ["Hel", "lo", " wor", "ld", "</s>"]


def token(i: int, text: str) -> Token:
    return {"id": i, "text": text, "logprob": -0.5, "special": text == "</s>"}


class Scripted:
    """An upstream that always generates WORDS (the last one TGI's EOS token), and records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, GenerateParameters]] = []

    async def generate(self, prompt: str, parameters: GenerateParameters) -> Generated:
        self.asked.append((prompt, parameters))
        details: Any = {"finish_reason": "eos_token", "generated_tokens": len(WORDS), "seed": None}
        details["tokens"] = [token(i, text) for i, text in enumerate(WORDS)]
        return Generated({"generated_text": "Hello world", "details": details}, prompt_tokens=3)

    async def stream(self, prompt: str, parameters: GenerateParameters) -> AsyncIterator[list[StreamResponse]]:
        self.asked.append((prompt, parameters))
        for i, text in enumerate(WORDS):
            last = i == len(WORDS) - 1
            details: Any = {"finish_reason": "eos_token", "generated_tokens": len(WORDS), "input_length": 3}
            yield [
                {
                    "index": i,
                    "token": token(i, text),
                    "top_tokens": [],
                    "generated_text": "Hello world" if last else None,
                    "details": details if last else None,
                }
            ]

    async def limits(self) -> Limits:
        return Limits()

    async def count_tokens(self, prompt: str) -> int | None:
        return len(prompt)

    async def healthy(self) -> bool:
        return True

    async def aclose(self) -> None:
        pass


class Shouting:
    """Holds back every piece until the choice ends, then gives all of it, upper-cased, as one piece."""

    def __init__(self) -> None:
        self.fed: list[str] = []

    def feed(self, piece: Piece) -> Sequence[OutputPiece]:
        self.fed.append(piece.text)
        return ()

    def finish(self) -> Sequence[OutputPiece]:
        return (Text("".join(self.fed).upper(), None),)


PLAN = Plan({}, 1, (), None, True, False)
JOBS = [Job(0, "p", 0, {})]


def contents(body: bytes) -> list[str]:
    events = [part.removeprefix(b"data: ") for part in body.split(b"\n\n") if part.startswith(b"data: {")]
    return [c["delta"]["content"] for e in map(orjson.loads, events) for c in e["choices"] if c["delta"].get("content")]


async def stream_body(parser: Any) -> bytes:
    fmt = ChatStream("m", include_usage=False, top_logprobs=0)
    opened = await stream_jobs(Scripted(), JOBS, PLAN, fmt, first_event_timeout=5, parser=parser)
    return b"".join([chunk async for chunk in opened.body])


async def test_a_parser_decides_what_the_stream_carries() -> None:
    body = await stream_body(Shouting)
    assert contents(body) == ["HELLO WORLD"]  # held back to the end, then one piece
    assert body.endswith(b"data: [DONE]\n\n")


async def test_without_a_parser_text_streams_piece_by_piece() -> None:
    assert contents(await stream_body(None)) == ["Hel", "lo", " wor", "ld"]
    assert contents(await stream_body(PassThrough)) == ["Hel", "lo", " wor", "ld"]


async def test_the_whole_answer_goes_through_the_same_parser() -> None:
    choices, _ = await complete(Scripted(), JOBS, PLAN, parser=Shouting)
    assert choices[0].text == "HELLO WORLD"
    choices, _ = await complete(Scripted(), JOBS, PLAN)
    assert choices[0].text == "Hello world"
