"""Upstream kind `openai`: the client's request passed through, the upstream's answer normalised. Pure: no I/O.

OpenAI-compatible servers differ from OpenAI in small ways that break clients (tgi-protocol.md §7, peers.md):
TGI's Messages API reports `eos_token` / `stop_sequence`, streams TGI 2.0's EOS token as text (`</s>`), names
chat chunks `text_completion`, leaves ids empty, keeps stop text, repeats `role` in every delta and, before
2.2, ends without `[DONE]`. So the answer is rebuilt in OpenAI's exact shape, with the proxy's own ids: one role
chunk per choice first, content deltas with stop strings trimmed (also across chunks), one finish chunk per
choice with an OpenAI finish reason, `usage: null` on every chunk when usage was asked for, then `[DONE]`.
Everything else a choice carries (tool calls, logprobs, refusals) passes through as the upstream sent it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from server.generation.formats.openai import Format, Usage
from server.generation.stops import StopTrimmer, cut_at_stop

__all__ = ["OnlyCall", "RelayedChoices", "finish_reason", "relayed_response", "upstream_body"]

Chunk = dict[str, Any]

# TGI's native reasons are not OpenAI's; anything else unknown is reported as a plain stop.
_FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "function_call": "function_call",
    "eos_token": "stop",
    "stop_sequence": "stop",
}
# Delta fields the proxy rebuilds itself; the rest (tool_calls, refusal, ...) pass through.
_REBUILT_DELTA_FIELDS = frozenset({"role", "content"})


@dataclass(frozen=True, slots=True)
class OnlyCall:
    """The single upstream call behind a relayed answer (the upstream fans out `n` itself)."""

    index: int = 0


def finish_reason(value: object) -> str | None:
    """OpenAI's name for an upstream's finish reason; None while the choice goes on (TGI sends `""`)."""
    if not value or not isinstance(value, str):
        return None
    return _FINISH_REASONS.get(value, "stop")


def upstream_body(
    body: Mapping[str, Any], *, model_id: str, defaults: Mapping[str, Any], stops: Sequence[str]
) -> dict[str, Any]:
    """The client's own body, with the upstream's name for the model, the configured defaults for fields the
    client left out, and every stop string (the client's and the model's)."""
    sent = {key: value for key, value in defaults.items() if body.get(key) is None}
    sent.update(body)
    sent["model"] = model_id
    if stops:
        sent["stop"] = list(stops)
    return sent


def relayed_response(answer: Mapping[str, Any], fmt: Format, stops: Sequence[str], *, chat: bool) -> dict[str, Any]:
    """A whole upstream answer, normalised."""
    choices = []
    for position, choice in enumerate(_choices(answer)):
        index = choice.get("index", position)
        raw_reason = choice.get("finish_reason")
        reason = finish_reason(raw_reason) or "stop"
        if chat:
            message = dict(choice.get("message") or {})
            message["role"] = "assistant"
            content = message.get("content")
            if isinstance(content, str):
                message["content"], stopped = _trimmed(content, stops)
                reason = "stop" if stopped else reason
            message.setdefault("content", None)
            message.setdefault("refusal", None)
            fields: dict[str, Any] = {"index": index, "message": message}
        else:
            text = choice.get("text")
            text, stopped = _trimmed(text if isinstance(text, str) else "", stops)
            reason = "stop" if stopped else reason
            fields = {"text": text, "index": index}
        choices.append({**fields, "logprobs": choice.get("logprobs"), "finish_reason": reason})
    return fmt.envelope(choices, _usage(answer.get("usage")))


class RelayedChoices:
    """The stream consumer (`server.generation.run.Consumer`) for an OpenAI-style upstream."""

    def __init__(self, fmt: Format, stops: Sequence[str], *, chat: bool, choices: int, include_usage: bool) -> None:
        self._fmt = fmt
        self._stops = stops
        self._chat = chat
        self._include_usage = include_usage
        self._trimmers = {index: StopTrimmer(stops) for index in range(choices)}
        self._usage: Usage | None = None
        self.open_choices = choices

    def prelude(self) -> bytes:
        """The role chunk of every choice, before anything the upstream sent."""
        return b"".join(self._fmt.start(index, "") for index in self._trimmers)

    def take(self, key: OnlyCall, batch: Sequence[Chunk], out: list[bytes]) -> bool:
        del key  # one call carries every choice
        for chunk in batch:
            usage = _usage(chunk.get("usage"))
            if usage is not None:
                self._usage = usage
            for choice in _choices(chunk):
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
        extra: dict[str, Any] = {}
        if self._chat:
            delta = choice.get("delta") or {}
            text = delta.get("content")
            extra = {
                key: value for key, value in delta.items() if key not in _REBUILT_DELTA_FIELDS and value is not None
            }
        else:
            text = choice.get("text")
        # TGI streams its EOS token as the last token (`</s>` on 2.0); OpenAI never shows it.
        released = trimmer.feed(text) if isinstance(text, str) and text and raw_reason != "eos_token" else ""
        logprobs = choice.get("logprobs")
        if released or extra or logprobs:
            out.append(self._content(index, released, extra, logprobs))
        reason = "stop" if trimmer.stopped else finish_reason(raw_reason)
        if reason is not None:
            rest = trimmer.flush()
            if rest:
                out.append(self._content(index, rest, {}, None))
            out.append(self._fmt.finish(index, reason))
            del self._trimmers[index]
            self.open_choices -= 1

    def _content(self, index: int, text: str, extra: dict[str, Any], logprobs: Any) -> bytes:
        if self._chat:
            delta = {"content": text, **extra} if text else extra
            return self._fmt.relayed(index, {"delta": delta, "logprobs": logprobs, "finish_reason": None})
        return self._fmt.relayed(index, {"text": text, "logprobs": logprobs, "finish_reason": None})


def _choices(body: Mapping[str, Any]) -> list[Chunk]:
    choices = body.get("choices")
    return [choice for choice in choices if isinstance(choice, dict)] if isinstance(choices, list) else []


def _trimmed(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    at = cut_at_stop(text, stops)
    return (text, False) if at is None else (text[:at], True)


def _usage(value: Any) -> Usage | None:
    if not isinstance(value, dict):
        return None
    prompt, completion = value.get("prompt_tokens"), value.get("completion_tokens")
    if isinstance(prompt, int) and isinstance(completion, int):
        return Usage(prompt, completion)
    return None
