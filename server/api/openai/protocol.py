"""OpenAI request bodies, fields in the order of OpenAI's API reference.

Validation is strict (no "1" for 1, no 1 for true) and ranges follow openai-openapi; a failure becomes a 400
naming the field (see `server.api.openai.validation`). Unknown fields are accepted and ignored, as vLLM and TGI do,
so SDK `extra_body` keys never break a request. TGI's own sampling extras are declared so they pass through.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

# Integers are bounded by what TGI can take (u32 counts, u64 seeds): an unbounded one could not even be
# serialised to the upstream.
Count = Annotated[int, Field(gt=0, lt=2**32)]
Seed = Annotated[int, Field(ge=-(2**63), lt=2**64)]
Penalty = Annotated[float, Field(ge=-2.0, le=2.0)]
Stop = str | Annotated[list[str], Field(max_length=4)]
LogitBias = dict[str, Annotated[float, Field(ge=-100, le=100)]]


class _Request(BaseModel):
    model_config = ConfigDict(strict=True, extra="allow", frozen=True)


class StreamOptions(_Request):
    include_usage: bool | None = None


class TGIExtras(_Request):
    """TGI parameters without an OpenAI equivalent; SDKs send them through `extra_body`."""

    top_k: Count | None = None
    repetition_penalty: Annotated[float, Field(gt=0)] | None = None
    typical_p: Annotated[float, Field(gt=0, lt=1)] | None = None
    truncate: Count | None = None
    watermark: bool | None = None
    grammar: dict[str, Any] | None = None
    adapter_id: str | None = None


class SamplingFields(TGIExtras):
    """Fields both endpoints share, with OpenAI's ranges."""

    model: str
    frequency_penalty: Penalty | None = None
    logit_bias: LogitBias | None = None
    n: Annotated[int, Field(ge=1, le=128)] | None = None
    presence_penalty: Penalty | None = None
    seed: Seed | None = None
    stop: Stop | None = None
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1)] | None = None
    user: str | None = None


class ChatMessage(_Request):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None


class ChatCompletionRequest(SamplingFields):
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    logprobs: bool | None = None
    top_logprobs: Annotated[int, Field(ge=0, le=20)] | None = None
    max_completion_tokens: Count | None = None
    max_tokens: Count | None = None
    response_format: dict[str, Any] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None


class CompletionRequest(SamplingFields):
    prompt: str | list[str] | list[int] | list[list[int]]
    best_of: Annotated[int, Field(ge=0, le=20)] | None = None
    echo: bool | None = None
    logprobs: Annotated[int, Field(ge=0, le=5)] | None = None
    max_tokens: Count | None = None
    suffix: str | None = None
    response_format: dict[str, Any] | None = None
