"""Completions shapes (`text_completion`), streamed and whole, as
https://platform.openai.com/docs/api-reference/completions/object shows them.

Logprobs carry `text_offset`: where each token starts in the choice's text, counted from the start of the
echoed prompt when there is one. Offsets follow the tokens, not the chunks: a token held back by stop checking
is sent after text that follows it, and must keep the offset where it starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from server.generation.choice import TokenLogprob
from server.generation.formats.base import ChoiceResult, OpenAIAnswer, OpenAIStream, Usage

__all__ = ["CompletionAnswer", "CompletionStream"]


class CompletionStream(OpenAIStream):
    object_name = "text_completion"
    id_prefix = "cmpl-"

    def __init__(self, model: str, *, include_usage: bool, top_logprobs: int) -> None:
        super().__init__(model, include_usage=include_usage, top_logprobs=top_logprobs)
        self._offsets: dict[int, int] = {}  # per choice: text_offset of its next logprob token

    def start(self, index: int) -> bytes:
        self._offsets[index] = 0
        return b""

    def content(self, index: int, text: str, logprobs: list[TokenLogprob] | None) -> bytes:
        offset = self._offsets.get(index, 0)
        if logprobs is None:
            lp = b"null"
            self._offsets[index] = offset + len(text)
        else:
            rendered, self._offsets[index] = _logprobs(logprobs, offset, self.top_logprobs)
            lp = orjson.dumps(rendered)
        return self._chunk(index, b'"text":%s,"logprobs":%s,"finish_reason":null' % (orjson.dumps(text), lp))

    def finish(self, index: int, reason: str) -> bytes:
        return self._chunk(index, b'"text":"","logprobs":null,"finish_reason":"%s"' % reason.encode())


class CompletionAnswer(OpenAIAnswer):
    object_name = "text_completion"
    id_prefix = "cmpl-"

    def response(self, choices: Sequence[ChoiceResult], usage: Usage) -> dict[str, Any]:
        return self.envelope([self._choice(c) for c in choices], usage)

    def _choice(self, c: ChoiceResult) -> dict[str, Any]:
        logprobs = None
        if c.logprobs is not None:
            # generated offsets count from the start of the echoed prompt
            logprobs, _ = _logprobs(c.logprobs, len(c.prefix), self.top_logprobs)
            if c.prompt_logprobs:  # the prompt's own tokens come first
                prompt = _logprobs_of_prompt(c.prompt_logprobs)
                logprobs = {key: prompt[key] + logprobs[key] for key in prompt}
        return {"text": c.prefix + c.text, "index": c.index, "logprobs": logprobs, "finish_reason": c.finish_reason}


def _logprobs(logprobs: list[TokenLogprob], offset: int, top_logprobs: int) -> tuple[dict[str, Any], int]:
    """The tokens' logprobs with their offsets from `offset` on, and the offset after the last token."""
    tokens, values, tops, offsets = [], [], [], []
    for token, value, alternatives in logprobs:
        tokens.append(token)
        values.append(value)
        top = dict(alternatives[:top_logprobs])
        top.setdefault(token, value)
        tops.append(top)
        offsets.append(offset)
        offset += len(token)
    return {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops, "text_offset": offsets}, offset


def _logprobs_of_prompt(prompt: list[tuple[str, float | None]]) -> dict[str, Any]:
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
