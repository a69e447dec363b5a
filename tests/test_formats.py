"""Response shapes: streamed chunk bytes and whole responses, for chat and completions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from server.generation.choice import ChoiceState, TokenLogprob
from server.generation.formats.base import ChoiceResult, Usage
from server.generation.formats.chat import ChatAnswer, ChatStream
from server.generation.formats.completion import CompletionAnswer, CompletionStream
from server.upstream.tgi_wire import Token

MODEL = "org/model-7b"
TRICKY = 'say "hi"\n\tback\\slash </script> 日本語 🎉 \u2028 \x00'

LOGPROBS: list[TokenLogprob] = [
    ("Hel", -0.1, [("Hel", -0.1), ("Hi", -2.0), ("Hey", -3.0)]),
    ("lo", -0.2, [("p", -1.0), ("lo", -0.2)]),
    ("!", -0.3, [("?", -0.5), (".", -0.9)]),  # the chosen token is not among its top alternatives
]


def parse_chunk(chunk: bytes) -> dict[str, Any]:
    assert chunk.startswith(b"data: ")
    assert chunk.endswith(b"\n\n")
    body = chunk[len(b"data: ") : -2]
    assert b"\n" not in body
    parsed: dict[str, Any] = json.loads(body)
    return parsed


def chat_chunks(fmt: ChatStream) -> list[bytes]:
    return [
        fmt.start(0),
        fmt.content(0, "Hello", None),
        fmt.content(0, TRICKY, None),
        fmt.finish(0, "stop"),
        fmt.start(1),
        fmt.finish(1, "length"),
    ]


def completion_chunks(fmt: CompletionStream) -> list[bytes]:
    return [
        fmt.start(0) + fmt.content(0, "echoed prompt ", None),
        fmt.content(0, "Hello", None),
        fmt.content(0, TRICKY, None),
        fmt.finish(0, "length"),
    ]


# --- streamed chunks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("include_usage", [False, True])
def test_chat_chunks_share_id_created_model(include_usage: bool) -> None:
    fmt = ChatStream(MODEL, include_usage=include_usage, top_logprobs=0)
    chunks = [parse_chunk(c) for c in chat_chunks(fmt)]
    assert {(c["id"], c["created"], c["model"], c["object"]) for c in chunks} == {
        (fmt.id, fmt.created, MODEL, "chat.completion.chunk")
    }
    assert fmt.id.startswith("chatcmpl-")
    assert isinstance(fmt.created, int)
    for chunk in chunks:
        assert ("usage" in chunk) is include_usage
        if include_usage:
            assert chunk["usage"] is None
        assert len(chunk["choices"]) == 1


@pytest.mark.parametrize("include_usage", [False, True])
def test_completion_chunks_share_id_created_model(include_usage: bool) -> None:
    fmt = CompletionStream(MODEL, include_usage=include_usage, top_logprobs=0)
    chunks = [parse_chunk(c) for c in completion_chunks(fmt)]
    assert {(c["id"], c["created"], c["model"], c["object"]) for c in chunks} == {
        (fmt.id, fmt.created, MODEL, "text_completion")
    }
    assert fmt.id.startswith("cmpl-")
    for chunk in chunks:
        assert ("usage" in chunk) is include_usage
        if include_usage:
            assert chunk["usage"] is None


def test_two_formats_have_different_ids() -> None:
    first = ChatStream(MODEL, include_usage=False, top_logprobs=0)
    second = ChatStream(MODEL, include_usage=False, top_logprobs=0)
    assert first.id != second.id


def test_model_name_with_quotes_is_escaped() -> None:
    fmt = ChatStream('we"ird\\name', include_usage=True, top_logprobs=0)
    assert parse_chunk(fmt.start(0))["model"] == 'we"ird\\name'


def test_chat_first_chunk() -> None:
    fmt = ChatStream(MODEL, include_usage=False, top_logprobs=0)
    choice = parse_chunk(fmt.start(3))["choices"][0]
    assert choice == {
        "index": 3,
        "delta": {"role": "assistant", "content": ""},
        "logprobs": None,
        "finish_reason": None,
    }


def test_chat_content_chunk() -> None:
    fmt = ChatStream(MODEL, include_usage=False, top_logprobs=0)
    choice = parse_chunk(fmt.content(2, "Hello", None))["choices"][0]
    assert choice == {"index": 2, "delta": {"content": "Hello"}, "logprobs": None, "finish_reason": None}


@pytest.mark.parametrize("reason", ["stop", "length"])
def test_chat_finish_chunk(reason: str) -> None:
    fmt = ChatStream(MODEL, include_usage=False, top_logprobs=0)
    choice = parse_chunk(fmt.finish(1, reason))["choices"][0]
    assert choice == {"index": 1, "delta": {}, "logprobs": None, "finish_reason": reason}


def test_chat_content_logprobs() -> None:
    fmt = ChatStream(MODEL, include_usage=False, top_logprobs=2)
    logprobs = parse_chunk(fmt.content(0, "Hello!", LOGPROBS))["choices"][0]["logprobs"]
    assert logprobs["refusal"] is None
    content = logprobs["content"]
    assert [e["token"] for e in content] == ["Hel", "lo", "!"]
    assert [e["logprob"] for e in content] == [-0.1, -0.2, -0.3]
    assert content[0]["bytes"] == list(b"Hel")
    assert [len(e["top_logprobs"]) for e in content] == [2, 2, 2]
    assert content[0]["top_logprobs"][1] == {"token": "Hi", "logprob": -2.0, "bytes": list(b"Hi")}


def test_chat_logprob_bytes_are_utf8() -> None:
    fmt = ChatStream(MODEL, include_usage=False, top_logprobs=1)
    content = parse_chunk(fmt.content(0, "日", [("日", -1.0, [("本", -2.0)])]))["choices"][0]["logprobs"]["content"]
    assert content[0]["bytes"] == list("日".encode())
    assert content[0]["top_logprobs"][0]["bytes"] == list("本".encode())


def test_completion_chunk_shape() -> None:
    fmt = CompletionStream(MODEL, include_usage=False, top_logprobs=0)
    fmt.start(0)
    choice = parse_chunk(fmt.content(0, "Hello", None))["choices"][0]
    assert choice == {"text": "Hello", "index": 0, "logprobs": None, "finish_reason": None}
    finish = parse_chunk(fmt.finish(0, "length"))["choices"][0]
    assert finish == {"text": "", "index": 0, "logprobs": None, "finish_reason": "length"}


def test_completion_start_without_echo_sends_nothing() -> None:
    fmt = CompletionStream(MODEL, include_usage=True, top_logprobs=0)
    assert fmt.start(0) == b""


def test_completion_start_with_echo_sends_the_prompt() -> None:
    fmt = CompletionStream(MODEL, include_usage=False, top_logprobs=0)
    choice = parse_chunk(fmt.start(0) + fmt.content(0, "Once upon", None))["choices"][0]
    assert choice["text"] == "Once upon"
    assert choice["finish_reason"] is None


@pytest.mark.parametrize("text", [TRICKY, "", "\u0000\u001f", "😀" * 3, '"', "\\"])
def test_text_is_escaped(text: str) -> None:
    chat = ChatStream(MODEL, include_usage=True, top_logprobs=0)
    assert parse_chunk(chat.content(0, text, None))["choices"][0]["delta"]["content"] == text
    completion = CompletionStream(MODEL, include_usage=True, top_logprobs=0)
    assert parse_chunk(completion.content(0, text, None))["choices"][0]["text"] == text


def test_completion_stream_logprobs_and_text_offset() -> None:
    fmt = CompletionStream(MODEL, include_usage=False, top_logprobs=1)
    fmt.start(0)
    first = parse_chunk(fmt.content(0, "Hel", LOGPROBS[:1]))["choices"][0]["logprobs"]
    second = parse_chunk(fmt.content(0, "lo!", LOGPROBS[1:]))["choices"][0]["logprobs"]
    assert first["tokens"] == ["Hel"]
    assert first["text_offset"] == [0]
    assert second["tokens"] == ["lo", "!"]
    assert second["token_logprobs"] == [-0.2, -0.3]
    assert second["text_offset"] == [3, 5]
    # top 1 alternative, plus the chosen token when it is not among them
    assert second["top_logprobs"] == [{"p": -1.0, "lo": -0.2}, {"?": -0.5, "!": -0.3}]


def test_usage_chunk() -> None:
    fmt = ChatStream(MODEL, include_usage=True, top_logprobs=0)
    chunk = parse_chunk(fmt.usage(Usage(prompt_tokens=7, completion_tokens=5)))
    assert chunk["id"] == fmt.id
    assert chunk["model"] == MODEL
    assert chunk["created"] == fmt.created
    assert chunk["choices"] == []
    assert chunk["usage"] == {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}


# --- whole responses ------------------------------------------------------------------------------------


def test_chat_response_shape() -> None:
    fmt = ChatAnswer(MODEL, top_logprobs=0)
    body = fmt.response(
        [ChoiceResult(0, TRICKY, "stop", None), ChoiceResult(1, "", "length", None)],
        Usage(prompt_tokens=10, completion_tokens=4),
    )
    body = json.loads(json.dumps(body))
    assert body["object"] == "chat.completion"
    assert body["id"] == fmt.id
    assert body["model"] == MODEL
    assert body["created"] == fmt.created
    assert body["usage"] == {"prompt_tokens": 10, "completion_tokens": 4, "total_tokens": 14}
    first, second = body["choices"]
    assert first == {
        "index": 0,
        "message": {"role": "assistant", "content": TRICKY, "refusal": None},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert second["finish_reason"] == "length"
    assert "logprobs" in second


def test_chat_response_logprobs() -> None:
    fmt = ChatAnswer(MODEL, top_logprobs=1)
    body = fmt.response([ChoiceResult(0, "Hello!", "stop", LOGPROBS)], Usage(1, 3))
    logprobs = body["choices"][0]["logprobs"]
    assert logprobs["refusal"] is None
    assert [e["token"] for e in logprobs["content"]] == ["Hel", "lo", "!"]
    assert all(len(e["top_logprobs"]) == 1 for e in logprobs["content"])


def test_chat_response_empty_logprobs_is_a_list_not_null() -> None:
    fmt = ChatAnswer(MODEL, top_logprobs=0)
    body = fmt.response([ChoiceResult(0, "", "stop", [])], Usage(1, 0))
    assert body["choices"][0]["logprobs"] == {"content": [], "refusal": None}


def test_completion_response_shape() -> None:
    fmt = CompletionAnswer(MODEL, top_logprobs=0)
    body = fmt.response([ChoiceResult(0, "generated", "length", None, prefix="prompt ")], Usage(3, 2))
    assert body["object"] == "text_completion"
    assert body["id"].startswith("cmpl-")
    assert body["choices"] == [{"text": "prompt generated", "index": 0, "logprobs": None, "finish_reason": "length"}]
    assert body["usage"]["total_tokens"] == 5


@pytest.mark.parametrize("k", [0, 1, 2, 5])
def test_completion_response_logprobs(k: int) -> None:
    fmt = CompletionAnswer(MODEL, top_logprobs=k)
    body = fmt.response([ChoiceResult(0, "Hello!", "stop", LOGPROBS, prefix="Say: ")], Usage(2, 3))
    logprobs = body["choices"][0]["logprobs"]
    assert set(logprobs) == {"tokens", "token_logprobs", "top_logprobs", "text_offset"}
    lengths = {len(logprobs[key]) for key in logprobs}
    assert lengths == {len(LOGPROBS)}
    assert logprobs["tokens"] == ["Hel", "lo", "!"]
    assert logprobs["token_logprobs"] == [-0.1, -0.2, -0.3]
    # offsets count the echoed prompt
    assert logprobs["text_offset"] == [5, 8, 10]
    for (token, value, _), top in zip(LOGPROBS, logprobs["top_logprobs"], strict=True):
        assert len(top) <= k + 1
        assert top[token] == value


def tokens_of(texts: list[str]) -> list[Token]:
    return [{"id": i, "text": text, "logprob": -float(i), "special": False} for i, text in enumerate(texts)]


@pytest.mark.parametrize("prefix", ["", "Prompt: "])
def test_completion_stream_text_offset_matches_response_when_text_is_held(prefix: str) -> None:
    """A token held back (it might begin a stop) is sent later: its text_offset is still where it starts."""
    tokens = tokens_of(["a", "bS", "X", "cd"])
    stops = ["ST"]

    stream = CompletionStream(MODEL, include_usage=False, top_logprobs=0)
    state = ChoiceState(stops, want_logprobs=True)
    start = stream.start(0) + (stream.content(0, prefix, None) if prefix else b"")
    chunks = [start] if start else []
    for token in tokens:
        piece = state.add(token)
        if piece.text or piece.logprobs:
            chunks.append(stream.content(0, piece.text, piece.logprobs))
    rest = state.finish()
    if rest.text or rest.logprobs:
        chunks.append(stream.content(0, rest.text, rest.logprobs))
    streamed_text = ""
    streamed_offsets: list[int] = []
    for chunk in chunks:
        choice = parse_chunk(chunk)["choices"][0]
        streamed_text += choice["text"]
        if choice["logprobs"] is not None:
            streamed_offsets.extend(choice["logprobs"]["text_offset"])

    whole = CompletionAnswer(MODEL, top_logprobs=0)
    state = ChoiceState(stops, want_logprobs=True)
    logprobs: list[TokenLogprob] = []
    text = ""
    for token in tokens:
        piece = state.add(token)
        text += piece.text
        logprobs.extend(piece.logprobs or ())
    rest = state.finish()
    text += rest.text
    logprobs.extend(rest.logprobs or ())
    body = whole.response([ChoiceResult(0, text, "stop", logprobs, prefix)], Usage(1, 4))
    response_offsets = body["choices"][0]["logprobs"]["text_offset"]

    assert streamed_text == body["choices"][0]["text"] == prefix + "abSXcd"
    expected = [len(prefix) + at for at in (0, 1, 3, 4)]
    assert response_offsets == expected
    assert streamed_offsets == expected
