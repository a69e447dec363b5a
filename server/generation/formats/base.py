"""The two interfaces every endpoint's shapes implement, and what OpenAI's chat and completion shapes share.

A stream format lives for one streamed answer and renders each of its events as SSE bytes; an answer format
renders one whole answer. Streamed chunks are the hot path: a stream format pre-serialises everything constant
for the request (id, object, created, model) once, and a token costs one `orjson.dumps` of its text plus a few
byte joins; no model objects are built. Every chunk of a stream carries the same `id`, `created` and `model`,
and with `include_usage` every chunk has `"usage":null` until the usage chunk
(https://platform.openai.com/docs/api-reference/chat-streaming/streaming).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from server.errors import ProxyError
from server.generation.choice import TokenLogprob
from server.generation.framing import DATA, DONE, END_OF_EVENT, data_event

__all__ = ["AnswerFormat", "ChoiceResult", "OpenAIAnswer", "OpenAIStream", "StreamFormat", "Usage"]


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


@dataclass(frozen=True, slots=True)
class ChoiceResult:
    index: int
    text: str
    finish_reason: str
    logprobs: list[TokenLogprob] | None
    prefix: str = ""  # completions `echo`: the prompt, sent before the generated text
    # completions `echo` with `logprobs`: the prompt's tokens (TGI prefill); the first has no logprob
    prompt_logprobs: list[tuple[str, float | None]] | None = None


class StreamFormat(Protocol):
    """One streamed answer's bytes, choice by choice; `end` and `failure` are the only ways it ends."""

    def start(self, index: int) -> bytes:
        """What opens choice `index` (chat's role chunk; nothing for completions)."""
        ...

    def content(self, index: int, text: str, logprobs: list[TokenLogprob] | None) -> bytes: ...

    def finish(self, index: int, reason: str) -> bytes: ...

    def usage(self, usage: Usage) -> bytes: ...

    def relayed(self, index: int, fields: dict[str, Any]) -> bytes:
        """A choice whose fields (other than `index`) an OpenAI-style upstream already shaped."""
        ...

    def end(self) -> bytes:
        """The bytes after the last chunk of an answer that succeeded."""
        ...

    def failure(self, error: ProxyError) -> bytes:
        """The bytes that report `error` after the first byte was sent, and end the stream."""
        ...


class AnswerFormat(Protocol):
    """One whole answer as a JSON object."""

    def response(self, choices: Sequence[ChoiceResult], usage: Usage) -> dict[str, Any]:
        """The answer around choices the proxy generated."""
        ...

    def envelope(self, choices: list[dict[str, Any]], usage: Usage | None) -> dict[str, Any]:
        """The answer around choices an OpenAI-style upstream already shaped."""
        ...


def _identity(object_name: str, id_prefix: str, model: str) -> dict[str, Any]:
    """The fields every chunk and the final object share, in OpenAI's order."""
    return {
        "id": f"{id_prefix}{secrets.token_hex(12)}",
        "object": object_name,
        "created": int(time.time()),
        "model": model,
    }


class OpenAIStream:
    """What the chat and completion streams share: the pre-serialised chunk, usage, end and failure."""

    object_name = ""
    id_prefix = ""

    def __init__(self, model: str, *, include_usage: bool, top_logprobs: int) -> None:
        self._fields = _identity(self.object_name, self.id_prefix, model)
        self.id: str = self._fields["id"]
        self.created: int = self._fields["created"]
        self.top_logprobs = top_logprobs
        # `data: {"id":...,"model":"m","choices":[{"index":` ... `}]` + tail
        self._head = DATA + orjson.dumps(self._fields)[:-1] + b',"choices":[{"index":'
        self._tail = (b',"usage":null}' if include_usage else b"}") + END_OF_EVENT

    def _chunk(self, index: int, fields: bytes) -> bytes:
        """One streamed choice: the pre-serialised head, the choice's index and fields, the tail."""
        return b"%s%d,%s}]%s" % (self._head, index, fields, self._tail)

    def usage(self, usage: Usage) -> bytes:
        return data_event(orjson.dumps({**self._fields, "choices": [], "usage": usage.as_dict()}))

    def relayed(self, index: int, fields: dict[str, Any]) -> bytes:
        return self._chunk(index, orjson.dumps(fields)[1:-1])

    def end(self) -> bytes:
        return DONE

    def failure(self, error: ProxyError) -> bytes:
        # OpenAI's in-band error: the error object as one data event, then the usual end of stream.
        return data_event(error.json_bytes()) + DONE


class OpenAIAnswer:
    """What the chat and completion answers share: the envelope around the choices."""

    object_name = ""
    id_prefix = ""

    def __init__(self, model: str, *, top_logprobs: int) -> None:
        self._fields = _identity(self.object_name, self.id_prefix, model)
        self.id: str = self._fields["id"]
        self.created: int = self._fields["created"]
        self.top_logprobs = top_logprobs

    def envelope(self, choices: list[dict[str, Any]], usage: Usage | None) -> dict[str, Any]:
        return {**self._fields, "choices": choices, "usage": None if usage is None else usage.as_dict()}
