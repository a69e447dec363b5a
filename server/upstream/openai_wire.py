"""The OpenAI-style wire shapes an `openai` upstream answers with, and the one reader of them.

Answers and stream chunks are JSON objects with `choices` (each with `index`, then `message` or `delta` for
chat, `text` for completions, and `finish_reason`) and, when counted, `usage` with `prompt_tokens` and
`completion_tokens` (openai-openapi `CreateChatCompletionResponse`, `CreateChatCompletionStreamResponse`,
`CreateCompletionResponse`). An upstream is not trusted to send them well formed: the readers skip what is not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["Chunk", "choices_of", "content_of", "usage_counts"]

# A stream chunk or a whole answer, as the upstream sent it.
Chunk = dict[str, Any]


def choices_of(body: Mapping[str, Any]) -> list[Chunk]:
    """The well-formed choices of an answer or chunk."""
    choices = body.get("choices")
    return [choice for choice in choices if isinstance(choice, dict)] if isinstance(choices, list) else []


def usage_counts(body: Mapping[str, Any]) -> tuple[int, int] | None:
    """`(prompt_tokens, completion_tokens)` when the body carries both, else None."""
    usage = body.get("usage")
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if isinstance(prompt, int) and isinstance(completion, int):
        return prompt, completion
    return None


def content_of(choice: Mapping[str, Any]) -> str | None:
    """A choice's text, whichever shape it has: a chat delta or message's `content`, or a completion's `text`."""
    for key in ("delta", "message"):
        inner = choice.get(key)
        if isinstance(inner, dict):
            content = inner.get("content")
            return content if isinstance(content, str) else None
    text = choice.get("text")
    return text if isinstance(text, str) else None
