"""What an output parser emits: the kinds of piece an answer is made of.

Today that is text alone: a choice's released text (`server.generation.choice.Piece`, text with the logprobs
of the tokens it completes) is already a text piece, so plain output costs no copy per token. Reasoning text
and tool calls join this union with their parsers; a format then renders each kind (OpenAI streams a tool call
as `tool_calls` deltas: the first carries `id` and `function.name`, later ones `function.arguments` fragments,
https://platform.openai.com/docs/api-reference/chat-streaming/streaming).
"""

from __future__ import annotations

from server.generation.choice import Piece

__all__ = ["OutputPiece", "Text"]

Text = Piece
OutputPiece = Text
