"""Chat Completions shapes, streamed (`chat.completion.chunk`) and whole (`chat.completion`), as
https://platform.openai.com/docs/api-reference/chat/object and .../chat-streaming/streaming show them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from server.generation.choice import TokenLogprob
from server.generation.formats.base import ChoiceResult, OpenAIAnswer, OpenAIStream, Usage

__all__ = ["ChatAnswer", "ChatStream"]


class ChatStream(OpenAIStream):
    object_name = "chat.completion.chunk"
    id_prefix = "chatcmpl-"

    def start(self, index: int) -> bytes:
        return self._chunk(index, b'"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null')

    def content(self, index: int, text: str, logprobs: list[TokenLogprob] | None) -> bytes:
        lp = (
            b"null"
            if logprobs is None
            else orjson.dumps({"content": _entries(logprobs, self.top_logprobs), "refusal": None})
        )
        return self._chunk(
            index, b'"delta":{"content":%s},"logprobs":%s,"finish_reason":null' % (orjson.dumps(text), lp)
        )

    def finish(self, index: int, reason: str) -> bytes:
        return self._chunk(index, b'"delta":{},"logprobs":null,"finish_reason":"%s"' % reason.encode())


class ChatAnswer(OpenAIAnswer):
    object_name = "chat.completion"
    id_prefix = "chatcmpl-"

    def response(self, choices: Sequence[ChoiceResult], usage: Usage) -> dict[str, Any]:
        top = self.top_logprobs
        return self.envelope(
            [
                {
                    "index": c.index,
                    "message": {"role": "assistant", "content": c.text, "refusal": None},
                    "logprobs": None if c.logprobs is None else {"content": _entries(c.logprobs, top), "refusal": None},
                    "finish_reason": c.finish_reason,
                }
                for c in choices
            ],
            usage,
        )


def _entries(logprobs: list[TokenLogprob], top_logprobs: int) -> list[dict[str, Any]]:
    return [
        {
            "token": text,
            "logprob": value,
            "bytes": list(text.encode()),
            "top_logprobs": [
                {"token": alt, "logprob": alt_value, "bytes": list(alt.encode())}
                for alt, alt_value in alternatives[:top_logprobs]
            ],
        }
        for text, value, alternatives in logprobs
    ]
