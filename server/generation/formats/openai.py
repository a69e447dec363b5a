"""OpenAI's response shapes for both endpoints, streamed and not.

Streamed chunks are the hot path: each formatter pre-serialises everything constant for the request (id,
object, created, model) once, and a token costs one `orjson.dumps` of its text plus a few byte joins;
no model objects are built. Shapes: openai-contract.md §2 and §3; every chunk of a stream carries the same
`id`, `created` and `model`, and with `include_usage` every chunk has `"usage":null` until the usage chunk.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from server.generation.choice import TokenLogprob

__all__ = ["ChatFormat", "ChoiceResult", "CompletionFormat", "Format", "Usage"]


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


class Format(Protocol):
    def start(self, index: int, prefix: str) -> bytes: ...

    def content(self, index: int, text: str, logprobs: list[TokenLogprob] | None) -> bytes: ...

    def finish(self, index: int, reason: str) -> bytes: ...

    def usage(self, usage: Usage) -> bytes: ...

    def relayed(self, index: int, fields: dict[str, Any]) -> bytes: ...

    def envelope(self, choices: list[dict[str, Any]], usage: Usage | None) -> dict[str, Any]: ...

    def response(self, choices: Sequence[ChoiceResult], usage: Usage) -> dict[str, Any]: ...


class _Base:
    object_name = ""
    id_prefix = ""

    def __init__(self, model: str, *, include_usage: bool, top_logprobs: int) -> None:
        self.id = f"{self.id_prefix}{secrets.token_hex(12)}"
        self.created = int(time.time())
        self.model = model
        self.top_logprobs = top_logprobs
        # The fields every chunk and the final object share, in OpenAI's order.
        self._fields = {"id": self.id, "object": self.object_name, "created": self.created, "model": self.model}
        # `data: {"id":...,"model":"m","choices":[{"index":` ... `}]` + tail
        self._head = b"data: " + orjson.dumps(self._fields)[:-1] + b',"choices":[{"index":'
        self._tail = b',"usage":null}\n\n' if include_usage else b"}\n\n"

    def _chunk(self, index: int, fields: bytes) -> bytes:
        """One streamed choice: the pre-serialised head, the choice's index and fields, the tail."""
        return b"%s%d,%s}]%s" % (self._head, index, fields, self._tail)

    def usage(self, usage: Usage) -> bytes:
        return b"data: " + orjson.dumps({**self._fields, "choices": [], "usage": usage.as_dict()}) + b"\n\n"

    def relayed(self, index: int, fields: dict[str, Any]) -> bytes:
        """A streamed choice whose fields (other than `index`) are already in OpenAI's shape."""
        return self._chunk(index, orjson.dumps(fields)[1:-1])

    def envelope(self, choices: list[dict[str, Any]], usage: Usage | None) -> dict[str, Any]:
        """The whole answer around choices already in OpenAI's shape."""
        final_object = self.object_name.removesuffix(".chunk")
        return {
            **self._fields,
            "object": final_object,
            "choices": choices,
            "usage": None if usage is None else usage.as_dict(),
        }


class ChatFormat(_Base):
    object_name = "chat.completion.chunk"
    id_prefix = "chatcmpl-"

    def start(self, index: int, prefix: str) -> bytes:
        del prefix  # chat has no echo
        return self._chunk(index, b'"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null')

    def content(self, index: int, text: str, logprobs: list[TokenLogprob] | None) -> bytes:
        lp = b"null" if logprobs is None else orjson.dumps({"content": self._entries(logprobs), "refusal": None})
        return self._chunk(
            index, b'"delta":{"content":%s},"logprobs":%s,"finish_reason":null' % (orjson.dumps(text), lp)
        )

    def finish(self, index: int, reason: str) -> bytes:
        return self._chunk(index, b'"delta":{},"logprobs":null,"finish_reason":"%s"' % reason.encode())

    def response(self, choices: Sequence[ChoiceResult], usage: Usage) -> dict[str, Any]:
        return self.envelope(
            [
                {
                    "index": c.index,
                    "message": {"role": "assistant", "content": c.text, "refusal": None},
                    "logprobs": None if c.logprobs is None else {"content": self._entries(c.logprobs), "refusal": None},
                    "finish_reason": c.finish_reason,
                }
                for c in choices
            ],
            usage,
        )

    def _entries(self, logprobs: list[TokenLogprob]) -> list[dict[str, Any]]:
        return [
            {
                "token": text,
                "logprob": value,
                "bytes": list(text.encode()),
                "top_logprobs": [
                    {"token": alt, "logprob": alt_value, "bytes": list(alt.encode())}
                    for alt, alt_value in alternatives[: self.top_logprobs]
                ],
            }
            for text, value, alternatives in logprobs
        ]


class CompletionFormat(_Base):
    object_name = "text_completion"
    id_prefix = "cmpl-"

    def __init__(self, model: str, *, include_usage: bool, top_logprobs: int) -> None:
        super().__init__(model, include_usage=include_usage, top_logprobs=top_logprobs)
        self._offsets: dict[int, int] = {}  # per choice: text_offset of its next logprob token

    def start(self, index: int, prefix: str) -> bytes:
        self._offsets[index] = 0
        return self.content(index, prefix, None) if prefix else b""

    def content(self, index: int, text: str, logprobs: list[TokenLogprob] | None) -> bytes:
        if logprobs is None:
            lp = b"null"
            self._offsets[index] = self._offsets.get(index, 0) + len(text)
        else:
            # Offsets follow the tokens, not this chunk's text: a token held back by stop checking is sent
            # after text that follows it, and must keep the offset where it starts.
            lp = orjson.dumps(self._logprobs(index, text, logprobs))
        return self._chunk(index, b'"text":%s,"logprobs":%s,"finish_reason":null' % (orjson.dumps(text), lp))

    def finish(self, index: int, reason: str) -> bytes:
        return self._chunk(index, b'"text":"","logprobs":null,"finish_reason":"%s"' % reason.encode())

    def response(self, choices: Sequence[ChoiceResult], usage: Usage) -> dict[str, Any]:
        rendered = []
        for c in choices:
            self._offsets[c.index] = 0 if c.prompt_logprobs else len(c.prefix)
            logprobs = None if c.logprobs is None else self._logprobs(c.index, c.text, c.logprobs)
            if logprobs is not None and c.prompt_logprobs:
                logprobs = _join(self._prompt_logprobs(c.prompt_logprobs), logprobs, len(c.prefix))
            rendered.append(
                {
                    "text": c.prefix + c.text,
                    "index": c.index,
                    "logprobs": logprobs,
                    "finish_reason": c.finish_reason,
                }
            )
        return self.envelope(rendered, usage)

    def _logprobs(self, index: int, text: str, logprobs: list[TokenLogprob]) -> dict[str, Any]:
        del text
        offset = self._offsets.get(index, 0)
        tokens, values, tops, offsets = [], [], [], []
        for token, value, alternatives in logprobs:
            tokens.append(token)
            values.append(value)
            top = dict(alternatives[: self.top_logprobs])
            top.setdefault(token, value)
            tops.append(top)
            offsets.append(offset)
            offset += len(token)
        self._offsets[index] = offset
        return {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops, "text_offset": offsets}

    def _prompt_logprobs(self, prompt: list[tuple[str, float | None]]) -> dict[str, Any]:
        offset = 0
        offsets = []
        for token, _ in prompt:
            offsets.append(offset)
            offset += len(token)
        return {
            "tokens": [token for token, _ in prompt],
            "token_logprobs": [value for _, value in prompt],
            # OpenAI gives the first prompt token neither a logprob nor alternatives
            "top_logprobs": [None if value is None else {token: value} for token, value in prompt],
            "text_offset": offsets,
        }


def _join(prompt: dict[str, Any], generated: dict[str, Any], prompt_length: int) -> dict[str, Any]:
    """Prompt logprobs then generated ones; generated offsets count from the start of the echoed prompt."""
    shifted = [offset + prompt_length for offset in generated["text_offset"]]
    return {
        "tokens": prompt["tokens"] + generated["tokens"],
        "token_logprobs": prompt["token_logprobs"] + generated["token_logprobs"],
        "top_logprobs": prompt["top_logprobs"] + generated["top_logprobs"],
        "text_offset": prompt["text_offset"] + shifted,
    }
