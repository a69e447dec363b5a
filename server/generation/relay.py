"""Upstream kind `openai`: the client's request passed through, the upstream's answer normalised. Pure: no I/O.

OpenAI-compatible servers differ from OpenAI in small ways that break clients. TGI's Messages API, for one,
reports its native finish reasons (`eos_token`, `stop_sequence`), streams TGI 2.0's EOS token as text (`</s>`),
leaves stop text in the output and, before 2.2, ended streams without `[DONE]` (the recordings under
`tests/fixtures/tgi/` show each). So the answer is rebuilt in OpenAI's exact shape, with the
proxy's own ids: one role chunk per choice first, content deltas with stop strings trimmed (also across
chunks), one finish chunk per choice with an OpenAI finish reason, `usage: null` on every chunk when usage was
asked for, then the format's end. Everything else a choice carries (tool calls, logprobs, refusals) passes
through as the upstream sent it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from server.generation.finish import final_finish_reason, finish_reason
from server.generation.formats.base import AnswerFormat, StreamFormat, Usage
from server.generation.stops import StopTrimmer, cut_at_stop
from server.upstream.openai_wire import Chunk, choices_of, usage_counts

__all__ = ["CHAT_CHOICES", "COMPLETION_CHOICES", "ChoiceShape", "OnlyCall", "RelayedChoices", "relayed_response"]


@dataclass(frozen=True, slots=True)
class OnlyCall:
    """The single upstream call behind a relayed answer (the upstream fans out `n` itself)."""

    index: int = 0


class ChoiceShape(Protocol):
    """Where an endpoint's choices keep their text, whole and streamed."""

    def whole(self, choice: Chunk, index: object, stops: Sequence[str]) -> tuple[dict[str, Any], bool]:
        """A whole answer's choice up to `logprobs` and `finish_reason`, in OpenAI's key order, its text cut at
        the first stop; True when a stop was cut."""
        ...

    def streamed(self, choice: Chunk) -> tuple[object, dict[str, Any]]:
        """A streamed choice's text, and the other fields it carries that pass through."""
        ...

    def content(self, text: str, passed: dict[str, Any], logprobs: Any) -> dict[str, Any]:
        """A streamed content choice, without `index`."""
        ...


# Delta fields the proxy rebuilds itself; the rest (tool_calls, refusal, ...) pass through.
_REBUILT_DELTA_FIELDS = frozenset({"role", "content"})


class _ChatChoices:
    def whole(self, choice: Chunk, index: object, stops: Sequence[str]) -> tuple[dict[str, Any], bool]:
        message = dict(choice.get("message") or {})
        message["role"] = "assistant"
        stopped = False
        content = message.get("content")
        if isinstance(content, str):
            message["content"], stopped = _trimmed(content, stops)
        message.setdefault("content", None)
        message.setdefault("refusal", None)
        return {"index": index, "message": message}, stopped

    def streamed(self, choice: Chunk) -> tuple[object, dict[str, Any]]:
        delta = choice.get("delta") or {}
        passed = {key: value for key, value in delta.items() if key not in _REBUILT_DELTA_FIELDS and value is not None}
        return delta.get("content"), passed

    def content(self, text: str, passed: dict[str, Any], logprobs: Any) -> dict[str, Any]:
        delta = {"content": text, **passed} if text else passed
        return {"delta": delta, "logprobs": logprobs, "finish_reason": None}


class _CompletionChoices:
    def whole(self, choice: Chunk, index: object, stops: Sequence[str]) -> tuple[dict[str, Any], bool]:
        text = choice.get("text")
        text, stopped = _trimmed(text if isinstance(text, str) else "", stops)
        return {"text": text, "index": index}, stopped

    def streamed(self, choice: Chunk) -> tuple[object, dict[str, Any]]:
        return choice.get("text"), {}

    def content(self, text: str, passed: dict[str, Any], logprobs: Any) -> dict[str, Any]:
        return {"text": text, **passed, "logprobs": logprobs, "finish_reason": None}


CHAT_CHOICES: ChoiceShape = _ChatChoices()
COMPLETION_CHOICES: ChoiceShape = _CompletionChoices()


def relayed_response(
    answer: Mapping[str, Any], fmt: AnswerFormat, stops: Sequence[str], shape: ChoiceShape
) -> dict[str, Any]:
    """A whole upstream answer, normalised."""
    choices = []
    for position, choice in enumerate(choices_of(answer)):
        fields, stopped = shape.whole(choice, choice.get("index", position), stops)
        reason = "stop" if stopped else final_finish_reason(choice.get("finish_reason"))
        choices.append({**fields, "logprobs": choice.get("logprobs"), "finish_reason": reason})
    return fmt.envelope(choices, _usage(answer))


class RelayedChoices:
    """The stream consumer (`server.generation.run.Consumer`) for an OpenAI-style upstream."""

    def __init__(
        self, fmt: StreamFormat, stops: Sequence[str], shape: ChoiceShape, *, choices: int, include_usage: bool
    ) -> None:
        self._fmt = fmt
        self._shape = shape
        self._include_usage = include_usage
        self._trimmers = {index: StopTrimmer(stops) for index in range(choices)}
        self._usage: Usage | None = None
        self.open_choices = choices

    def prelude(self) -> bytes:
        """The role chunk of every choice, before anything the upstream sent."""
        return b"".join(self._fmt.start(index) for index in self._trimmers)

    def take(self, _call: OnlyCall, batch: Sequence[Chunk], out: list[bytes]) -> bool:
        for chunk in batch:  # the one call carries every choice
            usage = _usage(chunk)
            if usage is not None:
                self._usage = usage
            for choice in choices_of(chunk):
                self._take_choice(choice, out)
        # With usage asked for, the upstream sends it after the last finish: read on until it has come.
        return self.open_choices == 0 and (self._usage is not None or not self._include_usage)

    async def tail(self) -> bytes:
        # Usage is what the upstream counted (the client's `stream_options` went through); the proxy does not
        # make up counts for an upstream that sent none.
        return self._fmt.usage(self._usage) if self._include_usage and self._usage is not None else b""

    def _take_choice(self, choice: Chunk, out: list[bytes]) -> None:
        index = choice.get("index", 0)
        trimmer = self._trimmers.get(index) if isinstance(index, int) else None
        if trimmer is None:  # a choice nobody asked for, or one already finished
            return
        raw_reason = choice.get("finish_reason")
        text, passed = self._shape.streamed(choice)
        # TGI streams its EOS token as the last token (`</s>` on 2.0); OpenAI never shows it.
        released = trimmer.feed(text) if isinstance(text, str) and text and raw_reason != "eos_token" else ""
        logprobs = choice.get("logprobs")
        if released or passed or logprobs:
            out.append(self._fmt.relayed(index, self._shape.content(released, passed, logprobs)))
        reason = "stop" if trimmer.stopped else finish_reason(raw_reason)
        if reason is not None:
            rest = trimmer.flush()
            if rest:
                out.append(self._fmt.relayed(index, self._shape.content(rest, {}, None)))
            out.append(self._fmt.finish(index, reason))
            del self._trimmers[index]
            self.open_choices -= 1


def _trimmed(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    at = cut_at_stop(text, stops)
    return (text, False) if at is None else (text[:at], True)


def _usage(body: Mapping[str, Any]) -> Usage | None:
    counts = usage_counts(body)
    return None if counts is None else Usage(*counts)
