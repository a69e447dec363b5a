"""The one map from an upstream's finish reason to OpenAI's, for TGI's native reasons and OpenAI-style ones.

TGI's native API reports `length`, `eos_token` and `stop_sequence` (`FinishReason` in TGI's
`router/src/lib.rs`); its Messages API and other OpenAI-compatible servers report OpenAI's names, and TGI's
Messages API is known to pass its native names through as well. OpenAI's names are `stop`, `length`,
`tool_calls`, `content_filter` and the deprecated `function_call` (openai-openapi `CreateChatCompletionResponse`).
"""

from __future__ import annotations

__all__ = ["final_finish_reason", "finish_reason"]

_OPENAI_NAMES = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "content_filter": "content_filter",
    "function_call": "function_call",
    "eos_token": "stop",
    "stop_sequence": "stop",
}


def finish_reason(value: object) -> str | None:
    """OpenAI's name for an upstream's finish reason; None while the choice goes on (absent, null, or TGI's
    `""`). A reason nobody documents is reported as a plain `stop`."""
    if not value or not isinstance(value, str):
        return None
    return _OPENAI_NAMES.get(value, "stop")


def final_finish_reason(value: object) -> str:
    """The reason of a choice that has ended: without one from the upstream, it stopped."""
    return finish_reason(value) or "stop"
