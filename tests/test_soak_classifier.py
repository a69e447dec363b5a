"""The soak script's verdicts (scripts/soak_client.py): the soak itself is not run in CI, but a classifier that
called a broken answer complete would make its "broken: 0" worthless."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from scripts.soak_client import BROKEN, CLEAN_ERROR, COMPLETE, Call, classify_json, classify_stream

CHAT = "/v1/chat/completions"
ERROR = {"error": {"message": "m", "type": "server_error", "param": None, "code": "upstream_timeout"}}


def call(*, n: int = 1, usage: bool = False) -> Call:
    body: dict[str, Any] = {"max_tokens": 3}
    if usage:
        body["stream_options"] = {"include_usage": True}
    return Call(CHAT, stream=True, n=n, body=body, leave_after=None)


def chunk(index: int = 0, finish: str | None = None, chunk_id: str = "c1") -> dict[str, Any]:
    choice = {"index": index, "delta": {"content": "x"}, "finish_reason": finish}
    return {"id": chunk_id, "object": "chat.completion.chunk", "choices": [choice]}


def sse(*events: Any, done: bool = True) -> bytes:
    body = b": ping\n\n" + b"".join(b"data: " + orjson.dumps(event) + b"\n\n" for event in events)
    return body + (b"data: [DONE]\n\n" if done else b"")


USAGE = {"id": "c1", "object": "chat.completion.chunk", "choices": [], "usage": {"total_tokens": 3}}


@pytest.mark.parametrize(
    ("the_call", "body", "verdict"),
    [
        (call(), sse(chunk(), chunk(finish="stop")), (COMPLETE, "200")),
        (call(n=2), sse(chunk(1), chunk(0, "stop"), chunk(1, "length")), (COMPLETE, "200")),
        (call(usage=True), sse(chunk(finish="stop"), USAGE), (COMPLETE, "200")),
        (call(), sse(chunk(), ERROR), (CLEAN_ERROR, "event upstream_timeout")),
        (call(), sse(ERROR), (CLEAN_ERROR, "event upstream_timeout")),
    ],
)
def test_well_formed_streams(the_call: Call, body: bytes, verdict: tuple[str, str]) -> None:
    assert classify_stream(the_call, body) == verdict


@pytest.mark.parametrize(
    ("the_call", "body"),
    [
        (call(), sse(chunk(), chunk(finish="stop"), done=False)),  # no [DONE]
        (call(), sse(chunk(finish="stop")) + b": ping\n\n"),  # bytes after [DONE]
        (call(), sse(chunk())),  # no finish chunk
        (call(), sse(chunk(finish="stop"), chunk(finish="stop"))),  # two finish chunks
        (call(n=2), sse(chunk(0, "stop"))),  # a choice never finished
        (call(), sse(chunk(), chunk(finish="stop", chunk_id="c2"))),  # ids differ
        (call(), sse(ERROR, chunk(finish="stop"))),  # chunks after the error event
        (call(), sse(chunk(), {"error": {"message": "no code, type or param"}})),  # not the envelope
        (call(usage=True), sse(chunk(finish="stop"))),  # the usage chunk is missing
        (call(), b'data: {"id":"c1","obj\n\ndata: [DONE]\n\n'),  # malformed JSON
    ],
)
def test_broken_streams(the_call: Call, body: bytes) -> None:
    assert classify_stream(the_call, body)[0] == BROKEN


def test_http_answers() -> None:
    json_call = Call(CHAT, stream=False, n=1, body={"max_tokens": 3}, leave_after=None)
    answer = {
        "object": "chat.completion",
        "choices": [{"index": 0, "message": {"content": "x"}, "finish_reason": "stop"}],
    }
    assert classify_json(json_call, 200, orjson.dumps(answer)) == (COMPLETE, "200")
    assert classify_json(json_call, 504, orjson.dumps(ERROR)) == (CLEAN_ERROR, "504 upstream_timeout")
    assert classify_json(json_call, 500, b"Internal Server Error")[0] == BROKEN
    assert classify_json(json_call, 502, b'{"detail": "Bad Gateway"}')[0] == BROKEN
    assert classify_json(json_call, 200, orjson.dumps({"object": "chat.completion", "choices": []}))[0] == BROKEN
